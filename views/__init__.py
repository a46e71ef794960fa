"""Blueprints, one per area of the panel and API."""

from extensions import csrf
from views import admins, api, auth, banner, catalog, deliveries, formatting, health, security, settings


def init_app(app) -> None:
    """Register every blueprint and the panel's response headers."""
    security.init_app(app)
    formatting.init_app(app)
    banner.init_app(app)
    app.register_blueprint(auth.bp)
    app.register_blueprint(settings.bp)
    app.register_blueprint(catalog.bp)
    app.register_blueprint(deliveries.bp)
    app.register_blueprint(admins.bp)
    app.register_blueprint(api.bp)
    # The engine authenticates with a bearer token, not a browser session.
    csrf.exempt(api.bp)
    app.register_blueprint(health.bp)
