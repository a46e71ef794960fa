"""The request headers the sender puts on the wire: checked once per integration, signed per request.

Reserved headers come first (Content-Type, User-Agent, the ``webhook-*``
signature), then the endpoint's custom headers, checked by the settings'
own rules (models.rules). The module is pure, like tasks.sender.
"""

import logging

from models.rules import is_reserved_header, is_sendable_header

log = logging.getLogger(__name__)


def _header_is_safe(name, value):
    # Defence in depth: the form validates headers too, but a row written by
    # an older version or by hand must not be able to inject a header line.
    return is_sendable_header(name, value)


def _header_items(headers):
    if hasattr(headers, "items"):
        return list(headers.items())
    return list(headers or ())


def build_headers(user_agent, signature_headers, custom_headers=()):
    """Return the request headers, in sending order.

    Reserved headers come first: Content-Type, User-Agent, then the
    ``webhook-*`` signature headers.  Custom headers (a dict or a list of
    pairs) follow, except reserved names (case-insensitive) and any header
    whose name is not an HTTP token or whose value holds CR, LF, NUL or
    another control character; those are skipped and logged.
    """
    headers = {"Content-Type": "application/json", "User-Agent": user_agent}
    for name, value in _header_items(signature_headers):
        if not name.lower().startswith("webhook-"):
            raise ValueError(f"not a signature header: {name!r}")
        headers[name] = str(value)
    for name, value in _header_items(custom_headers):
        name, value = str(name).strip(), str(value).strip()
        if is_reserved_header(name):
            log.warning("custom header %r skipped: reserved name", name)
        elif not _header_is_safe(name, value):
            log.warning("custom header %r skipped: unsafe name or value", name)
        else:
            headers[name] = value
    return headers


def _header_lines(headers):
    lines = [f"{name}: {value}" if value else f"{name};" for name, value in headers.items()
             if name.lower() != "expect"]
    # libcurl's own additions: never "Expect: 100-continue", no "Accept: */*" we did not choose.
    lines.append("Expect:")
    if not any(name.lower() == "accept" for name in headers):
        lines.append("Accept:")
    return [line.encode("latin-1") for line in lines]


class Framing:
    """A request's header lines but the signature: built once per (User-Agent, custom headers).

    Every request of an integration carries the same framing and custom
    headers; only the three ``webhook-*`` lines differ. Checking and
    encoding the custom headers for each request cost more than signing it,
    so the lines are kept and the signature's are put in between
    (:meth:`lines`): the same lines, in the same order, as
    ``_header_lines(build_headers(...))``.
    """

    def __init__(self, user_agent, custom_headers):
        lines = _header_lines(build_headers(user_agent, {}, custom_headers))
        self.head, self.tail = lines[:2], lines[2:]  # Content-Type, User-Agent | custom, Expect, Accept

    def lines(self, signature_headers):
        lines = self.head.copy()
        items = signature_headers.items() if hasattr(signature_headers, "items") else signature_headers or ()
        for name, value in items:
            if not name.lower().startswith("webhook-"):
                raise ValueError(f"not a signature header: {name!r}")
            value = str(value)
            lines.append((f"{name}: {value}" if value else f"{name};").encode("latin-1"))
        lines += self.tail
        return lines
