"""What the worker does with a queued notification; Celery tasks call these."""

import logging
from urllib.parse import urlencode

from django.conf import settings
from django_redis import get_redis_connection

from accounts import reset_tokens
from accounts.models import User
from notifications import emails

logger = logging.getLogger(__name__)

SENT_PREFIX = "auth:reset:sent:"
NOTICE_SENT_PREFIX = "auth:notice:sent:"


def password_reset_link(*, token: str) -> str:
    """The link in the email: configuration only, never a request's Host."""
    return f"{settings.PASSWORD_RESET_URL}?{urlencode({'token': token})}"


def password_reset_deliver(*, user_id: int, nonce: str) -> bool:
    """Email the reset link if the token is still the user's live one; True if sent.

    Runs at least once per request (acks_late): a marker keyed by the nonce makes a redelivered
    message a no-op once the email went out.
    """
    user = User.objects.filter(pk=user_id, is_active=True).only("email", "full_name").first()
    if user is None:
        logger.info("password reset: no active account for user %s; nothing sent", user_id)
        return False
    token = reset_tokens.token_from_nonce(nonce)
    if not reset_tokens.token_is_current(user_id=user_id, token=token):
        logger.info(
            "password reset: token for user %s expired, used or replaced; nothing sent", user_id
        )
        return False
    redis = get_redis_connection("default")
    sent_key = SENT_PREFIX + reset_tokens.digest(nonce)
    if redis.exists(sent_key):
        logger.info("password reset: email for user %s already sent; skipping", user_id)
        return False
    emails.password_reset_email_send(
        to=user.email, full_name=user.full_name, link=password_reset_link(token=token)
    )
    redis.set(sent_key, 1, ex=settings.PASSWORD_RESET_TIMEOUT)
    logger.info("password reset: email sent to user %s", user_id)
    return True


def password_changed_deliver(*, user_id: int, message_id: str) -> bool:
    """Tell the user their password changed; True if sent.

    Like the reset email, runs at least once per message (a task that finishes while its
    worker shuts down can come back): a marker keyed by the message's id makes the redelivery
    a no-op. It outlives the broker's visibility timeout, after which redeliveries happen.
    """
    user = User.objects.filter(pk=user_id).only("email", "full_name").first()
    if user is None:
        return False
    redis = get_redis_connection("default")
    sent_key = NOTICE_SENT_PREFIX + message_id
    if redis.exists(sent_key):
        logger.info("password changed notice for user %s already sent; skipping", user_id)
        return False
    emails.password_changed_email_send(to=user.email, full_name=user.full_name)
    redis.set(sent_key, 1, ex=settings.PASSWORD_RESET_TIMEOUT)
    logger.info("password changed notice sent to user %s", user_id)
    return True
