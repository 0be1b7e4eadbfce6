"""Deployment checks for the worker's delivery settings (run by ``manage.py check --deploy``)."""

from django.conf import settings
from django.core.checks import Tags, Warning, register

from notifications.tasks import RETRY_MAX_DELAY


@register(Tags.compatibility, deploy=True)
def visibility_timeout_check(app_configs, **kwargs):
    """A retried email waits in its worker, unacknowledged, up to 1.5 x RETRY_MAX_DELAY. Redis
    hands a message unacknowledged for longer than the visibility timeout to a worker again,
    and each copy runs at the same moment: a reset email can then go out two or three times
    (its sent-marker is set only once a copy has sent it)."""
    timeout = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    needed = int(1.5 * RETRY_MAX_DELAY) + settings.EMAIL_TIMEOUT
    if timeout > needed:
        return []
    return [
        Warning(
            f"CELERY_VISIBILITY_TIMEOUT ({timeout} s) does not outlast a retried email's wait and "
            f"send ({needed} s): such emails can be sent more than once.",
            hint=f"Set CELERY_VISIBILITY_TIMEOUT above {needed} (the default is 300).",
            id="notifications.W001",
        )
    ]
