"""Sign-in, sign-out, login protection of every panel route, and CSRF."""

import re

import pytest

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD

PANEL_PAGES = ["/", "/settings/integrations/webhook"]
PANEL_POSTS = ["/settings/integrations/webhook", "/logout"]


@pytest.mark.parametrize("path", PANEL_PAGES)
def test_panel_pages_redirect_to_login_when_signed_out(client, path):
    response = client.get(path, follow_redirects=False)
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


@pytest.mark.parametrize("path", PANEL_POSTS)
def test_panel_posts_need_login(client, path):
    response = client.post(path, data={"url": "https://x.example.com/"})
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_every_panel_route_is_protected(app, client):
    """Any route outside login, static, health and the token API needs a session."""
    open_endpoints = {"auth.login", "static", "health.healthz", "health.metrics"}
    for rule in app.url_map.iter_rules():
        if rule.endpoint in open_endpoints or rule.endpoint.startswith("api."):
            continue
        path = re.sub(r"<(?:int:)?[^>]+>", "1", rule.rule)
        method = "GET" if "GET" in rule.methods else "POST"
        response = client.open(path, method=method)
        assert response.status_code in (302, 401), (rule.rule, response.status_code)
        assert "/login" in response.headers.get("Location", ""), rule.rule


def test_login_with_wrong_password_fails_with_a_message(client, admin):
    response = client.post("/login", data={"email": ADMIN_EMAIL, "password": "nope-nope"})
    assert response.status_code == 400
    assert "Wrong email or password." in response.text
    assert client.get("/settings/integrations/webhook").status_code == 302


def test_login_then_logout(client, admin):
    response = client.post("/login?next=/settings/integrations/webhook",
                           data={"email": "ADMIN@example.com ", "password": ADMIN_PASSWORD})
    assert response.status_code == 302
    assert response.headers["Location"] == "/settings/integrations/webhook"
    assert client.get("/settings/integrations/webhook").status_code == 200
    client.post("/logout")
    assert client.get("/settings/integrations/webhook").status_code == 302


def test_login_next_cannot_leave_the_site(client, admin):
    response = client.post("/login?next=//evil.example.com/x",
                           data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    assert response.headers["Location"] == "/settings/integrations/webhook"


@pytest.fixture
def csrf_app_config(app_config):
    app_config["WTF_CSRF_ENABLED"] = True
    return app_config


def _token(html: str) -> str:
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)


def test_csrf_rejects_forms_without_a_valid_token(csrf_app_config, client, admin):
    # Login form: without a token nothing happens.
    assert client.post("/login", data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}).status_code == 400
    token = _token(client.get("/login").text)
    response = client.post("/login", data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "csrf_token": token})
    assert response.status_code == 302

    page = client.get("/settings/integrations/webhook").text
    data = {"enabled": "y", "url": "https://hooks.example.com/", "events": ["call_ended"], "save": "Save"}
    assert client.post("/settings/integrations/webhook", data=data).status_code == 400
    assert client.post("/settings/integrations/webhook", data={**data, "csrf_token": "forged"}).status_code == 400
    ok = client.post("/settings/integrations/webhook", data={**data, "csrf_token": _token(page)})
    assert ok.status_code == 302
    # Logout is a CSRF-protected POST too.
    assert client.post("/logout").status_code == 400
    assert client.get("/settings/integrations/webhook").status_code == 200


def test_security_headers_on_every_page(client):
    response = client.get("/login")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_no_inline_scripts_in_templates():
    import pathlib

    templates = pathlib.Path(__file__).parent.parent / "templates"
    for path in templates.rglob("*.html"):
        html = path.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), f"inline <script> in {path}"
        assert not re.search(r"\son[a-z]+=\"", html), f"inline event handler in {path}"


def test_session_cookie_flags(app, client, admin):
    response = client.post("/login", data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_production_cookie_is_secure_and_default_key_refused(monkeypatch, tmp_path):
    from app import create_app

    monkeypatch.setenv("HOOKLINE_ENV", "production")
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/p.sqlite"})
    monkeypatch.setenv("SECRET_KEY", "a-real-production-key-0123456789")
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/p.sqlite"})
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["HOOKLINE_REQUIRE_HTTPS"] is True
    assert app.config["HOOKLINE_ALLOWED_NETWORKS"] == ""


def test_login_is_throttled_per_account(client, admin, app):
    for _ in range(5):
        assert client.post("/login", data={"email": ADMIN_EMAIL, "password": "wrong-guess"}).status_code == 400
    blocked = client.post("/login", data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    assert blocked.status_code == 429
    assert "Too many sign-in attempts" in blocked.text
    assert int(blocked.headers["Retry-After"]) > 0
    # Another account from the same address is not blocked yet.
    other = client.post("/login", data={"email": "someone@example.com", "password": "x"})
    assert other.status_code == 400


def test_login_is_throttled_per_address(client, admin, app):
    app.config["HOOKLINE_LOGIN_MAX_PER_ADDRESS"] = 3
    for i in range(3):
        client.post("/login", data={"email": f"user{i}@example.com", "password": "wrong"})
    blocked = client.post("/login", data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    assert blocked.status_code == 429
