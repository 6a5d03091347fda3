"""The metrics port in-process: `/metrics` and `/healthz` at their paths and 404 elsewhere, a
bounded server; a worker or monitor whose loop hangs answers 503; a worker counts the live
workers in its own metrics."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import mongomock
import pytest
import redis

from config import Settings
from crawler import metrics
from crawler.iterate import CrawlIterator, PassResult
from tests.plugins.crawling import World
from tests.plugins.fakes import build_message, eventually
from workers import health
from workers.health import Liveness, MetricsServer, serve
from workers.monitor import Monitor
from workers.worker import Worker

pytestmark = pytest.mark.integration


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def healthz(port: int) -> tuple[int, dict[str, Any]]:
    status, headers, body = get(port, "/healthz")
    assert headers["Content-Type"] == "application/json"
    return status, json.loads(body)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def liveness(clock: Clock) -> Liveness:
    return Liveness("worker", 30, clock=clock)


@pytest.fixture
def server(liveness: Liveness) -> Iterator[MetricsServer]:
    server = serve(0, liveness, host="127.0.0.1")
    yield server
    server.shutdown()
    server.server_close()


def test_healthz_answers_200_while_the_loop_ticks_and_503_when_it_stops(
    server: MetricsServer, liveness: Liveness, clock: Clock
) -> None:
    port = server.server_port
    status, body = healthz(port)
    assert (status, body["reason"]) == (503, "the worker loop has not started")

    liveness.tick("pass started")
    status, body = healthz(port)
    assert (status, body["status"], body["component"]) == (200, "ok", "worker")

    clock.now += 31
    status, body = healthz(port)
    assert status == 503
    assert body["reason"] == "last progress (pass started) 31 s ago, limit 30 s"
    assert (body["last_s_ago"], body["limit_s"]) == (31, 30)

    liveness.tick("pass ended")
    assert healthz(port)[0] == 200
    liveness.end()
    status, body = healthz(port)
    assert status == 503 and body["reason"].startswith("the worker loop ended")


def test_metrics_only_at_their_path(server: MetricsServer) -> None:
    port = server.server_port
    status, headers, body = get(port, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert b"# TYPE crawler_live_workers gauge" in body

    for path in ("/", "/other", "/metrics/", "/metrics/x", "/healthz/", "/favicon.ico"):
        status, _, body = get(port, path)
        assert (path, status) == (path, 404)
        assert body == b"not found: /metrics or /healthz\n"


def test_healthz_takes_get_and_head_only(server: MetricsServer, liveness: Liveness) -> None:
    liveness.tick("pass started")
    status, headers, body = get(server.server_port, "/healthz", "HEAD")
    assert (status, body) == (200, b"")
    assert int(headers["Content-Length"]) > 0
    status, headers, _ = get(server.server_port, "/healthz", "POST")
    assert (status, headers["Allow"]) == (405, "GET, HEAD")


def answers(port: int) -> bool:
    try:
        return healthz(port)[0] == 200
    except (ConnectionError, http.client.HTTPException):
        return False


def test_the_server_is_bounded(
    server: MetricsServer, liveness: Liveness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Clients that send nothing hold at most MAX_REQUESTS slots, each for REQUEST_TIMEOUT; a
    connection beyond them is closed unanswered, and the port answers again once they go."""
    monkeypatch.setattr(health._Handler, "timeout", 1.0)
    liveness.tick("pass started")
    port = server.server_port
    # The server accepts connections in order: these take every slot before the next one.
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(health.MAX_REQUESTS)]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as extra:
            assert extra.recv(100) == b""  # closed at once, unanswered
        started = time.monotonic()
        for connection in idle:  # the server gives up on each after its timeout
            connection.settimeout(5)
            assert connection.recv(100) == b""
        assert time.monotonic() - started < 4
    finally:
        for connection in idle:
            connection.close()
    eventually(lambda: answers(port))


class HangingIterator(CrawlIterator):
    """A pass that hangs until the test lets it go."""

    release = threading.Event()

    def iterate(self, concurrency: int = 1) -> PassResult:
        HangingIterator.release.wait(30)
        return PassResult()


def test_a_worker_whose_pass_hangs_answers_503(
    redis_server: redis.Redis,
    redis_prefix: str,
    server: MetricsServer,
    liveness: Liveness,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = liveness.clock
    assert isinstance(clock, Clock)
    monkeypatch.setattr("workers.worker.CrawlIterator", HangingIterator)
    HangingIterator.release.clear()
    settings = Settings(redis_prefix=redis_prefix, worker_id="w1", heartbeat_ttl=30)
    process = Worker(settings, mongomock.MongoClient().db, redis_server, liveness=liveness)
    loop = threading.Thread(target=process.run)
    loop.start()
    try:
        eventually(lambda: healthz(server.server_port)[0] == 200)  # the pass started

        clock.now += liveness.limit + 1  # and never moved again

        status, body = healthz(server.server_port)
        assert status == 503
        assert body["reason"] == "last progress (pass started) 31 s ago, limit 30 s"
    finally:
        process.stopping.set()
        HangingIterator.release.set()
        loop.join(10)
    assert not loop.is_alive()
    status, body = healthz(server.server_port)
    assert status == 503 and body["reason"].startswith("the worker loop ended")


class Recording(Liveness):
    def __init__(self) -> None:
        super().__init__("worker", 60)
        self.ticks: list[str] = []

    def tick(self, what: str) -> None:
        self.ticks.append(what)
        super().tick(what)


def test_a_pass_ticks_as_it_starts_each_crawl_and_ends_each_batch(world: World) -> None:
    for name in ("alice", "bob"):
        account = world.add_account(f"{name}@example.com", name)
        for n in range(3):
            account.add_message(build_message(attachments={f"{n}.pdf": b"%PDF " * 100}))
    settings = world.settings.model_copy(update={"worker_id": "w1", "fetch_batch": 2})
    recording = Recording()

    assert Worker(settings, world.db, world.redis, liveness=recording).run(once=True) == 0

    progress = "crawl started or batch ended"
    # Each account: its crawl starts, then two batches (2 + 1 messages) end.
    assert recording.ticks == ["pass started", *[progress] * 6, "pass ended"]
    assert recording.health().body["reason"].startswith("the worker loop ended")


def test_a_worker_counts_the_live_workers_in_its_own_metrics(
    redis_server: redis.Redis, redis_prefix: str
) -> None:
    redis_server.zadd(f"{redis_prefix}workers", {"other": time.time() + 60, "dead": 1.0})
    metrics.WORKERS.set(0)
    settings = Settings(redis_prefix=redis_prefix, worker_id="w1")

    assert Worker(settings, mongomock.MongoClient().db, redis_server).run(once=True) == 0

    assert metrics.REGISTRY.get_sample_value("crawler_live_workers") == 2  # itself and "other"


def test_a_monitor_whose_check_hangs_answers_503(
    redis_server: redis.Redis, redis_prefix: str, clock: Clock
) -> None:
    liveness = Liveness("monitor", 45, clock=clock)
    settings = Settings(redis_prefix=redis_prefix, monitor_interval=0.05)
    process = Monitor(settings, mongomock.MongoClient().db, redis_server, liveness=liveness)
    checks, release = [], threading.Event()
    real_watched = process._watched

    def watched() -> list[str]:
        checks.append(1)
        if len(checks) == 3:  # the second check hangs (each check reads the crawls twice)
            release.wait(30)
        return real_watched()

    process._watched = watched  # type: ignore[method-assign]
    server = serve(0, liveness, host="127.0.0.1")
    loop = threading.Thread(target=process.run)
    loop.start()
    try:
        eventually(lambda: len(checks) == 3)
        assert healthz(server.server_port)[0] == 200

        clock.now += 46

        status, body = healthz(server.server_port)
        assert (status, body["component"]) == (503, "monitor")
        assert body["reason"] == "last progress (check started) 46 s ago, limit 45 s"

        release.set()  # the check ends: the loop moved again
        eventually(lambda: healthz(server.server_port)[0] == 200)
    finally:
        release.set()
        process.stopping.set()
        loop.join(10)
        server.shutdown()
        server.server_close()
    assert liveness.health().body["reason"].startswith("the monitor loop ended")
