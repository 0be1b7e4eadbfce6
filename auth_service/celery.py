"""Celery app for the worker process; configuration comes from Django settings (CELERY_*)."""

import logging
import os
import time

from celery import Celery, Task, bootsteps
from celery.signals import after_setup_logger, worker_init, worker_shutdown, worker_shutting_down

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "auth_service.settings")

logger = logging.getLogger(__name__)

app = Celery("auth_service")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Its task signals carry a request's id from the web process to the worker's log lines.
from auth_service import request_id  # noqa: E402, F401


@after_setup_logger.connect
def _root_level_from_settings(logger, **_) -> None:
    """LOG_LEVEL governs the worker's log as it does the web's. Celery sets the root logger to
    its `--loglevel` (INFO in every start command) after Django's LOGGING set LOG_LEVEL's: a
    worker asked for DEBUG to trace a delivery, or for WARNING, would go on logging at INFO."""
    from django.conf import settings

    logger.setLevel(settings.LOGGING["root"]["level"])


class SecretArgsTask(Task):
    """A task whose arguments are secret: logs, task events and monitors see them as hidden.

    The message still carries the arguments; only their printable copies (``argsrepr``,
    ``kwargsrepr``) are replaced. Retries publish through here too.
    """

    def apply_async(self, args=None, kwargs=None, **options):
        options.setdefault("argsrepr", "<hidden>")
        options.setdefault("kwargsrepr", "<hidden>")
        return super().apply_async(args, kwargs, **options)


SCHEMA_POLL = 2  # seconds between looks at the database's migrations
SCHEMA_NAG = 60  # seconds between the log lines that say the worker is still waiting


# What Django writes in place of an operation it cannot show as SQL: a data migration
# (RunPython), which changes the database all the same.
_NOT_SQL = "-- THIS OPERATION CANNOT BE WRITTEN AS SQL"


def _changes_database(statements: list[str]) -> bool:
    """Whether what `sqlmigrate` would show for a migration changes the database. Every
    operation brings comments ("-- Alter field email on user", "-- (no-op)"), so a migration
    that only records a validator shows comments alone."""
    return any(not line.startswith("--") or line == _NOT_SQL for line in statements)


def migrations_pending() -> list[str]:
    """The migrations this code has that would change the database's schema or data and that
    it has not applied yet (one that only records a validator, say, changes nothing)."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    try:
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        pending = [
            f"{migration.app_label}.{migration.name}"
            for migration, backwards in plan
            if _changes_database(executor.loader.collect_sql([(migration, backwards)]))
        ]
    finally:
        connection.close()
    return pending


@worker_init.connect
def _wait_for_schema(**_) -> None:
    """Take no task until the database has this code's migrations. On Render the web service's
    pre-deploy step migrates, and a worker of the same deploy can start first: its tasks and
    sweep would meet tables without the columns they use. Messages wait in the queue meanwhile.
    The wait ends after WORKER_SCHEMA_WAIT all the same: a deploy whose migrate step failed
    must not stop every email. A database that cannot be reached is not waited for here: the
    tasks retry and the sweep copes, as when it goes down later."""
    import django
    from django.apps import apps

    if not apps.ready:
        django.setup()
    from django.conf import settings
    from django.db import DatabaseError

    deadline = time.monotonic() + settings.WORKER_SCHEMA_WAIT
    last_said = None
    while True:
        try:
            pending = migrations_pending()
        except DatabaseError as error:
            logger.warning("schema check skipped: database unavailable (%s)", type(error).__name__)
            return
        if not pending:
            if last_said is not None:
                logger.info("migrations applied: taking tasks")
            return
        if time.monotonic() >= deadline:
            logger.error(
                "migrations still not applied after %d s, taking tasks anyway: %s",
                settings.WORKER_SCHEMA_WAIT,
                ", ".join(pending),
            )
            return
        if last_said is None or time.monotonic() - last_said >= SCHEMA_NAG:
            logger.warning(
                "waiting for migrations before taking tasks (the deploy's migrate step runs "
                "them): %s",
                ", ".join(pending),
            )
            last_said = time.monotonic()
        time.sleep(SCHEMA_POLL)


_sweeps = []
SWEEP_STOP_MAX = 45  # seconds


class NoticeSweep(bootsteps.StartStopStep):
    """Starts the notice sweep in the worker's main process (stopped by the signals below).

    A worker step, not worker_ready: Celery sends that only once the broker answers, and the
    sweep must run while Redis is down. Before the consumer step, which waits for the broker;
    after the pool step, so the prefork children are forked before the sweep's thread exists (a
    fork copies no thread: no child ever sweeps). Only `celery worker` runs worker steps: not
    the web, beat or `celery inspect`.
    """

    requires = ("celery.worker.components:Pool",)

    def start(self, parent) -> None:
        # Imported here: the models load only once Django is set up in the worker.
        from django.conf import settings

        from notifications import sweep

        _sweeps.append(sweep.start())
        logger.info("notice sweep: started, every %d s", settings.NOTICE_SWEEP_INTERVAL)


app.steps["worker"].add(NoticeSweep)


@worker_shutting_down.connect
def _notice_sweep_stop_asking(**_) -> None:
    # The moment shutdown starts, before Celery waits for the tasks in flight: the sweep sends
    # no further notice meanwhile. (Sent from the signal handler: it only sets an event.)
    for sweep in _sweeps:
        sweep.stop()


@worker_shutdown.connect
def _notice_sweep_stop(**_) -> None:
    # The notice the sweep was sending finishes first. A send's socket operations each wait at
    # most EMAIL_TIMEOUT; the wait is capped well inside Render's 90 s shutdown delay, and a
    # send still going then is logged.
    from django.conf import settings

    while _sweeps:
        _sweeps.pop().stop(timeout=min(2 * settings.EMAIL_TIMEOUT + 5, SWEEP_STOP_MAX))
