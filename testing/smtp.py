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


class RefusingSmtpSink(SmtpSink):
    """The sink, answering MAIL FROM, RCPT TO or DATA with the replies queued in `.replies`
    first, as a mail server that greylists, or refuses a sender or recipient, would."""

    def __init__(self, port: int | None = None):
        super().__init__(port)
        self.replies: dict[str, list[str]] = {"MAIL": [], "RCPT": [], "DATA": []}
        self._controller = Controller(_Refusing(self), hostname="127.0.0.1", port=self.port)


class _Refusing(_Collector):
    def _scripted(self, step: str) -> str | None:
        replies = self.sink.replies[step]
        return replies.pop(0) if replies else None

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: N802
        if reply := self._scripted("MAIL"):
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if reply := self._scripted("RCPT"):
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd hook name
        if reply := self._scripted("DATA"):
            return reply
        return await super().handle_DATA(server, session, envelope)
