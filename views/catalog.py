"""The event catalog page: every event type, its example, its schema, how to verify."""

import json

from flask import Blueprint, render_template
from flask_login import login_required

from events import CATALOG, EVENT_TYPES, example_envelope

bp = Blueprint("catalog", __name__, url_prefix="/settings/integrations/webhook/events")


@bp.before_request
@login_required
def require_login():
    """The catalog is part of the panel: signed-in admins only."""


def _pretty(data) -> str:
    """JSON as a receiver would read it in docs: indented, key order kept."""
    return json.dumps(data, indent=2, ensure_ascii=False)


@bp.get("")
def events():
    """List the six event types from the same catalog the engine validates against."""
    entries = [
        {
            "event": CATALOG[name],
            # The whole request body, as the Test button sends it.
            "example": _pretty(example_envelope(name, is_test=False)),
            "schema": _pretty(CATALOG[name].schema),
        }
        for name in EVENT_TYPES
    ]
    return render_template("catalog/events.html", entries=entries)
