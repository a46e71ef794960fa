"""Each call's head, kept in a flag on write, so that a claim reads only the batch it takes.

The rules (unchanged): only a call's head is sent, its first open delivery
that still holds the call; a delivery without a call id is its own head; a
retrying head holds its call until ``holds_call_until``, after which it is
its own head (let go) and the call's next open delivery that holds it is
the call's head too.

``deliveries.head`` records what is known of an open row (closed rows'
flags mean nothing):

- NULL, unknown: publish inserts a row so unless it knows better (below),
  and redeliver and re-enable set the rows they open again so. Unknown
  rows are few (those published since the last claim) and sit in their
  own partial index, ``ix_deliveries_unknown``.
- TRUE: the call's head (or a let-go row, or a row without a call), found
  through ``ix_deliveries_heads`` (due_at, id), earliest due first.
- FALSE: an older open row of its call holds it.

Who writes it:

- a publish committed on its own (PostgreSQL, tasks.publish_sql) inserts its
  row FALSE when its call's newest open row that holds the call is not
  leased, and locks that row FOR SHARE until it commits (SKIP LOCKED: a
  row some drain is writing is passed over, and the publish writes NULL
  if it finds no other); in a caller's transaction, and on SQLite, NULL;
- the claim (one statement) leases the first ``limit`` due, unleased rows
  among: TRUE rows, unknown rows, let-go rows and their calls' next rows
  (``ix_deliveries_let_go``), each one checked by one index seek to have no
  older open row of its call that holds the call, and sets TRUE on what it
  leases. In the same statement it marks FALSE the unknown rows among the
  oldest ``resolve`` that have an older open *unleased* row of their call
  holding it (locking only those);
- a drain that records a batch (closed, or let go by a 4xx) marks each of
  its calls' first open holding row TRUE, in the same transaction
  (promote). On PostgreSQL the claim that follows in that transaction
  does it, in its own UPDATE, leasing such a row in the same write when
  it picks it; with no claim, promote runs just before the commit;
- redeliver and re-enable set the rows they open to NULL.

Why nothing is sent out of order, whatever the flags say: every candidate
is checked against the table itself (no older open row of its call holds
it) in the claim's own snapshot, exactly the rule the old skip scan
applied; a stale TRUE (say behind a redelivered older row) is skipped, not
sent. So two heads of one call are never leased at once.

Why no call is left with open rows and no head (PostgreSQL, READ
COMMITTED, several drains, publishes committing at any time; SQLite runs one
writer at a time, so the same argument holds trivially). A call's head h is
always found by some claim unless h is FALSE and not let go, and nothing
else of its call reaches it. h became FALSE either in a publish P that
locked an older open row o of the call holding it with ``lease_until IS
NULL`` (a lock reads the row's latest committed version), or in a claim C
that saw such an o in its snapshot.
For P: no claim can lease o until P has committed (the claim's reads skip
a row locked FOR SHARE, and its UPDATE would wait for the lock), so the
write that closes o, a later transaction than that claim's, runs its
promote when h is committed and visible; promote then sets TRUE on the
call's first open holding row, h, or an older row whose own close comes
later still, when h is visible too. If o lets go instead, (b) applies.
For C: such an o is not being closed by anybody: only the
drain holding o's lease closes it (outbox.write is fenced by the token),
and a row whose lease is NULL in a committed version was either never
claimed since it was opened or has been recorded since. So o can only stop
holding h back (a) by a later claim leasing it and a later write closing it
or letting it go, or (b) by its ``holds_call_until`` passing.
(a) The claim that leases o commits after C's snapshot (else C would have
seen the lease), so the write that closes o runs its promote after C's
snapshot, when h, committed before C's snapshot, is visible to it; promote
sets TRUE on the call's first open holding row, which is h if o was the
last row before it (or an older row, itself then the head). If C has not
committed yet, promote waits for C's row lock on h and then re-checks h
(``head IS NOT TRUE``), so C's FALSE never lands after promote's TRUE. A
publish cannot slip a row in between unseen: a row committed after C's
snapshot was not seen by C, so C did not mark it; it is unknown, and every
claim resolves unknown rows against the committed table.
(b) Every claim also takes, for each let-go row, its call's first open
holding row as a candidate, whatever its flag.
An unknown row whose older holding row is leased stays unknown (C cannot
tell whether a write is closing that row right now); the claim looks at it
again next time, so there are at most as many of these as leased rows.
A claim looks at the oldest ``resolve`` unknown rows only (at least 128):
an unknown head behind them waits until the window moves on, at the latest
when the leased rows ahead of it are recorded.

What it costs: TRUE rows are read earliest due first and the claim stops
after ``limit`` of them; unknown rows are the last moments' publishes;
let-go rows are few. A claim's reads follow its batch, the unknown rows and
the let-go rows, not the number of calls with open deliveries.

Locks: the claim's reads lock with SKIP LOCKED, so a claim that promotes
nothing never waits; nor does a publish (its one lock skips locked rows
too). Promote (on its own or in a claim) may wait for a claim or another
drain's promote touching the same row (both commit at once); two drains
waiting so for rows the other holds would deadlock, PostgreSQL ends one,
and the drain records its batch row by row (tasks.drain.Drainer.write).
"""

import functools
import json

from sqlalchemy import Boolean, DateTime, Integer, String, Text, bindparam, text

from models.events import HEAD_SQL, LET_GO_SQL, OPEN_SQL, UNKNOWN_SQL
from models.settings import SETTINGS_ID
from tasks import heads_sql as clause
from tasks import statements

#: How many of the oldest unknown rows one claim looks at: per row it may lease, and at least.
RESOLVE_PER_LEASE, RESOLVE_AT_LEAST = 4, 128


def _candidates(dialect: str, lock: bool) -> str:
    """The CTEs s1 (TRUE rows), s2 (unknown rows) and s3 (let-go rows and their calls' next rows).

    Each yields at most ``:limit`` due, unleased rows that may be sent now
    (id, due_at); with ``lock`` (PostgreSQL) each locks what it yields,
    skipping rows another drain holds.
    """
    lock_sql = " FOR UPDATE SKIP LOCKED" if lock else ""
    let_go = (f"FROM deliveries AS l{clause.indexed(dialect, 'ix_deliveries_let_go')}"
              f" WHERE {LET_GO_SQL} AND l.holds_call_until <= :now")
    next_of_call = (f"SELECT (SELECT min(n.id) FROM deliveries AS n{clause.indexed(dialect, 'ix_deliveries_open_call')}"
                    f" WHERE {OPEN_SQL} AND n.call_id = l.call_id AND {clause.HOLDING.format('n')})"
                    f" {let_go} AND l.call_id IS NOT NULL")
    let_go_ids = f"SELECT l.id {let_go} UNION ALL {next_of_call}"
    return (
        f"s1 AS (SELECT d.id, d.due_at FROM deliveries AS d{clause.indexed(dialect, 'ix_deliveries_heads')}"
        f" WHERE {HEAD_SQL} AND {clause.DUE.format('d')} AND {clause.is_head(dialect, 'd')}"
        f" ORDER BY d.due_at, d.id LIMIT :limit{lock_sql}),"
        f" s2 AS (SELECT d.id, d.due_at FROM deliveries AS d"
        f" WHERE {clause.id_among(dialect, 'd.id', _oldest_unknown(dialect))} AND {clause.open_by_id(dialect, UNKNOWN_SQL)}"
        f" AND {clause.DUE.format('d')} AND {clause.is_head(dialect, 'd')} ORDER BY d.id LIMIT :limit{lock_sql}),"
        f" s3 AS (SELECT d.id, d.due_at FROM deliveries AS d"
        f" WHERE {clause.id_among(dialect, 'd.id', let_go_ids)} AND {clause.open_by_id(dialect)} AND {clause.DUE.format('d')}"
        f" ORDER BY d.due_at, d.id LIMIT :limit{lock_sql})"
    )


_PICK = ("SELECT id FROM (SELECT id, due_at FROM s1 UNION SELECT id, due_at FROM s2"
         " UNION SELECT id, due_at FROM s3) AS c ORDER BY due_at, id LIMIT :limit")


def _oldest_unknown(dialect: str) -> str:
    """The ids of the oldest ``:resolve`` unknown rows: all a claim looks at of them.

    A bound, so that a backlog just published costs each claim a fixed
    number of seeks; the window moves on as its rows are leased (heads),
    marked FALSE, or promoted by the write that closes the row before them.
    """
    return (f"SELECT id FROM deliveries{clause.indexed(dialect, 'ix_deliveries_unknown')} WHERE {UNKNOWN_SQL}"
            f" ORDER BY id LIMIT :resolve")


def _resolve_where(dialect: str, row: str) -> str:
    """The unknown rows among the oldest ``:resolve`` that wait behind an older, unleased row of their call."""
    oldest = _oldest_unknown(dialect)
    # Not let go, and held back by an unleased row: so not a head either (one seek, not two).
    return (f"{clause.id_among(dialect, f'{row}.id', oldest)} AND {row}.head IS NULL AND {row}.call_id IS NOT NULL"
            f" AND ({row}.holds_call_until IS NULL OR {row}.holds_call_until > :now)"
            f" AND {clause.held_back(dialect, row, ' AND o.lease_until IS NULL')}")


def _waiting_ids() -> str:
    """PostgreSQL: the ids _resolve_where picks, each locked (skipping rows another drain holds).

    Only the rows to be marked are locked, not the whole window: a lock is
    a write of the row's page and a WAL record, and most of the window
    (rows behind a leased row, left unknown) is looked at by claim after
    claim.
    """
    return (f"SELECT u.id FROM deliveries AS u WHERE {_resolve_where('postgresql', 'u')}"
            f" AND {clause.open_by_id('postgresql')}"
            " FOR UPDATE OF u SKIP LOCKED")


_NOW = bindparam("now", type_=DateTime())
_RETURNED = dict(head=Boolean, id=Integer, event_type=String, is_test=Boolean, attempt_count=Integer,
                 delivered_at=DateTime, event_id=String, body=Text, due_at=DateTime,
                 settings_version=DateTime, holds_call_until=DateTime)
#: The claim's returned columns' types, in order (for tasks.statements.run).
RETURNED = tuple(_RETURNED.values())


@functools.cache
def claim_statement(dialect: str):
    """The claim: one UPDATE ... RETURNING (bound: now, limit, resolve, lease, token).

    Leases the picked rows under the token and flags them TRUE, and marks
    FALSE the oldest unknown rows that wait behind an unleased row (see the
    module's docstring). Returns one row per row written: ``head`` (TRUE:
    leased now) then tasks.outbox.Claimed's fields, in order; the event's
    bytes only for leased rows. PostgreSQL marks the waiting rows in a
    data-modifying CTE; SQLite, which has none, in the same UPDATE.
    """
    leased = f"{clause.id_among(dialect, 'deliveries.id', 'SELECT id FROM pick')}"
    unleased = "(lease_until IS NULL OR lease_until < :now)"
    if dialect == "postgresql":
        # promoted, s4: promote's rows for the deliveries of :promote (the
        # batch this transaction just recorded), leased in the same write
        # when due and picked; flagged TRUE, as promote does, when not.
        promoted = _first_holding(dialect, "SELECT unnest(CAST(:promote AS bigint[]))")
        with_ = (f"WITH promoted AS ({promoted}), {_candidates(dialect, lock=True)},"
                 f" s4 AS (SELECT d.id, d.due_at FROM deliveries AS d WHERE d.id = ANY(ARRAY(SELECT id FROM promoted))"
                 f" AND {clause.open_by_id(dialect)} AND {clause.DUE.format('d')} ORDER BY d.due_at, d.id LIMIT :limit"
                 f" FOR UPDATE SKIP LOCKED), pick AS ({_PICK.replace(') AS c', ' UNION SELECT id, due_at FROM s4) AS c')}),"
                 " waiting AS (UPDATE deliveries AS w SET head = FALSE"
                 f" WHERE {clause.id_among(dialect, 'w.id', _waiting_ids())} AND w.head IS NULL RETURNING w.id)")
        update = (f"UPDATE deliveries SET head = TRUE,"
                  f" lease_until = CASE WHEN {leased} AND {unleased} THEN :lease ELSE lease_until END,"
                  f" claimed_by = CASE WHEN {leased} AND {unleased} THEN :token ELSE claimed_by END"
                  f" WHERE {clause.open_by_id(dialect)} AND (({leased} AND {unleased})"
                  " OR (deliveries.id = ANY(ARRAY(SELECT id FROM promoted)) AND head IS NOT TRUE))")
        is_leased = "claimed_by = :token"
    else:
        with_ = f"WITH {_candidates(dialect, lock=False)}, pick AS MATERIALIZED ({_PICK})"
        update = (f"UPDATE deliveries SET head = {leased},"
                  f" lease_until = CASE WHEN {leased} THEN :lease ELSE lease_until END,"
                  f" claimed_by = CASE WHEN {leased} THEN :token ELSE claimed_by END"
                  f" WHERE ({leased} AND {OPEN_SQL} AND (lease_until IS NULL OR lease_until < :now))"
                  f" OR ({_resolve_where(dialect, 'deliveries')})")
        is_leased = "head"
    event = "(SELECT e.{0} FROM events AS e WHERE e.seq = deliveries.event_seq AND deliveries.%s) AS {1}" % is_leased
    # Every returned column is named as in _RETURNED: SQLAlchemy converts a
    # text statement's columns by name (an unnamed DateTime came back from
    # SQLite as text, and the settings were read again for every batch).
    sql = (
        f"{with_} {update}"
        f" RETURNING {is_leased} AS head, id, event_type, is_test, attempt_count, delivered_at,"
        f" {event.format('id', 'event_id')}, {event.format('body', 'body')}, due_at,"
        f" (SELECT s.updated_at FROM webhook_settings AS s WHERE s.id = {int(SETTINGS_ID)}) AS settings_version,"
        " holds_call_until"
    )
    return text(sql).bindparams(_NOW, bindparam("lease", type_=DateTime())).columns(**_RETURNED)


@functools.cache
def due_statement(dialect: str):
    """Is anything claimable at ``:now``? (bound: see params): the claim's candidates, read only."""
    return text(f"WITH {_candidates(dialect, lock=False)} {_PICK}").bindparams(_NOW).columns(id=Integer)


def _first_holding(dialect: str, ids: str) -> str:
    """SELECT of the first open holding row of each call of the deliveries ``ids`` selects (promote's rows)."""
    first = (f"SELECT min(n.id) FROM deliveries AS n{clause.indexed(dialect, 'ix_deliveries_open_call')}"
             f" WHERE {OPEN_SQL} AND n.call_id = c.call_id AND {clause.HOLDING.format('n')}")
    calls = (f"(SELECT DISTINCT call_id FROM deliveries AS w WHERE {clause.id_among(dialect, 'w.id', ids)}"
             " AND call_id IS NOT NULL) AS c")
    return f"SELECT ({first}) AS id FROM {calls}"


@functools.cache
def _promote_statement(dialect: str):
    """Flag TRUE the first open row holding the call of each delivery of ``:ids`` (bound: now, ids)."""
    ids = ("SELECT unnest(CAST(:ids AS bigint[]))" if dialect == "postgresql"
           else "SELECT CAST(value AS INTEGER) FROM json_each(:ids)")
    return text(f"UPDATE deliveries SET head = TRUE WHERE {clause.id_among(dialect, 'id', _first_holding(dialect, ids))}"
                f" AND {clause.open_by_id(dialect)} AND head IS NOT TRUE").bindparams(_NOW)


def params(limit: int, now, promote=()) -> dict:
    """The bound values every claim statement needs (``now``, ``limit``, ``resolve``, ``promote``).

    ``promote``: ids this transaction recorded and has not promoted after
    (PostgreSQL's claim promotes them; other statements ignore it).
    """
    return {"now": now, "limit": limit, "resolve": max(RESOLVE_AT_LEAST, RESOLVE_PER_LEASE * limit),
            "promote": sorted(promote)}


def promote(session, delivery_ids, now) -> None:
    """Flag the first open holding row of each call of ``delivery_ids`` as its head; the caller commits.

    Called by every write that closes deliveries or lets them go, in its
    transaction, with the ids it wrote: the row behind a closed head becomes
    the head at once. The calls are read from the rows themselves, in the
    same statement.
    """
    ids = sorted(delivery_ids)
    if not ids:
        return
    dialect = session.get_bind().dialect.name
    statements.run(session, _promote_statement(dialect),
                   {"now": now, "ids": ids if dialect == "postgresql" else json.dumps(ids)})
