"""Worker down, killed or stopped: reset emails still arrive, once, while their link works."""

import os
import signal
import subprocess

import pytest
import requests

from auth_service.tests.faults.harness import json_lines, link_token, queued, wait_for

NEW_PASSWORD = "a brand new passphrase"
# The broker hands an unacknowledged task to another worker after its visibility timeout (5 min
# in production, checked below against the token's life); a few seconds keep the tests quick.
QUICK_REDELIVERY = {"CELERY_VISIBILITY_TIMEOUT": "5"}
# Render waits this long after SIGTERM before it kills a process.
GRACE_PERIOD = 30


def forgot(api, email: str) -> None:
    response = api.post("/api/v1/auth/password/forgot/", {"email": email})
    assert response.status_code == 202, response.text


def forgot_held_at_the_mail_server(api, account, smtp) -> None:
    """A forgot whose email the worker is sending, held by the mail server at RCPT TO."""
    smtp.holding = True
    forgot(api, account.email)
    wait_for(lambda: smtp.held, timeout=30, what="the worker at the mail server")


def drained(broker) -> None:
    """Wait until no task is queued or in a worker's hands: nothing more can be sent."""
    wait_for(lambda: queued(broker) == (0, 0), timeout=30, what="an empty queue")


def test_forgot_is_accepted_without_a_worker_and_the_email_goes_out_when_one_starts(
    api, account, broker, smtp, start_worker
):
    # Given no worker is running: the request is accepted and its task waits in the queue
    forgot(api, account.email)
    assert queued(broker) == (1, 0)

    # When a worker starts
    start_worker()

    # Then the email arrives, and its link resets the password
    (message,) = smtp.wait_for(1)
    assert message["To"] == account.email
    reset = api.post(
        "/api/v1/auth/password/reset/", {"token": link_token(message), "password": NEW_PASSWORD}
    )
    assert reset.status_code == 200


def test_tasks_for_replaced_or_expired_tokens_send_nothing_and_say_why(
    api, make_account, broker, smtp, start_worker, sql
):
    # Given, while no worker runs, one user asked twice (the second link replaces the first)...
    twice, expired = make_account(), make_account()
    forgot(api, twice.email)
    forgot(api, twice.email)
    # ...and another user's link expired before any worker came
    forgot(api, expired.email)
    with sql.cursor() as cursor:
        cursor.execute("SELECT id FROM accounts_user WHERE email = %s", [expired.email])
        user_id = cursor.fetchone()[0]
    live = f"auth:reset:live:{user_id}"
    for digest in broker.zrange(live, 0, -1):  # what the expiry does to each of its keys
        broker.delete(b"auth:reset:token:" + digest)
    broker.delete(live, f"auth:reset:user:{user_id}")

    # When a worker works through the queue
    worker = start_worker()
    drained(broker)

    # Then only the live link is emailed, and the worker logs why the other two were not
    assert [m["To"] for m in smtp.messages] == [twice.email]
    worker.wait_for_log("or the account changed since; nothing sent", count=2)
    reset = api.post(
        "/api/v1/auth/password/reset/",
        {"token": link_token(smtp.messages[0]), "password": NEW_PASSWORD},
    )
    assert reset.status_code == 200


def test_email_is_sent_once_when_the_pool_process_is_killed_mid_send(
    api, account, broker, smtp, start_worker
):
    # Given the worker's pool process is in the middle of talking to the mail server
    worker = start_worker()
    forgot_held_at_the_mail_server(api, account, smtp)

    # When the kernel kills it (out of memory, say)
    (pool_process,) = worker.pool_processes()
    os.kill(pool_process, signal.SIGKILL)
    smtp.release()

    # Then the task comes back, the email goes out exactly once, and its link works
    (message,) = smtp.wait_for(1)
    drained(broker)
    assert len(smtp.messages) == 1
    assert message["To"] == account.email
    reset = api.post(
        "/api/v1/auth/password/reset/", {"token": link_token(message), "password": NEW_PASSWORD}
    )
    assert reset.status_code == 200


def test_a_reset_email_sent_as_redis_stalls_for_seconds_is_still_marked_sent(
    api, account, broker, smtp, start_worker
):
    # Given the worker is in the middle of sending a reset email
    worker = start_worker()
    forgot_held_at_the_mail_server(api, account, smtp)

    # When Redis stops taking writes for 3 s as the email goes out, longer than the worker's
    # Redis timeout (1 s): the task's acknowledgement may be lost to it too, and Celery would
    # then deliver the task again minutes later
    broker.client_pause(3000, all=False)
    smtp.release()

    # Then the email goes out once and is noted as sent once Redis takes writes again, so a
    # second delivery of its task would send nothing
    (message,) = smtp.wait_for(1)
    assert message["To"] == account.email
    worker.wait_for_log("password reset: email sent to user")
    assert "not marked sent" not in worker.output()
    assert broker.keys("auth:reset:sent:*")


def test_email_is_sent_once_when_the_whole_worker_dies_mid_send(
    api, account, broker, smtp, start_worker
):
    # Given a worker is in the middle of sending an email
    worker = start_worker(**QUICK_REDELIVERY)
    forgot_held_at_the_mail_server(api, account, smtp)

    # When its machine dies with it (nothing is acknowledged), and another worker runs
    worker.kill_all()
    smtp.release()
    assert queued(broker) == (0, 1)
    start_worker(**QUICK_REDELIVERY)

    # Then after the visibility timeout the task is redelivered and the email sent, once
    (message,) = smtp.wait_for(1, timeout=60)
    drained(broker)
    assert len(smtp.messages) == 1
    reset = api.post(
        "/api/v1/auth/password/reset/", {"token": link_token(message), "password": NEW_PASSWORD}
    )
    assert reset.status_code == 200


def test_redelivery_of_an_abandoned_task_comes_while_its_link_still_works(settings):
    # The test above shortens the visibility timeout; in production it is this much:
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    redelivered_after = options["visibility_timeout"] + options["unacked_restore_interval"]

    assert redelivered_after < settings.PASSWORD_RESET_TIMEOUT - 60


def test_sigterm_lets_the_worker_finish_the_email_in_flight(
    api, account, broker, smtp, start_worker
):
    # Given the worker is in the middle of sending an email
    worker = start_worker(**QUICK_REDELIVERY)
    forgot_held_at_the_mail_server(api, account, smtp)

    # When the platform stops it for a deploy (and kills it if it outstays the grace period)
    worker.signal(signal.SIGTERM)
    worker.wait_for_log("Warm shutdown")
    smtp.release()

    # Then the email goes out...
    (message,) = smtp.wait_for(1)
    assert message["To"] == account.email
    try:
        worker.wait(timeout=GRACE_PERIOD)
    except subprocess.TimeoutExpired:
        worker.kill_all()
    # ...and only once, even though a task finished during shutdown may go unacknowledged and
    # come back (a known Celery/Redis behaviour) to the next worker
    start_worker(**QUICK_REDELIVERY)
    drained(broker)
    assert len(smtp.messages) == 1


@pytest.mark.parametrize("how", ["stopped", "frozen"])
def test_worker_picks_up_again_when_redis_returns(
    api, account, broker, smtp, start_worker, redis_server, how
):
    # Given a running worker loses its broker for a while
    worker = start_worker()
    if how == "stopped":
        redis_server.stop()
        worker.wait_for_log("Connection to broker lost")
        redis_server.start()
    else:
        # Hanging long enough for the web process to notice (its timeout is 1 s)
        redis_server.freeze()
        wait_for(lambda: api.get("/readyz").status_code == 503, timeout=10, what="readyz 503")
        redis_server.thaw()

    # When someone asks for a reset link after Redis is back
    forgot(api, account.email)

    # Then the same worker, never restarted, sends it
    (message,) = smtp.wait_for(1, timeout=30)
    assert message["To"] == account.email


def test_a_redis_blip_while_the_worker_schedules_a_retry_does_not_lose_the_email(
    api, account, broker, smtp, start_worker
):
    # Given the mail server asks for a later try, and just then Redis stops taking writes for
    # a moment longer than the worker's Redis timeout (1 s): the retry cannot be queued
    smtp.refuse_next_message(first=lambda: broker.client_pause(1500, all=False))
    start_worker()

    # When someone asks for a reset link
    forgot(api, account.email)

    # Then the email still goes out, once, with a link that works
    (message,) = smtp.wait_for(1, timeout=45)
    assert message["To"] == account.email
    drained(broker)
    assert len(smtp.messages) == 1
    reset = api.post(
        "/api/v1/auth/password/reset/", {"token": link_token(message), "password": NEW_PASSWORD}
    )
    assert reset.status_code == 200, reset.text


def test_a_database_outage_delays_the_email_but_does_not_lose_it(
    api, account, broker, smtp, start_worker, postgres
):
    # Given a reset email is queued and PostgreSQL goes down before a worker takes it
    forgot(api, account.email)
    postgres.stop()

    # When the worker fails to look the user up, and PostgreSQL comes back
    worker = start_worker()
    worker.wait_for_log("transient OperationalError, retry 1 of")
    postgres.start()

    # Then a retry sends the email, with a link that works
    (message,) = smtp.wait_for(1, timeout=45)
    reset = api.post(
        "/api/v1/auth/password/reset/", {"token": link_token(message), "password": NEW_PASSWORD}
    )
    assert reset.status_code == 200


def test_the_worker_lines_about_an_email_carry_the_id_of_the_request_that_asked(
    web, account, smtp, start_worker
):
    worker = start_worker()

    response = requests.post(
        web.url("/api/v1/auth/password/forgot/"),
        json={"email": account.email},
        headers={"X-Request-ID": "forgot-trace-0001"},
        timeout=15,
    )

    assert response.status_code == 202
    assert response.headers["X-Request-ID"] == "forgot-trace-0001"
    smtp.wait_for(1)
    worker.wait_for_log("password reset: email sent")
    lines = json_lines(worker.output())
    sent = [line for line in lines if line["message"].startswith("password reset: email sent")]
    assert [line.get("request_id") for line in sent] == ["forgot-trace-0001"]
    # The worker's own lines, outside any task, name no request.
    assert not any(line.get("request_id") for line in lines if "ready" in line["message"])
