"""Settings > Integrations > Custom Webhook: the form, the Test button, secret rotation."""

from datetime import timedelta

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required

from events import CATALOG, EVENT_TYPES
from forms import ConfirmForm, RetryWindowForm, WebhookSettingsForm
from models import db
from models.events import Delivery
from models.rules import saved_problems
from models.settings import apply_settings, clear_expired_secret, get_settings, rotate_secret
from tasks import alerts
from tasks.held import discard_held, send_held, wake_up
from tasks.retry import WINDOWS
from tasks.signing import generate_secret
from tasks.stats import DEFAULT_RANGE
from tasks.testsend import CannotTest, describe, send_test
from views.deliveries import stats_block

#: The event the Test button sends unless the admin picks another.
DEFAULT_TEST_EVENT = "call_initiated"
#: Where the no-JavaScript Test button leaves its result for the next page view.
TEST_RESULT_KEY = "webhook_test_delivery"
#: ... and why it sent nothing, when it could not.
TEST_PROBLEM_KEY = "webhook_test_problem"
#: The htmx event a recorded test fires; the stats block listens for it.
DELIVERY_RECORDED = "hookline:delivery-recorded"

bp = Blueprint("settings", __name__, url_prefix="/settings/integrations/webhook")


@bp.before_request
@login_required
def require_login():
    """Every page of this blueprint needs a signed-in admin."""


def _settings_form(settings=None) -> WebhookSettingsForm:
    """The form, filled from the saved settings on GET (header values masked)."""
    meta = {"require_https": current_app.config["HOOKLINE_REQUIRE_HTTPS"]}
    if settings is None:
        return WebhookSettingsForm(meta=meta)
    rows = [{"name": n, "value": v, "saved_row": str(i)} for i, (n, v) in enumerate(settings.masked_headers())]
    form = WebhookSettingsForm(
        meta=meta,
        data={
            "enabled": settings.enabled,
            "url": settings.url or "",
            "events": list(settings.events or []),
            "headers": rows or [{"name": "", "value": ""}],
        },
    )
    _show_saved_problems(form, settings)
    return form


def _show_saved_problems(form, settings) -> None:
    """Mark what the saved settings break (saved before today's rules) on the form's fields."""
    form.saved_problems = saved_problems(
        url=settings.url, events=settings.events, headers=settings.headers, enabled=settings.enabled,
        require_https=current_app.config["HOOKLINE_REQUIRE_HTTPS"],
    )
    for key, reason in form.saved_problems.items():
        if key == "headers":
            form.headers_error = reason
        elif isinstance(key, tuple):
            row, part = key
            getattr(form.headers[row].form, part).errors = [reason + " This header is not sent."]
        else:
            getattr(form, key).errors = [reason]


def _last_test():
    """The test the no-JavaScript button just sent, to show beside the button once."""
    delivery_id = session.pop(TEST_RESULT_KEY, None)
    delivery = db.session.get(Delivery, delivery_id) if delivery_id else None
    if delivery is None or not delivery.is_test or not delivery.attempts:
        return None
    return delivery


def _render(form, settings, status=200, unsaved=False, retry_form=None):
    """Render the page; reveal the signing secret if it has never been shown.

    ``unsaved`` says the form differs from what is saved (a refused Save), so
    the note that the Test uses the saved settings is shown at once.
    """
    if settings.previous_secret and not settings.rotation_in_progress():
        clear_expired_secret()
        db.session.commit()
    reveal = None
    if settings.secret and not settings.secret_shown:
        reveal = settings.secret
        settings.secret_shown = True
        db.session.commit()
    last_test = _last_test()
    panel_range = request.args.get("range", DEFAULT_RANGE)
    page = render_template(
        "settings/webhook.html",
        form=form,
        settings=settings,
        catalog=CATALOG,
        event_types=EVENT_TYPES,
        reveal_secret=reveal,
        confirm_form=ConfirmForm(),
        test_event=last_test.event_type if last_test else DEFAULT_TEST_EVENT,
        test_delivery=last_test,
        test_outcome=describe(last_test.attempts[-1]) if last_test else None,
        test_problem=session.pop(TEST_PROBLEM_KEY, None),
        rotating=settings.rotation_in_progress(),
        unsaved=unsaved,
        retry_form=retry_form or RetryWindowForm(formdata=None, window=settings.retry_window),
        retry_windows=WINDOWS,
        retry_override=current_app.config["HOOKLINE_RETRY_SCHEDULE"],
        retry_scale=current_app.config["HOOKLINE_RETRY_SCALE"],
        alert_mode=alerts.mode(current_app.config),
        panel_range=panel_range,
        stats=stats_block(panel_range, compact=True),
    )
    return page, status


@bp.get("")
def webhook():
    """Show the Custom Webhook settings."""
    settings = get_settings()
    return _render(_settings_form(settings), settings)


@bp.post("")
def save():
    """Save the form; nothing is written unless every field is valid."""
    settings = get_settings()
    form = _settings_form()
    form.stored_headers = list(settings.headers or [])
    if form.add_header.data:
        # No-JavaScript path: re-render what was typed, plus an empty row.
        form.validate()  # normalises the rows; errors are not shown for this
        for field in [form.url, form.events]:
            field.errors = []
        for entry in form.headers:
            entry.form.name.errors = entry.form.value.errors = []
        form.headers_error = None
        form.headers.append_entry({"name": "", "value": ""})
        return _render(form, settings, unsaved=True)
    if not form.validate():
        flash("Nothing was saved: please correct the fields marked below.", "danger")
        if not len(form.headers):
            form.headers.append_entry({"name": "", "value": ""})  # as on GET: a row to type in
        return _render(form, settings, 400, unsaved=True)
    created = apply_settings(
        settings,
        enabled=form.enabled.data,
        url=form.url.data,
        events=form.events.data,
        headers=form.header_rows(),
        new_secret=generate_secret,
    )
    db.session.commit()
    flash("Settings saved." + (" Your signing secret was created: copy it now." if created else ""), "success")
    return redirect(url_for("settings.webhook"))


@bp.post("/test")
def test():
    """Send the chosen event's example to the saved URL now; show what happened.

    htmx asks with an HX-Request header and gets the result fragment (always
    200, so htmx swaps it in: the outcome is the receiver's, not ours).
    Without JavaScript the result is flashed and shown after a redirect.
    """
    event_type = request.form.get("event_type", DEFAULT_TEST_EVENT)
    settings = get_settings()
    delivery = outcome = None
    if event_type not in CATALOG:
        problem = f"Unknown event type {event_type!r}."
    else:
        try:
            delivery = send_test(settings, event_type)
            outcome = describe(delivery.attempts[-1])
            problem = None
        except CannotTest as exc:
            problem = str(exc)

    if request.headers.get("HX-Request") == "true":
        fragment = render_template(
            "settings/_test_result.html", test_outcome=outcome, test_delivery=delivery, test_problem=problem
        )
        # The stats block below refreshes at once on this event instead of at its next poll.
        return fragment, 200, {"HX-Trigger": DELIVERY_RECORDED} if delivery else {}
    if problem:
        # Shown once, in place of the Test's result (a flash would repeat the page's own note).
        session[TEST_PROBLEM_KEY] = problem
    else:
        flash(f"Test {event_type} sent — {outcome.headline}", outcome.level)
        # Only the id travels in the session cookie: a reply body could overflow it.
        session[TEST_RESULT_KEY] = delivery.id
    return redirect(url_for("settings.webhook") + "#test-webhook")


@bp.post("/rotate-secret")
def rotate():
    """Make a new signing secret (shown once); the old one keeps signing for a while."""
    settings = get_settings()
    hours = current_app.config["HOOKLINE_SECRET_OVERLAP_HOURS"]
    try:
        rotate_secret(settings, new_secret=generate_secret, overlap=timedelta(hours=hours))
    except ValueError as exc:
        flash(str(exc), "warning")
        return redirect(url_for("settings.webhook"))
    db.session.commit()
    if settings.previous_secret:
        until = settings.previous_secret_expires_at.strftime("%Y-%m-%d %H:%M")
        flash(
            f"New signing secret created: copy it now. Until {until} UTC every request is "
            "signed with both the new and the previous secret, so update your receiver before then.",
            "success",
        )
    else:
        flash("New signing secret created: copy it now. The previous secret no longer signs.", "success")
    return redirect(url_for("settings.webhook") + "#signing-secret-section")


@bp.post("/retry-window")
def retry_window():
    """Save how long failed deliveries are retried; deliveries already retrying follow it from their next attempt."""
    settings = get_settings()
    form = RetryWindowForm()
    if not form.validate():
        flash("The retry window was not saved: please correct the field marked below.", "danger")
        return _render(_settings_form(settings), settings, 400, retry_form=form)
    settings.retry_window = form.window.data
    db.session.commit()
    label = WINDOWS[settings.retry_window][0]
    note = (" HOOKLINE_RETRY_SCHEDULE is set on the server, so it applies instead until it is removed."
            if current_app.config["HOOKLINE_RETRY_SCHEDULE"] is not None else "")
    flash(f"Failed deliveries are now retried for {label}.{note}", "success")
    return redirect(url_for("settings.webhook") + "#retry-window")


@bp.post("/alerts")
def alert_choice():
    """The signed-in admin's own choice: get the e-mail alerts or not."""
    wanted = request.form.get("alerts") == "on"
    current_user.alerts_opt_out = not wanted
    db.session.commit()
    flash("You will get the e-mail alerts." if wanted else "You will no longer get the e-mail alerts.", "success")
    return redirect(url_for("settings.webhook") + "#alerts")


@bp.post("/reenable")
def reenable():
    """Switch the integration back on; send or discard what was held while it was off.

    ``held=send`` queues the held events (each call's in publish order),
    ``held=discard`` cancels them; both in the same transaction as the
    switch, so no new event of a call overtakes its held ones.
    """
    choice = request.form.get("held")
    if choice not in (None, "send", "discard"):
        flash("Nothing changed: choose to send or to discard the held events.", "danger")
        return redirect(_back())
    settings = get_settings()
    since = settings.disabled_at
    settings.enabled = True
    settings.disabled_reason = settings.disabled_at = None
    count = send_held() if choice == "send" else discard_held() if choice == "discard" else 0
    db.session.commit()
    message = "The integration is enabled again."
    if choice == "send":
        wake_up()
        message += f" {count} held event{'s' if count != 1 else ''} will be sent now, each call's in order."
    elif choice == "discard":
        message += f" {count} held event{'s' if count != 1 else ''} were discarded (cancelled)."
    if since:
        message += (f" Deliveries that failed or were cancelled since {since:%Y-%m-%d %H:%M} UTC can be "
                    "sent again with “Redeliver all failed since” in the delivery log.")
    flash(message, "success")
    return redirect(_back())


def _back() -> str:
    """Where a banner's form returns: the panel page it was on (never another site)."""
    target = request.form.get("next", "")
    if target.startswith("/settings/") and not target.startswith("//"):
        return target
    return url_for("settings.webhook")
