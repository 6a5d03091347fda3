"""What a service process answers on its metrics port: `/metrics` and `/healthz`, nothing else.

`/healthz` answers 200 while the process's loop is alive, 503 otherwise, with a JSON body that
says why. Alive means the loop has started, has not ended, and showed progress (a tick) within
its limit:

- A worker ticks when a pass starts (each attempt, when a pass rides out a store outage), when
  the pass starts a crawl or a crawl ends a batch (the moments a pass asks whether to stop), and
  when the pass ends. Its limit is max(CRAWLER_STALL_AFTER, CRAWLER_HEARTBEAT_TTL) +
  CRAWLER_RETRY_MAX_TIME (1020 s by default). A pass has no bound of its own: it crawls every
  due account of the shard, however many, each for up to CRAWLER_MAX_CRAWL_TIME and a batch; so
  the worker is judged by its progress instead. A worker that has started no crawl and ended no
  batch for CRAWLER_STALL_AFTER holds only crawls the monitor reports as stalled; an idle one
  starts a pass at least every third of CRAWLER_HEARTBEAT_TTL; CRAWLER_RETRY_MAX_TIME covers
  the waits between attempts (a crawl's transient errors, a pass riding out a store outage),
  during which nothing moves. The heartbeat is no sign of life here: its thread beats on while
  a pass hangs.
- A monitor ticks when a check starts (each attempt) and when it ends. Its limit is
  CRAWLER_MONITOR_INTERVAL + CRAWLER_RETRY_MAX_TIME + 30 s (165 s by default): the sleep between
  checks, a check riding out a store outage (after which the process exits on its own), and
  the check's last attempt and reads.

The server is small and bounded: at most MAX_REQUESTS requests at once (a connection beyond
them is closed unanswered), a client silent for REQUEST_TIMEOUT seconds is dropped, one request
per connection; it logs nothing per request.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Any, cast
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIEnvironment

from prometheus_client import make_wsgi_app

from config import Settings
from crawler import metrics
from workers.service import OUTAGE_MAX_SLEEP

log = logging.getLogger(__name__)

MAX_REQUESTS = 8
REQUEST_TIMEOUT = 5.0


def worker_limit(settings: Settings) -> float:
    """Seconds a worker's loop may go without a tick and still be alive (see the module)."""
    return max(settings.stall_after, settings.heartbeat_ttl) + settings.retry_max_time


def monitor_limit(settings: Settings) -> float:
    """Seconds a monitor's loop may go without a tick and still be alive (see the module)."""
    return settings.monitor_interval + settings.retry_max_time + OUTAGE_MAX_SLEEP


@dataclass(frozen=True)
class Health:
    """One answer of `/healthz`."""

    alive: bool
    body: dict[str, Any]


class Liveness:
    """When a process's loop last moved, and how long it may go without moving; thread-safe."""

    def __init__(
        self, component: str, limit: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.component = component
        self.limit = limit
        self.clock = clock
        self._lock = threading.Lock()
        self._last: tuple[float, str] | None = None
        self._ended = False

    def tick(self, what: str) -> None:
        """The loop moved: `what` just happened (it names the last progress in `/healthz`)."""
        with self._lock:
            self._last = (self.clock(), what)

    def end(self) -> None:
        """The loop ended: not alive any more, whatever it did last."""
        with self._lock:
            self._ended = True

    def health(self) -> Health:
        """Whether the loop is alive now, and why."""
        with self._lock:
            last, ended = self._last, self._ended
        body: dict[str, Any] = {"component": self.component, "limit_s": round(self.limit, 1)}
        if last is None:
            alive, reason = False, f"the {self.component} loop has not started"
        else:
            at, what = last
            ago = max(0.0, self.clock() - at)
            body |= {"last": what, "last_s_ago": round(ago, 1)}
            progress = f"last progress ({what}) {ago:.0f} s ago, limit {self.limit:.0f} s"
            if ended:
                alive, reason = False, f"the {self.component} loop ended; {progress}"
            else:
                alive, reason = ago <= self.limit, progress
        return Health(alive, {"status": "ok" if alive else "unhealthy", "reason": reason, **body})


def app(liveness: Liveness) -> Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]:
    """The WSGI app of the metrics port: `/metrics`, `/healthz`, and 404 elsewhere."""
    prometheus = make_wsgi_app(metrics.REGISTRY)

    def dispatch(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            output: Iterable[bytes] = prometheus(environ, start_response)
            return output
        if path != "/healthz":
            return _text(start_response, "404 Not Found", "not found: /metrics or /healthz\n")
        method = environ.get("REQUEST_METHOD", "")
        if method not in {"GET", "HEAD"}:
            return _text(
                start_response, "405 Method Not Allowed", "GET or HEAD\n", ("Allow", "GET, HEAD")
            )
        health = liveness.health()
        body = json.dumps(health.body).encode() + b"\n"
        status = "200 OK" if health.alive else "503 Service Unavailable"
        start_response(status, [*_headers("application/json", body)])
        return [b"" if method == "HEAD" else body]

    return dispatch


def _headers(content_type: str, body: bytes) -> list[tuple[str, str]]:
    return [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
    ]


def _text(
    start_response: StartResponse, status: str, text: str, *headers: tuple[str, str]
) -> list[bytes]:
    body = text.encode()
    start_response(status, [*_headers("text/plain; charset=utf-8", body), *headers])
    return [body]


class _Handler(WSGIRequestHandler):
    """One request per connection, from a client never silent for REQUEST_TIMEOUT; no log
    line per request."""

    timeout = REQUEST_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing: orchestrators and Prometheus ask every few seconds."""


class MetricsServer(ThreadingMixIn, WSGIServer):
    """A thread per request, at most MAX_REQUESTS at once."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[WSGIRequestHandler]) -> None:
        self.slots = threading.BoundedSemaphore(MAX_REQUESTS)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the request in a thread of its own, or close it when all slots are taken."""
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that was too slow or went away costs a debug line, not a traceback."""
        log.debug("metrics port: request from %s failed", client_address, exc_info=True)


def serve(port: int, liveness: Liveness, host: str = "0.0.0.0") -> MetricsServer:  # noqa: S104
    """Serve `/metrics` and `/healthz` on host:port in a daemon thread (`port` 0: any free
    port, logged); Prometheus and the orchestrator ask from outside, hence every address."""

    class Server(MetricsServer):
        address_family = _family(host, port)

    server = cast(
        MetricsServer, make_server(host, port, app(liveness), Server, handler_class=_Handler)
    )
    thread = threading.Thread(target=server.serve_forever, name="metrics-port", daemon=True)
    thread.start()
    log.info(
        "serving /metrics and /healthz",
        extra={"host": host, "port": server.server_port, "health_limit_s": liveness.limit},
    )
    return server


def _family(host: str, port: int) -> socket.AddressFamily:
    """IPv4 or IPv6, whichever `host` is."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    return infos[0][0]
