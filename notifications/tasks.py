"""Celery tasks: take ids and strings, call a service, own their retry policy."""

import logging
import random
import smtplib
import socket

from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused, AnymailRequestsAPIError
from celery import shared_task
from celery.exceptions import Reject

from auth_service.celery import SecretArgsTask
from auth_service.exceptions import is_unavailable
from notifications import services

logger = logging.getLogger(__name__)

# Waits of 10, 20, 40, 80 and 120 s, each plus up to half again: the retries span 4.5 to 7
# minutes, so a provider or database outage of a few minutes delays an email without losing
# it, and the last attempt still lands inside the 10-minute token life.
MAX_RETRIES = 5
RETRY_BASE_DELAY = 10
RETRY_MAX_DELAY = 120

_PERMANENT_SMTP = (
    smtplib.SMTPRecipientsRefused,
    smtplib.SMTPSenderRefused,
    smtplib.SMTPAuthenticationError,
    smtplib.SMTPNotSupportedError,
)

_TRANSIENT = (smtplib.SMTPException, socket.timeout, ConnectionError, TimeoutError)


def is_transient(error: Exception) -> bool:
    """Worth retrying: network, database or Redis trouble, the provider's 5xx/429, SMTP 4xx."""
    if isinstance(error, (AnymailRecipientsRefused, *_PERMANENT_SMTP)):
        return False
    if isinstance(error, AnymailRequestsAPIError):
        status = error.status_code
        return status is None or status == 429 or status >= 500
    if isinstance(error, AnymailAPIError):
        return False
    if isinstance(error, smtplib.SMTPResponseException):
        return 400 <= error.smtp_code < 500
    # PostgreSQL or Redis unreachable or refusing for now (what the web answers with a 503):
    # the worker looks the user up and checks the token before it sends.
    return isinstance(error, _TRANSIENT) or is_unavailable(error)


def retry_delay(attempt: int) -> float:
    """Exponential backoff, capped, plus up to half again at random (retries spread out).

    Not "full jitter" (anywhere from 0): the five waits could then all be short and the task
    give up within a minute or two of an outage starting.
    """
    delay = min(RETRY_MAX_DELAY, RETRY_BASE_DELAY * 2**attempt)
    return delay + random.uniform(0, delay / 2)  # noqa: S311


def _deliver(task, deliver, **kwargs) -> None:
    try:
        deliver(**kwargs)
    except Exception as error:
        if is_transient(error) and task.request.retries < MAX_RETRIES:
            logger.warning(
                "%s: transient %s, retry %d of %d",
                task.name,
                type(error).__name__,
                task.request.retries + 1,
                MAX_RETRIES,
            )
            try:
                raise task.retry(countdown=retry_delay(task.request.retries), exc=error) from None
            except Reject as rejected:
                # Queuing the retry failed (Redis unreachable for a moment). Celery would drop
                # the task (requeue=False); put it back instead. If Redis is still gone, the
                # broker hands it out again after its visibility timeout. A retry that reached
                # Redis despite the error sends nothing twice: the sent-marker stops the copy.
                raise Reject(rejected.reason, requeue=True) from None
        # Logged by type only: provider messages can quote addresses or credentials.
        logger.error(
            "%s: giving up after %d attempt(s): %s",
            task.name,
            task.request.retries + 1,
            type(error).__name__,
        )


# The nonce is half of a reset token (the server secret is the other half): keep it out of logs.
@shared_task(bind=True, base=SecretArgsTask, max_retries=MAX_RETRIES)
def send_password_reset_email(self, user_id: int, nonce: str) -> None:
    """Email a reset link; the worker derives the token from the nonce and the server secret."""
    _deliver(self, services.password_reset_deliver, user_id=user_id, nonce=nonce)


@shared_task(bind=True, max_retries=MAX_RETRIES)
def send_password_changed_notice(self, notice_id: int) -> None:
    """Email an owed 'your password was changed' notice (notifications.models)."""
    _deliver(self, services.password_changed_deliver, notice_id=notice_id)
