"""A token endpoint that lies, stalls or floods: answers `FakeTokenEndpoint.misbehave` gives
instead of Google's, and a second listener that records whatever is sent to it.

Each mode writes a whole HTTP/1.0 answer itself, byte for byte, so it can do what no honest
server does (drip its headers, never end its body):

- `Redirect(location, status=307)`: that 3xx to `location` (a 307 or 308 asks the client to
  POST the same form there).
- `Huge(size=1 GiB)`: 200, `application/json`, `size` bytes made as they are sent, never held in
  memory; no Content-Length unless `declare_length`.
- `Drip(every, size=64)`: 200 and a valid token answer of `size` bytes, one byte every `every`
  seconds (its head at once, or dripped too with `head_too`).
- `Page(status)`: an HTML page with that status (`Page(200)`, `Page(404)`, `Page(403)`), as a
  proxy, a captive portal or a wrong URL answers.
- `Refuse(status, error)`: an OAuth error in JSON, such as `Refuse(401, "invalid_client")`.

`PostRecorder` is the second listener: every request it gets is kept in `requests` (method, path,
headers, body) and answered with a token, so that a client that follows a redirect to it seems to
succeed.
"""

from __future__ import annotations

import email.utils
import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import ClassVar, Protocol

logger = logging.getLogger(__name__)

GIB = 1 << 30
FILL = b"A" * (64 * 1024)  # the piece a huge answer is made of, sent again and again
MAX_RECORDED_BODY = 64 * 1024
IDLE_TIMEOUT = 10.0


class Writer(Protocol):
    """Where an answer is written: the handler's `wfile`."""

    def write(self, data: bytes, /) -> object: ...

    def flush(self) -> object: ...


class Misbehaviour(Protocol):
    """An answer written raw: its status (and OAuth error) for the record, and how it is sent."""

    @property
    def status(self) -> int: ...

    @property
    def error(self) -> str | None: ...

    def write(self, out: Writer, closing: threading.Event) -> None:
        """Send the answer on `out`; stop early when `closing` is set or the client is gone."""


def head(status: int, headers: Sequence[tuple[str, str]]) -> bytes:
    """An HTTP/1.0 status line and headers, with the blank line that ends them."""
    lines = [
        f"HTTP/1.0 {status} {HTTPStatus(status).phrase}",
        "Server: ESF",
        f"Date: {email.utils.formatdate(usegmt=True)}",
        *(f"{name}: {value}" for name, value in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def whole(status: int, content_type: str, body: bytes, *extra: tuple[str, str]) -> bytes:
    """A complete answer with a Content-Length."""
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body))), *extra]
    return head(status, headers) + body


@dataclass(frozen=True)
class Redirect:
    """A redirect of the token request to `location`."""

    location: str
    status: int = 307
    error: str | None = None

    def write(self, out: Writer, closing: threading.Event) -> None:
        if not 300 <= self.status <= 399:
            raise ValueError(f"a redirect needs a 3xx status, not {self.status}")
        body = b"<HTML><BODY>Moved</BODY></HTML>"
        _send(out, whole(self.status, "text/html", body, ("Location", self.location)))


@dataclass(frozen=True)
class Huge:
    """A 200 whose body is `size` bytes of a token answer that never closes its string."""

    size: int = GIB
    declare_length: bool = False
    status: int = 200
    error: str | None = None

    def write(self, out: Writer, closing: threading.Event) -> None:
        headers = [("Content-Type", "application/json; charset=utf-8")]
        if self.declare_length:
            headers.append(("Content-Length", str(self.size)))
        start = b'{"access_token": "ya29.'
        if not _send(out, head(self.status, headers) + start):
            return
        left = self.size - len(start)
        while left > 0 and not closing.is_set():
            piece = FILL[: min(left, len(FILL))]
            if not _send(out, piece):
                return
            left -= len(piece)


@dataclass(frozen=True)
class Drip:
    """A valid token answer of `size` bytes, sent one byte every `every` seconds."""

    every: float
    size: int = 64
    head_too: bool = False
    status: int = 200
    error: str | None = None

    def body(self) -> bytes:
        """The token answer, padded with spaces to `size` bytes."""
        fields = {"access_token": "ya29.drip", "expires_in": 3599, "token_type": "Bearer"}
        return json.dumps(fields).encode().ljust(self.size)

    def write(self, out: Writer, closing: threading.Event) -> None:
        answer = whole(self.status, "application/json; charset=utf-8", self.body())
        at_once = b"" if self.head_too else answer[: answer.index(b"\r\n\r\n") + 4]
        if at_once and not _send(out, at_once):
            return
        for index in range(len(at_once), len(answer)):
            if not _send(out, answer[index : index + 1]) or closing.wait(self.every):
                return


@dataclass(frozen=True)
class Page:
    """An HTML page with `status`, as a proxy, a captive portal or a wrong URL answers."""

    status: int = 200
    error: str | None = None

    def write(self, out: Writer, closing: threading.Event) -> None:
        phrase = HTTPStatus(self.status).phrase
        body = (
            "<!DOCTYPE html><html lang=en><meta charset=utf-8><title>Error</title>"
            f"<p><b>{self.status}.</b> <ins>{phrase}.</ins></p></html>"
        ).encode()
        _send(out, whole(self.status, "text/html; charset=UTF-8", body))


@dataclass(frozen=True)
class Refuse:
    """An OAuth error answer in JSON: `error` with `status`."""

    status: int
    error: str | None
    description: str = "Refused."

    def write(self, out: Writer, closing: threading.Event) -> None:
        body = json.dumps({"error": self.error, "error_description": self.description}).encode()
        _send(out, whole(self.status, "application/json; charset=utf-8", body))


def _send(out: Writer, data: bytes) -> bool:
    """Write `data`; False when the client has gone (or stopped reading for IDLE_TIMEOUT)."""
    try:
        out.write(data)
        out.flush()
    except OSError:  # a reset, a broken pipe, a send timeout: the client is gone
        return False
    return True


# -- the second listener --------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One request as `PostRecorder` received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class PostRecorder:
    """A listener on loopback that records every request and answers it with a token."""

    ANSWER: ClassVar[dict[str, object]] = {
        "access_token": "ya29.recorder",
        "refresh_token": "1//recorder",
        "expires_in": 3599,
        "token_type": "Bearer",
    }

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._address = (host, port)
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._server: _RecorderServer | None = None
        self._serving: threading.Thread | None = None

    @property
    def url(self) -> str:
        """A token URL on this listener."""
        if self._server is None:
            raise RuntimeError("the recorder is not running")
        return f"http://{self._address[0]}:{self._server.server_address[1]}/token"

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def record(self, request: RecordedRequest) -> None:
        """Keep `request`."""
        with self._lock:
            self._requests.append(request)

    def __enter__(self) -> PostRecorder:
        self._server = _RecorderServer(self._address, self)
        self._serving = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name="post-recorder",
            daemon=True,
        )
        self._serving.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        server, serving = self._server, self._serving
        self._server = self._serving = None
        if server is not None and serving is not None:
            server.shutdown()
            server.server_close()
            serving.join()


class _RecorderServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], recorder: PostRecorder) -> None:
        super().__init__(address, _RecorderHandler)
        self.recorder = recorder


class _RecorderHandler(BaseHTTPRequestHandler):
    server: _RecorderServer
    timeout = IDLE_TIMEOUT

    def do_POST(self) -> None:
        try:
            length = min(max(int(self.headers.get("Content-Length", "0")), 0), MAX_RECORDED_BODY)
        except ValueError:
            length = 0
        self._record(self.rfile.read(length))

    def do_GET(self) -> None:
        self._record(b"")

    do_PUT = do_DELETE = do_PATCH = do_GET

    def _record(self, body: bytes) -> None:
        headers = {name: value for name, value in self.headers.items()}
        self.server.recorder.record(RecordedRequest(self.command, self.path, headers, body))
        answer = json.dumps(PostRecorder.ANSWER).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("%s " + format, self.address_string(), *args)
