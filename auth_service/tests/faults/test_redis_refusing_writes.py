"""Redis answers but refuses writes: out of memory under `noeviction` (render.yaml's policy),
a read-only replica (as during a failover), a failed snapshot (MISCONF, under Redis's default
`stop-writes-on-bgsave-error`), or a script past its time limit (BUSY, every command refused).
Requests that must write to Redis get the contract's 503, nothing already promised is lost, and
everything else keeps working.
"""

import pytest
import requests

from auth_service.tests.faults.harness import UNAVAILABLE, free_port, link_token, wait_for

NEW_PASSWORD = "a brand new passphrase"
OUT_OF_MEMORY, READ_ONLY = "out of memory", "read-only replica"
SNAPSHOT_FAILED, BUSY = "failed snapshot", "busy script"


def refuse_writes(server, how: str) -> None:
    client = server.client()
    if how == OUT_OF_MEMORY:
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", 1)
    elif how == READ_ONLY:
        client.replicaof("127.0.0.1", free_port())  # a primary that never answers
    elif how == SNAPSHOT_FAILED:
        server.fail_snapshots()
    else:
        server.run_busy_script()


def take_writes(server) -> None:
    server.end_busy_script()
    server.mend_snapshots()
    client = server.client()
    client.config_set("maxmemory", 0)
    client.replicaof("NO", "ONE")


@pytest.fixture
def refusing(redis_server):
    """Call with how; Redis takes writes again after the test whatever happened."""
    yield lambda how: refuse_writes(redis_server, how)
    take_writes(redis_server)


@pytest.fixture
def worker(start_worker):
    return start_worker(NOTICE_SWEEP_INTERVAL="1", NOTICE_SWEEP_AFTER="1")


@pytest.fixture
def reset_link(api, account, smtp, worker) -> dict:
    """A reset request body with the token from the email in the account's inbox (looked for
    by address: the worker's sweep, which starts at once, may first send an earlier test's
    notice, still owed in the shared database, into this test's sink)."""
    assert api.post("/api/v1/auth/password/forgot/", {"email": account.email}).status_code == 202
    message = wait_for(
        lambda: next((m for m in smtp.messages if m["To"] == account.email), None),
        timeout=30,
        what="the reset email",
    )
    return {"token": link_token(message), "password": NEW_PASSWORD}


def told_of_the_change(smtp, account) -> bool:
    """The "password changed" notice reached the account (waited for: no test leaves one
    queued for the next test's worker). Looked for by address: the worker's sweep may send an
    earlier test's notice, still owed in the shared database, into this test's sink too."""
    wanted = (account.email, "Your password was changed")
    wait_for(
        lambda: wanted in {(m["To"], m["Subject"]) for m in smtp.messages},
        timeout=30,
        what="the password changed notice",
    )
    return True


def logs_in(api, account, password: str) -> bool:
    body = {"email": account.email, "password": password}
    return api.post("/api/v1/auth/login/", body).status_code == 200


@pytest.mark.parametrize("how", [OUT_OF_MEMORY, READ_ONLY, SNAPSHOT_FAILED, BUSY])
def test_forgot_is_a_json_503_and_the_link_already_sent_still_works(
    api, account, redis_server, smtp, reset_link, refusing, how
):
    # Given a reset link in the user's inbox, when Redis refuses writes and the user (and
    # someone with an unknown email) asks for another link
    refusing(how)
    forgot = api.post("/api/v1/auth/password/forgot/", {"email": account.email})
    unknown = api.post("/api/v1/auth/password/forgot/", {"email": "nobody@example.org"})
    take_writes(redis_server)

    # Then both get the contract's 503 (the api fixture fails the test on any 500), alike
    for response in (forgot, unknown):
        assert response.status_code == 503
        assert response.json() == UNAVAILABLE
    assert "dependency unavailable: redis" in api.server.output()
    # And the failed request did not cost the user the link they already have
    assert api.post("/api/v1/auth/password/reset/", reset_link).status_code == 200
    assert logs_in(api, account, NEW_PASSWORD)
    assert told_of_the_change(smtp, account)


@pytest.mark.parametrize("how", [OUT_OF_MEMORY, READ_ONLY, SNAPSHOT_FAILED])
def test_a_reset_on_a_redis_refusing_writes_succeeds_and_uses_the_link_up(
    api, account, redis_server, smtp, worker, reset_link, refusing, how
):
    # A reset reads its link from Redis and uses it up with the password it stores (each link
    # is bound to the password hash it was issued for). Forgetting the user's links and
    # queuing the "password changed" email need writes: the first is a tidy-up, and the
    # worker's sweep sends the second from PostgreSQL.
    refusing(how)
    reset = "/api/v1/auth/password/reset/"
    used = api.post(reset, reset_link)
    again = api.post(reset, {**reset_link, "password": "x-" + NEW_PASSWORD})
    page = requests.post(
        api.server.url("/reset-password/"),
        data={**reset_link, "password_confirm": reset_link["password"]},
        timeout=15,
    )

    assert used.status_code == 200
    assert logs_in(api, account, NEW_PASSWORD)
    # The link stays used although Redis could not forget it
    assert again.status_code == 400
    assert again.json()["code"] == "reset_token_invalid"
    assert page.status_code == 400
    assert "already used" in page.text
    take_writes(redis_server)
    assert told_of_the_change(smtp, account)
    # The worker, whose waiting BRPOP Redis refused, kept going rather than exit
    worker.check_alive()
    if how == READ_ONLY:
        assert "Connection to broker lost" in worker.output()


def test_a_reset_email_sent_just_before_redis_refuses_writes_goes_out_once(
    api, account, redis_server, smtp, worker, refusing
):
    # Given the worker is sending a reset email (held at the recipient)...
    smtp.holding = True
    assert api.post("/api/v1/auth/password/forgot/", {"email": account.email}).status_code == 202
    wait_for(lambda: smtp.held == 1, timeout=30, what="the email being sent")

    # ...when Redis starts refusing writes before the worker can note the email as sent
    refusing(OUT_OF_MEMORY)
    smtp.release()
    worker.wait_for_log("not marked sent")
    take_writes(redis_server)

    # Then the email went out, and no retry will send it again
    assert [m["To"] for m in smtp.wait_for(1)] == [account.email]
    assert "retry 1 of" not in worker.output()


@pytest.mark.parametrize("how", [OUT_OF_MEMORY, READ_ONLY, SNAPSHOT_FAILED, BUSY])
def test_sessions_keep_working_while_redis_refuses_writes(api, account, refusing, how):
    refusing(how)

    login = api.post("/api/v1/auth/login/", {"email": account.email, "password": account.password})
    refreshed = api.post("/api/v1/auth/token/refresh/", {"refresh": account.refresh})
    me = api.get("/api/v1/auth/me/", token=account.access)

    assert [r.status_code for r in (login, refreshed, me)] == [200, 200, 200]


@pytest.mark.parametrize("how", [OUT_OF_MEMORY, READ_ONLY, SNAPSHOT_FAILED, BUSY])
def test_readyz_names_redis_while_it_refuses_writes_and_recovers(api, redis_server, refusing, how):
    refusing(how)
    response = api.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {"database": "ok", "redis": "unavailable"},
    }
    take_writes(redis_server)
    assert api.get("/readyz").status_code == 200
