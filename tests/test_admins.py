"""Settings > Admins: list, add, remove (not yourself), change your own password; CSRF on every form."""

import pytest
from sqlalchemy import select

from models import db
from models.users import User
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD

ADMINS = "/settings/admins"


def sign_in(app, email, password):
    client = app.test_client()
    response = client.post("/login", data={"email": email, "password": password})
    return client, response.status_code == 302


def emails(app):
    with app.app_context():
        return list(db.session.scalars(select(User.email).order_by(User.email)))


def test_list_shows_every_admin_and_marks_you(app, auth_client):
    html = auth_client.get(ADMINS).text
    assert f'data-admin="{ADMIN_EMAIL}"' in html and ">you</span>" in html
    assert 'href="/settings/admins"' in auth_client.get("/settings/integrations/webhook").text  # in the nav


def test_add_an_admin_who_can_then_sign_in(app, auth_client):
    response = auth_client.post(ADMINS, data={"email": " New@Example.com ", "password": "correct horse battery"})
    assert response.status_code == 302
    page = auth_client.get(ADMINS).text
    assert "new@example.com is now an admin" in page and 'data-admin="new@example.com"' in page
    assert sign_in(app, "new@example.com", "correct horse battery")[1]


@pytest.mark.parametrize("data, field, message", [
    ({"email": ADMIN_EMAIL, "password": "correct horse battery"}, "email", f"{ADMIN_EMAIL} is already an admin."),
    ({"email": "short@example.com", "password": "tooshort"}, "password", "Use at least 12 characters."),
    ({"email": "not-an-email", "password": "correct horse battery"}, "email", "Enter a valid email address."),
    ({"email": "", "password": "correct horse battery"}, "email", "Enter the new admin&#39;s email."),
])
def test_add_refuses_bad_input_naming_the_field_and_writes_nothing(app, auth_client, data, field, message):
    response = auth_client.post(ADMINS, data=data)
    assert response.status_code == 400
    assert "No admin was added" in response.text
    assert f'id="{field}-error"' in response.text and message in response.text
    assert emails(app) == [ADMIN_EMAIL]


def test_remove_another_admin_but_never_yourself(app, auth_client):
    auth_client.post(ADMINS, data={"email": "other@example.com", "password": "correct horse battery"})
    with app.app_context():
        other = User.by_email("other@example.com").id
        me = User.by_email(ADMIN_EMAIL).id
    assert f"Yes, remove other@example.com" in auth_client.get(ADMINS).text
    response = auth_client.post(f"{ADMINS}/{me}/remove", follow_redirects=True)
    assert "You cannot remove yourself" in response.text
    response = auth_client.post(f"{ADMINS}/{other}/remove", follow_redirects=True)
    assert "other@example.com was removed and can no longer sign in." in response.text
    assert emails(app) == [ADMIN_EMAIL]
    assert not sign_in(app, "other@example.com", "correct horse battery")[1]


def test_change_password(app, auth_client):
    response = auth_client.post(f"{ADMINS}/password", data={"current": "wrong", "new": "a new long passphrase",
                                                           "confirm": "a new long passphrase"})
    assert response.status_code == 400 and "That is not your current password." in response.text
    response = auth_client.post(f"{ADMINS}/password", data={"current": ADMIN_PASSWORD, "new": "a new long passphrase",
                                                           "confirm": "another passphrase"})
    assert response.status_code == 400 and "The two new passwords differ." in response.text
    assert sign_in(app, ADMIN_EMAIL, ADMIN_PASSWORD)[1]  # nothing changed yet
    response = auth_client.post(f"{ADMINS}/password", data={"current": ADMIN_PASSWORD, "new": "a new long passphrase",
                                                           "confirm": "a new long passphrase"}, follow_redirects=True)
    assert "Your password was changed." in response.text
    assert auth_client.get(ADMINS).status_code == 200  # this session goes on
    assert not sign_in(app, ADMIN_EMAIL, ADMIN_PASSWORD)[1]
    assert sign_in(app, ADMIN_EMAIL, "a new long passphrase")[1]


def test_a_password_change_ends_a_second_session(app, auth_client, admin):
    second, ok = sign_in(app, ADMIN_EMAIL, ADMIN_PASSWORD)
    assert ok and second.get(ADMINS).status_code == 200
    auth_client.post(f"{ADMINS}/password", data={"current": ADMIN_PASSWORD, "new": "a new long passphrase",
                                                 "confirm": "a new long passphrase"})
    assert auth_client.get(ADMINS).status_code == 200
    assert second.get(ADMINS).status_code == 302  # sent to sign in


@pytest.fixture
def csrf_on(app_config):
    app_config["WTF_CSRF_ENABLED"] = True


def test_every_admin_form_needs_the_csrf_token(csrf_on, app, admin):
    client = app.test_client()
    login_page = client.get("/login").text
    token = login_page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    assert client.post("/login", data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD,
                                       "csrf_token": token}).status_code == 302
    for path, data in [(ADMINS, {"email": "x@example.com", "password": "correct horse battery"}),
                       (f"{ADMINS}/password", {"current": ADMIN_PASSWORD, "new": "a new long passphrase",
                                               "confirm": "a new long passphrase"}),
                       (f"{ADMINS}/1/remove", {}),
                       ("/settings/integrations/webhook/alerts", {"alerts": "on"})]:
        assert client.post(path, data=data).status_code == 400, path
    assert emails(app) == [ADMIN_EMAIL]
    with app.app_context():
        user = User.by_email(ADMIN_EMAIL)
        assert user.check_password(ADMIN_PASSWORD)  # the password form changed nothing
