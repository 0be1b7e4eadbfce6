"""Celery app for the worker process; configuration comes from Django settings (CELERY_*)."""

import os

from celery import Celery, Task
from celery.signals import worker_ready, worker_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "auth_service.settings")

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


@worker_ready.connect
def _notice_sweep_start(**_) -> None:
    # Imported here: the models load only once Django is set up in the worker.
    from notifications import sweep

    _sweeps.append(sweep.start())


@worker_shutdown.connect
def _notice_sweep_stop(**_) -> None:
    # A notice being sent finishes first (the sweep sends no further one): a send waits at most
    # EMAIL_TIMEOUT to connect and as long again to read, inside Render's shutdown delay (90 s)
    # and docker-compose.yml's stop_grace_period for the worker.
    from django.conf import settings

    while _sweeps:
        _sweeps.pop().stop(timeout=2 * settings.EMAIL_TIMEOUT + 5)
