"""What the worker does with a queued notification; Celery tasks call these."""

import logging
import time
from urllib.parse import quote, unquote_plus, urlsplit, urlunsplit

from django.conf import settings
from django.db import transaction
from redis.exceptions import RedisError

from accounts import reset_tokens
from accounts.models import User
from auth_service import redis_client
from notifications import emails
from notifications.models import EmailChangedNotice, OwedNotice, PasswordChangedNotice

logger = logging.getLogger(__name__)

SENT_PREFIX = "auth:reset:sent:"
# Markers of sent notices, per table: ids repeat across tables. The password-changed one is
# the prefix its notices always had, read by every release.
NOTICE_SENT_PREFIXES = {
    PasswordChangedNotice: "auth:notice:sent:",
    EmailChangedNotice: "auth:notice:email-changed:sent:",
}
NOTICE_SENT_TTL = 24 * 3600  # seconds: far past any retry of a notice whose deletion failed
# Pauses between tries to mark a sent reset email, about 10 s in all with Redis's timeouts:
# enough to outlast a Redis that stalls for a few seconds (a failover, a paused client), in
# which the task's acknowledgement may fail too and Celery redeliver it minutes later.
MARK_RETRY_PAUSES = (0.5, 1.0, 2.0)


def password_reset_link(*, token: str) -> str:
    """The link in the email: configuration only, never a request's Host.

    The token joins any query PASSWORD_RESET_URL already has (replacing a `token` there) and
    goes before its fragment, if any. The rest of the query stays exactly as written: decoded
    and encoded again, a front end's `?embedded` or `caf%E9` would reach it changed.
    """
    url = urlsplit(settings.PASSWORD_RESET_URL)
    kept = [
        part
        for part in url.query.split("&")
        if part and unquote_plus(part.partition("=")[0]) != "token"
    ]
    query = "&".join([*kept, f"token={quote(token, safe='')}"])
    return urlunsplit(url._replace(query=query))


def password_reset_deliver(*, user_id: int, nonce: str) -> bool:
    """Email the reset link if the token is still the user's live one; True if sent.

    Runs at least once per request (acks_late): a marker keyed by the nonce makes a redelivered
    message a no-op once the email went out.
    """
    user = User.objects.filter(pk=user_id, is_active=True).only("email", "password").first()
    if user is None:
        logger.info("password reset: no active account for user %s; nothing sent", user_id)
        return False
    token = reset_tokens.token_from_nonce(nonce)
    time_left = reset_tokens.token_time_left(user=user, token=token)
    if time_left is None:
        logger.info(
            "password reset: token for user %s expired, used or replaced, or the account "
            "changed since; nothing sent",
            user_id,
        )
        return False
    redis = redis_client.client()
    sent_key = SENT_PREFIX + reset_tokens.digest(nonce)
    if redis.exists(sent_key):
        logger.info("password reset: email for user %s already sent; skipping", user_id)
        return False
    emails.password_reset_email_send(
        to=user.email,
        link=password_reset_link(token=token),
        time_left=time_left,
    )
    error = _reset_mark_sent(redis, sent_key)
    if error is not None:
        # The email is out: a retry for this would send it again. Only a redelivery of the
        # message (a worker lost mid-task, or an acknowledgement lost to the same outage)
        # could, within the token's life.
        logger.warning(
            "password reset: email sent to user %s, not marked sent: %s",
            user_id,
            type(error).__name__,
        )
        return True
    logger.info("password reset: email sent to user %s", user_id)
    return True


def _reset_mark_sent(redis, key: str) -> RedisError | None:
    """Note a reset email as sent, trying again over a Redis stall; the last error if it
    could not."""
    for pause in (0.0, *MARK_RETRY_PAUSES):
        time.sleep(pause)
        try:
            redis.set(key, 1, ex=settings.PASSWORD_RESET_TIMEOUT)
        except RedisError as error:
            failure = error
        else:
            return None
    return failure


def password_changed_notice_record(*, user: User) -> PasswordChangedNotice:
    """Owe the user a "password changed" email; call inside the change's transaction."""
    return PasswordChangedNotice.objects.create(user=user)


def email_changed_notice_record(*, user: User, old_email: str) -> EmailChangedNotice:
    """Owe the old address an "email changed" email; call inside the change's transaction."""
    return EmailChangedNotice.objects.create(user=user, address=old_email)


def password_changed_notice_deliver(*, notice_id: int) -> bool:
    """Send one owed password-changed notice and forget it; True if sent."""
    return owed_notice_deliver(model=PasswordChangedNotice, notice_id=notice_id)


def email_changed_notice_deliver(*, notice_id: int) -> bool:
    """Send one owed email-changed notice and forget it; True if sent."""
    return owed_notice_deliver(model=EmailChangedNotice, notice_id=notice_id)


def owed_notice_deliver(*, model: type[OwedNotice], notice_id: int) -> bool:
    """Send one owed notice and forget it; True if sent.

    The notice stays locked while its email goes out, and is deleted in the same transaction:
    a redelivered task, or the sweep, finds it gone or locked and sends nothing. If sending
    fails, the notice stays for a retry. A marker in Redis, set once the email is out, covers
    the database failing before the deletion commits (a restart, a failover, a lost
    connection): the retry then only forgets the notice. Only a crash between the send and
    the marker, or Redis failing then too, can send it twice.
    """
    with transaction.atomic():
        notice = (
            model.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("user")
            .filter(pk=notice_id)
            .first()
        )
        if notice is None:
            logger.info("%s notice %s already sent or being sent", model.__name__, notice_id)
            return False
        if _notice_sent_before(notice):
            notice.delete()
            logger.info("%s notice %s was sent before; forgotten now", notice.kind, notice_id)
            return False
        emails.account_notice_send(kind=notice.kind, to=notice.recipient())
        _notice_mark_sent(notice)
        notice.delete()
    logger.info("%s notice sent for user %s", notice.kind, notice.user_id)
    return True


def owed_notice_forget(*, model: type[OwedNotice], notice_id: int) -> None:
    """Give up an owed notice: its recipient is refused for good."""
    model.objects.filter(pk=notice_id).delete()


def _notice_sent_key(notice: OwedNotice) -> str:
    # With the creation time: ids start again on a database restored from a backup.
    return f"{NOTICE_SENT_PREFIXES[type(notice)]}{notice.pk}:{notice.created_at.timestamp():.6f}"


def _notice_sent_before(notice: OwedNotice) -> bool:
    try:
        return bool(redis_client.client().exists(_notice_sent_key(notice)))
    except RedisError as error:
        # Unknown: send. A second email is the lesser fault than none.
        logger.warning(
            "%s notice %s: whether it was sent is unknown: %s",
            notice.kind,
            notice.pk,
            type(error).__name__,
        )
        return False


def _notice_mark_sent(notice: OwedNotice) -> None:
    try:
        redis_client.client().set(_notice_sent_key(notice), 1, ex=NOTICE_SENT_TTL)
    except RedisError as error:
        logger.warning(
            "%s notice %s sent, not marked sent: %s",
            notice.kind,
            notice.pk,
            type(error).__name__,
        )
