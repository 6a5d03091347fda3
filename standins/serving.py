"""The lifecycle the in-process stand-ins share: a socket server on loopback, served from a thread
while started, and stopped (a context manager). Port 0 picks a free port. `stop_requested` is
how a stand-in serving in the foreground learns of SIGTERM or Ctrl-C.

A subclass says how to make its server (`_make_server`) and, if it must, how to close it
(`_close`: by default `shutdown`, join the serving thread, `server_close`).
"""

from __future__ import annotations

import signal
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType
from typing import Any, Self


class Served:
    """A socket server on `host:port`, served from a daemon thread while started."""

    name = "stand-in"  # in errors, and its serving thread is named `<thread_name>:<port>`
    thread_name = "stand-in"
    poll_interval = 0.1  # how long `stop` may wait for the serving loop to notice

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._address = (host, port)
        self._server: socketserver.BaseServer | None = None
        self._serving: threading.Thread | None = None

    @property
    def host(self) -> str:
        """The address it listens on."""
        return self._address[0]

    @property
    def port(self) -> int:
        """The port it listens on."""
        if self._server is None:
            raise RuntimeError(f"the {self.name} is not running")
        address: Any = self._server.server_address  # (host, port) for the TCP servers here
        port: int = address[1]
        return port

    def start(self) -> None:
        """Listen, and serve from a thread of its own."""
        if self._server is not None:
            raise RuntimeError(f"the {self.name} is already running")
        self._server = self._make_server(self._address)
        self._serving = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": self.poll_interval},
            name=f"{self.thread_name}:{self.port}",
            daemon=True,
        )
        self._serving.start()

    def stop(self) -> None:
        """Stop serving and close the port; safe to call again."""
        server, serving = self._server, self._serving
        self._server = self._serving = None
        if server is not None and serving is not None:
            self._close(server, serving)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _make_server(self, address: tuple[str, int]) -> socketserver.BaseServer:
        """The listening server."""
        raise NotImplementedError

    def _close(self, server: socketserver.BaseServer, serving: threading.Thread) -> None:
        """End the serving loop, wait for it, and close the port."""
        server.shutdown()
        serving.join()
        server.server_close()


@contextmanager
def stop_requested() -> Iterator[threading.Event]:
    """An event that SIGTERM or SIGINT sets while the block runs, for a stand-in that serves in
    the foreground; the signals' handlers are put back after."""
    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stopping
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
