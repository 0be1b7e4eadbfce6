"""Processes that start (a deploy, a restart) while PostgreSQL or Redis is out."""

from auth_service.tests.faults.harness import Client, WebServer, wait_for


def test_web_starts_while_its_dependencies_are_down_and_serves_once_they_are_up(
    service_env, account, postgres, redis_server, tmp_path
):
    # Given PostgreSQL and Redis are both out when a new web process starts
    postgres.stop()
    redis_server.stop()
    web = WebServer(env=service_env, log=tmp_path / "gunicorn.log")
    try:
        web.start()
        api = Client(web)

        # Then it is alive but says it is not ready, naming both dependencies
        assert api.get("/healthz").status_code == 200
        ready = api.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"] == {"database": "unavailable", "redis": "unavailable"}

        # When they come back, it serves without a restart
        postgres.start()
        redis_server.start()
        wait_for(lambda: api.get("/readyz").status_code == 200, timeout=10, what="readyz 200")
        login = api.post(
            "/api/v1/auth/login/", {"email": account.email, "password": account.password}
        )
        assert login.status_code == 200
    finally:
        web.stop()


def test_worker_started_while_redis_is_down_begins_when_it_appears(
    api, account, redis_server, smtp, start_worker
):
    # Given Redis is out when the worker starts
    redis_server.stop()
    worker = start_worker(wait=False)
    worker.wait_for_log("Cannot connect to")

    # When Redis comes up and someone asks for a reset link
    redis_server.start()
    worker.wait_until_ready()
    assert api.post("/api/v1/auth/password/forgot/", {"email": account.email}).status_code == 202

    # Then that worker sends it
    (message,) = smtp.wait_for(1)
    assert message["To"] == account.email
