"""Processes that start (a deploy, a restart) while PostgreSQL or Redis is out, or before the
deploy's migrations have run."""

import subprocess
import sys
import time
import uuid
from contextlib import closing

import psycopg2
import pytest

from auth_service.celery import SCHEMA_POLL
from auth_service.tests.faults.harness import ROOT, Client, WebServer, wait_for


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


@pytest.fixture
def previous_schema(private_postgres, service_env):
    """A database still on the previous release's schema (Render runs the migrations in the
    web service's pre-deploy step; the worker of the same deploy may start first), and a
    `manage` that runs a command against it."""
    name = f"before_migrate_{uuid.uuid4().hex[:8]}"
    with closing(psycopg2.connect(private_postgres.url())) as conn:
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
    url = private_postgres.url(name)

    def manage(*args: str) -> None:
        env = {**service_env, "DATABASE_URL": url}
        subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True)

    manage("migrate", "--noinput", "-v0")
    manage("migrate", "notifications", "0001", "--noinput", "-v0")
    yield url, manage
    with closing(psycopg2.connect(private_postgres.url())) as conn:
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_worker_started_before_the_deploys_migrations_waits_for_them(
    previous_schema, start_worker
):
    url, manage = previous_schema

    # When the new worker starts, it says what it waits for and takes no task
    worker = start_worker(wait=False, DATABASE_URL=url)
    worker.wait_for_log("waiting for migrations before taking tasks")
    assert "notifications.0002_passwordchangednotice_failed_at" in worker.output()
    time.sleep(2 * SCHEMA_POLL)
    worker.check_alive()
    assert " ready." not in worker.output()

    # Then once the migrations have run, it starts taking tasks
    manage("migrate", "--noinput", "-v0")
    worker.wait_until_ready()
    assert "migrations applied: taking tasks" in worker.output()


def test_a_worker_whose_migrations_never_run_starts_after_its_wait(previous_schema, start_worker):
    url, _ = previous_schema

    # A deploy whose migrate step failed must not stop every email
    worker = start_worker(wait=False, DATABASE_URL=url, WORKER_SCHEMA_WAIT="3")

    worker.wait_until_ready()
    assert "migrations still not applied after 3 s, taking tasks anyway" in worker.output()
