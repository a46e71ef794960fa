"""Jinja filters the panel's templates share: relative times and milliseconds in words."""

from datetime import datetime


def init_app(app) -> None:
    """Register the filters as ``hl_relative`` and ``hl_ms``."""
    app.add_template_filter(relative, "hl_relative")
    app.add_template_filter(milliseconds, "hl_ms")


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


def milliseconds(value: float | None) -> str:
    """A duration for humans: ``"0.8 ms"``, ``"143 ms"``, ``"10,001 ms"``."""
    if value is None:
        return "—"
    return f"{value:.1f} ms" if value < 10 else f"{value:,.0f} ms"


# --- the chart -----------------------------------------------------------------
