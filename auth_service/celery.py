"""Celery app for the worker process; configuration comes from Django settings (CELERY_*)."""

import os

from celery import Celery, Task
from celery.signals import worker_ready

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


@worker_ready.connect
def _notice_sweep_start(**_) -> None:
    # Imported here: the models load only once Django is set up in the worker.
    from notifications import sweep

    sweep.start()
