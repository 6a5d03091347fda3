"""A MongoDB server on loopback for tests and the demo: real pymongo over TCP, mongomock behind it.

Several processes (workers, monitor, CLI) can share one in-memory database through it, where no
MongoDB server can be installed. A threading TCP server (one thread per connection) reads wire
messages, `mockupdb` parses them and encodes the replies, and one `MongoCommandExecutor` answers
every command as MongoDB does. It presents itself as a standalone server, on which pymongo never
retries a write.

MockupDB's own server loop is not used: it formats every message for its log even when quiet
(nearly doubling the cost of a command), binds "localhost" only, and polls its listening socket
once a second, so it takes that long to stop.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

from mockupdb import OP_MSG, OP_MSG_FLAGS, OP_QUERY, OpMsg, OpQuery

from standins.mongo_commands import Invocation, MongoCommandExecutor
from standins.serving import Served, stop_requested

logger = logging.getLogger(__name__)

MESSAGE_HEADER = struct.Struct("<iiii")  # messageLength, requestID, responseTo, opCode
MORE_TO_COME = OP_MSG_FLAGS["moreToCome"]
# pymongo speaks OP_MSG; older releases send a connection's first handshake as OP_QUERY.
# Older opcodes (OP_INSERT, OP_GET_MORE, ...) are gone from MongoDB 6 too, which hangs up on them.
PARSERS: dict[int, Any] = {OP_MSG: OpMsg, OP_QUERY: OpQuery}

Responder = Callable[[Any], None]


class _Connection(socketserver.StreamRequestHandler):
    """One client connection: read a message, answer it, until the client or the server leaves."""

    server: _WireServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection)

    def handle(self) -> None:
        try:
            while (request := self._receive()) is not None:
                self.server.respond(request)
        except ConnectionError:
            logger.debug("client %s left", self.client_address)

    def finish(self) -> None:
        self.server.untrack(self.connection)
        super().finish()

    def _receive(self) -> Any:
        """The next request, or None once the connection closed or sent an unknown opcode."""
        header = self.rfile.read(MESSAGE_HEADER.size)
        if len(header) < MESSAGE_HEADER.size:
            return None
        length, request_id, _, opcode = MESSAGE_HEADER.unpack(header)
        body = self.rfile.read(length - MESSAGE_HEADER.size)
        parser = PARSERS.get(opcode)
        if parser is None or len(body) < length - MESSAGE_HEADER.size:
            return None
        return parser.unpack(body, self.connection, None, request_id)


class _WireServer(socketserver.ThreadingTCPServer):
    """The listening socket and the threads of live connections, all closed by `close_all`."""

    allow_reuse_address = True
    daemon_threads = False
    block_on_close = True  # server_close() joins every connection's thread

    def __init__(self, address: tuple[str, int], respond: Responder) -> None:
        super().__init__(address, _Connection)
        self.respond = respond
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_all(self) -> None:
        """Stop accepting, hang up on every client and wait for their threads to end."""
        self.shutdown()
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                logger.debug("connection already closed by its client")
        self.server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.exception("embedded MongoDB dropped the connection of %s", client_address)


class EmbeddedMongo(Served):
    """A MongoDB stand-in listening on `host:port` while started; port 0 picks a free port."""

    name = "embedded MongoDB"
    thread_name = "embedded-mongo"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self._executor = MongoCommandExecutor()

    @property
    def uri(self) -> str:
        """The connection string for pymongo: `mongodb://host:port`."""
        return f"mongodb://{self.host}:{self.port}"

    def _make_server(self, address: tuple[str, int]) -> _WireServer:
        return _WireServer(address, self._respond)

    def _close(self, server: socketserver.BaseServer, serving: threading.Thread) -> None:
        """Close the port and every connection, and wait for the serving threads."""
        cast(_WireServer, server).close_all()
        serving.join()

    def _respond(self, request: Any) -> None:
        """Answer one parsed request on the connection it came from."""
        if not request.is_command:
            request.hangup()  # a legacy OP_QUERY on a collection: MongoDB 6+ hangs up too
            return
        invocation = Invocation(request.namespace, request.doc, request.client_port)
        reply = self._executor.execute(invocation)
        if isinstance(request, OpMsg) and request.flags & MORE_TO_COME:
            return  # an unacknowledged (w=0) write: the client expects no reply
        request.replies(reply)


def serve(host: str, port: int) -> None:
    """Run a stand-in until SIGTERM or SIGINT; prints its URI on stdout once it listens."""
    with stop_requested() as stopping, EmbeddedMongo(host, port) as server:
        print(server.uri, flush=True)
        stopping.wait()


STOP_TIMEOUT = 5.0  # seconds for a stand-in process to end on SIGTERM before it is killed


@contextmanager
def embedded_mongo_process(host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """The stand-in in a process of its own, as a MongoDB server is to the processes that use
    it: their commands cross a socket, and its work is not done on their interpreter. Yields
    its URI; ends it (SIGTERM, then SIGKILL if it lingers) when the block ends."""
    with subprocess.Popen(  # noqa: S603  # this Python, this module
        [sys.executable, "-c", f"from {__name__} import serve; serve({host!r}, {port})"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            uri = process.stdout.readline().strip()  # printed once it listens
            if not uri:
                raise RuntimeError("the embedded MongoDB process did not start")
            yield uri
        finally:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
