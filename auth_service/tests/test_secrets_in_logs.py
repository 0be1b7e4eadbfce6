"""No password, JWT, reset token, Authorization header or email address ever reaches the logs."""

import json
import logging
import re
from contextlib import contextmanager
from unittest import mock

import pytest
from celery.concurrency.solo import TaskPool
from django.core import mail
from rest_framework.test import APIClient

from accounts import reset_tokens, services
from notifications import tasks
from testing.smtp import RefusingSmtpSink
from testing.worker import WorkerProcess

pytestmark = pytest.mark.django_db

FIRST = "first-Secret-passphrase-1"
SECOND = "second-Secret-passphrase-2"
THIRD = "third-Secret-passphrase-3"
WRONG = "wrong-Secret-passphrase-0"
WEAK = "Sec-short"  # one character below the minimum
GARBAGE_BEARER = "Bearer garbage-Secret-bearer-value"


def post(client, path, body):
    return client.post(f"/api/v1/auth/{path}", body, format="json")


@pytest.fixture
def issued_tokens(monkeypatch) -> list:
    """Every reset token issued during the test, with the nonce its task message carries."""
    issued = []
    real_replacing = reset_tokens.token_replacing

    @contextmanager
    def replacing_and_remembering(**kwargs):
        with real_replacing(**kwargs) as token:
            issued.append(token)
            yield token

    monkeypatch.setattr(reset_tokens, "token_replacing", replacing_and_remembering)
    return issued


def test_a_whole_account_lifecycle_logs_no_secret(caplog, eager_tasks, issued_tokens):
    caplog.set_level(logging.DEBUG)
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
    secrets += [item.nonce for item in issued_tokens]
    assert len(issued_tokens) == 2
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


def test_reset_task_message_shows_its_arguments_only_as_hidden(redis_client, issued_tokens):
    services.password_reset_request(email="nobody@example.com")

    (raw,) = redis_client.lrange("celery", 0, -1)
    headers = json.loads(raw)["headers"]
    assert headers["argsrepr"] == headers["kwargsrepr"] == "<hidden>"
    assert issued_tokens[0].nonce not in json.dumps(headers)


@pytest.mark.timeout(90)
def test_worker_log_never_shows_the_reset_nonce_or_token(
    api, user, worker_process, smtp_sink, issued_tokens
):
    api.post("/api/v1/auth/password/forgot/", {"email": user.email}, format="json")
    smtp_sink.wait_for(1)
    worker_process.wait_for_log(" succeeded in ")

    printed = worker_process.log()
    assert "send_password_reset_email" in printed
    assert " received" in printed
    assert issued_tokens[0].nonce not in printed
    assert issued_tokens[0].token not in printed


# A mail server's "not now" that quotes the recipient, as many do.
GREYLISTED = "451 4.7.1 <{}>: Recipient address rejected: Greylisted, try again later"


@pytest.fixture
def greylisting_smtp():
    """A real SMTP server that answers the next message with GREYLISTED (DATA step)."""
    sink = RefusingSmtpSink()
    sink.start()
    yield sink
    sink.stop()


def service_log(caplog) -> str:
    """What the service logged (the test SMTP server's own "mail.log" shows every address)."""
    return "\n".join(record.getMessage() for record in caplog.records if record.name != "mail.log")


def test_a_retried_email_logs_no_address(user, caplog, settings, eager_tasks, greylisting_smtp):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", greylisting_smtp.port
    greylisting_smtp.replies["DATA"] = [GREYLISTED.format(user.email)]
    caplog.set_level(logging.DEBUG)

    with mock.patch.object(tasks, "retry_delay", return_value=0):
        services.password_reset_request(email=user.email)

    # Celery logged its retry, naming the error by type only, and the retry sent the email
    assert " retry: Retry in 0s: SendRetried('SMTPDataError')" in service_log(caplog)
    assert len(greylisting_smtp.messages) == 1
    assert user.email not in service_log(caplog)


@pytest.mark.timeout(90)
def test_worker_log_never_shows_the_address_of_a_retried_email(
    api, transactional_db, user, greylisting_smtp
):
    greylisting_smtp.replies["DATA"] = [GREYLISTED.format(user.email)]
    worker = WorkerProcess(smtp_port=greylisting_smtp.port)
    worker.start()
    try:
        api.post("/api/v1/auth/password/forgot/", {"email": user.email}, format="json")
        worker.wait_for_log(" retry: Retry in ")
        printed = worker.log()
    finally:
        worker.stop()

    assert "SMTPDataError" in printed
    assert user.email not in printed
