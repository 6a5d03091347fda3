"""The server's side of one connection: what a session writes, paced, counted and cut short."""

from __future__ import annotations

import asyncio
from contextlib import suppress

from standins.fakegmail.faults import Fault, FaultTracker
from standins.fakegmail.ledger import SessionRecord

_CRLF = b"\r\n"
_PACING_STEPS_PER_SECOND = 20


class SessionEnd(Exception):
    """The session is over; `fault` is the fault that ended it, if one did."""

    def __init__(self, fault: Fault | None = None) -> None:
        super().__init__(fault.kind if fault else "closed")
        self.fault = fault


class Output:
    """Writes to the client through the ledger, the bandwidth cap and mid-response faults."""

    def __init__(self, writer: asyncio.StreamWriter, record: SessionRecord) -> None:
        self._writer = writer
        self._record = record
        self._tail = _CRLF
        self.tracker: FaultTracker | None = None
        """Set at login: the account's faults apply from then on."""

    async def send(self, data: bytes) -> None:
        """Write `data`; SessionEnd when a fault cuts the connection inside it."""
        cut = self.tracker.cut(len(data)) if self.tracker else None
        if cut is not None:
            budget, fault = cut
            await self._write(data[:budget])
            raise SessionEnd(fault)
        await self._write(data)
        if self.tracker:
            self.tracker.sent(len(data))

    async def line(self, text: bytes) -> None:
        """Write one response line (CRLF added)."""
        self._record.line_sent(len(text) + len(_CRLF))
        await self.send(text + _CRLF)

    async def last_words(self, text: bytes) -> None:
        """A final line (a BYE) that starts on a line of its own, even inside a literal."""
        prefix = b"" if self._tail.endswith(_CRLF) else _CRLF
        self._record.said_last_words(text)
        with suppress(ConnectionError):
            await self._write(prefix + text + _CRLF)

    async def close(self) -> None:
        """Close after everything written went out (a FIN, never a reset that loses data)."""
        self._writer.close()
        with suppress(ConnectionError):
            await self._writer.wait_closed()

    async def _write(self, data: bytes) -> None:
        if not data:
            return
        bandwidth = self.tracker.faults.bandwidth if self.tracker else None
        step = max(bandwidth // _PACING_STEPS_PER_SECOND, 1) if bandwidth else len(data)
        for start in range(0, len(data), step):
            chunk = data[start : start + step]
            self._writer.write(chunk)
            self._record.sent(len(chunk))
            await self._writer.drain()
            if bandwidth:
                await asyncio.sleep(len(chunk) / bandwidth)
        self._tail = (self._tail + data)[-2:]
