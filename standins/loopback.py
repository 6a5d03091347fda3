"""The HTTP plumbing the stand-ins on loopback share: the fake token endpoint
(`standins.fakeoauth`) and the fake Directory API (`standins.fakedirectory`).

`LoopbackService` is a threaded HTTP server on loopback, started and stopped (a context manager):
each connection is answered from a daemon thread of its own (HTTP/1.0, closed after the answer)
with the `Answer` (a status, a JSON body, any extra headers) its subclass gives for the `Request`,
or, for a POST, raw as a `standins.hostile_oauth` mode writes it. A POST's body is read as a form
(`read_form`, `parse_form`: `application/x-www-form-urlencoded`, at most 64 KiB and 32 fields, no
parameter given twice); one that cannot be read reaches the service as a `Request` whose
`problem` carries the OAuth refusal to answer (`invalid_request`; 413 for a body over 64 KiB).
`serve_until_stopped` runs a service in the foreground until SIGTERM or SIGINT.
"""

from __future__ import annotations

import json
import logging
import signal
import socketserver
import threading
import urllib.parse
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standins.hostile_oauth import Misbehaviour
from standins.serving import Served

logger = logging.getLogger(__name__)

FORM_TYPE = "application/x-www-form-urlencoded"
MAX_BODY = 64 * 1024
MAX_FIELDS = 32
IDLE_TIMEOUT = 10.0  # a client that connects and sends nothing does not hold a thread for ever
JSON_HEADERS = (
    ("Content-Type", "application/json; charset=utf-8"),
    ("Cache-Control", "no-cache, no-store, max-age=0, must-revalidate"),
    ("Pragma", "no-cache"),
)


@dataclass(frozen=True)
class Answer:
    """An HTTP status, a JSON body and any extra headers."""

    status: int
    body: Mapping[str, object]
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def error(self) -> str | None:
        """The OAuth error code, when this is a refusal."""
        error = self.body.get("error")
        return error if isinstance(error, str) else None


def refusal(status: int, error: str, description: str) -> Answer:
    """An OAuth error answer."""
    return Answer(status, {"error": error, "error_description": description})


class MalformedRequest(Exception):
    """A request body that is not a form the service can read."""

    def __init__(self, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.answer = refusal(status, "invalid_request", description)


@dataclass(frozen=True)
class Request:
    """What a fake needs of an HTTP request; `problem` when its body could not be read."""

    method: str
    path: str
    form: Mapping[str, str] = field(default_factory=dict)
    problem: MalformedRequest | None = None
    authorization: str | None = None  # the Authorization header, as sent


def parse_form(content_type: str | None, body: bytes) -> dict[str, str]:
    """The parameters of a form body; MalformedRequest when it is not one."""
    media_type = (content_type or FORM_TYPE).partition(";")[0].strip().lower()
    if media_type != FORM_TYPE:
        raise MalformedRequest(f"The request body must be {FORM_TYPE}, not {media_type}.")
    try:
        pairs = urllib.parse.parse_qsl(
            body.decode(),
            keep_blank_values=True,
            strict_parsing=True,
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except ValueError:  # UnicodeDecodeError is a ValueError too
        raise MalformedRequest("The request body is not a valid form.") from None
    names = Counter(name for name, _ in pairs)
    repeated = sorted(name for name, count in names.items() if count > 1)
    if repeated:
        raise MalformedRequest(f"Parameter given more than once: {repeated[0]}")
    return dict(pairs)


def read_form(headers: Message, read: Callable[[int], bytes]) -> dict[str, str]:
    """Read and parse a request's form body, of at most MAX_BODY bytes."""
    raw_length = headers.get("Content-Length", "0")
    try:
        length = int(raw_length)
    except ValueError:
        raise MalformedRequest(f"Invalid Content-Length: {raw_length}") from None
    if length < 0:
        raise MalformedRequest(f"Invalid Content-Length: {raw_length}")
    if length > MAX_BODY:
        raise MalformedRequest(f"The request body is over {MAX_BODY} bytes.", status=413)
    return parse_form(headers.get("Content-Type"), read(length))


class LoopbackService(Served):
    """An HTTP service on loopback that answers in JSON, serving while started (a context
    manager): each connection is answered from a daemon thread of its own (HTTP/1.0, closed after
    the answer). A subclass says what to answer (`answer`) and may answer a POST raw
    (`misbehaving`)."""

    name = "fake HTTP service"  # in errors
    thread_name = "fake-http"  # its serving thread is named `<this>:<port>`
    poll_interval = 0.01  # tests stop services often
    reply_headers: tuple[tuple[str, str], ...] = JSON_HEADERS

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self._closing = threading.Event()

    @property
    def base_url(self) -> str:
        """`http://host:port`, without a path."""
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The URL `serve_until_stopped` prints."""
        return self.base_url

    @property
    def closing(self) -> threading.Event:
        """Set while the service stops: a slow answer stops with it."""
        return self._closing

    def start(self) -> None:
        """Listen, and answer every connection from a daemon thread of its own."""
        self._closing.clear()
        super().start()

    def _make_server(self, address: tuple[str, int]) -> _LoopbackServer:
        return _LoopbackServer(address, self)

    def _close(self, server: socketserver.BaseServer, serving: threading.Thread) -> None:
        """Stop listening; answers being delayed are given at once."""
        self._closing.set()
        server.shutdown()
        server.server_close()
        serving.join()

    def answer(self, request: Request) -> Answer:
        """The answer to one request."""
        raise NotImplementedError

    def misbehaving(self, request: Request) -> Misbehaviour | None:
        """A raw answer for a POST, or None: answer it with `answer`."""
        return None


class _LoopbackServer(ThreadingHTTPServer):
    """The listening socket, answering with the service it serves."""

    # The default backlog of 5 drops bursts of connections, which then retry a second later.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], service: LoopbackService) -> None:
        super().__init__(address, _RequestHandler)
        self.service = service

    def handle_error(self, request: object, client_address: object) -> None:
        logger.exception("%s dropped the connection of %s", self.service.name, client_address)


class _RequestHandler(BaseHTTPRequestHandler):
    """One HTTP request (HTTP/1.0: the connection closes after the answer)."""

    server: _LoopbackServer
    server_version = "ESF"  # what Google's front end calls itself
    sys_version = ""
    timeout = IDLE_TIMEOUT

    def do_POST(self) -> None:
        authorization = self.headers.get("Authorization")
        try:
            form = read_form(self.headers, self.rfile.read)
            request = Request("POST", self.path, form, authorization=authorization)
        except MalformedRequest as problem:
            request = Request("POST", self.path, problem=problem, authorization=authorization)
        service = self.server.service
        mode = service.misbehaving(request)
        if mode is not None:
            self.close_connection = True
            mode.write(self.wfile, service.closing)
            return
        self._reply(service.answer(request))

    def do_GET(self) -> None:
        request = Request(self.command, self.path, authorization=self.headers.get("Authorization"))
        self._reply(self.server.service.answer(request))

    do_PUT = do_DELETE = do_PATCH = do_GET

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def _reply(self, answer: Answer) -> None:
        body = json.dumps(answer.body, indent=2).encode()
        self.send_response(answer.status)
        for name, value in (*self.server.service.reply_headers, *answer.headers):
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve_until_stopped(service: LoopbackService) -> None:
    """Run `service` until SIGTERM or SIGINT; prints its URL once it listens.

    Called from the main thread: the signals are blocked before the server's threads start, so
    that they inherit the mask and `sigwait` here receives them.
    """
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    try:
        with service:
            print(service.url, flush=True)
            signal.sigwait(stop_signals)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
