"""The request an attempt sent, as the delivery detail page shows it.

The URL and every header on the wire in sending order: Content-Type,
User-Agent, the ``webhook-*`` headers (the signature shortened), then the
admin's headers (values masked, as recorded). A saved header that breaks the
settings' rules is listed as "not sent" with the reason, never as sent.
"""

from dataclasses import dataclass, field

from models.rules import header_name_problem, header_problem, mask_value

#: Characters of each ``v1,<base64>`` signature kept on the page.
SIGNATURE_SHOWN = 13


@dataclass
class SentRequest:
    """What one attempt put on the wire, ready for the template."""

    url: str | None
    url_recorded: bool
    #: (name, value, None) for a header sent, (name, value, reason) for one that was not.
    headers: list = field(default_factory=list)


def shorten_signature(value: str) -> str:
    """``"v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4="`` → ``"v1,K5oZfzN95Z…"`` (each, when rotating)."""
    return " ".join(sig[:SIGNATURE_SHOWN] + "…" if len(sig) > SIGNATURE_SHOWN else sig for sig in value.split())


def _is_ours(name: str) -> bool:
    lowered = name.lower()
    return lowered in ("content-type", "user-agent") or lowered.startswith("webhook-")


def request_as_sent(attempt, *, saved_url, saved_headers, user_agent) -> SentRequest:
    """The attempt's request: its URL (the saved one for attempts that did not record it) and headers.

    Attempts recorded before every header on the wire was logged lack
    Content-Type and User-Agent, which the sender always sends: they are
    filled in. Custom headers the rules refuse, recorded by older versions
    or saved now, are marked not sent.
    """
    url = getattr(attempt, "url", None)
    recorded = dict(attempt.request_headers or {})
    saved_reasons = {}
    for name, value in saved_headers or []:
        if reason := header_problem(name, value):
            saved_reasons.setdefault(name.lower(), reason)

    lowered = {name.lower() for name in recorded}
    rows = []
    if "content-type" not in lowered:
        rows.append(("Content-Type", "application/json", None))
    if "user-agent" not in lowered:
        rows.append(("User-Agent", user_agent, None))
    custom = []
    for name, value in recorded.items():
        if name.lower() == "webhook-signature":
            rows.append((name, shorten_signature(value), None))
        elif _is_ours(name):
            rows.append((name, value, None))
        else:
            custom.append((name, value, header_name_problem(name) or saved_reasons.get(name.lower())))
    shown = {name.lower() for name, _, _ in custom}
    for name, value in saved_headers or []:
        if name.lower() in saved_reasons and name.lower() not in shown:
            custom.append((name, mask_value(value), saved_reasons[name.lower()]))
    return SentRequest(url=url or saved_url, url_recorded=url is not None, headers=rows + custom)
