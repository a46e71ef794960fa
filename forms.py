"""Flask-WTF forms.

The settings' rules live in models/rules.py as plain Python, so that ``flask
webhook set`` and the sender refuse exactly what the panel refuses.
"""

from flask import current_app
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateTimeLocalField,
    EmailField,
    FieldList,
    Form,
    FormField,
    HiddenField,
    PasswordField,
    SelectMultipleField,
    StringField,
    RadioField,
    SubmitField,
    widgets,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import EqualTo, InputRequired, Length, Regexp

from events import EVENT_TYPES
from models.rules import check_events, check_headers, check_url, unmask_rows
from tasks.netguard import parse_networks
from tasks.retry import WINDOWS


def url_rules() -> dict:
    """The app's URL rules as keyword arguments for :func:`models.rules.check_url`."""
    return {
        "require_https": current_app.config["HOOKLINE_REQUIRE_HTTPS"],
        "allowed_networks": parse_networks(current_app.config["HOOKLINE_ALLOWED_NETWORKS"]),
    }


class HeaderRowForm(Form):
    """One Additional Headers row (a sub-form, so no CSRF token of its own)."""

    name = StringField("Header name")
    value = StringField("Header value")
    # Which saved row this one was shown from: its masked value stands for
    # that row's stored value, whatever the name is changed to.
    saved_row = HiddenField()


class MultiCheckboxField(SelectMultipleField):
    """A list of checkboxes rather than a <select multiple>."""

    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()

    def pre_validate(self, form):
        """Unknown choices are reported by check_events with a clearer message."""


class WebhookSettingsForm(FlaskForm):
    """Settings > Integrations > Custom Webhook.

    The URL rules (https, allowed networks) come from the app's config.
    """


    headers_error: str | None = None
    #: The saved ``[name, value]`` rows, set by the view: masked values stand for them.
    stored_headers: list = []
    #: What the saved settings break, set by the view on GET: {field or (row, part): reason}.
    saved_problems: dict = {}

    enabled = BooleanField("Enabled")
    url = StringField("Webhook URL")
    headers = FieldList(FormField(HeaderRowForm), label="Additional Headers (Optional)")
    events = MultiCheckboxField(
        "Subscribe to Events",
        choices=list(EVENT_TYPES),
    )
    save = SubmitField("Save")
    # Works with JavaScript off: the server re-renders the form with one more row.
    add_header = SubmitField("Add header")

    def _rows(self) -> list[tuple[str, str, int | None]]:
        """The non-empty header rows as (name, value, saved row or None), trimmed."""
        rows = []
        for entry in self.headers:
            name = (entry.form.name.data or "").strip()
            value = (entry.form.value.data or "").strip()
            saved_row = (entry.form.saved_row.data or "").strip()
            if name or value:
                rows.append((name, value, int(saved_row) if saved_row.isdigit() and len(saved_row) < 4 else None))
        return rows

    def header_rows(self) -> list[tuple[str, str]]:
        """The non-empty header rows as (name, value), a kept mask replaced by its stored value."""
        return unmask_rows(self._rows(), self.stored_headers)

    def validate(self, extra_validators=None) -> bool:
        """Run the shared settings rules and attach each error to its field."""
        ok = super().validate(extra_validators)
        enabled = bool(self.enabled.data)
        url = (self.url.data or "").strip()
        self.url.data = url
        if error := check_url(url, enabled=enabled, **url_rules()):
            self.url.errors = [error]
            ok = False
        if error := check_events(self.events.data or [], enabled=enabled):
            self.events.errors = [error]
            ok = False

        # Drop blank rows first so error positions match what is re-rendered
        # (still masked: a stored value is never sent back to the browser).
        rows = self._rows()
        while len(self.headers):
            self.headers.pop_entry()
        for name, value, saved_row in rows:
            self.headers.append_entry({"name": name, "value": value,
                                       "saved_row": "" if saved_row is None else str(saved_row)})
        self.headers_error, row_errors = check_headers(self.header_rows())
        for (i, part), message in row_errors.items():
            getattr(self.headers[i].form, part).errors = [message]
        return ok and not self.headers_error and not row_errors


class LoginForm(FlaskForm):
    """Email and password sign-in."""

    email = EmailField("Email", validators=[InputRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[InputRequired(), Length(max=1024)])
    remember = BooleanField("Keep me signed in")
    submit = SubmitField("Sign in")


class ConfirmForm(FlaskForm):
    """An empty form: a CSRF-protected POST button (logout, redeliver, rotate)."""

    submit = SubmitField("Confirm")


class RetryWindowForm(FlaskForm):
    """"Keep retrying for": one of tasks.retry.WINDOWS."""

    window = RadioField("Keep retrying for", validate_choice=True,
                        choices=[SelectChoice(key, label) for key, (label, _) in WINDOWS.items()],
                        validators=[InputRequired("Choose how long failed deliveries are retried.")])
    submit = SubmitField("Use this retry window")


#: Admin passwords: at least this long (a passphrase beats complexity rules).
MIN_PASSWORD = 12


class AddAdminForm(FlaskForm):
    """Add an admin with an initial password (they can change it after signing in)."""

    email = EmailField("Email", filters=[lambda value: value.strip().lower() if value else value],
                       validators=[InputRequired("Enter the new admin's email."), Length(max=254),
                                            Regexp(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", message="Enter a valid email address.")])
    password = PasswordField("Initial password", validators=[
        InputRequired("Enter an initial password."),
        Length(min=MIN_PASSWORD, max=1024, message=f"Use at least {MIN_PASSWORD} characters.")])
    submit = SubmitField("Add admin")


class ChangePasswordForm(FlaskForm):
    """Change your own password: the current one, then the new one twice."""

    current = PasswordField("Current password", validators=[InputRequired("Enter your current password.")])
    new = PasswordField("New password", validators=[
        InputRequired("Enter a new password."),
        Length(min=MIN_PASSWORD, max=1024, message=f"Use at least {MIN_PASSWORD} characters.")])
    confirm = PasswordField("New password again", validators=[
        InputRequired("Enter the new password again."), EqualTo("new", "The two new passwords differ.")])
    submit = SubmitField("Change password")


class RedeliverSinceForm(FlaskForm):
    """Redeliver every failed delivery created since a moment (UTC)."""

    since = DateTimeLocalField(
        "Failed since (UTC)",
        format=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"],
        validators=[InputRequired("Enter a date and time (UTC).")],
    )
    include_cancelled = BooleanField("Also cancelled ones (cancelled while the integration was off)")
    submit = SubmitField("Redeliver all failed")
