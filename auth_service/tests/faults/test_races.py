"""Requests that race each other through the real server and a real, transactional database.

To make the race certain rather than likely, the test holds a PostgreSQL lock the requests
need, waits until every one of them is blocked inside the database, then lets them all go.
"""

import uuid

from auth_service.tests.faults.harness import (
    PASSWORD,
    backends_waiting_on_lock,
    link_token,
    start,
    wait_for,
)


def released_together(sql, table: str, calls: list, mode: str = "EXCLUSIVE") -> list:
    """Start the calls, hold them at ``table``'s lock until all are inside, release at once.

    EXCLUSIVE lets them read but stops their writes; ACCESS EXCLUSIVE stops their reads too.
    """
    with sql.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {table} IN {mode} MODE")
    try:
        pending = [start(call) for call in calls]
        backends_waiting_on_lock(sql, len(calls))
    finally:
        sql.rollback()
    return [future.result(timeout=30) for future in pending]


def test_concurrent_registrations_of_one_email_in_any_case_create_one_account(web, api, sql):
    # Given one address typed three ways, sent by three clients at the same moment
    local = f"race-{uuid.uuid4().hex[:10]}"
    emails = [
        f"{local}@example.com",
        f"{local.upper()}@EXAMPLE.COM",
        f"{local.title()}@Example.com",
    ]
    calls = [
        lambda email=email: api.post(
            "/api/v1/auth/register/",
            {"full_name": "Katherine Johnson", "email": email, "password": PASSWORD},
        )
        for email in emails[: web.workers]
    ]

    # When they all reach the insert before any of them has committed
    responses = released_together(sql, "accounts_user", calls)

    # Then exactly one account exists and the others get the contract's 400, not a 500
    assert sorted(r.status_code for r in responses) == [201] + [400] * (len(calls) - 1)
    for rejected in (r for r in responses if r.status_code == 400):
        assert rejected.json() == {"email": ["An account with this email already exists."]}
    with sql.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM accounts_user WHERE lower(email) = %s", [emails[0]])
        assert cursor.fetchone()[0] == 1


def test_concurrent_refreshes_of_one_token_yield_at_most_one_new_pair(web, api, account, sql):
    # Given one refresh token, replayed by several clients at the same moment
    calls = [
        lambda: api.post("/api/v1/auth/token/refresh/", {"refresh": account.refresh})
    ] * web.workers

    # When they all get past the token's checks before any of them revokes it
    responses = released_together(sql, "accounts_spentrefreshtoken", calls)

    # Then one of them gets a new pair and the others a 401
    assert sorted(r.status_code for r in responses) == [200] + [401] * (len(calls) - 1)
    for rejected in (r for r in responses if r.status_code == 401):
        assert rejected.json()["code"] == "token_invalid"
    winner = next(r.json() for r in responses if r.status_code == 200)
    assert api.post("/api/v1/auth/token/refresh/", {"refresh": winner["refresh"]}).ok
    assert api.post("/api/v1/auth/token/refresh/", {"refresh": account.refresh}).status_code == 401


def test_concurrent_resets_with_one_token_succeed_exactly_once(
    web, api, account, smtp, start_worker, sql
):
    # Given a reset link, used by several clients at the same moment with different passwords
    start_worker()
    assert api.post("/api/v1/auth/password/forgot/", {"email": account.email}).status_code == 202
    token = link_token(smtp.wait_for(1)[0])
    passwords = [f"new passphrase number {n}" for n in range(web.workers)]
    calls = [
        lambda password=password: api.post(
            "/api/v1/auth/password/reset/", {"token": token, "password": password}
        )
        for password in passwords
    ]

    # When they all find the token live before any of them uses it up
    responses = released_together(sql, "accounts_user", calls, mode="ACCESS EXCLUSIVE")

    # Then one reset wins, the others hear the link is used, and only the winner's password works
    assert sorted(r.status_code for r in responses) == [200] + [400] * (len(calls) - 1)
    for rejected in (r for r in responses if r.status_code == 400):
        assert rejected.json()["code"] == "reset_token_invalid"
    winner = next(p for p, r in zip(passwords, responses, strict=True) if r.status_code == 200)
    logins = {
        password: api.post(
            "/api/v1/auth/login/", {"email": account.email, "password": password}
        ).status_code
        for password in passwords
    }
    assert logins == {password: 200 if password == winner else 401 for password in passwords}
    # And the one change is announced once (waited for: a notice left owed in the database
    # would reach a later test's inbox through its worker's sweep)
    notices = smtp.wait_for(2)[1:]
    assert [(m["To"], m["Subject"]) for m in notices] == [
        (account.email, "Your password was changed")
    ]


def test_concurrent_password_changes_proving_the_same_password_save_exactly_one(
    web, api, account, smtp, start_worker, sql
):
    # Given one session, used by several clients at once to change the password, each to its own
    start_worker()
    passwords = [f"changed passphrase number {n}" for n in range(web.workers)]
    calls = [
        lambda password=password: api.post(
            "/api/v1/auth/password/change/",
            {"current_password": account.password, "new_password": password},
            token=account.access,
        )
        for password in passwords
    ]

    # When they have all proved the current password before any of them saves
    responses = released_together(sql, "accounts_user", calls)

    # Then one change wins; the others hear the current password is wrong, as it now is
    assert sorted(r.status_code for r in responses) == [204] + [400] * (len(calls) - 1)
    for rejected in (r for r in responses if r.status_code == 400):
        assert rejected.json() == {"current_password": ["The current password is incorrect."]}
    winner = next(p for p, r in zip(passwords, responses, strict=True) if r.status_code == 204)
    logins = {
        password: api.post(
            "/api/v1/auth/login/", {"email": account.email, "password": password}
        ).status_code
        for password in [account.password, *passwords]
    }
    assert logins == {p: 200 if p == winner else 401 for p in [account.password, *passwords]}
    # And the one change is announced once: sent, and no other notice owed (found by address:
    # the worker's sweep may also send an earlier test's owed notice to this sink)
    wait_for(
        lambda: account.email in {m["To"] for m in smtp.messages}, timeout=30, what="the notice"
    )
    assert [m["Subject"] for m in smtp.messages if m["To"] == account.email] == [
        "Your password was changed"
    ]
    with sql.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM notifications_passwordchangednotice n"
            " JOIN accounts_user u ON u.id = n.user_id WHERE u.email = %s",
            [account.email],
        )
        assert cursor.fetchone() == (0,)
