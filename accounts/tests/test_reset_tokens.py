"""The Redis token store: digests only, expiry, replacement, single use."""

import time

import pytest

from accounts import reset_tokens


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
    issued = reset_tokens.token_issue(user_id=7)

    assert len(issued.token) == 64
    assert issued.token.isalnum()
    assert reset_tokens.token_peek(token=issued.token) == 7
    assert reset_tokens.token_is_current(user_id=7, token=issued.token)


def test_redis_holds_only_digests(redis_client):
    issued = reset_tokens.token_issue(user_id=7)

    stored = all_redis_bytes(redis_client)
    assert issued.token.encode() not in stored
    assert reset_tokens.digest(issued.token).encode() in stored


def test_token_lives_for_the_configured_timeout(redis_client, settings):
    issued = reset_tokens.token_issue(user_id=7)

    key = f"{reset_tokens.PREFIX}token:{reset_tokens.digest(issued.token)}"
    assert settings.PASSWORD_RESET_TIMEOUT - 2 <= redis_client.ttl(key) <= 600


def test_token_expires(settings):
    settings.PASSWORD_RESET_TIMEOUT = 1
    issued = reset_tokens.token_issue(user_id=7)

    deadline = time.monotonic() + 5
    while reset_tokens.token_peek(token=issued.token) is not None:
        assert time.monotonic() < deadline, "token outlived its timeout"
        time.sleep(0.1)
    assert reset_tokens.token_consume(token=issued.token) is None
    assert not reset_tokens.token_is_current(user_id=7, token=issued.token)


def test_new_token_replaces_the_previous_one():
    first = reset_tokens.token_issue(user_id=7)
    second = reset_tokens.token_issue(user_id=7)

    assert reset_tokens.token_peek(token=first.token) is None
    assert not reset_tokens.token_is_current(user_id=7, token=first.token)
    assert reset_tokens.token_peek(token=second.token) == 7


def test_tokens_of_different_users_are_independent():
    ada = reset_tokens.token_issue(user_id=7)
    bob = reset_tokens.token_issue(user_id=8)

    assert reset_tokens.token_peek(token=ada.token) == 7
    assert reset_tokens.token_peek(token=bob.token) == 8


def test_token_is_consumed_once():
    issued = reset_tokens.token_issue(user_id=7)

    assert reset_tokens.token_consume(token=issued.token).user_id == 7
    assert reset_tokens.token_consume(token=issued.token) is None
    assert reset_tokens.token_peek(token=issued.token) is None
    assert not reset_tokens.token_is_current(user_id=7, token=issued.token)


def test_time_left_is_what_redis_has_left_and_only_for_the_owner(redis_client):
    issued = reset_tokens.token_issue(user_id=7)
    redis_client.pexpire(reset_tokens._token_key(reset_tokens.digest(issued.token)), 45_000)

    assert 44 < reset_tokens.token_time_left(user_id=7, token=issued.token) <= 45
    assert reset_tokens.token_time_left(user_id=8, token=issued.token) is None
    reset_tokens.token_consume(token=issued.token)
    assert reset_tokens.token_time_left(user_id=7, token=issued.token) is None


@pytest.mark.parametrize("garbage", ["", "x", "0" * 64, "é" * 10, "a" * 5000])
def test_unknown_tokens_are_not_found(garbage):
    assert reset_tokens.token_peek(token=garbage) is None
    assert reset_tokens.token_consume(token=garbage) is None


def test_token_is_derived_from_nonce_with_the_secret(settings):
    issued = reset_tokens.token_issue(user_id=7)
    assert reset_tokens.token_from_nonce(issued.nonce) == issued.token

    settings.SECRET_KEY = "another-secret-another-secret-another-secret"
    assert reset_tokens.token_from_nonce(issued.nonce) != issued.token


def test_a_consumed_token_put_back_works_again_for_the_rest_of_its_life(redis_client, settings):
    issued = reset_tokens.token_issue(user_id=7)
    consumed = reset_tokens.token_consume(token=issued.token)

    assert reset_tokens.token_restore(consumed)

    assert reset_tokens.token_peek(token=issued.token) == 7
    assert reset_tokens.token_is_current(user_id=7, token=issued.token)
    key = f"{reset_tokens.PREFIX}token:{reset_tokens.digest(issued.token)}"
    assert 0 < redis_client.pttl(key) <= settings.PASSWORD_RESET_TIMEOUT * 1000


def test_a_token_put_back_lives_only_what_was_left_of_its_life(redis_client):
    issued = reset_tokens.token_issue(user_id=7)
    key = f"{reset_tokens.PREFIX}token:{reset_tokens.digest(issued.token)}"
    redis_client.pexpire(key, 2_000)
    consumed = reset_tokens.token_consume(token=issued.token)

    time.sleep(0.5)  # the failed reset took this long
    assert reset_tokens.token_restore(consumed)

    # Not 2 s again: a link that keeps failing to reset must still end on time
    assert 0 < redis_client.pttl(key) <= 1_500
    assert 0 < redis_client.pttl(f"{reset_tokens.PREFIX}user:7") <= 1_500


def test_a_token_whose_life_ended_while_in_use_is_not_put_back(redis_client):
    issued = reset_tokens.token_issue(user_id=7)
    key = f"{reset_tokens.PREFIX}token:{reset_tokens.digest(issued.token)}"
    redis_client.pexpire(key, 200)
    consumed = reset_tokens.token_consume(token=issued.token)

    time.sleep(0.3)
    assert not reset_tokens.token_restore(consumed)

    assert reset_tokens.token_peek(token=issued.token) is None
    assert not reset_tokens.token_is_current(user_id=7, token=issued.token)


def test_a_consumed_token_is_not_put_back_over_a_newer_one():
    first = reset_tokens.token_issue(user_id=7)
    consumed = reset_tokens.token_consume(token=first.token)
    second = reset_tokens.token_issue(user_id=7)

    assert not reset_tokens.token_restore(consumed)

    assert reset_tokens.token_peek(token=first.token) is None
    assert reset_tokens.token_is_current(user_id=7, token=second.token)


class EmailNotQueued(Exception):
    pass


def failing_to_queue(*, user_id: int, meanwhile=lambda: None) -> reset_tokens.IssuedToken:
    """Issue with token_replacing, whose block then fails as when the email cannot be queued."""
    try:
        with reset_tokens.token_replacing(user_id=user_id) as issued:
            meanwhile()
            raise EmailNotQueued
    except EmailNotQueued:
        return issued


def test_the_earlier_link_works_until_the_new_one_is_on_its_way():
    earlier = reset_tokens.token_issue(user_id=7)

    with reset_tokens.token_replacing(user_id=7) as issued:
        assert reset_tokens.token_peek(token=earlier.token) == 7
        assert reset_tokens.token_is_current(user_id=7, token=issued.token)

    assert reset_tokens.token_peek(token=earlier.token) is None
    assert reset_tokens.token_peek(token=issued.token) == 7


def test_when_the_email_cannot_be_queued_the_earlier_link_still_works():
    earlier = reset_tokens.token_issue(user_id=7)

    issued = failing_to_queue(user_id=7)

    assert reset_tokens.token_peek(token=issued.token) is None
    assert reset_tokens.token_is_current(user_id=7, token=earlier.token)
    assert reset_tokens.token_consume(token=earlier.token).user_id == 7


def test_a_failed_first_request_leaves_no_token(redis_client):
    issued = failing_to_queue(user_id=7)

    assert reset_tokens.token_peek(token=issued.token) is None
    assert not reset_tokens.token_is_current(user_id=7, token=issued.token)
    assert list(redis_client.scan_iter(f"{reset_tokens.PREFIX}*")) == []


def test_a_failed_request_does_not_undo_a_newer_one():
    earlier = reset_tokens.token_issue(user_id=7)

    newer = []  # a concurrent request that succeeded
    failed = failing_to_queue(
        user_id=7, meanwhile=lambda: newer.append(reset_tokens.token_issue(user_id=7))
    )

    # The newer link is the one that works, and the only one
    assert reset_tokens.token_is_current(user_id=7, token=newer[0].token)
    assert reset_tokens.token_peek(token=failed.token) is None
    assert reset_tokens.token_peek(token=earlier.token) is None


def test_a_link_going_out_ends_earlier_ones_but_not_a_newer_one_still_on_its_way():
    earlier = reset_tokens.token_issue(user_id=7)
    first_request = reset_tokens.token_replacing(user_id=7)
    first = first_request.__enter__()
    second_request = reset_tokens.token_replacing(user_id=7)
    second = second_request.__enter__()

    # The first request's email is queued while the second is still queuing its own
    first_request.__exit__(None, None, None)

    assert reset_tokens.token_peek(token=earlier.token) is None
    assert reset_tokens.token_peek(token=first.token) == 7
    assert reset_tokens.token_peek(token=second.token) == 7
    # Then the second's goes out too: only its link works
    second_request.__exit__(None, None, None)
    assert reset_tokens.token_peek(token=first.token) is None
    assert reset_tokens.token_peek(token=second.token) == 7


def test_a_new_token_comes_after_the_newest_even_if_the_clock_went_back(redis_client):
    earlier = reset_tokens.token_issue(user_id=7)
    # As if the earlier token had been issued by a server whose clock was an hour ahead
    live = f"{reset_tokens.PREFIX}live:7"
    ahead = redis_client.zscore(live, reset_tokens.digest(earlier.token)) + 3_600_000_000
    redis_client.zadd(live, {reset_tokens.digest(earlier.token): ahead})

    issued = reset_tokens.token_issue(user_id=7)

    assert reset_tokens.token_peek(token=earlier.token) is None
    assert reset_tokens.token_peek(token=issued.token) == 7


def test_a_withdrawn_token_hands_back_to_the_newest_that_still_works(redis_client):
    oldest = reset_tokens.token_issue(user_id=7)
    # A newer request still queuing its email, whose token has expired meanwhile
    expired = reset_tokens.token_replacing(user_id=7).__enter__()
    redis_client.delete(f"{reset_tokens.PREFIX}token:{reset_tokens.digest(expired.token)}")

    failed = failing_to_queue(user_id=7)

    # The newest other token had expired: the oldest, still alive, is current again
    assert reset_tokens.token_peek(token=failed.token) is None
    assert reset_tokens.token_is_current(user_id=7, token=oldest.token)
    assert reset_tokens.token_peek(token=oldest.token) == 7


def test_a_used_token_is_not_put_back_after_a_password_change_ended_every_token(redis_client):
    issued = reset_tokens.token_issue(user_id=7)
    consumed = reset_tokens.token_consume(token=issued.token)
    reset_tokens.token_revoke(user_id=7)  # a password change committed meanwhile

    assert not reset_tokens.token_restore(consumed)

    assert reset_tokens.token_peek(token=issued.token) is None
    assert list(redis_client.scan_iter(f"{reset_tokens.PREFIX}*")) == []


def test_a_used_token_is_put_back_beside_a_newer_one_still_on_its_way():
    issued = reset_tokens.token_issue(user_id=7)
    consumed = reset_tokens.token_consume(token=issued.token)

    # A newer forgot is queuing its email when the reset fails and puts the token back...
    failed = []
    failing_to_queue(
        user_id=7,
        meanwhile=lambda: failed.append(reset_tokens.token_restore(consumed)),
    )

    # ...and that newer request fails too: the link the user has works again
    assert failed == [True]
    assert reset_tokens.token_peek(token=issued.token) == 7
    assert reset_tokens.token_is_current(user_id=7, token=issued.token)


def test_a_password_change_during_a_request_that_fails_ends_every_link():
    earlier = reset_tokens.token_issue(user_id=7)

    failed = failing_to_queue(user_id=7, meanwhile=lambda: reset_tokens.token_revoke(user_id=7))

    for token in (earlier, failed):
        assert reset_tokens.token_peek(token=token.token) is None
        assert not reset_tokens.token_is_current(user_id=7, token=token.token)


def test_revoking_ends_links_still_in_their_window(redis_client):
    earlier = reset_tokens.token_issue(user_id=7)

    with reset_tokens.token_replacing(user_id=7) as pending:
        reset_tokens.token_revoke(user_id=7)

    assert reset_tokens.token_peek(token=earlier.token) is None
    assert reset_tokens.token_peek(token=pending.token) is None
    assert list(redis_client.scan_iter(f"{reset_tokens.PREFIX}*")) == []


def test_the_live_set_expires_with_the_tokens(redis_client, settings):
    issued = reset_tokens.token_issue(user_id=7)
    live = f"{reset_tokens.PREFIX}live:7"
    assert 0 < redis_client.ttl(live) <= settings.PASSWORD_RESET_TIMEOUT

    # Also when a used token is put back for longer than the set had left
    consumed = reset_tokens.token_consume(token=issued.token)
    redis_client.pexpire(live, 1_000)
    assert reset_tokens.token_restore(consumed)
    assert 1_000 < redis_client.pttl(live) <= settings.PASSWORD_RESET_TIMEOUT * 1000


def test_the_earlier_link_keeps_its_own_expiry_when_it_is_current_again(redis_client):
    earlier = reset_tokens.token_issue(user_id=7)
    earlier_key = f"{reset_tokens.PREFIX}token:{reset_tokens.digest(earlier.token)}"
    redis_client.pexpire(earlier_key, 60_000)

    failing_to_queue(user_id=7)

    user_key = f"{reset_tokens.PREFIX}user:7"
    assert 0 < redis_client.pttl(user_key) <= 60_000
