"""What crossed the wire, per session and per account: commands, lines, bytes, connections.

The server keeps one `Ledger` for every connection and each account one for the sessions that
tried to log in to it (from the greeting on, so pre-login bytes count too). Sessions write
through their `SessionRecord`; tests read snapshots from any thread while the server runs.
Times are `time.monotonic()` seconds.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass

# One lock for every record and ledger: a record updates several ledgers at once, and a fake's
# throughput never needs finer locking.
_LOCK = threading.RLock()


@dataclass(frozen=True)
class SessionSummary:
    """A snapshot of one connection."""

    session_id: str
    peer: str
    user: str | None
    started_at: float
    authenticated_at: float | None
    ended_at: float | None
    commands: Counter[str]
    lines: tuple[bytes, ...]
    bytes_in: int
    bytes_out: int
    command_times: tuple[float, ...] = ()
    """When each of `lines` arrived (monotonic seconds), in the same order."""
    longest_line_out: int = 0
    """The longest response line written (CRLF included; literals are not lines)."""
    last_words: bytes | None = None
    """The BYE the server ended the session with (CRLF excluded), if it ended it with one."""


class SessionRecord:
    """The live record of one connection, written by its session."""

    def __init__(self, session_id: str, peer: str) -> None:
        self.session_id = session_id
        self.peer = peer
        self.user: str | None = None
        self.started_at = time.monotonic()
        self.authenticated_at: float | None = None
        self.ended_at: float | None = None
        self.commands: Counter[str] = Counter()
        self.lines: list[bytes] = []
        self.command_times: list[float] = []
        self.bytes_in = 0
        self.bytes_out = 0
        self.longest_line_out = 0
        self.last_words: bytes | None = None
        self._ledgers: list[Ledger] = []

    def received(self, size: int) -> None:
        """`size` bytes read from the client."""
        with _LOCK:
            self.bytes_in += size
            for ledger in self._ledgers:
                ledger._bytes_in += size

    def sent(self, size: int) -> None:
        """`size` bytes written to the client."""
        with _LOCK:
            self.bytes_out += size
            for ledger in self._ledgers:
                ledger._bytes_out += size

    def line_sent(self, size: int) -> None:
        """A response line of `size` bytes (CRLF included) was written."""
        with _LOCK:
            self.longest_line_out = max(self.longest_line_out, size)
            for ledger in self._ledgers:
                ledger._longest_line_out = max(ledger._longest_line_out, size)

    def said_last_words(self, text: bytes) -> None:
        """The server ends the session with `text` (a BYE)."""
        with _LOCK:
            self.last_words = text

    def command(self, name: str | None, raw: bytes) -> None:
        """A command line (literals included) arrived; `name` is None when it did not parse."""
        with _LOCK:
            self.lines.append(raw)
            self.command_times.append(time.monotonic())
            if name is not None:
                self.commands[name] += 1
            for ledger in self._ledgers:
                ledger._lines.append(raw)
                if name is not None:
                    ledger._commands[name] += 1

    def ended(self) -> None:
        """The session is over (LOGOUT, BYE or a dropped connection); later calls do nothing."""
        with _LOCK:
            if self.ended_at is not None:
                return
            self.ended_at = time.monotonic()
            if self.authenticated_at is not None:
                for ledger in self._ledgers:
                    ledger._connected -= 1

    def summary(self) -> SessionSummary:
        """A snapshot of this record."""
        with _LOCK:
            return SessionSummary(
                session_id=self.session_id,
                peer=self.peer,
                user=self.user,
                started_at=self.started_at,
                authenticated_at=self.authenticated_at,
                ended_at=self.ended_at,
                commands=Counter(self.commands),
                lines=tuple(self.lines),
                bytes_in=self.bytes_in,
                bytes_out=self.bytes_out,
                command_times=tuple(self.command_times),
                longest_line_out=self.longest_line_out,
                last_words=self.last_words,
            )

    def _authenticate(self, user: str) -> None:
        self.user = user
        self.authenticated_at = time.monotonic()
        for ledger in self._ledgers:
            ledger._connected += 1
            ledger._peak_connected = max(ledger._peak_connected, ledger._connected)


class Ledger:
    """Counts over a set of sessions; thread-safe, readable while the server runs."""

    def __init__(self) -> None:
        self._records: list[SessionRecord] = []
        self._commands: Counter[str] = Counter()
        self._lines: list[bytes] = []
        self._bytes_in = 0
        self._bytes_out = 0
        self._longest_line_out = 0
        self._connected = 0
        self._peak_connected = 0

    def attach(self, record: SessionRecord) -> None:
        """Count `record` here from now on, with what it already counted (idempotent)."""
        with _LOCK:
            if self in record._ledgers:
                return
            record._ledgers.append(self)
            self._records.append(record)
            self._commands.update(record.commands)
            self._lines.extend(record.lines)
            self._bytes_in += record.bytes_in
            self._bytes_out += record.bytes_out
            self._longest_line_out = max(self._longest_line_out, record.longest_line_out)

    def admit(self, record: SessionRecord, user: str, limit: int) -> bool:
        """Mark `record` authenticated as `user` unless `limit` sessions here already are."""
        with _LOCK:
            if self._connected >= limit:
                return False
            record._authenticate(user)
            return True

    @property
    def commands(self) -> Counter[str]:
        """Commands by name (`UID FETCH`, `SELECT`, ...) since the last reset."""
        with _LOCK:
            return Counter(self._commands)

    @property
    def lines(self) -> list[bytes]:
        """The exact command bytes received, literals included, in order."""
        with _LOCK:
            return list(self._lines)

    @property
    def bytes_in(self) -> int:
        """Bytes read from clients."""
        with _LOCK:
            return self._bytes_in

    @property
    def bytes_out(self) -> int:
        """Bytes written to clients."""
        with _LOCK:
            return self._bytes_out

    @property
    def longest_line_out(self) -> int:
        """The longest response line written since the last reset (CRLF included)."""
        with _LOCK:
            return self._longest_line_out

    @property
    def connected(self) -> int:
        """Authenticated sessions open now."""
        with _LOCK:
            return self._connected

    @property
    def peak_connected(self) -> int:
        """The most authenticated sessions open at once since the last reset."""
        with _LOCK:
            return self._peak_connected

    @property
    def sessions(self) -> list[SessionSummary]:
        """Snapshots of the sessions counted here, oldest first."""
        with _LOCK:
            return [record.summary() for record in self._records]

    @property
    def sessions_opened(self) -> int:
        """How many sessions were counted here since the last reset."""
        with _LOCK:
            return len(self._records)

    def reset(self) -> None:
        """Start counting from zero; sessions still open stay (their own counts are kept)."""
        with _LOCK:
            self._records = [record for record in self._records if record.ended_at is None]
            self._commands.clear()
            self._lines.clear()
            self._bytes_in = self._bytes_out = self._longest_line_out = 0
            self._peak_connected = self._connected
