"""Celery app for the worker process; configuration comes from Django settings (CELERY_*)."""

import logging
import os

from celery import Celery, Task, bootsteps
from celery.signals import worker_shutdown, worker_shutting_down

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "auth_service.settings")

logger = logging.getLogger(__name__)

app = Celery("auth_service")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


class SecretArgsTask(Task):
    """A task whose arguments are secret: logs, task events and monitors see them as hidden.

    The message still carries the arguments; only their printable copies (``argsrepr``,
    ``kwargsrepr``) are replaced. Retries publish through here too.
    """

    def apply_async(self, args=None, kwargs=None, **options):
        options.setdefault("argsrepr", "<hidden>")
        options.setdefault("kwargsrepr", "<hidden>")
        return super().apply_async(args, kwargs, **options)


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
