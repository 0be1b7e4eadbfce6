"""End to end through the real worker process, the real Redis broker and a real SMTP server."""

import re
import signal

import pytest
from django.db import transaction

from accounts import services as account_services
from notifications import services
from notifications.models import EmailChangedNotice, PasswordChangedNotice
from testing.smtp import free_port, text_part
from testing.worker import WorkerProcess

NEW_PASSWORD = "a-brand-new-passphrase"


@pytest.mark.timeout(90)
def test_reset_round_trip_through_the_worker_and_smtp(api, worker_process, smtp_sink):
    api.post(
        "/api/v1/auth/register/",
        {"full_name": "Ada Lovelace", "email": "ada@example.com", "password": "first-passphrase-1"},
        format="json",
    )
    old = api.post(
        "/api/v1/auth/login/",
        {"email": "ada@example.com", "password": "first-passphrase-1"},
        format="json",
    ).json()

    forgot = api.post("/api/v1/auth/password/forgot/", {"email": "ada@example.com"}, format="json")
    assert forgot.status_code == 202

    (message,) = smtp_sink.wait_for(1)
    assert message["To"] == "ada@example.com"
    assert message.get_content_type() == "multipart/alternative"
    assert message["Auto-Submitted"] == "auto-generated"
    body = text_part(message)
    assert "9 minutes after this email was sent" in body
    token = re.search(r"/reset-password/\?token=([0-9a-f]{64})", body).group(1)

    reset = api.post(
        "/api/v1/auth/password/reset/", {"token": token, "password": NEW_PASSWORD}, format="json"
    )
    assert reset.status_code == 200

    login = api.post(
        "/api/v1/auth/login/", {"email": "ada@example.com", "password": NEW_PASSWORD}, format="json"
    )
    assert login.status_code == 200
    stale = api.post("/api/v1/auth/token/refresh/", {"refresh": old["refresh"]}, format="json")
    assert stale.status_code == 401

    notice = smtp_sink.wait_for(2)[1]
    assert notice["Subject"] == "Your password was changed"
    assert token not in worker_process.log()


@pytest.mark.timeout(90)
def test_forgot_for_an_unknown_email_sends_nothing(api, worker_process, smtp_sink, user):
    api.post("/api/v1/auth/password/forgot/", {"email": "nobody@example.com"}, format="json")
    api.post("/api/v1/auth/password/forgot/", {"email": user.email}, format="json")

    # Messages are handled in order: once the known one arrived, the unknown one was dropped.
    (message,) = smtp_sink.wait_for(1)
    assert message["To"] == user.email
    worker_process.wait_for_log("no active account for user 0")
    assert len(smtp_sink.messages) == 1


@pytest.mark.timeout(90)
def test_an_email_moved_by_staff_is_told_to_the_old_address_through_the_worker(
    worker_process, smtp_sink, user
):
    # As the admin saves a change: in a transaction, the message queued once it commits
    with transaction.atomic():
        user.email = "ada@new-mailbox.example"
        user.save(update_fields=["email"])

    (message,) = smtp_sink.wait_for(1)
    assert message["To"] == "ada@example.com"
    assert message["Subject"] == "The email address of your account was changed"
    worker_process.wait_for_log("email_changed notice sent for user")
    assert not EmailChangedNotice.objects.exists()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("pool", ["solo", "prefork"])
def test_a_worker_started_while_redis_is_down_still_sends_owed_notices(
    transactional_db, smtp_sink, user, pool
):
    # Given a "password changed" notice whose queued message never came...
    services.password_changed_notice_record(user=user)
    # ...and Redis, the broker, unreachable as the worker starts (nothing listens on the port)
    dead = f"redis://127.0.0.1:{free_port()}/0"
    worker = WorkerProcess(
        smtp_port=smtp_sink.port,
        extra_env={
            "REDIS_URL": dead,
            "CELERY_BROKER_URL": dead,
            "NOTICE_SWEEP_INTERVAL": "1",
            "NOTICE_SWEEP_AFTER": "0",
        },
        pool=pool,
    )
    worker.start()
    try:
        # When the worker has tried its broker and failed
        worker.wait_for_log("Cannot connect to")

        # Then its sweep sends the notice all the same, once
        (message,) = smtp_sink.wait_for(1)
        assert message["To"] == user.email
        assert message["Subject"] == "Your password was changed"
        worker.wait_for_log("notice sweep: sent 1 notice(s) left behind")  # committed
        assert not PasswordChangedNotice.objects.exists()
        # And only the worker's main process sweeps: prefork children start none of their own
        assert worker.log().count("notice sweep: started") == 1

        # And a warm shutdown still works while the broker is out
        worker.process.send_signal(signal.SIGTERM)
        assert worker.process.wait(30) == 0
    finally:
        worker.stop()
    assert len(smtp_sink.messages) == 1


@pytest.mark.timeout(60)
def test_the_worker_logs_debug_lines_under_log_level_debug(transactional_db, smtp_sink):
    # Given LOG_LEVEL=DEBUG, and the worker started as every start command starts it
    # (--loglevel INFO, which Celery applies to the root logger after Django's LOGGING)
    worker = WorkerProcess(smtp_port=smtp_sink.port, extra_env={"LOG_LEVEL": "debug"})
    worker.start()
    try:
        # Then Celery's start-up steps, logged at DEBUG once its logging is set up, show
        worker.wait_for_log("| Worker: Starting Pool")
    finally:
        worker.stop()


@pytest.mark.timeout(60)
def test_the_worker_leaves_out_info_lines_under_log_level_warning(transactional_db, user):
    # Given LOG_LEVEL=WARNING, the worker started with --loglevel INFO, and a mail server that
    # refuses connections
    worker = WorkerProcess(smtp_port=free_port(), extra_env={"LOG_LEVEL": "warning"})
    worker.start()
    try:
        # When a reset email meets it (Celery logs the task's arrival at INFO, the send's
        # failure is a warning)
        account_services.password_reset_request(email=user.email)
        worker.wait_for_log("transient ConnectionRefusedError, retry 1 of 5")
    finally:
        printed = worker.log()
        worker.stop()

    # Then only the warning is written, as the web would write it
    assert "send_password_reset_email" in printed
    assert " received" not in printed
    assert "notice sweep: started" not in printed
