"""A task message the worker cannot run is discarded: the worker goes on, and logs no content."""

import pickle
import uuid

import pytest
from kombu import Producer

from accounts import services
from auth_service.celery import app

RESET = "notifications.tasks.send_password_reset_email"
SECRET = "nonce-the-log-must-never-show"
EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def publish(body, *, serializer="json", **headers) -> None:
    """Put a message on the worker's queue as any client of the broker could."""
    headers = {"lang": "py", "task": RESET, "id": str(uuid.uuid4()), **headers}
    with app.connection_for_write() as connection:
        Producer(connection).publish(
            body,
            exchange="",
            routing_key="celery",
            serializer=serializer,
            headers={name: value for name, value in headers.items() if value is not None},
        )


class Unpickled:
    """Writes a file if anything ever unpickles it."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


POISON = {
    # Each of these ended the worker, and the restarted one with it: the message was never
    # acknowledged, so it came back first.
    "a body that is a mapping": lambda: publish({"args": [1, SECRET]}),
    "a body of two parts": lambda: publish([[1, SECRET], {}]),
    "an id that is a list": lambda: publish([[1, SECRET], {}, EMBED], id=[1]),
    "a time limit that is a number": lambda: publish([[1, SECRET], {}, EMBED], timelimit=5),
    "a time limit of text": lambda: publish([[1, SECRET], {}, EMBED], timelimit=["a", "b"]),
    "stamped headers that are a number": lambda: publish(
        [[1, SECRET], {}, EMBED], stamped_headers=5
    ),
    # Each of these was discarded, with its body written to the log.
    "a task this release does not have": lambda: publish(
        [[1, SECRET], {}, EMBED], task="notifications.tasks.send_password_changed_email"
    ),
    "a body that is not JSON": lambda: publish(f"[[1, '{SECRET}'".encode()),
    # Run as a task: no release publishes Celery's first protocol.
    "a protocol 1 message": lambda: publish(
        {"task": RESET, "id": "1", "args": [1, SECRET], "kwargs": {}}, task=None, id=None
    ),
}


@pytest.mark.timeout(90)
@pytest.mark.parametrize("poison", POISON.values(), ids=POISON.keys())
def test_a_malformed_task_message_is_discarded_and_the_emails_behind_it_go_out(
    worker_process, smtp_sink, user, poison
):
    # Given a message the worker cannot run, ahead of a reset email
    worker_process.wait_for_log(" ready.")
    poison()
    services.password_reset_request(email=user.email)

    # Then the reset email goes out, from the same worker
    (message,) = smtp_sink.wait_for(1)
    assert message["To"] == user.email
    assert worker_process.process.poll() is None
    # And the message is logged as discarded, in one line without its content
    worker_process.wait_for_log("password reset: email sent")
    printed = worker_process.log()
    assert printed.count(" discarded: ") == 1
    assert "Unrecoverable error" not in printed
    assert SECRET not in printed


@pytest.mark.timeout(90)
def test_a_pickled_message_is_discarded_without_being_unpickled(
    worker_process, smtp_sink, user, tmp_path
):
    written = tmp_path / "unpickled"
    worker_process.wait_for_log(" ready.")
    publish([[Unpickled(written)], {}, EMBED], serializer="pickle")
    services.password_reset_request(email=user.email)

    smtp_sink.wait_for(1)
    worker_process.wait_for_log(" discarded: a body that is not JSON")
    assert not written.exists()
    # What the worker refused to do:
    pickle.loads(pickle.dumps(Unpickled(written)))  # noqa: S301 - the test's own object
    assert written.exists()
