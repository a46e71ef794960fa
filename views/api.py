"""The engine's ingestion API: POST /api/v1/events."""

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")
