"""issue 23: deliveries.head, each call's head kept on write, so a claim reads only its batch

Revision ID: c3e1a7f52b08
Revises: b20a7e1c4d90
Create Date: 2026-12-06 04:30:00

deliveries.head is TRUE for a call's head, FALSE for an open row waiting
behind an older one, NULL while not known (tasks.heads). Two partial
indexes: ix_deliveries_heads (due_at, id) over open heads, read earliest
due first by the claim, and ix_deliveries_unknown (id) over open rows whose
flag is not known yet. The backfill flags the open rows that are heads now
(TRUE) and leaves the others unknown: the claim marks those FALSE a few at
a time, and none can be left without a head should a worker of the
previous version still be running (it closes rows without promoting).
"""
from datetime import datetime, timezone

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = 'c3e1a7f52b08'
down_revision = 'b20a7e1c4d90'
branch_labels = None
depends_on = None

OPEN_SQL = "status IN ('pending', 'retrying')"
HEAD_SQL = f"{OPEN_SQL} AND head"
UNKNOWN_SQL = f"{OPEN_SQL} AND head IS NULL"


def upgrade():
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('head', sa.Boolean(), nullable=True))
    op.get_bind().execute(sa.text(
        f"UPDATE deliveries SET head = TRUE WHERE {OPEN_SQL} AND (call_id IS NULL"
        " OR (holds_call_until IS NOT NULL AND holds_call_until <= :now)"
        f" OR NOT EXISTS (SELECT 1 FROM deliveries AS o WHERE o.{OPEN_SQL}"
        " AND o.call_id = deliveries.call_id AND o.id < deliveries.id"
        " AND (o.holds_call_until IS NULL OR o.holds_call_until > :now)))"
    ).bindparams(sa.bindparam('now', type_=sa.DateTime())),
        {'now': datetime.now(timezone.utc).replace(tzinfo=None)})
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_deliveries_heads', ['due_at', 'id'], unique=False,
                              sqlite_where=sa.text(HEAD_SQL), postgresql_where=sa.text(HEAD_SQL))
        batch_op.create_index('ix_deliveries_unknown', ['id'], unique=False,
                              sqlite_where=sa.text(UNKNOWN_SQL), postgresql_where=sa.text(UNKNOWN_SQL))


def downgrade():
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_unknown')
        batch_op.drop_index('ix_deliveries_heads')
        batch_op.drop_column('head')
