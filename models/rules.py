"""The integration settings' rules: URL, events and custom headers, in plain Python.

One rule set for everyone who touches the settings: the panel's form, ``flask
webhook set`` and the sender (which re-checks every header it sends, since a
row saved by an older version must never reach the wire unchecked). No Flask
here, so each caller passes what depends on its config.
"""

import re
from urllib.parse import urlsplit

from events import CATALOG

MAX_URL_LENGTH = 2048
MAX_HEADERS = 20
MAX_HEADER_NAME = 256
MAX_HEADER_VALUE = 4096
#: How many characters of a header value stay visible once saved.
VISIBLE_TAIL = 4
MASK = "••••"

# RFC 7230 section 3.2.6: token = 1*tchar.
HEADER_NAME_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Visible ASCII, space and tab: what every HTTP stack sends unchanged.
HEADER_VALUE_RE = re.compile(r"[\x20-\x7e\t]*")

#: Header names an admin may not set: the framing and identity headers Hookline
#: sends itself, the hop-by-hop ones (they would only confuse the exchange),
#: Accept-Encoding (replies are never decompressed: bounded work, no zip bombs)
#: and Expect (a 100-continue wait would stall every delivery). Every
#: ``webhook-*`` name is reserved too (see :func:`is_reserved_header`), so a
#: custom header can never forge or shadow the signature.
RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-type",
        "content-length",
        "transfer-encoding",
        "connection",
        "user-agent",
        "accept-encoding",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "expect",
    }
)


def is_reserved_header(name: str) -> bool:
    """True for the names Hookline controls (including every ``webhook-*``)."""
    lowered = name.lower()
    return lowered in RESERVED_HEADERS or lowered.startswith("webhook-")


def mask_value(value: str) -> str:
    """``"sk_live_1234abcd"`` → ``"••••abcd"``; short values are fully masked."""
    if len(value) <= VISIBLE_TAIL * 2:
        return MASK
    return MASK + value[-VISIBLE_TAIL:]


def header_name_problem(name: str) -> str | None:
    """Why this custom header name cannot be sent, or None when it can."""
    if not name:
        return "Enter a header name."
    if len(name) > MAX_HEADER_NAME:
        return f"The name is {len(name):,} characters long; the limit is {MAX_HEADER_NAME}."
    if not HEADER_NAME_RE.fullmatch(name):
        return (f"“{name}” is not a valid header name: use letters, digits and - only "
                "(no spaces, colons or line breaks).")
    if is_reserved_header(name):
        return f"{name} is set by Hookline and cannot be replaced."
    return None


def header_value_problem(value: str) -> str | None:
    """Why this custom header value cannot be sent, or None when it can."""
    if not value:
        return "Enter a value for this header."
    if len(value) > MAX_HEADER_VALUE:
        return f"The value is longer than {MAX_HEADER_VALUE:,} characters."
    if not HEADER_VALUE_RE.fullmatch(value):
        if value.startswith(MASK):
            return "This is a saved value's mask, not a value: type the value again."
        if any(c < " " and c != "\t" or c == "\x7f" for c in value):
            return ("The value may not contain line breaks, NUL or other control characters "
                    "(only visible ASCII, spaces and tabs).")
        return ("The value may only hold visible ASCII characters, spaces and tabs: use ASCII; "
                "encode other text, e.g. base64.")
    return None


def header_problem(name: str, value: str) -> str | None:
    """Why this custom header is not sent (its name's problem first), or None."""
    return header_name_problem(name) or header_value_problem(value)


def is_sendable_header(name: str, value: str) -> bool:
    """True when the sender may put this custom header on the wire."""
    return header_problem(name, value) is None


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
        # Imported here: tasks/ imports models/, which must not need tasks/ to load.
        from tasks.netguard import AddressNotAllowed, check_url_host

        try:
            check_url_host(url, allowed_networks)
        except AddressNotAllowed as exc:
            return f"Address not allowed: {exc}"
    return None


def check_events(events: list[str], *, enabled: bool) -> str | None:
    """The error for the Subscribe to Events field, or None."""
    unknown = [e for e in events if e not in CATALOG]
    if unknown:
        return f"Unknown event type: {', '.join(map(str, unknown))}."
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
        if error := header_name_problem(name):
            row_errors[(i, "name")] = error
        elif name.lower() in seen:
            row_errors[(i, "name")] = f"{name} is already listed; header names must be unique."
        seen.add(name.lower())
        if error := header_value_problem(value):
            row_errors[(i, "value")] = error
    return None, row_errors


def unmask_rows(rows, stored) -> list[tuple[str, str]]:
    """Put back the stored value of every row that still shows its saved mask.

    ``rows`` are ``(name, value, saved_row)``, where ``saved_row`` is the index
    in ``stored`` (the saved ``[name, value]`` list) of the row this one was
    shown from, or None for a new row. Matching by row, not by name, lets an
    admin rename a header and keep its secret value.
    """
    kept = []
    for name, value, saved_row in rows:
        if saved_row is not None and 0 <= saved_row < len(stored or []):
            old = stored[saved_row][1]
            if value == mask_value(old):
                value = old
        kept.append((name, value))
    return kept


def saved_problems(*, url, events, headers, enabled, require_https) -> dict:
    """What breaks the rules in settings saved before them: {field: reason}.

    Header problems are keyed ``(row, "name"|"value")``; such headers are not
    sent. The URL's addresses are not resolved here (the sender checks them).
    """
    problems = {}
    if error := check_url(url or "", enabled=enabled, require_https=require_https):
        problems["url"] = error
    if error := check_events(list(events or []), enabled=enabled):
        problems["events"] = error
    list_error, row_errors = check_headers([tuple(h) for h in headers or []])
    if list_error:
        problems["headers"] = list_error
    problems.update(row_errors)
    return problems


def parse_header_line(line: str) -> tuple[str, str]:
    """``"X-Api-Key: abc"`` → ``("X-Api-Key", "abc")`` (for the CLI's --header)."""
    name, sep, value = line.partition(":")
    if not sep:
        raise ValueError(f"--header must look like 'Name: value', got {line!r}")
    return name.strip(), value.strip()
