"""A Redis server on loopback for the demo and Procfile.dev: redis-py over TCP, fakeredis behind it.

Where no Redis server is installed, the crawler's processes (workers, monitor, operator commands)
can still share one in-memory Redis through it. fakeredis answers the commands, with Lua (lupa)
for the crawler's scripts (the UID queue's, the lease's), and its TCP server speaks RESP. The
tests keep a real Redis: this stand-in serves the demo and the development system only.
"""

from __future__ import annotations

import importlib.util
import socket
import socketserver
import threading
from typing import Any

from fakeredis import TcpFakeServer

from standins.serving import Served, stop_requested


class LuaMissing(RuntimeError):
    """fakeredis runs without Lua, but the crawler's scripts need it: `fakeredis[lua]`."""


class _Server(TcpFakeServer):
    """fakeredis's TCP server, answering each reply at once (no Nagle delay on pipelines)."""

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = super().get_request()
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection, address


class EmbeddedRedis(Served):
    """A Redis stand-in listening on `host:port` while started; port 0 picks a free port."""

    name = "embedded Redis"
    thread_name = "embedded-redis"

    @property
    def url(self) -> str:
        """The URL for redis-py and CRAWLER_REDIS_URL: `redis://host:port/0`."""
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> None:
        """Listen, and serve every connection from a thread of its own."""
        if importlib.util.find_spec("lupa") is None:
            raise LuaMissing(
                "the embedded Redis runs the crawler's Lua scripts with lupa: "
                "pip install 'fakeredis[lua]'"
            )
        super().start()

    def _make_server(self, address: tuple[str, int]) -> _Server:
        return _Server(address)

    def _close(self, server: socketserver.BaseServer, serving: threading.Thread) -> None:
        """Close the port, end every connection, and wait for the serving threads."""
        server.shutdown()  # every connection's loop ends within fakeredis's poll interval
        serving.join()
        server.server_close()  # joins the connections' threads


def serve(host: str, port: int) -> None:
    """Run the embedded Redis until SIGTERM or SIGINT; prints its URL on stdout once it listens."""
    with stop_requested() as stopping, EmbeddedRedis(host, port) as server:
        print(server.url, flush=True)
        stopping.wait()
