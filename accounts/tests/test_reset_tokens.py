"""The Redis token store: digests only, expiry, replacement, binding to the account."""

import time
from types import SimpleNamespace

import pytest

from accounts import reset_tokens


def account(user_id: int, **changed) -> SimpleNamespace:
    """What the token store reads of a user: its id, password hash and email."""
    fields = {"password": f"argon2$hash-of-{user_id}", "email": f"user{user_id}@example.com"}
    return SimpleNamespace(pk=user_id, **{**fields, **changed})


def issue(user_id: int) -> reset_tokens.IssuedToken:
    return reset_tokens.token_issue(user=account(user_id))


def replacing(user_id: int):
    return reset_tokens.token_replacing(
        user_id=user_id, binding=reset_tokens.binding(account(user_id))
    )


def owner(token: str) -> int | None:
    peeked = reset_tokens.token_peek(token=token)
    return peeked.user_id if peeked is not None else None


def all_redis_bytes(redis_client) -> bytes:
    """Every key and value in the test's Redis database, joined."""
    chunks = []
    for key in redis_client.scan_iter():
        chunks.append(key)
        kind = redis_client.type(key)
        if kind == b"string":
            chunks.append(redis_client.get(key))
        elif kind == b"list":
            chunks.extend(redis_client.lrange(key, 0, -1))
        elif kind == b"set":
            chunks.extend(redis_client.smembers(key))
        elif kind == b"zset":
            chunks.extend(redis_client.zrange(key, 0, -1))
        elif kind == b"hash":
            for field, value in redis_client.hgetall(key).items():
                chunks.extend((field, value))
        else:
            raise AssertionError(f"a {kind!r} the test does not read: {key!r}")
    return b"|".join(chunks)


def test_issued_token_is_256_bit_url_safe_and_maps_to_its_user():
    issued = issue(7)

    assert len(issued.token) == 64
    assert issued.token.isalnum()
    assert owner(issued.token) == 7
    assert reset_tokens.token_is_current(user_id=7, token=issued.token)


def test_redis_holds_only_digests(redis_client):
    issued = issue(7)

    stored = all_redis_bytes(redis_client)
    assert issued.token.encode() not in stored
    assert reset_tokens.digest(issued.token).encode() in stored


def test_token_lives_for_the_configured_timeout(redis_client, settings):
    issued = issue(7)

    key = f"{reset_tokens.PREFIX}token:{reset_tokens.digest(issued.token)}"
    assert settings.PASSWORD_RESET_TIMEOUT - 2 <= redis_client.ttl(key) <= 600


def test_token_expires(settings):
    settings.PASSWORD_RESET_TIMEOUT = 1
    issued = issue(7)

    deadline = time.monotonic() + 5
    while reset_tokens.token_peek(token=issued.token) is not None:
        assert time.monotonic() < deadline, "token outlived its timeout"
        time.sleep(0.1)
    assert not reset_tokens.token_is_current(user_id=7, token=issued.token)


def test_new_token_replaces_the_previous_one(redis_client):
    first = issue(7)
    second = issue(7)

    assert not redis_client.exists(reset_tokens._bind_key(reset_tokens.digest(first.token)))

    assert reset_tokens.token_peek(token=first.token) is None
    assert not reset_tokens.token_is_current(user_id=7, token=first.token)
    assert owner(second.token) == 7


def test_tokens_of_different_users_are_independent():
    ada = issue(7)
    bob = issue(8)

    assert owner(ada.token) == 7
    assert owner(bob.token) == 8


def test_time_left_is_what_redis_has_left_and_only_for_the_owner_as_it_was(redis_client):
    issued = issue(7)
    redis_client.pexpire(reset_tokens._token_key(reset_tokens.digest(issued.token)), 45_000)

    assert 44 < reset_tokens.token_time_left(user=account(7), token=issued.token) <= 45
    assert reset_tokens.token_time_left(user=account(8), token=issued.token) is None
    moved = account(7, email="elsewhere@example.com")
    assert reset_tokens.token_time_left(user=moved, token=issued.token) is None
    reset_tokens.token_revoke(user_id=7)
    assert reset_tokens.token_time_left(user=account(7), token=issued.token) is None


def test_a_token_works_only_for_the_account_as_it_was_issued_for():
    issued = issue(7)
    peeked = reset_tokens.token_peek(token=issued.token)

    assert reset_tokens.binds(peeked, account(7))
    # Another password hash (a reset, a change, a re-hash) or another email ends it
    assert not reset_tokens.binds(peeked, account(7, password="argon2$another"))
    assert not reset_tokens.binds(peeked, account(7, email="elsewhere@example.com"))
    assert not reset_tokens.binds(peeked, account(8))


def test_the_binding_is_keyed_by_the_secret(settings):
    before = reset_tokens.binding(account(7))
    settings.SECRET_KEY = "another-secret-another-secret-another-secret"

    assert reset_tokens.binding(account(7)) != before
    assert before not in (account(7).password, account(7).email)


def test_tokens_keep_the_form_the_previous_release_reads_and_take_its_tokens(redis_client):
    # During a deploy, old and new web and worker processes share Redis. The token's key still
    # holds just the user id, which is what the previous release reads...
    issued = issue(7)
    key = reset_tokens._token_key(reset_tokens.digest(issued.token))
    assert redis_client.get(key) == b"7"

    # ...and a token it issued (no binding) works for its user, and only for them
    redis_client.delete(reset_tokens._bind_key(reset_tokens.digest(issued.token)))
    peeked = reset_tokens.token_peek(token=issued.token)
    assert peeked == reset_tokens.PeekedToken(user_id=7, binding=None)
    assert reset_tokens.binds(peeked, account(7))
    assert not reset_tokens.binds(peeked, account(8))
    assert reset_tokens.token_time_left(user=account(7), token=issued.token) > 0


@pytest.mark.parametrize("garbage", ["", "x", "0" * 64, "é" * 10, "a" * 5000])
def test_unknown_tokens_are_not_found(garbage):
    assert reset_tokens.token_peek(token=garbage) is None


def test_token_is_derived_from_nonce_with_the_secret(settings):
    issued = issue(7)
    assert reset_tokens.token_from_nonce(issued.nonce) == issued.token

    settings.SECRET_KEY = "another-secret-another-secret-another-secret"
    assert reset_tokens.token_from_nonce(issued.nonce) != issued.token


class EmailNotQueued(Exception):
    pass


def failing_to_queue(*, user_id: int, meanwhile=lambda: None) -> reset_tokens.IssuedToken:
    """Issue with token_replacing, whose block then fails as when the email cannot be queued."""
    try:
        with replacing(user_id) as issued:
            meanwhile()
            raise EmailNotQueued
    except EmailNotQueued:
        return issued


def test_the_earlier_link_works_until_the_new_one_is_on_its_way():
    earlier = issue(7)

    with replacing(7) as issued:
        assert owner(earlier.token) == 7
        assert reset_tokens.token_is_current(user_id=7, token=issued.token)

    assert reset_tokens.token_peek(token=earlier.token) is None
    assert owner(issued.token) == 7


def test_when_the_email_cannot_be_queued_the_earlier_link_still_works():
    earlier = issue(7)

    issued = failing_to_queue(user_id=7)

    assert reset_tokens.token_peek(token=issued.token) is None
    assert reset_tokens.token_is_current(user_id=7, token=earlier.token)
    assert owner(earlier.token) == 7


def test_a_failed_first_request_leaves_no_token(redis_client):
    issued = failing_to_queue(user_id=7)

    assert reset_tokens.token_peek(token=issued.token) is None
    assert not reset_tokens.token_is_current(user_id=7, token=issued.token)
    assert list(redis_client.scan_iter(f"{reset_tokens.PREFIX}*")) == []  # bindings too


def test_a_failed_request_does_not_undo_a_newer_one():
    earlier = issue(7)

    newer = []  # a concurrent request that succeeded
    failed = failing_to_queue(user_id=7, meanwhile=lambda: newer.append(issue(7)))

    # The newer link is the one that works, and the only one
    assert reset_tokens.token_is_current(user_id=7, token=newer[0].token)
    assert reset_tokens.token_peek(token=failed.token) is None
    assert reset_tokens.token_peek(token=earlier.token) is None


def test_a_link_going_out_ends_earlier_ones_but_not_a_newer_one_still_on_its_way():
    earlier = issue(7)
    first_request = replacing(7)
    first = first_request.__enter__()
    second_request = replacing(7)
    second = second_request.__enter__()

    # The first request's email is queued while the second is still queuing its own
    first_request.__exit__(None, None, None)

    assert reset_tokens.token_peek(token=earlier.token) is None
    assert owner(first.token) == 7
    assert owner(second.token) == 7
    # Then the second's goes out too: only its link works
    second_request.__exit__(None, None, None)
    assert reset_tokens.token_peek(token=first.token) is None
    assert owner(second.token) == 7


def test_a_new_token_comes_after_the_newest_even_if_the_clock_went_back(redis_client):
    earlier = issue(7)
    # As if the earlier token had been issued by a server whose clock was an hour ahead
    live = f"{reset_tokens.PREFIX}live:7"
    ahead = redis_client.zscore(live, reset_tokens.digest(earlier.token)) + 3_600_000_000
    redis_client.zadd(live, {reset_tokens.digest(earlier.token): ahead})

    issued = issue(7)

    assert reset_tokens.token_peek(token=earlier.token) is None
    assert owner(issued.token) == 7


def test_a_withdrawn_token_hands_back_to_the_newest_that_still_works(redis_client):
    oldest = issue(7)
    # A newer request still queuing its email, whose token has expired meanwhile
    expired = replacing(7).__enter__()
    redis_client.delete(f"{reset_tokens.PREFIX}token:{reset_tokens.digest(expired.token)}")

    failed = failing_to_queue(user_id=7)

    # The newest other token had expired: the oldest, still alive, is current again
    assert reset_tokens.token_peek(token=failed.token) is None
    assert reset_tokens.token_is_current(user_id=7, token=oldest.token)
    assert owner(oldest.token) == 7


def test_a_password_change_during_a_request_that_fails_ends_every_link():
    earlier = issue(7)

    failed = failing_to_queue(user_id=7, meanwhile=lambda: reset_tokens.token_revoke(user_id=7))

    for token in (earlier, failed):
        assert reset_tokens.token_peek(token=token.token) is None
        assert not reset_tokens.token_is_current(user_id=7, token=token.token)


def test_revoking_ends_links_still_in_their_window(redis_client):
    earlier = issue(7)

    with replacing(7) as pending:
        reset_tokens.token_revoke(user_id=7)

    assert reset_tokens.token_peek(token=earlier.token) is None
    assert reset_tokens.token_peek(token=pending.token) is None
    assert list(redis_client.scan_iter(f"{reset_tokens.PREFIX}*")) == []  # bindings too


def test_the_earlier_link_keeps_its_own_expiry_when_it_is_current_again(redis_client):
    earlier = issue(7)
    earlier_key = f"{reset_tokens.PREFIX}token:{reset_tokens.digest(earlier.token)}"
    redis_client.pexpire(earlier_key, 60_000)

    failing_to_queue(user_id=7)

    user_key = f"{reset_tokens.PREFIX}user:7"
    assert 0 < redis_client.pttl(user_key) <= 60_000
