"""A counting TCP proxy on loopback: every contender on Dovecot is measured through one of these.

It relays bytes unchanged in both directions and counts them, and counts the IMAP commands the
client sends (a command starts a line that is not the rest of a literal's command). It runs its
own event loop in a daemon thread, like the fake Gmail.
"""

from __future__ import annotations

import asyncio
import re
import threading
from dataclasses import dataclass
from types import TracebackType

_LITERAL = re.compile(rb"\{(\d+)\+?\}\r?\n$")
_READ = 1 << 18
_START_TIMEOUT = 10.0


@dataclass(frozen=True)
class Wire:
    """What crossed the wire: commands, bytes from the client, bytes from the server."""

    commands: int
    bytes_in: int
    bytes_out: int

    @property
    def total(self) -> int:
        """Bytes both ways."""
        return self.bytes_in + self.bytes_out


class CommandCounter:
    """Counts IMAP commands in the client's byte stream, however it is cut."""

    def __init__(self) -> None:
        self.commands = 0
        self._line = bytearray()
        self._skip = 0  # bytes of a literal still to come
        self._inside = False  # the next line continues a command (after a literal)

    def feed(self, data: bytes) -> None:
        """Account for the next bytes the client sent."""
        position = 0
        while position < len(data):
            if self._skip:
                taken = min(self._skip, len(data) - position)
                self._skip -= taken
                position += taken
                continue
            end = data.find(b"\n", position)
            if end < 0:
                self._line += data[position:]
                return
            self._line += data[position : end + 1]
            position = end + 1
            self._end_of_line(bytes(self._line))
            self._line.clear()

    def _end_of_line(self, line: bytes) -> None:
        if not self._inside:
            self.commands += 1
        literal = _LITERAL.search(line)
        self._skip = int(literal.group(1)) if literal else 0
        self._inside = literal is not None


class CountingProxy:
    """Listens on `host:port` (0: any free port) and relays to `upstream`."""

    def __init__(self, upstream: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.upstream = upstream
        self.host = host
        self.port = 0
        self._counter = CommandCounter()
        self._in = self._out = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    def wire(self) -> Wire:
        """The counts so far."""
        with self._lock:
            return Wire(self._counter.commands, self._in, self._out)

    def reset(self) -> None:
        """Count from zero."""
        with self._lock:
            self._counter.commands = 0
            self._in = self._out = 0

    def __enter__(self) -> CountingProxy:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(_START_TIMEOUT) or not self.port:
            raise RuntimeError("the counting proxy did not start")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(_START_TIMEOUT)

    def _run(self, ready: threading.Event) -> None:
        asyncio.run(self._serve(ready))

    async def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._relay, self.host, 0)
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        async with server:
            await self._stop.wait()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        await asyncio.gather(
            self._pump(reader, up_writer, from_client=True),
            self._pump(up_reader, writer, from_client=False),
        )

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, from_client: bool
    ) -> None:
        try:
            while data := await reader.read(_READ):
                with self._lock:
                    if from_client:
                        self._in += len(data)
                        self._counter.feed(data)
                    else:
                        self._out += len(data)
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
