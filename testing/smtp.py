"""A local SMTP sink for tests and the benchmark: real SMTP, messages kept in memory."""

import email
import socket
import time
from email.message import Message

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _Collector:
    def __init__(self, sink: "SmtpSink"):
        self.sink = sink

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd hook name
        self.sink.messages.append(email.message_from_bytes(envelope.content))
        self.sink.arrival_times.append(time.monotonic())
        return "250 Message accepted"


class SmtpSink:
    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.messages: list[Message] = []
        self.arrival_times: list[float] = []
        self._controller = Controller(_Collector(self), hostname="127.0.0.1", port=self.port)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def wait_for(self, count: int = 1, timeout: float = 30) -> list[Message]:
        """Block until `count` messages arrived; fail loudly on timeout."""
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"expected {count} email(s) within {timeout}s, got {len(self.messages)}"
                )
            time.sleep(0.05)
        return self.messages[:count]


def text_part(message: Message) -> str:
    """The text/plain body of a message."""
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            return part.get_payload(decode=True).decode()
    raise AssertionError("no text/plain part")
