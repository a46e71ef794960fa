"""Settings > Integrations > Custom Webhook > Deliveries: the log, one delivery, redeliver.

Routes only: the log's queries are in views/log_queries.py, the chart's
geometry in views/chart.py, the stats in tasks/stats.py. The first page and
the stats refresh themselves with htmx polling of partial GETs.
"""

import json
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
from sqlalchemy import select
from sqlalchemy.orm import raiseload

from forms import RedeliverSinceForm
from events import EVENT_TYPES
from models import db, utcnow
from models.events import OPEN_STATES, STATES, Attempt, Delivery
from models.settings import get_settings
from tasks import stats as delivery_figures
from tasks.redeliver import REDELIVERABLE, redeliver, redeliver_failed_since
from tasks.stats import DEFAULT_RANGE, RANGES
from views.chart import chart
from views.log_queries import (
    LogFilter, earliest_open_before, int_arg, log_page, schedule_attempts, sent_ahead, waiting_for,
)
from views.sent_request import request_as_sent

bp = Blueprint("deliveries", __name__, url_prefix="/settings/integrations/webhook/deliveries")

#: The "Recent deliveries" list on the settings page.
RECENT = 5


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


def _range_arg() -> str:
    """The chart's range from ``?range=`` (24h or 7d)."""
    value = request.args.get("range", DEFAULT_RANGE)
    return value if value in RANGES else DEFAULT_RANGE


@bp.get("")
def log():
    """The delivery log: stats, chart, filters and one page of deliveries."""
    filters = LogFilter.from_args(request.args)
    page = log_page(filters.conditions(), int_arg("before"), int_arg("after"))
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
        stats=stats_block(context["range_name"]),
        event_types=EVENT_TYPES,
        states=STATES,
        since_form=RedeliverSinceForm(formdata=None, since=utcnow() - timedelta(hours=24)),
        schedule_attempts=schedule_attempts(),
        **context,
    )


@bp.get("/stats")
def stats_panel():
    """The stats block alone (htmx polls it and swaps the 24 h / 7 d range)."""
    compact, range_name = request.args.get("compact") == "1", _range_arg()
    return render_template(
        "deliveries/_stats.html",
        compact=compact,
        range_name=range_name,
        stats=stats_block(range_name, compact=compact),
        filters=LogFilter.from_args(request.args),
    )


def stats_block(range_name: str | None = None, compact: bool = False) -> dict:
    """Everything the stats block shows (the log, the settings page and the polled fragment render it).

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


