"""pytest fixtures: fakes (a running fake Gmail), and small helpers for the tests that use them."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from email.utils import make_msgid

import pytest

from standins.fakegmail import FakeGmail

TIMEOUT = 10.0


@pytest.fixture
def fake_gmail() -> Iterator[FakeGmail]:
    """A running fake Gmail with no accounts; the test fails if a session crashed inside it."""
    with FakeGmail() as gmail:
        yield gmail
    assert not gmail.errors, f"the fake Gmail failed: {gmail.errors!r}"


def build_message(
    subject: str = "Invoice",
    *,
    sender: str = "Bob <bob@example.com>",
    to: str = "alice@example.com",
    body: str = "Please find it attached.\n",
    attachments: dict[str, bytes] | None = None,
    date: str = "Mon, 06 May 2024 10:00:00 +0000",
) -> bytes:
    """A MIME message built with the `email` package; `attachments` maps file names to data."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"], message["Date"] = sender, to, subject, date
    message["Message-ID"] = make_msgid(domain="example.com")
    message.set_content(body)
    for filename, data in (attachments or {}).items():
        message.add_attachment(
            data, maintype="application", subtype="octet-stream", filename=filename
        )
    return message.as_bytes()


def eventually(check: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Poll `check` until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{check} did not hold within {timeout} s")
        time.sleep(0.01)


class RawImap:
    """A bare socket to an IMAP server: send bytes, read exact lines and literals."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT)
        self._buffer = b""

    def __enter__(self) -> RawImap:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        """Send `data` as is (add the CRLF yourself)."""
        self.sock.sendall(data)

    def line(self) -> bytes:
        """The next line, with its CRLF; b"" at EOF."""
        while b"\r\n" not in self._buffer:
            if not self._fill():
                line, self._buffer = self._buffer, b""
                return line
        line, _, self._buffer = self._buffer.partition(b"\r\n")
        return line + b"\r\n"

    def until_tagged(self, tag: bytes) -> list[bytes]:
        """Lines (literals inlined) up to and including the one tagged `tag`."""
        lines: list[bytes] = []
        while True:
            line = self.line()
            if not line:
                raise EOFError(f"closed before {tag!r}: {lines!r}")
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    def rest(self) -> bytes:
        """Everything until the server closes the connection."""
        while self._fill():
            pass
        data, self._buffer = self._buffer, b""
        return data

    def greeting(self) -> bytes:
        """The server's greeting line."""
        return self.line()

    def _fill(self) -> bool:
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            return False
        self._buffer += chunk
        return bool(chunk)
