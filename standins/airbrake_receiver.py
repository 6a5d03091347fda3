"""A stand-in for Airbrake's notice API on loopback, recording every request it is sent.

It speaks the API as pybrake uses it: `POST /api/v3/projects/<id>/notices`, the project key in
`Authorization: Bearer <key>`, and a JSON notice (`errors`, `context`, `environment`, `session`,
`params`). Give its `url` to a notifier as its host.

| Request | Status | Answer |
|---|---|---|
| the project's id and key, a JSON object with an `errors` list | 201 | `{"id": ..., "url": ...}` |
| another project id, another key, or none | 401 | `{"message": ...}` |
| a notice after `rate_limit_next(n, delay)` | 429 | `{"message": ...}`, `X-RateLimit-Delay` |
| a body that is not such a JSON object | 400 | `{"message": ...}` |
| a body over 64 KiB (Airbrake's limit) | 413 | `{"message": ...}` |
| any other method or path (remote config, stats) | 404 | `{"message": ...}`, kept in `unexpected` |

The messages are this fake's own. For tests: `notices` holds the notices it took, `requests` every
request with its body (the key itself is not kept), and `unexpected` those that were not notices,
so that a test can assert that nothing else was asked for.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_PROJECT_ID = 1
DEFAULT_PROJECT_KEY = "fake-airbrake-project-key"
MAX_BODY = 64 * 1024
NOTICES_PATH = re.compile(r"/api/v3/projects/(?P<project_id>[^/?]+)/notices")
RATE_LIMITED = "IP is rate limited"
STOP_POLL_SECONDS = 0.01  # how long leaving `with` waits for the serving loop; tests leave often
IDLE_TIMEOUT = 10.0  # a client that connects and sends nothing does not hold a thread for ever


@dataclass(frozen=True)
class Reply:
    """An HTTP status, a JSON body and any extra headers."""

    status: int
    body: Mapping[str, object]
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ReceivedRequest:
    """A request as recorded: what was asked, whether it carried the key, and the answer."""

    method: str
    path: str
    authorized: bool
    body: bytes
    status: int


def _refusal(status: int, message: str) -> Reply:
    return Reply(status, {"message": message})


NOT_FOUND = _refusal(404, "Not found: this receiver answers notices only.")
UNAUTHORIZED = _refusal(401, "Unauthorized: the project id or key is not this project's.")
TOO_LARGE = _refusal(413, f"The notice is over {MAX_BODY} bytes.")


def parse_notice(body: bytes) -> dict[str, Any] | None:
    """The notice in a request body, or None when it is not a JSON object with an `errors` list."""
    try:
        notice = json.loads(body)
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors too
        return None
    if not isinstance(notice, dict) or not isinstance(notice.get("errors"), list):
        return None
    return notice


class AirbrakeReceiver(ThreadingHTTPServer):
    """Airbrake's notice API for one project, listening from the start, serving inside `with`."""

    daemon_threads = False  # so that `server_close` waits for the requests being answered

    def __init__(
        self,
        project_id: int = DEFAULT_PROJECT_ID,
        project_key: str = DEFAULT_PROJECT_KEY,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__((host, port), _ReceiverRequestHandler)
        self.project_id = project_id
        self.project_key = project_key
        self._lock = threading.Lock()
        self._rate_limits: deque[int] = deque()  # the X-RateLimit-Delay of the next 429s
        self._notices: list[dict[str, Any]] = []
        self._requests: list[ReceivedRequest] = []
        self._serving: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL, for a notifier's `host` (AIRBRAKE_HOST)."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> AirbrakeReceiver:
        """Serve, answering each connection from a thread of its own."""
        self._serving = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": STOP_POLL_SECONDS},
            name=f"airbrake-receiver:{self.server_address[1]}",
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
        """Stop serving once the requests being answered are answered, and close the port."""
        if self._serving is not None:
            self.shutdown()
            self._serving.join()
            self._serving = None
        self.server_close()  # joins the request threads too

    def handle_error(self, request: object, client_address: object) -> None:
        logger.exception("Airbrake receiver dropped the connection of %s", client_address)

    def rate_limit_next(self, n: int, delay: int = 60) -> None:
        """Answer the next `n` notices with 429 and `X-RateLimit-Delay: <delay>` (seconds)."""
        if n < 0 or delay < 0:
            raise ValueError(f"rate_limit_next needs n >= 0 and delay >= 0, not {n}, {delay}")
        with self._lock:
            self._rate_limits.extend([delay] * n)

    @property
    def notices(self) -> list[dict[str, Any]]:
        """The notices taken (answered 201), oldest first."""
        with self._lock:
            return list(self._notices)

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Every request answered, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def unexpected(self) -> list[ReceivedRequest]:
        """The requests that were not notices: remote config, stats, anything else."""
        return [request for request in self.requests if request.status == NOT_FOUND.status]

    def answer(
        self, method: str, path: str, authorization: str | None, body: bytes | None
    ) -> Reply:
        """The reply to one request, recorded; `body` is None when it was too large to read."""
        authorized = authorization == f"Bearer {self.project_key}"
        reply, notice = self._decide(method, path, authorized, body)
        record = ReceivedRequest(method, path, authorized, body or b"", reply.status)
        with self._lock:
            self._requests.append(record)
            if notice is not None:
                self._notices.append(notice)
        return reply

    def _decide(
        self, method: str, path: str, authorized: bool, body: bytes | None
    ) -> tuple[Reply, dict[str, Any] | None]:
        route = NOTICES_PATH.fullmatch(path)
        if method != "POST" or route is None:
            return NOT_FOUND, None
        if not authorized or route["project_id"] != str(self.project_id):
            return UNAUTHORIZED, None
        if body is None:
            return TOO_LARGE, None
        rate_limit = self._next_rate_limit()
        if rate_limit is not None:
            return Reply(429, {"message": RATE_LIMITED}, (("X-RateLimit-Delay", rate_limit),)), None
        notice = parse_notice(body)
        if notice is None:
            return _refusal(400, "The body must be a JSON notice with an errors list."), None
        notice_id = str(uuid.uuid4())
        return Reply(201, {"id": notice_id, "url": f"{self.url}/locate/{notice_id}"}), notice

    def _next_rate_limit(self) -> str | None:
        with self._lock:
            return str(self._rate_limits.popleft()) if self._rate_limits else None


class _ReceiverRequestHandler(BaseHTTPRequestHandler):
    """One HTTP request (HTTP/1.0: the connection closes after the answer)."""

    server: AirbrakeReceiver
    timeout = IDLE_TIMEOUT

    def do_POST(self) -> None:
        raw_length = self.headers.get("Content-Length", "0")
        length = int(raw_length) if raw_length.isdigit() else 0  # unreadable: an empty body
        self._answer(self.rfile.read(length) if length <= MAX_BODY else None)

    def do_GET(self) -> None:
        self._answer(b"")

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def _answer(self, body: bytes | None) -> None:
        authorization = self.headers.get("Authorization")
        self._reply(self.server.answer(self.command, self.path, authorization, body))

    def _reply(self, reply: Reply) -> None:
        body = json.dumps(reply.body).encode()
        self.send_response(reply.status)
        for name, value in (("Content-Type", "application/json"), *reply.headers):
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
