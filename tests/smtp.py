"""A real SMTP server for alert tests: aiosmtpd on 127.0.0.1, on a free port chosen first."""

import email
import socket
import time

from aiosmtpd.controller import Controller


def free_port() -> int:
    """A port nothing listens on right now (bound once to 0, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Inbox:
    """aiosmtpd handler that keeps every message it is given."""

    def __init__(self):
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.original_content or envelope.content)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 Message accepted for delivery"

    def wait_for(self, count: int, timeout: float = 20.0) -> list:
        """Wait until ``count`` messages arrived; return them (fails on timeout)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if len(self.messages) >= count:
                return list(self.messages)
            time.sleep(0.05)
        raise AssertionError(f"SMTP server got {len(self.messages)} messages, expected {count}")


class SmtpServer:
    """Start/stop a real SMTP server on ``port``."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.inbox = Inbox()
        self.controller = None

    def start(self) -> "SmtpServer":
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller:
            self.controller.stop()
            self.controller = None


def text_of(message) -> str:
    """A message's text as the admin reads it (transfer encoding undone, plain newlines)."""
    return message.get_payload(decode=True).decode(message.get_content_charset() or "utf-8").replace("\r\n", "\n")

