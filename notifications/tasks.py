"""Celery tasks: take ids and strings, call a service, own their retry policy."""

import enum
import errno
import logging
import random
import smtplib
import socket
import ssl
from functools import partial

from anymail.exceptions import (
    AnymailError,
    AnymailInvalidAddress,
    AnymailRecipientsRefused,
    AnymailRequestsAPIError,
)
from celery import shared_task
from celery.exceptions import Reject
from django.core.exceptions import ImproperlyConfigured

from auth_service.celery import SecretArgsTask
from auth_service.exceptions import is_unavailable
from notifications import services
from notifications.models import EmailChangedNotice, OwedNotice, PasswordChangedNotice

logger = logging.getLogger(__name__)

# Waits of 10, 20, 40, 80 and 120 s, each plus up to half again: the retries span 4.5 to 7
# minutes, so a provider or database outage of a few minutes delays an email without losing
# it, and the last attempt still lands inside the 10-minute token life.
MAX_RETRIES = 5
RETRY_BASE_DELAY = 10
RETRY_MAX_DELAY = 120


class Failure(enum.Enum):
    """What a failed send says about the next one."""

    # This recipient or this message, for good (an unknown or inactive address, SMTP 5xx to
    # RCPT or DATA): give it up.
    REFUSED = "refused"
    # This recipient, for now (greylisting or a full mailbox: a 4xx to RCPT TO): others may
    # pass meanwhile.
    DEFERRED = "deferred"
    # Every send, for now: network, provider 5xx/429, SMTP 4xx to any other step, PostgreSQL,
    # Redis.
    OUTAGE = "outage"
    # Every send, until someone acts: the provider refuses our credentials or sender (Postmark
    # 401/403/422 other than a recipient, SMTP 5xx to AUTH or MAIL FROM), a setting is missing,
    # or a provider error we cannot place. Never a reason to drop an email.
    ACCOUNT = "account"
    # Not a sending error at all: our code or data. The task gives up (a bug fails every
    # retry alike); the sweep keeps the notice, as a bug is no reason to drop one either.
    UNEXPECTED = "unexpected"


# Trouble reaching or talking to a mail server or provider, before any reply.
_NETWORK = (smtplib.SMTPServerDisconnected, socket.timeout, ConnectionError, TimeoutError)
# Also before any reply, for now: a name server not answering or failing, a network or host
# out of reach, a TLS session cut off. A name that does not exist, or a TLS handshake refused
# (a certificate that does not verify, the wrong port for TLS), is our settings': ACCOUNT.
_NETWORK_ERRNOS = frozenset(
    {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN, errno.EADDRNOTAVAIL}
)
_TLS_CUT_OFF = (ssl.SSLEOFError, ssl.SSLZeroReturnError)


def _is_network(error: Exception) -> bool:
    if isinstance(error, socket.gaierror):
        # The name server not answering, or failing (SERVFAIL), for now.
        return error.errno in (socket.EAI_AGAIN, socket.EAI_FAIL)
    if isinstance(error, ssl.SSLError):
        return isinstance(error, _TLS_CUT_OFF)
    if isinstance(error, _NETWORK):
        return True
    return isinstance(error, OSError) and error.errno in _NETWORK_ERRNOS


def _is_settings(error: Exception) -> bool:
    return isinstance(error, (socket.gaierror, ssl.SSLError)) and not _is_network(error)


def _is_policy(message) -> bool:
    """An enhanced status code of class x.7 (RFC 3463: security or policy, such as SPF, DMARC
    or a blocked sending address, or relaying denied): about our sending, not the recipient."""
    text = message.decode("ascii", "replace") if isinstance(message, bytes) else str(message)
    return text.lstrip()[1:4] == ".7."


def _smtp_failure(error: smtplib.SMTPException) -> Failure:
    """By reply code, 4xx "not now" and 5xx "no"; whose "no" it is depends on the step."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        # Greylisting or a full mailbox answers RCPT with 450/451/452: not now, for this one.
        replies = list(error.recipients.values())
        if any(400 <= code < 500 for code, _ in replies):
            return Failure.DEFERRED
        return Failure.ACCOUNT if any(_is_policy(text) for _, text in replies) else Failure.REFUSED
    if not isinstance(error, smtplib.SMTPResponseException):
        # The connection dropped, or the server lacks STARTTLS or AUTH (our settings).
        return Failure.OUTAGE if isinstance(error, _NETWORK) else Failure.ACCOUNT
    if 400 <= error.smtp_code < 500:
        return Failure.OUTAGE
    if isinstance(error, smtplib.SMTPDataError):
        # The server took sender and recipient, then refused this email: for its content or
        # recipient, unless it says policy (every email of ours would be refused alike).
        return Failure.ACCOUNT if _is_policy(error.smtp_error) else Failure.REFUSED
    # A 5xx to the connection, HELO, AUTH (535) or MAIL FROM: our server, login or sender.
    return Failure.ACCOUNT


def failure_kind(error: Exception) -> Failure:
    """Sort a send's error: is it this recipient's, or would every send fail alike?

    Only an answer about this recipient or message gives an email up; anything else that
    comes from the provider or its settings is kept and retried.
    """
    if isinstance(error, (AnymailRecipientsRefused, AnymailInvalidAddress)):
        return Failure.REFUSED
    if isinstance(error, AnymailRequestsAPIError):
        status = error.status_code
        if status is None or status == 429 or status >= 500:
            return Failure.OUTAGE
        # Postmark's errors about the recipient arrive as AnymailRecipientsRefused; any other
        # 4xx is about our token, sender, account or request, the same for every email.
        return Failure.ACCOUNT
    if isinstance(error, smtplib.SMTPException):
        return _smtp_failure(error)
    if isinstance(error, (AnymailError, ImproperlyConfigured)) or _is_settings(error):
        # AnymailConfigurationError (a missing setting, an uninstalled extra) is one of these.
        return Failure.ACCOUNT
    # PostgreSQL or Redis unreachable or refusing for now (what the web answers with a 503):
    # the worker looks the user up and checks the token before it sends.
    if _is_network(error) or is_unavailable(error):
        return Failure.OUTAGE
    return Failure.UNEXPECTED


class SendRetried(Exception):
    """Stands in for a send error in Celery's retry: Celery logs the exception it is given
    ("retry: Retry in 12s: ..."), and a mail server's or provider's message can quote the
    address ("451 <ada@example.com> greylisted"). This one holds the error's type alone."""


def retry_delay(attempt: int) -> float:
    """Exponential backoff, capped, plus up to half again at random (retries spread out).

    Not "full jitter" (anywhere from 0): the five waits could then all be short and the task
    give up within a minute or two of an outage starting.
    """
    delay = min(RETRY_MAX_DELAY, RETRY_BASE_DELAY * 2**attempt)
    return delay + random.uniform(0, delay / 2)  # noqa: S311


def _deliver(task, deliver, *, forget=None, **kwargs) -> None:
    """Run `deliver(**kwargs)` under the retry policy; `forget()`, if given, drops what is
    owed once its recipient is refused for good."""
    try:
        deliver(**kwargs)
    except Exception as error:
        kind = failure_kind(error)
        attempt = task.request.retries + 1
        retried = (Failure.DEFERRED, Failure.OUTAGE, Failure.ACCOUNT)
        if kind in retried and attempt <= MAX_RETRIES:
            if kind is not Failure.ACCOUNT:
                logger.warning(
                    "%s: transient %s, retry %d of %d",
                    task.name,
                    type(error).__name__,
                    attempt,
                    MAX_RETRIES,
                )
            else:
                # Retried too: a token rotated or a setting fixed within the retries' minutes
                # still delivers the email. An error each time: someone must act.
                logger.error(
                    "%s: %s, the email provider refuses the account or settings, retry %d of %d",
                    task.name,
                    type(error).__name__,
                    attempt,
                    MAX_RETRIES,
                )
            try:
                raise task.retry(
                    countdown=retry_delay(task.request.retries),
                    exc=SendRetried(type(error).__name__),
                ) from None
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
            attempt,
            type(error).__name__,
        )
        if kind is Failure.REFUSED and forget is not None:
            _forget(task, forget)


def _forget(task, forget) -> None:
    # A refused recipient is final, as in the sweep: a notice left owed would have the sweep
    # send it to that recipient again minutes later. If the database fails here, it does.
    try:
        forget()
    except Exception as error:
        logger.warning("%s: refused notice left to the sweep: %s", task.name, type(error).__name__)


# The nonce is half of a reset token (the server secret is the other half): keep it out of logs.
@shared_task(bind=True, base=SecretArgsTask, max_retries=MAX_RETRIES)
def send_password_reset_email(self, user_id: int, nonce: str) -> None:
    """Email a reset link; the worker derives the token from the nonce and the server secret."""
    _deliver(self, services.password_reset_deliver, user_id=user_id, nonce=nonce)


def _deliver_notice(task, deliver, *, model: type[OwedNotice], notice_id: int) -> None:
    """Send an owed notice under the retry policy; one whose recipient is refused for good is
    forgotten, as the sweep forgets it."""
    forget = partial(services.owed_notice_forget, model=model, notice_id=notice_id)
    _deliver(task, deliver, notice_id=notice_id, forget=forget)


@shared_task(bind=True, max_retries=MAX_RETRIES)
def send_password_changed_notice(self, notice_id: int) -> None:
    """Email an owed password-changed notice (notifications.models)."""
    _deliver_notice(
        self,
        services.password_changed_notice_deliver,
        model=PasswordChangedNotice,
        notice_id=notice_id,
    )


@shared_task(bind=True, max_retries=MAX_RETRIES)
def send_email_changed_notice(self, notice_id: int) -> None:
    """Email an owed email-changed notice to the old address (notifications.models)."""
    _deliver_notice(
        self, services.email_changed_notice_deliver, model=EmailChangedNotice, notice_id=notice_id
    )


# The name one release queued both kinds under, for the password-changed notices' table:
# its messages still in the queue during a deploy find a task to run them.
@shared_task(bind=True, max_retries=MAX_RETRIES)
def send_account_notice(self, notice_id: int) -> None:
    """Email a notice of the password-changed notices' table, queued by an older release."""
    _deliver_notice(
        self,
        services.password_changed_notice_deliver,
        model=PasswordChangedNotice,
        notice_id=notice_id,
    )
