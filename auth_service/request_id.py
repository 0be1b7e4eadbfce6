"""A request id on every answer (`X-Request-ID`) and on every log line written while serving it,
so that a client's report, the access line and an error's traceback lead to one another. Tasks
the request queues carry it in their message, and the worker's lines about them carry it too."""

import contextvars
import logging
import re
import secrets

from celery.signals import before_task_publish, task_postrun, task_prerun
from django.core.signals import request_finished, request_started
from django.dispatch import receiver

HEADER = "X-Request-ID"
# An id a proxy or client sends along is kept when it could only be an id (a UUID, a trace id):
# nothing in it can break a log line or pass for another field.
_WELL_FORMED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{7,127}")

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def request_id_new() -> str:
    return secrets.token_hex(16)


def request_id_for(given: str) -> str:
    """The id a request is served under: the one it came with, if well formed, else a new one."""
    return given if _WELL_FORMED.fullmatch(given) else request_id_new()


def request_id_current() -> str | None:
    """The id of the request this thread is serving, if any."""
    return _current.get()


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.request_id = request_id_for(request.META.get("HTTP_X_REQUEST_ID", ""))
        # Kept until the response is closed, not only while the middleware runs: Django logs a
        # 4xx or 5xx answer ("Not Found: ...") after the middleware has returned it.
        _current.set(request.request_id)
        response = self.get_response(request)
        response[HEADER] = request.request_id
        return response


@receiver(request_started, dispatch_uid="auth_service.request_id.start")
@receiver(request_finished, dispatch_uid="auth_service.request_id")
def _request_id_forget(**kwargs) -> None:
    # Each gthread thread serves request after request: an id must not outlive its request,
    # even one whose response was never closed (cleared again as the next one starts).
    _current.set(None)


@before_task_publish.connect(dispatch_uid="auth_service.request_id.publish")
def _request_id_send(headers=None, **kwargs) -> None:
    """A task queued while serving a request (or running a task that had one) carries its id:
    a task message header, which becomes an attribute of the task's request in the worker."""
    request_id = _current.get()
    if request_id is not None and headers is not None:
        headers.setdefault("request_id", request_id)


@task_prerun.connect(dispatch_uid="auth_service.request_id.task_start")
def _request_id_task_start(task=None, **kwargs) -> None:
    if task is None:
        return
    # A worker finds a message header among the request's attributes; a task run in-process
    # (apply) keeps it in `headers`.
    given = getattr(task.request, "request_id", None) or (task.request.headers or {}).get(
        "request_id"
    )
    if not (isinstance(given, str) and _WELL_FORMED.fullmatch(given)):
        given = None
    # Restored after the task: one run in-process (eagerly, inside a request) must not take the
    # request's id away from the request's later lines.
    task.request.request_id_restore = _current.set(given)


@task_postrun.connect(dispatch_uid="auth_service.request_id.task_end")
def _request_id_task_end(task=None, **kwargs) -> None:
    restore = getattr(task.request, "request_id_restore", None) if task is not None else None
    if restore is not None:
        _current.reset(restore)


class RequestIdFilter(logging.Filter):
    """Give a record written while a request is served that request's id (`request_id`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = _current.get()
        if request_id is not None:
            record.request_id = request_id
        return True
