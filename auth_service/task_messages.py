"""What the worker takes from its queue: task messages as this service publishes them.

Celery checks a message's content type and its ETA, but trusts the rest of its shape: a body
that is not `[args, kwargs, embed]`, an id that is a list, a `timelimit` that is not two numbers
each raise in the worker's main process, outside the task, and end the worker ("Unrecoverable
error"). The message, never acknowledged, is the first one the restarted worker takes: it exits
again, and no email behind it goes out. Here each message is checked against what every release
publishes (Celery's protocol 2, JSON) before Celery reads it; one that does not match is logged,
without its content (a reset message carries a nonce), and discarded.
"""

import logging
import math
from numbers import Real

from celery.worker.consumer import Consumer

logger = logging.getLogger(__name__)

CONTENT_TYPE = "application/json"

_TEXT = (str, type(None))
_COUNT = (int, type(None))
# The headers of protocol 2 (Celery's "Message Protocol"), by the types Celery reads them as.
# Others (a request id, a monitor's) pass: Celery keeps them as they are.
_HEADERS = {
    "lang": _TEXT,
    "root_id": _TEXT,
    "parent_id": _TEXT,
    "group": _TEXT,
    "meth": _TEXT,
    "shadow": _TEXT,
    "eta": _TEXT,
    "expires": _TEXT,
    "argsrepr": _TEXT,
    "kwargsrepr": _TEXT,
    "origin": _TEXT,
    "retries": _COUNT,
    "group_index": _COUNT,
    "replaced_task_nesting": _COUNT,
    "ignore_result": (bool, type(None)),
    "stamped_headers": (list, type(None)),
    "stamps": (dict, type(None)),
}


def _is_limit(value) -> bool:
    if value is None:
        return True
    return isinstance(value, Real) and math.isfinite(value) and value >= 0


def _headers_problem(headers: dict) -> str | None:
    for name in ("task", "id"):
        if not isinstance(headers.get(name), str):
            return f"no {name} header of text"
    for name, types in _HEADERS.items():
        if not isinstance(headers.get(name), types):
            return f"a {name} header of type {type(headers[name]).__name__}"
    if not all(isinstance(name, str) for name in headers.get("stamped_headers") or ()):
        return "a stamped_headers header that is not a list of names"
    limits = headers.get("timelimit")
    if limits is not None and not (
        isinstance(limits, list) and len(limits) == 2 and all(map(_is_limit, limits))
    ):
        return "a timelimit header that is not two limits in seconds"
    return None


def _body_problem(body) -> str | None:
    if not (isinstance(body, list) and len(body) == 3):
        return "a body that is not [args, kwargs, embed]"
    args, kwargs, embed = body
    if not (isinstance(args, list) and isinstance(kwargs, dict)):
        return "arguments that are not a list and a mapping"
    if not isinstance(embed, (dict, type(None))):
        return "an embed that is not a mapping"
    return None


def message_problem(message, tasks) -> str | None:
    """Why the worker cannot run this message as one of `tasks`, or None if it can."""
    headers = message.headers
    if not isinstance(headers, dict):
        return "headers that are not a mapping"
    problem = _headers_problem(headers)
    if problem is not None:
        return problem
    if headers["task"] not in tasks:
        return "a task this worker does not have"
    if message.content_type != CONTENT_TYPE:
        # Refused before any deserialiser runs: a pickle or YAML body is never loaded.
        return "a body that is not JSON"
    try:
        body = message.decode()
    except Exception as error:  # noqa: BLE001 - any body that does not decode is refused alike
        return f"a body that does not decode ({type(error).__name__})"
    return _body_problem(body)


class TaskConsumer(Consumer):
    """Celery's consumer, discarding the task messages the worker could not survive."""

    def create_task_handler(self, *args, **kwargs):
        on_task_received = super().create_task_handler(*args, **kwargs)
        tasks = self.app.tasks

        def on_checked_task_received(message):
            problem = message_problem(message, tasks)
            if problem is None:
                return on_task_received(message)
            headers = message.headers if isinstance(message.headers, dict) else {}
            # Names and ids as repr, and cut short: they come from the message.
            logger.error(
                "task message %.60r for %.100r discarded: %s",
                headers.get("id"),
                headers.get("task"),
                problem,
            )
            message.reject_log_error(logger, self.connection_errors)
            return None

        return on_checked_task_received
