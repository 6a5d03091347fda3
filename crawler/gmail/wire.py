"""A tap on the IMAP connection: counts what goes over it and classifies what comes back.

IMAPClient hides the tagged OK text of most commands and reads a literal cut short by a dropped
connection as if it were data, so the session watches the wire itself: every line and literal
goes through `WireTap`, which remembers `[THROTTLED]` and the first error Gmail signalled.
A big part's literal can go to a `LiteralSink` a piece at a time instead of into memory; IMAPClient
then reads that item as empty.

The tap lives inside IMAPClient, so it uses names IMAPClient keeps private: `_create_IMAP4`, the
`_imap` connection, `imap4`/`tls`' connection classes, what `fetch` is made of (and session.py
uses `_literal`, parse.py the parser's converters). A major release may change them, so
pyproject.toml caps IMAPClient below 4; `tests/integration` runs every one of these paths.
"""

from __future__ import annotations

import imaplib
import io
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from imapclient import IMAPClient, imap4, tls
from imapclient.imapclient import join_message_ids, seq_to_parenstr_upper

from crawler.errors import CrawlerError, ProtocolError, Throttled
from crawler.gmail.classify import classify
from crawler.gmail.parse import parse_fetch_response

LITERAL_PIECE = 2**18  # bytes of a streamed literal read and handed on at once


@dataclass
class LiteralSink:
    """Takes the literal that follows `marker` (`BODY[2]`) a piece at a time as it comes off
    the wire, so that it is never held whole: one literal of at most `limit` bytes. `write`
    must not raise (the literal is read to its end whatever it does, to keep the connection
    in step)."""

    marker: bytes
    limit: int
    write: Callable[[bytes], None]
    size: int | None = None  # as announced, once the literal came


DEFAULT_BUDGET = 2**22  # bytes an answer may carry unless its command expects more (LIST ...)


@dataclass
class WireTap:
    """What one session has seen on the wire, and the bounds of the command under way.

    Each command may take `timeout` plus the bytes it may carry (`budget`) at `min_rate`
    bytes/s, and bring those bytes and no more: a server that drips, floods or lies about
    sizes costs one crawl, in bounded time and memory. `on_read` is called before each read
    from the socket (the crawl renews its lease there, while an answer streams).
    """

    max_literal: int
    timeout: float = 60.0
    min_rate: int = 2**14
    on_read: Callable[[], None] = lambda: None
    budget: int = DEFAULT_BUDGET
    command_bytes: int = 0
    deadline: float = field(default_factory=lambda: float("inf"))
    out_of_step: bool = False  # a read was cut off mid-answer: the connection is unusable
    sink: LiteralSink | None = None
    commands: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    throttled: bool = False
    signal: type[CrawlerError] | None = None
    signal_line: str = ""
    truncated: bool = field(default=False)

    def expect(self, budget: int) -> None:
        """The next command's answer may carry `budget` bytes (DEFAULT_BUDGET after it)."""
        self.budget = budget

    def start_command(self) -> None:
        """A command goes out: its bytes and its deadline start now."""
        self.command_bytes = 0
        self.deadline = time.monotonic() + self.timeout + self.budget / self.min_rate

    def end_command(self) -> None:
        """The command is done: the next one expects the default."""
        self.budget = DEFAULT_BUDGET

    def allows(self, size: int) -> bool:
        """Whether `size` more bytes fit the command's budget."""
        return self.command_bytes + size <= self.budget

    def line(self, raw: bytes) -> None:
        """A line read from the server (with its CRLF)."""
        self.bytes_in += len(raw)
        self.command_bytes += len(raw)
        self._classify(raw.rstrip(b"\r\n"))

    def literal(self, data: bytes, expected: int) -> None:
        """A literal read; short when the connection closed inside it."""
        self.bytes_in += len(data)
        self.command_bytes += len(data)
        if len(data) < expected:
            self.truncated = True
            # What the server wrote before closing (e.g. `* BYE [OVERQUOTA]`) ended up here.
            for raw in data.splitlines()[-3:]:
                self._classify(raw)

    def refuse(self, reason: str) -> None:
        """The client refuses what the server sent: a ProtocolError, not worth a retry."""
        if self.signal is None:
            self.signal, self.signal_line = ProtocolError, reason

    def reset_signal(self) -> None:
        """Forget the last error signal (before a new operation)."""
        self.signal, self.signal_line, self.truncated = None, "", False

    def over(self, what: str) -> imaplib.IMAP4.abort:
        """Refuse an answer past its budget: the connection is out of step, so it is dropped."""
        reason = f"{what}: over the {self.budget} bytes its command may bring"
        self.refuse(reason)
        return imaplib.IMAP4.abort(reason)

    def _classify(self, line: bytes) -> None:
        error = classify(line)
        if error is Throttled:
            self.throttled = True
        elif error is not None and self.signal is None:
            self.signal = error
            self.signal_line = line.decode("utf-8", "replace")[:300]


class _Tapped:
    """Mixin for imaplib.IMAP4 classes that feeds the tap."""

    def __init__(self, tap: WireTap, *args: Any) -> None:
        self.tap = tap  # before imaplib's __init__, which reads the greeting
        tap.start_command()  # the greeting is bounded like an answer
        super().__init__(*args)

    def open(self, *args: Any, **kwargs: Any) -> None:
        """Connect; imaplib then reads the socket through a `_BoundedReader`."""
        super().open(*args, **kwargs)  # type: ignore[misc]  # imaplib is untyped here
        self.file = io.BufferedReader(_BoundedReader(self.sock, self.tap))

    def _new_tag(self) -> bytes:
        self.tap.commands += 1
        self.tap.start_command()
        return super()._new_tag()  # type: ignore[misc, no-any-return]  # imaplib is untyped here

    sock: socket.socket  # imaplib's, once open
    file: Any
    _line = b""  # the last line read: a literal's size ends it
    _sunk = False  # the literal just read went to the sink

    def readline(self) -> bytes:
        try:
            line: bytes = super().readline()  # type: ignore[misc]  # imaplib is untyped here
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as error:  # a line over imaplib's limit, the rest unread
            self.tap.refuse(str(error))
            raise imaplib.IMAP4.abort(str(error)) from None  # the connection is out of step
        self.tap.line(line)
        if not self.tap.allows(0):
            raise self.tap.over("an answer's lines")
        self._line = line
        return line

    def read(self, size: int) -> bytes:
        sink = self.tap.sink
        if sink and self._line.rstrip(b"\r\n").endswith(b"%s {%d}" % (sink.marker, size)):
            self._stream(sink, size)
            self._sunk = True
            return b""
        if size > self.tap.max_literal:
            reason = f"a literal of {size} bytes is over the limit of {self.tap.max_literal}"
            self.tap.refuse(reason)  # the same answer would come again: no retry
            raise imaplib.IMAP4.abort(reason)  # the connection is out of step: drop it
        if not self.tap.allows(size):
            raise self.tap.over(f"a literal of {size} bytes")
        data: bytes = super().read(size)  # type: ignore[misc]  # imaplib is untyped here
        self.tap.literal(data, size)
        return data

    def _stream(self, sink: LiteralSink, size: int) -> None:
        if sink.size is not None or size > sink.limit:
            reason = f"a streamed literal of {size} bytes, over {sink.limit} or not the first"
            self.tap.refuse(reason)
            raise imaplib.IMAP4.abort(reason)
        if not self.tap.allows(size):
            raise self.tap.over(f"a streamed literal of {size} bytes")
        sink.size = left = size
        while left:
            want = min(left, LITERAL_PIECE)
            piece: bytes = super().read(want)  # type: ignore[misc]  # imaplib is untyped here
            self.tap.literal(piece, want)
            if not piece:
                return  # the connection closed inside the literal: imaplib sees EOF next
            sink.write(piece)
            left -= len(piece)

    def _append_untagged(self, typ: str, dat: Any) -> None:
        if self._sunk:  # (line ending `{size}`, literal): the literal is now empty
            self._sunk = False
            line, _ = dat
            dat = (line[: line.rindex(b"{")] + b"{0}", b"")
        super()._append_untagged(typ, dat)  # type: ignore[misc]  # imaplib is untyped here

    def send(self, data: bytes) -> None:
        self.tap.bytes_out += len(data)
        super().send(data)  # type: ignore[misc]  # imaplib is untyped here


class _BoundedReader(io.RawIOBase):
    """The socket as imaplib reads it: no read goes past the command's deadline, however
    slowly the server drips (a socket timeout bounds only the wait for each piece)."""

    def __init__(self, sock: socket.socket, tap: WireTap) -> None:
        super().__init__()
        self.sock = sock
        self.tap = tap

    def readable(self) -> bool:
        """Yes: it is read."""
        return True

    def readinto(self, buffer: Any) -> int:
        """Read what the socket has, within the command's time."""
        try:
            self.tap.on_read()
            left = self.tap.deadline - time.monotonic()
            if left <= 0:
                raise self._late()
            self.sock.settimeout(min(self.tap.timeout, left))
            try:
                return self.sock.recv_into(buffer)
            except TimeoutError:
                if time.monotonic() >= self.tap.deadline:
                    raise self._late() from None
                raise
        except BaseException:
            self.tap.out_of_step = True  # cut off mid-answer: nothing more on this connection
            raise

    def _late(self) -> TimeoutError:
        return TimeoutError(
            f"the answer took longer than its deadline ({self.tap.budget} bytes at "
            f"{self.tap.min_rate} bytes/s, plus {self.tap.timeout:g} s)"
        )


class _TappedPlain(_Tapped, imap4.IMAP4WithTimeout):  # type: ignore[misc]  # untyped base
    pass


class _TappedTLS(_Tapped, tls.IMAP4_TLS):  # type: ignore[misc]  # untyped base
    pass


_WIRE_DEBUG_LEVEL = 4


class TappedIMAPClient(IMAPClient):  # type: ignore[misc]  # IMAPClient is untyped
    """IMAPClient whose connection reports to a WireTap."""

    def __init__(
        self, tap: WireTap, host: str, port: int, tls_context: ssl.SSLContext | None, timeout: float
    ) -> None:
        self.tap = tap
        super().__init__(
            host, port=port, ssl=tls_context is not None, ssl_context=tls_context, timeout=timeout
        )
        # IMAPClient sets imaplib's debug level to 5, where imaplib formats every literal (the
        # attachments) into log messages, twice, even with logging off: a third of the crawl's
        # CPU, and the user's data in the logs. Level 4 still logs each line sent and received.
        self._imap.debug = _WIRE_DEBUG_LEVEL

    def fetch(self, messages: Any, data: Any, modifiers: Any = None) -> Any:
        """IMAPClient's `fetch`, its answer parsed by `crawler.gmail.parse` (the same values,
        a token at a time instead of a byte at a time)."""
        if not messages:
            return {}
        args = [
            "FETCH",
            join_message_ids(messages),
            seq_to_parenstr_upper(data),
            seq_to_parenstr_upper(modifiers) if modifiers else None,
        ]
        if self.use_uid:
            args.insert(0, "UID")
        tag = self._imap._command(*args)
        typ, answer = self._imap._command_complete("FETCH", tag)
        self._checkok("fetch", typ, answer)
        typ, answer = self._imap._untagged_response(typ, answer, "FETCH")
        return parse_fetch_response(answer, self.normalise_times, self.use_uid)

    def _create_IMAP4(self) -> Any:  # overrides IMAPClient to tap the connection
        timeout = getattr(self._timeout, "connect", None)
        if self.ssl:
            return _TappedTLS(self.tap, self.host, self.port, self.ssl_context, timeout)
        return _TappedPlain(self.tap, self.host, self.port, timeout)
