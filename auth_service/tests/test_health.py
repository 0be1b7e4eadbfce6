import pytest

from conftest import cut_off_redis, read_only_database


@pytest.mark.django_db
def test_healthz_is_ok_without_touching_anything(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz")

    assert response.status_code == 200
    assert response.content == b'{"status":"ok"}'


@pytest.mark.django_db
def test_readyz_reports_each_dependency(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.content == b'{"status":"ok","checks":{"database":"ok","redis":"ok"}}'


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_no_cache_in_between_may_keep_a_probes_answer(client, settings, path):
    ok = client.get(path)
    cut_off_redis(settings)
    down = client.get("/readyz")

    assert ok["Cache-Control"] == down["Cache-Control"] == "no-store"
    assert down.status_code == 503


@pytest.mark.django_db
def test_readyz_is_503_naming_redis_when_redis_is_unreachable(client, settings):
    cut_off_redis(settings)

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {"database": "ok", "redis": "unavailable"},
    }


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_answer_a_platform_check_by_internal_address(client, settings, path):
    # Given production host validation and the HTTPS redirect
    settings.ALLOWED_HOSTS = ["auth.example.com"]
    settings.SECURE_SSL_REDIRECT = True

    # When the platform probes the process by IP over plain HTTP
    response = client.get(path, HTTP_HOST="10.0.4.7:10000")

    # Then the probe answers instead of a 400 or a redirect
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


@pytest.mark.django_db
def test_other_paths_still_refuse_unknown_hosts(client, settings):
    settings.ALLOWED_HOSTS = ["auth.example.com"]

    response = client.get("/api/schema/", HTTP_HOST="10.0.4.7:10000")

    assert response.status_code == 400


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete", "options"])
def test_probes_answer_only_get_and_head(client, path, method):
    response = getattr(client, method)(path)

    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert response.json() == {
        "detail": f'Method "{method.upper()}" not allowed.',
        "code": "method_not_allowed",
    }


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
@pytest.mark.parametrize("method", ["get", "post"])
def test_probes_give_their_length_like_every_other_response(client, path, method):
    response = getattr(client, method)(path)

    assert response["Content-Length"] == str(len(response.content))


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_answer_head(client, path):
    assert client.head(path).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_readyz_is_503_naming_the_database_when_its_connection_was_closed_under_it(client):
    # A persistent connection whose socket the driver already closed: InterfaceError, which
    # is not a DatabaseError.
    from django.db import connection

    connection.ensure_connection()
    connection.connection.close()
    try:
        response = client.get("/readyz")
    finally:
        connection.connection = None  # forget the dead handle; the teardown reconnects

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {"database": "unavailable", "redis": "ok"},
    }


@pytest.mark.django_db(transaction=True)
def test_readyz_is_503_naming_the_database_while_it_refuses_writes(client, api):
    # What a standby after a failover does to every transaction
    with read_only_database():
        register = api.post(
            "/api/v1/auth/register/",
            {"email": "new@example.com", "password": "a-brand-new-passphrase", "full_name": "N"},
            format="json",
        )
        ready = client.get("/readyz")

    assert register.status_code == 503
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"database": "unavailable", "redis": "ok"}
