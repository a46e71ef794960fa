"""Flask-WTF forms and the settings rules they share with the CLI.

The rules live in :func:`check_settings` as plain Python so that
``flask webhook set`` refuses exactly what the panel refuses.
"""

import re
from urllib.parse import urlsplit

from flask import current_app
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    EmailField,
    FieldList,
    Form,
    FormField,
    PasswordField,
    SelectMultipleField,
    StringField,
    SubmitField,
    widgets,
)
from wtforms import RadioField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import EqualTo, InputRequired, Length, Regexp

from events import CATALOG, EVENT_TYPES
from tasks.netguard import AddressNotAllowed, check_url_host, parse_networks
from tasks.retry import WINDOWS

MAX_URL_LENGTH = 2048
MAX_HEADERS = 20
MAX_HEADER_VALUE = 4096
# RFC 7230 section 3.2.6: token = 1*tchar.
HEADER_NAME_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
#: Headers Hookline sets itself; an admin may not replace them.
RESERVED_HEADERS = {
    "host",
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "user-agent",
}


def is_reserved_header(name: str) -> bool:
    """True for the names Hookline controls (including every ``webhook-*``)."""
    lowered = name.lower()
    return lowered in RESERVED_HEADERS or lowered.startswith("webhook-")


def check_url(url: str, *, enabled: bool, require_https: bool, allowed_networks=None) -> str | None:
    """The error for the Webhook URL field, or None when it is acceptable.

    With ``allowed_networks`` (a list of networks, possibly empty) the host is
    resolved and refused when it is, or resolves to, a private address that
    those networks do not open. The sender checks again at every connection.
    """
    if not url:
        return "Enter the URL of your endpoint to enable the integration." if enabled else None
    if len(url) > MAX_URL_LENGTH:
        return f"The URL is {len(url):,} characters long; the limit is {MAX_URL_LENGTH:,}."
    if any(c.isspace() or ord(c) < 32 for c in url):
        return "The URL may not contain spaces or control characters."
    try:
        parts = urlsplit(url)
        parts.port  # raises ValueError for a bad port
    except ValueError:
        return "This is not a valid URL."
    if parts.scheme not in ("http", "https"):
        return "The URL must start with https:// (or http://)."
    if not parts.hostname:
        return "The URL has no host name."
    if parts.username or parts.password:
        return "Put credentials in an Additional Header, not in the URL."
    if require_https and parts.scheme != "https":
        return "The URL must use https://."
    if allowed_networks is not None:
        try:
            check_url_host(url, allowed_networks)
        except AddressNotAllowed as exc:
            return f"Address not allowed: {exc}"
    return None


def url_rules() -> dict:
    """The app's URL rules as keyword arguments for :func:`check_url`."""
    return {
        "require_https": current_app.config["HOOKLINE_REQUIRE_HTTPS"],
        "allowed_networks": parse_networks(current_app.config["HOOKLINE_ALLOWED_NETWORKS"]),
    }


def check_events(events: list[str], *, enabled: bool) -> str | None:
    """The error for the Subscribe to Events field, or None."""
    unknown = [e for e in events if e not in CATALOG]
    if unknown:
        return f"Unknown event type: {', '.join(unknown)}."
    if enabled and not events:
        return "Select at least one event to enable the integration."
    return None


def check_headers(headers: list[tuple[str, str]]) -> tuple[str | None, dict]:
    """Check Additional Headers rows.

    Returns (an error about the list as a whole or None, {(row, "name"|"value"): error}).
    """
    row_errors: dict[tuple[int, str], str] = {}
    if len(headers) > MAX_HEADERS:
        return f"At most {MAX_HEADERS} headers; remove {len(headers) - MAX_HEADERS}.", row_errors
    seen = set()
    for i, (name, value) in enumerate(headers):
        if not name:
            row_errors[(i, "name")] = "Enter a header name."
        elif not HEADER_NAME_RE.match(name):
            row_errors[(i, "name")] = (
                f"“{name}” is not a valid header name: use letters, digits and - only "
                "(no spaces, colons or line breaks)."
            )
        elif is_reserved_header(name):
            row_errors[(i, "name")] = f"{name} is set by Hookline and cannot be replaced."
        elif name.lower() in seen:
            row_errors[(i, "name")] = f"{name} is already listed; header names must be unique."
        seen.add(name.lower())
        if any(c in value for c in "\r\n\0"):
            row_errors[(i, "value")] = "The value may not contain line breaks or NUL characters."
        elif len(value) > MAX_HEADER_VALUE:
            row_errors[(i, "value")] = f"The value is longer than {MAX_HEADER_VALUE:,} characters."
        elif not value:
            row_errors[(i, "value")] = "Enter a value for this header."
    return None, row_errors


def parse_header_line(line: str) -> tuple[str, str]:
    """``"X-Api-Key: abc"`` → ``("X-Api-Key", "abc")`` (for the CLI's --header)."""
    name, sep, value = line.partition(":")
    if not sep:
        raise ValueError(f"--header must look like 'Name: value', got {line!r}")
    return name.strip(), value.strip()


class HeaderRowForm(Form):
    """One Additional Headers row (a sub-form, so no CSRF token of its own)."""

    name = StringField("Header name")
    value = StringField("Header value")


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

    def header_rows(self) -> list[tuple[str, str]]:
        """The non-empty header rows as (name, value), trimmed."""
        rows = []
        for entry in self.headers:
            name = (entry.form.name.data or "").strip()
            value = (entry.form.value.data or "").strip()
            if name or value:
                rows.append((name, value))
        return rows

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

        # Drop blank rows first so error positions match what is re-rendered.
        rows = self.header_rows()
        while len(self.headers):
            self.headers.pop_entry()
        for name, value in rows:
            self.headers.append_entry({"name": name, "value": value})
        self.headers_error, row_errors = check_headers(rows)
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
