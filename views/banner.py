"""The banners every panel page shows: integration auto-disabled (with held events) or failing.

A context processor hands templates a ``panel_banner()`` callable; only
base.html's include calls it, for a signed-in admin on a panel page, so
login pages, the API and htmx fragments pay nothing.
"""

from dataclasses import dataclass
from datetime import datetime

from flask import request
from flask_login import current_user

from models.settings import WebhookSettings, get_settings
from tasks import watch
from tasks.held import held_summary

#: Blueprints whose pages are the panel.
PANEL = ("settings", "deliveries", "catalog", "admins")


@dataclass
class Banner:
    """What the banner include shows."""

    settings: WebhookSettings
    held: int
    held_since: datetime | None
    health: watch.Health | None


def panel_banner() -> Banner | None:
    """The banner for this page, or None (not a panel page, or nothing to say)."""
    if request.blueprint not in PANEL or not current_user.is_authenticated:
        return None
    settings = get_settings()
    held, since = held_summary()
    health = None if settings.holds_events or not settings.enabled else watch.cached()
    if not (settings.holds_events or held or (health and health.failing)):
        return None
    return Banner(settings, held, since, health)


def init_app(app) -> None:
    """Offer panel_banner() to every template."""
    app.context_processor(lambda: {"panel_banner": panel_banner})
