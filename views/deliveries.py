"""Settings > Integrations > Custom Webhook > Deliveries: the log, one delivery, redeliver.

The log pages by keyset (``?before=<id>`` / ``?after=<id>``), never OFFSET, so
every page costs one short index range whatever the table's size. The first
page and the stats refresh themselves with htmx polling of partial GETs.

An open delivery behind an earlier open delivery of the same call is shown as
"waiting for earlier event": the drain only claims a call's first open
delivery (tasks/drain.py), so that a call's events arrive in publish order,
and without the note a pending row that never moves looks stuck.
"""

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from sqlalchemy import func, or_, select
from sqlalchemy.orm import raiseload
from wtforms import BooleanField, DateTimeLocalField, SubmitField
from wtforms.validators import InputRequired

from events import EVENT_TYPES
from models import db, utcnow
from models.events import OPEN_STATES, STATES, Attempt, Delivery, Event, is_open
from models.settings import get_settings
from tasks.redeliver import REDELIVERABLE, redeliver, redeliver_failed_since
from tasks.retry import max_attempts, schedule_for
from tasks import stats as delivery_figures
from tasks.stats import DEFAULT_RANGE, OUTCOMES, RANGES
from views.sent_request import request_as_sent

bp = Blueprint("deliveries", __name__, url_prefix="/settings/integrations/webhook/deliveries")

PAGE_SIZE = 50
#: The "Recent deliveries" list on the settings page.
RECENT = 5
KINDS = {"real": False, "test": True}
#: Event ids (the webhook-id header) look like ``msg_…``; call ids never do.
WEBHOOK_ID_PREFIX = "msg_"
#: Chart colours (Bootstrap's success, danger, warning and secondary).
COLOURS = {"delivered": "#198754", "failed": "#dc3545", "retrying": "#ffc107", "cancelled": "#6c757d"}


@bp.before_request
def htmx_session_expired():
    """A polling fragment whose session ended: send the whole page to the login form.

    Without this htmx would follow the login redirect and paste the sign-in
    page into the table every few seconds.
    """
    if request.headers.get("HX-Request") and not current_user.is_authenticated:
        # Back to the page the fragment belongs to, not to the fragment.
        page = urlsplit(request.headers.get("HX-Current-URL", ""))
        back = page.path + (f"?{page.query}" if page.query else "") if page.path else url_for("deliveries.log")
        return "", 401, {"HX-Redirect": url_for("auth.login", next=back)}
    return None


@bp.before_request
@login_required
def require_login():
    """Every page of this blueprint needs a signed-in admin."""


# --- the log -----------------------------------------------------------------


@dataclass
class LogFilter:
    """The log's filters as given in the query string (unknown values are ignored)."""

    status: str = ""
    event_type: str = ""
    call_id: str = ""
    kind: str = ""  # "", "real" or "test"

    @classmethod
    def from_args(cls, args) -> "LogFilter":
        """Read the filters from ``request.args``."""
        status = args.get("status", "")
        event_type = args.get("event_type", "")
        kind = args.get("kind", "")
        return cls(
            status=status if status in STATES else "",
            event_type=event_type if event_type in EVENT_TYPES else "",
            call_id=args.get("call_id", "").strip()[:100],
            kind=kind if kind in KINDS else "",
        )

    def args(self) -> dict:
        """The non-empty filters, for building links that keep them."""
        return {k: v for k, v in vars(self).items() if v}

    def conditions(self) -> list:
        """WHERE clauses; each filter has an index led by its column and ending in id."""
        where = []
        if self.status:
            where.append(Delivery.status == self.status)
        if self.event_type:
            where.append(Delivery.event_type == self.event_type)
        if self.call_id.startswith(WEBHOOK_ID_PREFIX):
            # The search box also takes a webhook-id (the receiver's view of an event):
            # events.id is unique, so this is one index lookup.
            where.append(Delivery.event_seq == select(Event.seq).where(Event.id == self.call_id)
                         .scalar_subquery())
        elif self.call_id:
            where.append(Delivery.call_id == self.call_id)
        if self.kind:
            # "= true", not "IS TRUE": PostgreSQL only uses the index for "=".
            where.append(Delivery.is_test == KINDS[self.kind])  # noqa: E712
        return where


@dataclass
class Page:
    """One page of the log, newest first."""

    rows: list[Delivery]
    newer: int | None  # the ?after= of the "Newer" link
    older: int | None  # the ?before= of the "Older" link

    @property
    def is_first(self) -> bool:
        """The newest page: the one that refreshes itself."""
        return self.newer is None


def _int_arg(name: str) -> int | None:
    """A positive integer query parameter, or None."""
    value = request.args.get(name, "")
    # isdigit() alone accepts "²", which int() refuses.
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 18 else None


def log_page(where: list, before: int | None = None, after: int | None = None,
             size: int = PAGE_SIZE) -> Page:
    """Fetch one page by keyset: one indexed query of at most ``size + 1`` rows.

    ``before`` gives the rows just older than that id, ``after`` the rows just
    newer (read upwards, then reversed). The extra row tells whether there is
    another page that way. ``after`` reaching the newest rows gives the first
    page, so "Newer" always lands on a full, live page.
    """
    query = select(Delivery).options(raiseload(Delivery.event)).where(*where)
    if after is not None:
        rows = db.session.scalars(
            query.where(Delivery.id > after).order_by(Delivery.id.asc()).limit(size + 1)
        ).all()
        if len(rows) > size:
            rows = list(reversed(rows[:size]))
            return Page(rows, newer=rows[0].id, older=rows[-1].id)
        before = None  # nothing newer beyond these: show the first page
    query = query.order_by(Delivery.id.desc()).limit(size + 1)
    if before is not None:
        query = query.where(Delivery.id < before)
    rows = list(db.session.scalars(query).all())
    older = rows[size - 1].id if len(rows) > size else None
    rows = rows[:size]
    newer = rows[0].id if before is not None and rows else None
    if before is not None and not rows:
        # Paged past the oldest row (or a stale link): offer the way back.
        newer = before - 1
    return Page(rows, newer=newer, older=older)


def schedule_attempts() -> int:
    """How many attempts a delivery gets under the retry schedule in force (panel choice or override)."""
    return max_attempts(schedule_for(get_settings().retry_window, current_app.config))


def _holding(now: datetime):
    """An open delivery still holds its call: not yet failed, or failed less than 32 (scaled) minutes ago."""
    return or_(Delivery.holds_call_until.is_(None), Delivery.holds_call_until > now)


def _lets_go(delivery: Delivery, now: datetime) -> bool:
    """Has this head stopped holding its call (its own schedule goes on)?"""
    return delivery.holds_call_until is not None and delivery.holds_call_until <= now


def waiting_for(rows: list[Delivery], now: datetime | None = None) -> dict[int, int]:
    """Which of ``rows`` the drain holds back: {delivery id: the earliest open delivery of its call}.

    The same rule as the drain's claim: an open delivery waits while an
    earlier delivery of its call is still open and still holds the call
    (tasks.outbox._heads). One query for the whole page,
    and only when the page shows open deliveries of a call (a page of finished
    ones costs nothing): the earliest open id per call among the page's calls,
    read through the partial index on open rows (call_id, id), so it touches
    only those calls' open rows, never their delivered history.
    """
    now = now or utcnow()
    candidates = [d for d in rows if d.status in OPEN_STATES and d.call_id and not _lets_go(d, now)]
    if not candidates:
        return {}
    heads = dict(db.session.execute(
        select(Delivery.call_id, func.min(Delivery.id))
        .where(Delivery.call_id.in_(sorted({d.call_id for d in candidates})),
               is_open(Delivery.status), _holding(now),
               Delivery.id < max(d.id for d in candidates))
        .group_by(Delivery.call_id)
    ).all())
    return {d.id: heads[d.call_id] for d in candidates if heads.get(d.call_id, d.id) < d.id}


def sent_ahead(rows: list[Delivery]) -> dict[int, int]:
    """Which of ``rows`` were sent while an earlier event of their call was still retrying: {id: that event's id}.

    An earlier delivery that stopped holding its call (holds_call_until
    passed) and was still open when this one was first attempted. Costs
    nothing unless the page's calls have such a delivery (one query by the
    call index; then one for the first attempts' times).
    """
    sent = [d for d in rows if d.call_id and d.attempt_count]
    if not sent:
        return {}
    let_go = db.session.execute(
        select(Delivery.id, Delivery.call_id, Delivery.holds_call_until, Delivery.status,
               Delivery.last_attempt_at)
        .where(Delivery.call_id.in_(sorted({d.call_id for d in sent})),
               Delivery.holds_call_until.is_not(None), Delivery.id < max(d.id for d in sent))
    ).all()
    if not let_go:
        return {}
    first = dict(db.session.execute(
        select(Attempt.delivery_id, func.min(Attempt.started_at))
        .where(Attempt.delivery_id.in_([d.id for d in sent])).group_by(Attempt.delivery_id)
    ).all())
    ahead = {}
    for d in sent:
        began = first.get(d.id)
        for other in let_go:
            if (other.call_id == d.call_id and other.id < d.id and began is not None
                    and other.holds_call_until <= began
                    and (other.status in OPEN_STATES or other.last_attempt_at > began)):
                ahead[d.id] = other.id
                break
    return ahead


def earliest_open_before(delivery: Delivery) -> Delivery | None:
    """The earliest still-open delivery of ``delivery``'s call published before it, if any.

    That is the one the drain is working through (the call's head); while it
    exists ``delivery`` is not sent. None for a finished delivery or one
    without a call id.
    """
    now = utcnow()
    if delivery.status not in OPEN_STATES or not delivery.call_id or _lets_go(delivery, now):
        return None
    return db.session.scalars(
        select(Delivery).options(raiseload(Delivery.event))
        .where(Delivery.call_id == delivery.call_id, Delivery.id < delivery.id,
               is_open(Delivery.status), _holding(now))
        .order_by(Delivery.id).limit(1)
    ).first()


def _range_arg() -> str:
    """The chart's range from ``?range=`` (24h or 7d)."""
    value = request.args.get("range", DEFAULT_RANGE)
    return value if value in RANGES else DEFAULT_RANGE


@bp.get("")
def log():
    """The delivery log: stats, chart, filters and one page of deliveries."""
    filters = LogFilter.from_args(request.args)
    page = log_page(filters.conditions(), _int_arg("before"), _int_arg("after"))
    context = dict(
        filters=filters,
        page=page,
        waiting=waiting_for(page.rows),
        ahead=sent_ahead(page.rows),
        now=utcnow(),
        range_name=_range_arg(),
    )
    if request.args.get("partial") == "table":
        # The live feed's fragment (htmx polls it on the first page).
        return render_template("deliveries/_table.html", **context)
    return render_template(
        "deliveries/log.html",
        event_types=EVENT_TYPES,
        states=STATES,
        since_form=RedeliverSinceForm(formdata=None, since=utcnow() - timedelta(hours=24)),
        schedule_attempts=schedule_attempts(),
        **context,
    )


@bp.get("/stats")
def stats_panel():
    """The stats block alone (htmx polls it and swaps the 24 h / 7 d range)."""
    return render_template(
        "deliveries/_stats.html",
        compact=request.args.get("compact") == "1",
        range_name=_range_arg(),
        filters=LogFilter.from_args(request.args),
    )


@bp.app_template_global("delivery_stats")
def delivery_stats(range_name: str | None = None, compact: bool = False) -> dict:
    """Everything the stats block shows, for templates (the settings page includes it).

    ``compact`` (the settings page) draws a lower chart and adds the latest
    deliveries. The figures are shared by every open tab (tasks.stats.current).
    """
    figures = delivery_figures.current(range_name if range_name in RANGES else DEFAULT_RANGE)
    data = {
        "now": figures["now"],
        "summary": figures["summary"],
        "chart": chart(figures["series"], height=150 if compact else 220),
    }
    if compact:
        data["recent"] = db.session.scalars(
            select(Delivery).options(raiseload(Delivery.event))
            .order_by(Delivery.id.desc()).limit(RECENT)
        ).all()
    return data


# --- one delivery ------------------------------------------------------------


def pretty_envelope(body: str) -> str:
    """The stored compact JSON, indented for reading, keys in the order sent."""
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        return body


@bp.get("/<int:delivery_id>")
def detail(delivery_id: int):
    """One delivery: its envelope, webhook-id and every attempt, newest first."""
    delivery = db.session.get(Delivery, delivery_id)
    if delivery is None:
        abort(404)
    attempts = db.session.scalars(
        select(Attempt).where(Attempt.delivery_id == delivery.id).order_by(Attempt.id.desc())
    ).all()
    settings = get_settings()
    context = dict(
        delivery=delivery,
        event=delivery.event,
        envelope=pretty_envelope(delivery.event.body),
        attempts=attempts,
        sent={a.id: request_as_sent(a, saved_url=settings.url, saved_headers=settings.headers,
                                    user_agent=current_app.config["HOOKLINE_USER_AGENT"]) for a in attempts},
        waiting_on=earliest_open_before(delivery),
        ahead_of=sent_ahead([delivery]).get(delivery.id),
        now=utcnow(),
        redeliverable=delivery.status in REDELIVERABLE,
        schedule_attempts=schedule_attempts(),
        back=_safe_back(request.args.get("back")),
    )
    if request.args.get("partial") == "1":
        # While the delivery is open the page polls this to follow it.
        return render_template("deliveries/_detail_body.html", **context)
    return render_template("deliveries/detail.html", **context)


# --- redeliver ---------------------------------------------------------------


class RedeliverSinceForm(FlaskForm):
    """Redeliver every failed delivery created since a moment (UTC)."""

    since = DateTimeLocalField(
        "Failed since (UTC)",
        format=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"],
        validators=[InputRequired("Enter a date and time (UTC).")],
    )
    include_cancelled = BooleanField("Also cancelled ones (cancelled while the integration was off)")
    submit = SubmitField("Redeliver all failed")


def _safe_back(target: str | None) -> str:
    """Only return to a page of the log (keeps its filters and paging)."""
    prefix = url_for("deliveries.log")
    if target and target.startswith(prefix) and not target.startswith("//"):
        return target
    return prefix


def _integration_off() -> bool:
    """Flash why nothing can be sent while the integration is off."""
    settings = get_settings()
    if settings.enabled and settings.url:
        return False
    flash("The integration is switched off (or has no URL): turn it on to redeliver. "
          "Nothing was queued.", "danger")
    return True


@bp.post("/<int:delivery_id>/redeliver")
def redeliver_one(delivery_id: int):
    """Send one delivery again with the same webhook-id (the normal drain sends it)."""
    back = _safe_back(request.form.get("next"))
    delivery = db.session.get(Delivery, delivery_id)
    if delivery is None:
        abort(404)
    if _integration_off():
        return redirect(back)
    used_up = delivery.attempt_count >= schedule_attempts()
    if redeliver(delivery_id):
        note = " Its retry schedule is used up: it gets one attempt." if used_up else ""
        flash(f"Delivery #{delivery_id} was queued to be sent again with the same webhook-id.{note}",
              "success")
    elif delivery.status in OPEN_STATES:
        flash(f"Delivery #{delivery_id} is already queued or being sent right now.", "warning")
    else:
        flash(f"Delivery #{delivery_id} could not be queued.", "warning")
    return redirect(back)


@bp.post("/redeliver-failed")
def redeliver_failed():
    """Send again every failed delivery created since the given UTC time (one UPDATE)."""
    form = RedeliverSinceForm()
    back = _safe_back(request.form.get("next"))
    if not form.validate():
        errors = [e for field in form for e in field.errors]
        flash("Nothing was queued: " + (" ".join(errors) or "the form was not valid."), "danger")
        return redirect(back)
    if _integration_off():
        return redirect(back)
    since: datetime = form.since.data
    count = redeliver_failed_since(since, include_cancelled=form.include_cancelled.data)
    what = "failed or cancelled" if form.include_cancelled.data else "failed"
    when = since.strftime("%Y-%m-%d %H:%M UTC")
    if count:
        noun = "delivery" if count == 1 else "deliveries"
        flash(f"Queued {count} {what} {noun} created since {when} to be sent again.", "success")
    else:
        flash(f"No {what} deliveries created since {when}: nothing was queued.", "info")
    return redirect(back)


# --- small formatting helpers for the templates ------------------------------


@bp.app_template_filter("hl_relative")
def relative(moment: datetime | None, now: datetime) -> str:
    """``"in 25 s"``, ``"in 3 min"``, ``"2 h ago"``: a moment seen from ``now``."""
    if moment is None:
        return ""
    seconds = (moment - now).total_seconds()
    amount = abs(seconds)
    if amount < 1:
        return "now"
    if amount < 90:
        text = f"{amount:.0f} s"
    elif amount < 90 * 60:
        text = f"{amount / 60:.0f} min"
    elif amount < 36 * 3600:
        text = f"{amount / 3600:.0f} h"
    else:
        text = f"{amount / 86400:.0f} d"
    return f"in {text}" if seconds > 0 else f"{text} ago"


@bp.app_template_filter("hl_ms")
def milliseconds(value: float | None) -> str:
    """A duration for humans: ``"0.8 ms"``, ``"143 ms"``, ``"10,001 ms"``."""
    if value is None:
        return "—"
    return f"{value:.1f} ms" if value < 10 else f"{value:,.0f} ms"


# --- the chart -----------------------------------------------------------------


def _nice_step(peak: int, ticks: int = 4) -> int:
    """The smallest 1-2-5 × 10^k step whose ``ticks`` steps reach ``peak``."""
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            step = factor * magnitude
            if step * ticks >= peak:
                return step
        magnitude *= 10


def _span_label(start: datetime, end: datetime, width: timedelta) -> str:
    """``"14:00–15:00 UTC"`` or ``"Mon 13 Oct 06:00–12:00 UTC"``, for a bar's tooltip."""
    day = "" if width < timedelta(hours=2) else start.strftime("%a %d %b ")
    return f"{day}{start:%H:%M}–{end:%H:%M} UTC"


def chart(series, *, width: int = 720, height: int = 220) -> dict:
    """Geometry of the stacked bar chart for the Jinja macro in ``_chart.html``.

    Coordinates are in viewBox units; the SVG scales to its container.
    """
    left, right, top, bottom = 36, 8, 10, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    step = _nice_step(series.peak)
    y_max = step * 4
    slot = plot_w / max(len(series.buckets), 1)
    hourly = series.width < timedelta(hours=2)
    bars = []
    for i, bucket in enumerate(series.buckets):
        x = left + i * slot + slot * 0.15
        y = top + plot_h
        parts = []
        for key, label in OUTCOMES:
            count = getattr(bucket, key)
            if not count:
                continue
            h = plot_h * count / y_max
            y -= h
            parts.append({"key": key, "y": round(y, 2), "h": round(h, 2), "colour": COLOURS[key]})
        counts = ", ".join(f"{getattr(bucket, k)} {label.lower()}" for k, label in OUTCOMES)
        # Label every 3rd hour, or each midnight of the 7-day view.
        if hourly:
            tick = bucket.start.strftime("%H:%M") if bucket.start.hour % 3 == 0 else ""
        else:
            tick = bucket.start.strftime("%a %d") if bucket.start.hour == 0 else ""
        bars.append({
            "x": round(x, 2),
            "w": round(slot * 0.7, 2),
            "parts": parts,
            "title": f"{_span_label(bucket.start, bucket.end, series.width)}: {counts}",
            "tick": tick,
            "tick_x": round(left + i * slot + slot / 2, 2),
        })
    totals = series.totals()
    total = sum(totals.values())
    unit = "hour" if hourly else "6 hours"
    span = "last 24 hours" if series.range == "24h" else "last 7 days"
    busiest = max(series.buckets, key=lambda b: b.total, default=None)
    description = f"{total} outcomes in the {span}: " + ", ".join(
        f"{totals[k]} {label.lower()}" for k, label in OUTCOMES) + "."
    if busiest is not None and busiest.total:
        description += (f" Busiest: {_span_label(busiest.start, busiest.end, series.width)}"
                        f" with {busiest.total}.")
    return {
        "series": series,
        "width": width,
        "height": height,
        "left": left,
        "right": width - right,
        "top": top,
        "baseline": top + plot_h,
        "bars": bars,
        "grid": [{"value": step * i, "y": round(top + plot_h - plot_h * i / 4, 2)} for i in range(5)],
        "title": f"Delivery attempts per {unit} by outcome, {span} (UTC)",
        "description": description,
        "totals": totals,
        "outcomes": [{"key": k, "label": label, "colour": COLOURS[k], "count": totals[k]}
                     for k, label in OUTCOMES],
    }
