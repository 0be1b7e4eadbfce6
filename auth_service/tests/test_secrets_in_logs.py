"""No password, JWT, reset token or Authorization header ever reaches the logs."""

import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from celery.concurrency.solo import TaskPool
from django.core import mail
from django.db import connection
from rest_framework.test import APIClient

from accounts import reset_tokens, services

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db

FIRST = "first-Secret-passphrase-1"
SECOND = "second-Secret-passphrase-2"
THIRD = "third-Secret-passphrase-3"
WRONG = "wrong-Secret-passphrase-0"
WEAK = "Sec-short"  # one character below the minimum
GARBAGE_BEARER = "Bearer garbage-Secret-bearer-value"


def post(client, path, body):
    return client.post(f"/api/v1/auth/{path}", body, format="json")


def test_a_whole_account_lifecycle_logs_no_secret(caplog, eager_tasks, monkeypatch):
    caplog.set_level(logging.DEBUG)
    issued = []

    def issue_and_remember(**kwargs):
        issued.append(real_issue(**kwargs))
        return issued[-1]

    real_issue = reset_tokens.token_issue
    monkeypatch.setattr(reset_tokens, "token_issue", issue_and_remember)
    api = APIClient()
    email = "grace@example.com"

    post(api, "register/", {"full_name": "Grace Hopper", "email": email, "password": FIRST})
    post(api, "login/", {"email": email, "password": WRONG})
    first = post(api, "login/", {"email": email, "password": FIRST}).json()
    signed_in = APIClient()
    signed_in.credentials(HTTP_AUTHORIZATION=f"Bearer {first['access']}")
    signed_in.get("/api/v1/auth/me/")
    forged = APIClient()
    forged.credentials(HTTP_AUTHORIZATION=GARBAGE_BEARER)
    forged.get("/api/v1/auth/me/")
    second = post(api, "token/refresh/", {"refresh": first["refresh"]}).json()
    post(api, "token/refresh/", {"refresh": first["refresh"]})
    signed_in.credentials(HTTP_AUTHORIZATION=f"Bearer {second['access']}")
    change = "password/change/"
    post(signed_in, change, {"current_password": WRONG, "new_password": SECOND})
    post(signed_in, change, {"current_password": FIRST, "new_password": WEAK})
    post(signed_in, change, {"current_password": FIRST, "new_password": SECOND})
    third = post(api, "login/", {"email": email, "password": SECOND}).json()
    signed_in.credentials(HTTP_AUTHORIZATION=f"Bearer {third['access']}")
    post(signed_in, "logout/", {"refresh": third["refresh"]})
    post(api, "password/forgot/", {"email": email})
    token = re.search(r"token=([0-9a-f]{64})", mail.outbox[-1].body).group(1)
    post(api, "password/reset/", {"token": token, "password": WEAK})
    assert post(api, "password/reset/", {"token": token, "password": THIRD}).status_code == 200
    post(api, "password/reset/", {"token": token, "password": THIRD})
    post(api, "password/forgot/", {"email": email})
    page_token = re.search(r"token=([0-9a-f]{64})", mail.outbox[-1].body).group(1)
    api.get(f"/reset-password/?token={page_token}")
    api.post(
        "/reset-password/",
        {"token": page_token, "password": FIRST, "password_confirm": FIRST},
    )

    # What the console handler printed. (Tasks ran eagerly, without a message, so Celery's
    # records hold raw arguments in their context; the worker test below covers real messages.)
    logged = caplog.text
    secrets = [FIRST, SECOND, THIRD, WRONG, WEAK, token, page_token, GARBAGE_BEARER]
    secrets += [pair[kind] for pair in (first, second, third) for kind in ("access", "refresh")]
    secrets += [item.nonce for item in issued]
    assert len(issued) == 2
    assert caplog.records, "the flow should have logged something (4xx warnings at least)"
    for secret in secrets:
        assert secret not in logged
    assert "eyJ" not in logged  # no JWT of any kind
    assert "Bearer" not in logged


def test_celery_pool_does_not_log_task_arguments_even_at_debug(caplog):
    caplog.set_level(logging.DEBUG)

    TaskPool().apply_async(
        lambda *args: None, args=("a-nonce-that-must-stay-secret",), callback=lambda result: None
    )

    assert "a-nonce-that-must-stay-secret" not in caplog.text


def test_celery_worker_logs_and_messages_never_show_the_reset_nonce(redis_client, monkeypatch):
    """A real worker at DEBUG, consuming the message forgot publishes for an unknown email."""
    issued = []

    def issue_and_remember(**kwargs):
        issued.append(real_issue(**kwargs))
        return issued[-1]

    real_issue = reset_tokens.token_issue
    monkeypatch.setattr(reset_tokens, "token_issue", issue_and_remember)
    services.password_reset_request(email="nobody@example.com")
    nonce = issued[0].nonce
    (raw,) = redis_client.lrange("celery", 0, -1)
    headers = json.loads(raw)["headers"]
    assert nonce not in headers["argsrepr"] + headers["kwargsrepr"]

    database = {**os.environ, "DATABASE_URL": database_url_of_this_run()}
    worker = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
        [sys.executable, "-m", "celery", "-A", "auth_service", "worker", "--pool", "solo"]
        + ["--loglevel", "DEBUG", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=ROOT,
        env={**database, "LOG_LEVEL": "DEBUG"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = worker.stdout.readline()
            output.append(line)
            if " succeeded in " in line or not line:
                break
    finally:
        worker.terminate()
        output.append(worker.communicate(timeout=30)[0])
    printed = "".join(output)

    assert "send_password_reset_email" in printed
    assert " received" in printed
    assert " succeeded in " in printed
    assert nonce not in printed
    assert reset_tokens.token_from_nonce(nonce) not in printed


def database_url_of_this_run() -> str:
    """DATABASE_URL pointed at the database this test run created."""
    url = urlsplit(os.environ["DATABASE_URL"])
    return url._replace(path="/" + connection.settings_dict["NAME"]).geturl()
