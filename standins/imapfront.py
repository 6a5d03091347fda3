"""A hostile front for an IMAP server: a TCP relay that misbehaves for one account's sessions.

It stalls the answers to one account's sessions past the crawler's socket timeout (a slow
response), resets one account's session with a real TCP RST (SO_LINGER 0), drips its answers a
byte at a time (each byte within the socket timeout, the whole far past any sane time), and
floods it with what nobody asked for (`* OK` lines, FETCH literals for other UIDs) before the
next answer, generated as it is sent, never held. Stalling here,
not in the fake, keeps the fake's ledger true: when a crawler gives up and closes its socket,
the relay closes its side to the fake at once, so the fake ends the session then, instead of
after sleeping through the delay. A session's account is read from its XOAUTH2 initial response.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")

START_TIMEOUT = 10.0
CHUNK = 65536
FLOOD_LITERAL = 2**20
_XOAUTH2_USER = re.compile(rb"user=([^\x01]+)\x01")
_BASE64_LINE = re.compile(rb"^[A-Za-z0-9+/=]{16,}\r?$")


@dataclass
class Stall:
    """Hold the answers to an account's sessions `delay` seconds, for `window` seconds from the
    first answer held."""

    delay: float
    window: float
    first: float | None = None
    met: threading.Event = field(default_factory=threading.Event)

    def holds(self, now: float) -> bool:
        """Whether an answer leaving now is held (and start the window at the first)."""
        if self.first is None:
            self.first = now
            self.met.set()
        return now - self.first <= self.window


@dataclass
class Reset:
    """Reset a session of an account (the next one, or one under way) once it has had more than
    `after` answers (the greeting and the login's among them)."""

    after: int
    done: threading.Event = field(default_factory=threading.Event)


@dataclass
class Drip:
    """Send the answers to an account's sessions one byte every `interval` seconds."""

    interval: float
    met: threading.Event = field(default_factory=threading.Event)


@dataclass
class Flood:
    """Before the account's next answer, send `size` bytes of untagged responses nobody asked
    for: `* OK` lines (`kind="lines"`) or FETCH literals of 1 MiB for another UID
    (`kind="literals"`)."""

    kind: str
    size: int
    sent: int = 0
    done: threading.Event = field(default_factory=threading.Event)

    def pieces(self) -> Iterator[bytes]:
        """The flood, a piece at a time."""
        if self.kind == "lines":
            line = b"* OK " + b"x" * 1000 + b"\r\n"
            chunk = line * 64
        else:
            body = b"A" * FLOOD_LITERAL
            chunk = b"* 1 FETCH (UID 999999 BODY[1] {%d}\r\n%s)\r\n" % (len(body), body)
        while self.sent < self.size:
            self.sent += len(chunk)
            yield chunk


@dataclass
class _Link:
    """One relayed connection."""

    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    user: str | None = None
    answers: int = 0
    pending: bytes = b""


class ImapProxy:
    """Relays 127.0.0.1:`port` to the fake Gmail on `upstream_port`, in a thread of its own."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.stalls: dict[str, Stall] = {}
        self.resets: dict[str, Reset] = {}
        self.drips: dict[str, Drip] = {}
        self.floods: dict[str, Flood] = {}
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port the crawlers connect to."""
        if self._port is None:
            raise RuntimeError("the proxy is not running")
        return self._port

    def start(self) -> ImapProxy:
        """Listen; returns once the port is open."""
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(START_TIMEOUT) or self._port is None:
            raise RuntimeError("the IMAP proxy did not start")
        return self

    def stop(self) -> None:
        """Stop listening and drop every connection."""
        if self._loop is not None and self._stop is not None:
            with suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(START_TIMEOUT)

    def stall(self, email: str, delay: float, window: float) -> Stall:
        """Hold the answers to `email`'s sessions (see `Stall`); returns it."""
        with self._lock:
            self.stalls[email.lower()] = stall = Stall(delay, window)
        return stall

    def unstall(self, email: str) -> None:
        """Stop holding `email`'s answers."""
        with self._lock:
            self.stalls.pop(email.lower(), None)

    def reset_next(self, email: str, after: int) -> Reset:
        """Reset `email`'s next session with an RST after `after` answers; returns it."""
        with self._lock:
            self.resets[email.lower()] = reset = Reset(after)
        return reset

    def drip(self, email: str, interval: float) -> Drip:
        """Drip the answers to `email`'s sessions (see `Drip`); returns it."""
        with self._lock:
            self.drips[email.lower()] = drip = Drip(interval)
        return drip

    def undrip(self, email: str) -> None:
        """Stop dripping `email`'s answers."""
        with self._lock:
            self.drips.pop(email.lower(), None)

    def flood(self, email: str, kind: str, size: int) -> Flood:
        """Flood `email`'s next answer (see `Flood`); returns it."""
        with self._lock:
            self.floods[email.lower()] = flood = Flood(kind, size)
        return flood

    def _run(self, ready: threading.Event) -> None:
        try:
            asyncio.run(self._serve(ready))
        except OSError as error:
            self.errors.append(error)
        finally:
            ready.set()

    async def _serve(self, ready: threading.Event) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self._port = server.sockets[0].getsockname()[1]
        ready.set()
        async with server:
            await self._stop.wait()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream = await asyncio.open_connection(
                "127.0.0.1", self.upstream_port
            )
        except OSError:
            writer.close()
            return
        link = _Link(writer, upstream)
        relays = {
            asyncio.create_task(self._requests(reader, link)),
            asyncio.create_task(self._answers(upstream_reader, link)),
        }
        try:
            await asyncio.wait(relays, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for relay in relays:
                relay.cancel()
            await asyncio.gather(*relays, return_exceptions=True)
            for side in (link.server, link.client):
                side.close()

    async def _requests(self, reader: asyncio.StreamReader, link: _Link) -> None:
        """Client to Gmail, noting the account; EOF from the client ends the link at once."""
        while data := await reader.read(CHUNK):
            if link.user is None:
                link.user = self._user(link, data)
            link.server.write(data)
            await link.server.drain()

    async def _answers(self, reader: asyncio.StreamReader, link: _Link) -> None:
        """Gmail to client, held or cut short as the account's faults say."""
        while data := await reader.read(CHUNK):
            stall, reset = self._faults(link)
            if stall is not None and stall.holds(time.monotonic()):
                await asyncio.sleep(stall.delay)
            link.answers += 1
            if reset is not None and link.answers > reset.after:
                self._reset(link, reset)
                return
            await self._flood(link)
            await self._send(link, data)

    async def _send(self, link: _Link, data: bytes) -> None:
        drip = self._fault(self.drips, link)
        if drip is None:
            link.client.write(data)
            await link.client.drain()
            return
        drip.met.set()
        for index in range(len(data)):
            link.client.write(data[index : index + 1])
            await link.client.drain()
            await asyncio.sleep(drip.interval)

    async def _flood(self, link: _Link) -> None:
        flood = self._fault(self.floods, link)
        if flood is None:
            return
        with self._lock:
            self.floods.pop(link.user or "", None)
        try:
            for piece in flood.pieces():
                link.client.write(piece)
                await link.client.drain()
        finally:
            flood.done.set()

    def _fault(self, faults: dict[str, T], link: _Link) -> T | None:
        if link.user is None:
            return None
        with self._lock:
            return faults.get(link.user)

    def _faults(self, link: _Link) -> tuple[Stall | None, Reset | None]:
        return self._fault(self.stalls, link), self._fault(self.resets, link)

    def _reset(self, link: _Link, reset: Reset) -> None:
        with self._lock:
            if self.resets.get(link.user or "") is reset:
                del self.resets[link.user or ""]
        sock = link.client.get_extra_info("socket")
        if sock is not None:
            with suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        link.client.transport.abort()  # with SO_LINGER 0: an RST, not a FIN
        reset.done.set()

    @staticmethod
    def _user(link: _Link, data: bytes) -> str | None:
        link.pending = (link.pending + data)[-8192:]
        for line in link.pending.split(b"\n"):
            candidates = [line.rsplit(b" ", 1)[-1].strip()] if b"AUTHENTICATE" in line else []
            if _BASE64_LINE.match(line.strip()):
                candidates.append(line.strip())
            for candidate in candidates:
                with suppress(binascii.Error, ValueError):
                    found = _XOAUTH2_USER.search(base64.b64decode(candidate, validate=True))
                    if found:
                        return found.group(1).decode(errors="replace").lower()
        return None
