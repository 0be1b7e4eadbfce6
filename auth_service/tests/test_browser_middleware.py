"""Sessions, the cookie user and flash messages serve the browser pages only, never /api/."""

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_api_responses_set_no_cookie_and_do_not_vary_on_cookies(auth_api):
    response = auth_api.get("/api/v1/auth/me/")

    assert response.status_code == 200
    assert not response.cookies
    assert "Cookie" not in response.get("Vary", "")
    assert not hasattr(response.wsgi_request, "session")


def test_the_admin_still_signs_staff_in_with_a_session(make_user):
    make_user(email="staff@example.com", password="staff-passphrase-12", is_staff=True)
    browser = Client(enforce_csrf_checks=True)
    browser.get("/admin/login/")

    response = browser.post(
        "/admin/login/?next=/admin/",
        {
            "username": "staff@example.com",
            "password": "staff-passphrase-12",
            "csrfmiddlewaretoken": browser.cookies["csrftoken"].value,
        },
    )

    assert response.status_code == 302
    assert "sessionid" in response.cookies
    assert browser.get("/admin/").status_code == 200
