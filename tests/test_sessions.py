"""Sessions end at sign-out everywhere; remember-me is two weeks, Secure and SameSite in production.

Cookies are captured from one client and replayed from another, as a thief
who copied them would.
"""

import os
import re
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import pytest
import sqlalchemy
from flask_migrate import upgrade

from app import create_app
from models import db
from models.users import User
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.support.migrations import upgrade_from_empty

PANEL = "/settings/integrations/webhook"


def sign_in(client, remember=False):
    data = {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    if remember:
        data["remember"] = "y"
    response = client.post("/login", data=data)
    assert response.status_code == 302, response.text
    return response


def replay(app, **cookies):
    """A fresh client holding only the given cookies."""
    thief = app.test_client()
    for name, value in cookies.items():
        thief.set_cookie(name, value)
    return thief


def test_a_session_cookie_captured_before_sign_out_is_refused_after_it(app, client, admin):
    sign_in(client)
    captured = client.get_cookie("session").value
    assert replay(app, session=captured).get(PANEL).status_code == 200
    client.post("/logout")
    response = replay(app, session=captured).get(PANEL)
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_a_remember_cookie_captured_before_sign_out_is_refused_after_it(app, client, admin):
    sign_in(client, remember=True)
    captured = client.get_cookie("remember_token").value
    # Before: the remember cookie alone opens the panel on another device.
    other_device = replay(app, remember_token=captured)
    assert other_device.get(PANEL).status_code == 200
    client.post("/logout")
    response = replay(app, remember_token=captured).get(PANEL)
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    # Signing out on one device signed the other one out too.
    assert other_device.get(PANEL).status_code == 302


def test_signing_in_again_after_sign_out_works(app, client, admin):
    sign_in(client, remember=True)
    client.post("/logout")
    sign_in(client, remember=True)
    assert client.get(PANEL).status_code == 200
    assert replay(app, remember_token=client.get_cookie("remember_token").value).get(PANEL).status_code == 200


@pytest.fixture
def production_app(monkeypatch, app_config):
    monkeypatch.setenv("HOOKLINE_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "a-real-production-key-0123456789")
    config = {k: v for k, v in app_config.items() if k != "SECRET_KEY"}
    app = create_app(config)
    with app.app_context():
        db.drop_all()
        db.create_all()
        user = User(email=ADMIN_EMAIL)
        user.set_password(ADMIN_PASSWORD)
        db.session.add(user)
        db.session.commit()
    yield app
    with app.app_context():
        db.session.remove()
        db.drop_all()
        db.engine.dispose()


def test_production_remember_cookie_is_secure_samesite_and_lasts_14_days(production_app):
    client, https = production_app.test_client(), "https://hookline.example.com"
    page = client.get("/login", base_url=https).text
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    before = datetime.now(timezone.utc)
    response = client.post("/login", base_url=https, headers={"Referer": f"{https}/login"}, data={
        "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "remember": "y", "csrf_token": token})
    assert response.status_code == 302
    remember = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("remember_token="))
    attributes = {name.strip().lower(): value for name, _, value in
                  (part.partition("=") for part in remember.split(";")[1:])}
    assert "secure" in attributes and "httponly" in attributes
    assert attributes["samesite"] == "Lax"
    days = (parsedate_to_datetime(attributes["expires"]) - before).total_seconds() / 86400
    assert 13.99 < days <= 14.01


def test_every_page_says_no_store(app, auth_client):
    """Pages show secrets once (the new signing secret): no cache may keep them."""
    pages = ["/login", PANEL, f"{PANEL}/deliveries", f"{PANEL}/events", "/healthz"]
    for page in pages:
        response = auth_client.get(page)
        assert response.headers["Cache-Control"] == "no-store", page
    # The page that shows a newly created signing secret, once.
    saved = auth_client.post(PANEL, data={"enabled": "y", "url": "https://hooks.example.com/",
                                          "events": ["call_ended"], "save": "Save"}, follow_redirects=True)
    assert "whsec_" in saved.text
    assert saved.headers["Cache-Control"] == "no-store"
    # Static files may be cached: they hold nothing secret.
    assert "no-store" not in auth_client.get("/static/css/app.css").headers.get("Cache-Control", "")


def test_migration_gives_existing_users_distinct_session_tokens(app):
    """Add nullable, backfill, NOT NULL: users created before the migration can sign in after it."""
    directory = os.path.join(app.root_path, "migrations")
    with app.app_context():
        upgrade_from_empty("7c1f0e2a9b44")
        with db.engine.begin() as conn:
            for email in ("a@example.com", "b@example.com"):
                conn.execute(sqlalchemy.text(
                    "INSERT INTO users (email, password_hash, created_at) VALUES (:e, 'x', CURRENT_TIMESTAMP)"),
                    {"e": email})
        upgrade(directory=directory, revision="e19a5e55104b")
        with db.engine.connect() as conn:
            tokens = conn.execute(sqlalchemy.text("SELECT session_token FROM users")).scalars().all()
        assert len(tokens) == 2 and len(set(tokens)) == 2 and all(len(t) >= 40 for t in tokens)
        with pytest.raises(sqlalchemy.exc.IntegrityError):
            with db.engine.begin() as conn:
                conn.execute(sqlalchemy.text(
                    "INSERT INTO users (email, password_hash, created_at) VALUES ('c@example.com', 'x', CURRENT_TIMESTAMP)"))
        with db.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
