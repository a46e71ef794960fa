"""Settings > Integrations > Custom Webhook: the form."""

from flask import Blueprint, current_app, flash, redirect, render_template, url_for
from flask_login import login_required

from events import CATALOG, EVENT_TYPES
from forms import ConfirmForm, WebhookSettingsForm
from models import db
from models.settings import apply_settings, get_settings
from tasks.signing import generate_secret

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
    rows = [{"name": n, "value": v} for n, v in settings.masked_headers()]
    return WebhookSettingsForm(
        meta=meta,
        data={
            "enabled": settings.enabled,
            "url": settings.url or "",
            "events": list(settings.events or []),
            "headers": rows or [{"name": "", "value": ""}],
        },
    )


def _render(form, settings, status=200):
    """Render the page; reveal the signing secret if it has never been shown."""
    reveal = None
    if settings.secret and not settings.secret_shown:
        reveal = settings.secret
        settings.secret_shown = True
        db.session.commit()
    page = render_template(
        "settings/webhook.html",
        form=form,
        settings=settings,
        catalog=CATALOG,
        event_types=EVENT_TYPES,
        reveal_secret=reveal,
        confirm_form=ConfirmForm(),
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
    if form.add_header.data:
        # No-JavaScript path: re-render what was typed, plus an empty row.
        form.validate()  # normalises the rows; errors are not shown for this
        for field in [form.url, form.events]:
            field.errors = []
        for entry in form.headers:
            entry.form.name.errors = entry.form.value.errors = []
        form.headers_error = None
        form.headers.append_entry({"name": "", "value": ""})
        return _render(form, settings)
    if not form.validate():
        flash("Nothing was saved: please correct the fields marked below.", "danger")
        return _render(form, settings, 400)
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
