"""The worker's sweep: sends the account notices (password or email changed) whose queued
message never came.

The web records each notice in PostgreSQL before it queues the message
(accounts.services.password_set and email_change_notify). When Redis is out at that moment the
message is never queued, and when sending fails for good the task stops retrying. Every
NOTICE_SWEEP_INTERVAL seconds the Celery worker's main process sends each notice older than
NOTICE_SWEEP_AFTER itself, through PostgreSQL and the email backend alone (SMTP or the
provider's API), so the email goes out even while Redis is still down.
"""

import logging
import smtplib
import threading
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, ProgrammingError, connection, transaction
from django.db.models import F
from django.utils import timezone

from notifications import services
from notifications.models import EmailChangedNotice, OwedNotice, PasswordChangedNotice
from notifications.tasks import Failure, failure_kind

logger = logging.getLogger(__name__)

NOTICES = (PasswordChangedNotice, EmailChangedNotice)

BATCH = 100
# A notice that fails with an error of our own (its data, say), or whose recipient the mail
# server refuses by policy, is kept and passed over; this many in one sweep means every notice
# fails alike (our code, or a policy against our sending), and the sweep stops.
UNEXPECTED_MAX = 3


def notices_sweep(*, older_than: timedelta, stop: threading.Event | None = None) -> int:
    """Send the notices recorded longer ago than this, oldest first, until `stop` is set; how
    many went out.

    A notice whose recipient is refused is given up; one whose recipient is deferred or refused
    by policy, or that fails unexpectedly, is kept and tried after the others in later sweeps,
    while this one goes on (up to UNEXPECTED_MAX such failures but for deferrals); any other
    failure stops the sweep, keeping every notice for the next one.
    """
    sent = unexpected = 0
    for model, notice_id in _owed(older_than):
        if stop is not None and stop.is_set():
            break
        try:
            sent += services.owed_notice_deliver(model=model, notice_id=notice_id)
        except Exception as error:
            kind = failure_kind(error)
            if kind is Failure.REFUSED:
                logger.error(
                    "notice sweep: giving up %s %s: %s",
                    model.__name__,
                    notice_id,
                    type(error).__name__,
                )
                services.owed_notice_forget(model=model, notice_id=notice_id)
                continue
            if kind is Failure.UNEXPECTED or _refused_by_policy(error, kind):
                # Perhaps this notice's data, or this recipient's policy, alone: kept, and the
                # ones behind it still go out.
                _kept(model, notice_id)
                unexpected += 1
                logger.error(
                    "notice sweep: %s %s sending %s %s; kept",
                    "unexpected" if kind is Failure.UNEXPECTED else "policy refusal,",
                    type(error).__name__,
                    model.__name__,
                    notice_id,
                )
                if unexpected < UNEXPECTED_MAX:
                    continue
                break
            if kind is Failure.DEFERRED:
                # This recipient's server says "later" (greylisting): the others may pass.
                _kept(model, notice_id)
                logger.warning(
                    "notice sweep: %s %s deferred: %s, next sweep",
                    model.__name__,
                    notice_id,
                    type(error).__name__,
                )
                continue
            # Not about this recipient: the rest would fail alike, so every notice is kept.
            # Logged by type only: provider messages can quote addresses.
            if kind is Failure.OUTAGE:
                logger.warning("notice sweep: transient %s, next sweep", type(error).__name__)
            else:
                logger.error(
                    "notice sweep: %s, the email provider refuses the account or settings; "
                    "notices kept for the next sweep",
                    type(error).__name__,
                )
            break
    if sent:
        logger.info("notice sweep: sent %d notice(s) left behind", sent)
    return sent


def _owed(older_than: timedelta) -> list[tuple[type[OwedNotice], int]]:
    """Up to BATCH notices of every kind recorded longer ago than this: those no sweep has
    kept first (a few that fail every time must not hold up the rest), then the oldest."""
    cutoff = timezone.now() - older_than
    owed = []
    skipped = False
    for model in NOTICES:
        rows = model.objects.filter(created_at__lt=cutoff).order_by(
            F("failed_at").asc(nulls_first=True), "created_at"
        )
        try:
            with transaction.atomic():
                found = list(rows.values_list("pk", "failed_at", "created_at")[:BATCH])
        except ProgrammingError as error:
            # One table not there yet (its migration not applied): the other's notices still
            # go out. Both missing is a schema the worker cannot use: the sweep fails. A lost
            # connection is no ProgrammingError: it fails the sweep at once.
            if skipped:
                raise
            skipped = True
            logger.warning(
                "notice sweep: %s unreadable: %s; the other kinds go on",
                model.__name__,
                type(error).__name__,
            )
            continue
        for pk, failed_at, created_at in found:
            owed.append(((failed_at is not None, failed_at or created_at, created_at), model, pk))
    owed.sort(key=lambda row: row[0])
    return [(model, pk) for _, model, pk in owed[:BATCH]]


def _kept(model: type[OwedNotice], notice_id: int) -> None:
    try:
        model.objects.filter(pk=notice_id).update(failed_at=timezone.now())
    except DatabaseError as error:
        # A task sending this notice meanwhile holds its row past the statement timeout: it
        # is being taken care of, and the sweep goes on.
        logger.info(
            "notice sweep: %s %s not marked kept: %s",
            model.__name__,
            notice_id,
            type(error).__name__,
        )


def _refused_by_policy(error: Exception, kind: Failure) -> bool:
    """A 5.7.x reply to RCPT TO (an ACCOUNT failure): the server took our sender, so it may be
    this recipient's policy alone ("not authorized"), or every recipient's ("relay denied")."""
    return kind is Failure.ACCOUNT and isinstance(error, smtplib.SMTPRecipientsRefused)


def _sweep_forever(stop: threading.Event) -> None:
    older_than = timedelta(seconds=settings.NOTICE_SWEEP_AFTER)
    while not stop.wait(settings.NOTICE_SWEEP_INTERVAL):
        try:
            notices_sweep(older_than=older_than, stop=stop)
        except Exception as error:
            # Logged by type only: database and provider messages can quote addresses.
            logger.warning("notice sweep failed: %s", type(error).__name__)
        finally:
            # The next sweep starts on a fresh connection, whatever happened to this one.
            connection.close()


class Sweep:
    """The sweep's thread in this process."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=_sweep_forever, args=(self._stop,), name="notice-sweep", daemon=True
        )

    def stop(self, timeout: float | None = None) -> None:
        """Sweep no more (a sweep under way stops after the notice it is sending); with a
        timeout, also wait up to that long for that send: a process stopped mid-send would roll
        the notice's row back and send it again later."""
        self._stop.set()
        if timeout is None:
            return
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.warning("notice sweep: a send outlasted the shutdown; it may go out twice")


def start() -> Sweep:
    """Run the sweep in a daemon thread of this process."""
    sweep = Sweep()
    sweep._thread.start()
    return sweep
