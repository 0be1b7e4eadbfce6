"""Every answer carries a request id, and so does every log line written while serving it."""

import logging
import re

import pytest

from auth_service import request_id
from auth_service.celery import app
from auth_service.request_id import RequestIdFilter, request_id_current

pytestmark = pytest.mark.django_db

GENERATED = re.compile(r"[0-9a-f]{32}")


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/auth/me/",  # a 401 from the API
        "/api/v1/auth/me",  # the trailing-slash redirect, answered before any view
        "/api/v1/nothing-here/",  # a JSON 404
        "/healthz",  # a probe, answered by its middleware
        "/reset-password/",
        "/api/docs/",
    ],
)
def test_every_answer_carries_a_new_request_id(client, path):
    first, second = client.get(path), client.get(path)

    assert GENERATED.fullmatch(first["X-Request-ID"])
    assert GENERATED.fullmatch(second["X-Request-ID"])
    assert first["X-Request-ID"] != second["X-Request-ID"]


@pytest.mark.parametrize(
    "given", ["0b0c1a9e-6f1d-4e8b-9d55-3c1f2f0a7e21", "trace.abc:123_def-456", "x" * 128]
)
def test_an_id_sent_along_by_a_proxy_or_client_is_kept(client, given):
    response = client.get("/healthz", HTTP_X_REQUEST_ID=given)

    assert response["X-Request-ID"] == given


@pytest.mark.parametrize(
    "given",
    [
        "short",  # too short to be an id
        "x" * 129,
        'abc" injected="1',
        "abcdefgh ijkl",
        "-starts-with-a-dash",
        "ümlaut-id-12345",
    ],
)
def test_an_id_that_could_be_anything_else_is_replaced(client, given):
    response = client.get("/healthz", HTTP_X_REQUEST_ID=given)

    assert GENERATED.fullmatch(response["X-Request-ID"])


class Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []
        self.addFilter(RequestIdFilter())  # as the console handler has it (settings.LOGGING)

    def emit(self, record):
        self.records.append(record)


def test_a_log_line_written_while_serving_carries_the_requests_id(client):
    handler = Collect()
    logger = logging.getLogger("django.request")
    logger.addHandler(handler)
    try:
        # Django writes "Not Found: ..." after the middleware has returned the answer.
        response = client.get("/api/v1/nothing-here/")
    finally:
        logger.removeHandler(handler)

    assert response.status_code == 404
    [record] = handler.records
    assert record.getMessage() == "Not Found: /api/v1/nothing-here/"
    assert record.request_id == response["X-Request-ID"]
    assert request_id_current() is None  # nothing left for the thread's next request


def test_the_filter_names_the_request_only_inside_one():
    record = logging.makeLogRecord({"msg": "outside any request"})

    assert RequestIdFilter().filter(record) is True
    assert not hasattr(record, "request_id")


@app.task(name="tests.request_id_probe")
def request_id_probe():
    return request_id_current()


def test_a_task_sees_its_requests_id_and_leaves_the_caller_its_own():
    outer = request_id._current.set("request-id-0001")
    try:
        seen = request_id_probe.apply(headers={"request_id": "queued-by-0002"}).get()
        after = request_id_current()
    finally:
        request_id._current.reset(outer)

    # Run in-process inside a request (as the tests' eager tasks are), the task must not take
    # the request's id away from the request's later log lines.
    assert (seen, after) == ("queued-by-0002", "request-id-0001")
