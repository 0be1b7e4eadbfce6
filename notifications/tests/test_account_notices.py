"""Notices of both kinds, each in its own table, and those of the releases before this one."""

import importlib
import threading
import time
from datetime import timedelta

import pytest
from django.core import mail
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from notifications import services, tasks
from notifications.models import EmailChangedNotice, PasswordChangedNotice
from notifications.sweep import notices_sweep

MIGRATION = ("notifications", "0004_emailchangednotice")
BEFORE = ("notifications", "0003_accountnotice")
TWO_BEFORE = ("notifications", "0002_passwordchangednotice_failed_at")
migration = importlib.import_module("notifications.migrations.0004_emailchangednotice")

pytestmark = pytest.mark.django_db

CHANGED = "The email address of your account was changed"


def test_an_email_changed_notice_goes_to_the_old_address_whatever_the_account_holds_now(user):
    notice = services.email_changed_notice_record(user=user, old_email="ada@example.com")
    user.email = "ada@new-mailbox.example"
    user.save()
    EmailChangedNotice.objects.exclude(pk=notice.pk).delete()  # the save's own notice

    assert services.email_changed_notice_deliver(notice_id=notice.pk)

    (message,) = mail.outbox
    assert message.to == ["ada@example.com"]
    assert message.subject == CHANGED
    assert "no longer works" in message.body
    assert not EmailChangedNotice.objects.exists()


def test_the_sweep_sends_an_email_changed_notice_left_behind_to_the_old_address(user):
    # Redis was out when staff moved the account: no message was queued
    user.email = "ada@new-mailbox.example"
    user.save()
    EmailChangedNotice.objects.update(created_at=timezone.now() - timedelta(minutes=5))

    assert notices_sweep(older_than=timedelta(minutes=2)) == 1

    assert [(m.to, m.subject) for m in mail.outbox] == [(["ada@example.com"], CHANGED)]
    assert not EmailChangedNotice.objects.exists()


def test_the_sweep_sends_both_kinds_oldest_first(make_user):
    ada, bob = make_user(email="ada@example.com"), make_user(email="bob@example.com")
    moved = services.email_changed_notice_record(user=ada, old_email="ada@old.example")
    # The same id in each table: each notice is its own
    PasswordChangedNotice.objects.create(pk=moved.pk, user=bob)
    EmailChangedNotice.objects.update(created_at=timezone.now() - timedelta(minutes=9))
    PasswordChangedNotice.objects.update(created_at=timezone.now() - timedelta(minutes=5))

    assert notices_sweep(older_than=timedelta(minutes=2)) == 2

    assert [(m.to, m.subject) for m in mail.outbox] == [
        (["ada@old.example"], CHANGED),
        (["bob@example.com"], "Your password was changed"),
    ]


def test_an_email_change_leaves_the_table_older_workers_read_untouched(user):
    # A worker of an older release, still running during a deploy, sweeps this table and sends
    # every row in it as "your password was changed", to the account's address
    user.email = "ada@new-mailbox.example"
    user.save()

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM notifications_passwordchangednotice")
        assert cursor.fetchone() == (0,)
    assert EmailChangedNotice.objects.get().address == "ada@example.com"


def test_a_notice_an_older_release_inserts_during_a_deploy_is_a_password_changed_notice(user):
    # Those releases name neither the kind nor the address: the database fills them in
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO notifications_passwordchangednotice (user_id, created_at) "
            "VALUES (%s, now()) RETURNING id",
            [user.pk],
        )
        (notice_id,) = cursor.fetchone()

    assert services.password_changed_notice_deliver(notice_id=notice_id)
    assert [(m.to, m.subject) for m in mail.outbox] == [
        (["ada@example.com"], "Your password was changed")
    ]


def test_an_email_changed_notice_the_release_before_kept_with_passwords_is_sent_as_one(user):
    # That release recorded both kinds in one table; its web may still do so during a deploy
    notice = PasswordChangedNotice.objects.create(
        user=user, kind="email_changed", address="ada@old.example"
    )

    tasks.send_account_notice.apply(args=[notice.pk])  # the name it queued them under

    assert [(m.to, m.subject) for m in mail.outbox] == [(["ada@old.example"], CHANGED)]
    assert not PasswordChangedNotice.objects.exists()


@pytest.mark.parametrize("name", ["send_password_changed_notice", "send_account_notice"])
def test_a_message_an_older_release_queued_still_sends_its_notice(user, name):
    # Queued under a task name an older release used, read by this release's worker
    notice = services.password_changed_notice_record(user=user)
    task = getattr(tasks, name)

    task.apply(args=[notice.pk])

    assert task.name == f"notifications.tasks.{name}"
    assert [m.subject for m in mail.outbox] == ["Your password was changed"]
    assert not PasswordChangedNotice.objects.exists()


def test_the_migration_moves_email_changed_notices_out_of_the_password_table(
    transactional_db, make_user
):
    ada, bob = make_user(email="ada@new.example"), make_user(email="bob@example.com")
    waiting = PasswordChangedNotice.objects.create(
        user=ada, kind="email_changed", address="ada@old.example"
    )
    sending = PasswordChangedNotice.objects.create(
        user=ada, kind="email_changed", address="ada@older.example"
    )
    password = PasswordChangedNotice.objects.create(user=bob)
    # A worker of that release is sending one of them right now: it stays with its sender
    locked, release = threading.Event(), threading.Event()

    def sender():
        with transaction.atomic():
            PasswordChangedNotice.objects.select_for_update().get(pk=sending.pk)
            locked.set()
            release.wait(10)
        connection.close()

    thread = threading.Thread(target=sender)
    thread.start()
    assert locked.wait(10)
    try:
        with transaction.atomic(), connection.schema_editor(atomic=False) as editor:
            migration.email_notices_move(historical_apps(MIGRATION), editor)
    finally:
        release.set()
        thread.join()

    assert set(PasswordChangedNotice.objects.values_list("pk", flat=True)) == {
        sending.pk,
        password.pk,
    }
    (moved,) = EmailChangedNotice.objects.all()
    assert (moved.user, moved.address, moved.created_at) == (
        ada,
        "ada@old.example",
        waiting.created_at,
    )


def historical_apps(target):
    """The models as they stood once `target` was applied, as a migration sees them."""
    return MigrationExecutor(connection).loader.project_state(target).apps


def migrate(target) -> None:
    executor = MigrationExecutor(connection)
    executor.migrate([target])


def test_unapplying_the_migration_moves_owed_email_changed_notices_back(
    transactional_db, make_user
):
    # A rollback to the release before: its worker reads email-changed notices from the
    # shared table, so none is left in the table that goes away
    ada = make_user(email="ada@new.example")
    owed = EmailChangedNotice.objects.create(user=ada, address="ada@old.example")
    kept = timezone.now()
    EmailChangedNotice.objects.filter(pk=owed.pk).update(failed_at=kept)
    PasswordChangedNotice.objects.create(user=ada)
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes("notifications")[0]
    try:
        migrate(BEFORE)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT kind, address, created_at, failed_at FROM "
                "notifications_passwordchangednotice ORDER BY id"
            )
            rows = cursor.fetchall()
            cursor.execute("SELECT to_regclass('notifications_emailchangednotice')")
            assert cursor.fetchone() == (None,)
        assert rows == [
            ("password_changed", "", rows[0][2], None),
            ("email_changed", "ada@old.example", owed.created_at, kept),
        ]
    finally:
        migrate(latest)

    # And forward again, as the next deploy does
    (back,) = EmailChangedNotice.objects.all()
    assert (back.user_id, back.address, back.created_at, back.failed_at) == (
        ada.pk,
        "ada@old.example",
        owed.created_at,
        kept,
    )
    assert list(PasswordChangedNotice.objects.values_list("kind", flat=True)) == [
        "password_changed"
    ]


def test_unapplying_the_kinds_while_an_email_changed_notice_is_owed_stops_and_keeps_it(
    transactional_db, make_user
):
    # Two releases back, the table has no kind nor address: the notice would go out as
    # "your password was changed", to the new address, and the old one never be told
    ada = make_user(email="ada@new.example")
    EmailChangedNotice.objects.create(user=ada, address="ada@old.example")
    PasswordChangedNotice.objects.create(user=ada)
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes("notifications")[0]
    try:
        migrate(BEFORE)
        with pytest.raises(CommandError, match="1 email-changed notice"):
            migrate(TWO_BEFORE)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT kind, address FROM notifications_passwordchangednotice ORDER BY id"
            )
            rows = cursor.fetchall()
        assert rows == [("password_changed", ""), ("email_changed", "ada@old.example")]
        # Once a worker has sent it, the rollback goes through
        with connection.cursor() as cursor:
            cursor.execute(
                "DELETE FROM notifications_passwordchangednotice WHERE kind = 'email_changed'"
            )
        migrate(TWO_BEFORE)
    finally:
        migrate(latest)

    assert PasswordChangedNotice.objects.count() == 1
    assert not EmailChangedNotice.objects.exists()


def lock_waiters(query_part: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query ILIKE %s",
            [f"%{query_part}%"],
        )
        return cursor.fetchone()[0]


def wait_for(condition) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_unapplying_the_migration_waits_for_a_sender_and_loses_no_notice_recorded_meanwhile(
    transactional_db, make_user
):
    ada = make_user(email="ada@new.example")
    sending = EmailChangedNotice.objects.create(user=ada, address="ada@old.example")
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes("notifications")[0]
    locked, release = threading.Event(), threading.Event()
    recorded = []

    def sender():  # the newer release's worker; its send fails, so the row stays
        try:
            with transaction.atomic():
                EmailChangedNotice.objects.select_for_update().get(pk=sending.pk)
                locked.set()
                release.wait(10)
                raise ConnectionError("the mail server is down")
        except ConnectionError:
            pass
        finally:
            connection.close()

    def rollback():
        try:
            migrate(BEFORE)
        finally:
            connection.close()

    def staff():  # the newer release's web: staff move another address meanwhile
        try:
            with transaction.atomic():
                EmailChangedNotice.objects.create(user=ada, address="ada@older.example")
            recorded.append(True)
        except DatabaseError:
            recorded.append(False)  # the change fails with it: staff see it and try again
        finally:
            connection.close()

    threads = [threading.Thread(target=sender)]
    threads[0].start()
    try:
        assert locked.wait(10)
        threads.append(threading.Thread(target=rollback))
        threads[-1].start()
        wait_for(lambda: lock_waiters("LOCK TABLE") == 1)
        threads.append(threading.Thread(target=staff))
        threads[-1].start()
        wait_for(lambda: lock_waiters("INSERT INTO") == 1)
        release.set()
        for thread in threads:
            thread.join(20)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT address FROM notifications_passwordchangednotice "
                "WHERE kind = 'email_changed'"
            )
            moved = [row[0] for row in cursor.fetchall()]
    finally:
        release.set()
        migrate(latest)

    assert moved == ["ada@old.example"]
    assert recorded == [False]
