"""A Redis server on loopback for the demo and Procfile.dev: redis-py over TCP, fakeredis behind it.

Where no Redis server is installed, the crawler's processes (workers, monitor, operator commands)
can still share one in-memory Redis through it. fakeredis answers the commands, with Lua (lupa)
for the crawler's scripts (the UID queue's, the lease's), and its TCP server speaks RESP. The
tests keep a real Redis: this stand-in serves the demo and the development system only.
"""

from __future__ import annotations

import importlib.util
import signal
import socket
import threading
from types import FrameType, TracebackType
from typing import Any

from fakeredis import TcpFakeServer

STOP_POLL_SECONDS = 0.1


class LuaMissing(RuntimeError):
    """fakeredis runs without Lua, but the crawler's scripts need it: `fakeredis[lua]`."""


class _Server(TcpFakeServer):
    """fakeredis's TCP server, answering each reply at once (no Nagle delay on pipelines)."""

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = super().get_request()
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection, address


class EmbeddedRedis:
    """A Redis stand-in listening on `host:port` while started; port 0 picks a free port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._address = (host, port)
        self._server: _Server | None = None
        self._serving: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port it listens on."""
        if self._server is None:
            raise RuntimeError("the embedded Redis is not running")
        port: int = self._server.server_address[1]
        return port

    @property
    def url(self) -> str:
        """The URL for redis-py and CRAWLER_REDIS_URL: `redis://host:port/0`."""
        return f"redis://{self._address[0]}:{self.port}/0"

    def start(self) -> None:
        """Listen, and serve every connection from a thread of its own."""
        if self._server is not None:
            raise RuntimeError("the embedded Redis is already running")
        if importlib.util.find_spec("lupa") is None:
            raise LuaMissing(
                "the embedded Redis runs the crawler's Lua scripts with lupa: "
                "pip install 'fakeredis[lua]'"
            )
        self._server = _Server(self._address)
        self._serving = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": STOP_POLL_SECONDS},
            name=f"embedded-redis:{self.port}",
            daemon=True,
        )
        self._serving.start()

    def stop(self) -> None:
        """Close the port, end every connection, and wait for the serving threads."""
        server, serving = self._server, self._serving
        self._server = self._serving = None
        if server is not None and serving is not None:
            server.shutdown()  # every connection's loop ends within fakeredis's poll interval
            serving.join()
            server.server_close()  # joins the connections' threads

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def serve(host: str, port: int) -> None:
    """Run the embedded Redis until SIGTERM or SIGINT; prints its URL on stdout once it listens."""
    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with EmbeddedRedis(host, port) as server:
            print(server.url, flush=True)
            stopping.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
