"""Shared fixtures: services that are real here (Redis), each test on its own keys.

The tests use a real Redis: the one at CRAWLER_REDIS_URL (redis://127.0.0.1:6379/0 by default).
Where none answers there, the session starts a private `redis-server` on a free port, if one is
installed, and points REDIS_URL and CRAWLER_REDIS_URL at it before any test module reads them;
else the tests that need Redis skip, saying why in one line (and fail in CI).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from hypothesis import settings

from chaos.servers import RedisServer

# Timing is the machine's business, not a property: no per-example deadline. CI explores the
# same examples every run, so that a red run is reproducible; locally each run explores anew.
settings.register_profile("crawler", deadline=None, print_blob=True)
settings.register_profile("ci", parent=settings.get_profile("crawler"), derandomize=True)

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
settings.load_profile("ci" if IN_CI else "crawler")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
REDIS_PROBE_TIMEOUT = 2.0  # seconds for the Redis of CRAWLER_REDIS_URL to answer


@dataclass(frozen=True)
class RedisChoice:
    """Which Redis the session's tests use: `url`, once `start` (a redis-server binary) runs
    there; or none, and `missing` says why."""

    url: str
    start: str | None = None
    missing: str | None = None


def choose_redis(url: str, answers: Callable[[str], bool], server: str | None) -> RedisChoice:
    """The Redis at `url` if it answers; else a private one from the `server` binary; else none."""
    if answers(url):
        return RedisChoice(url)
    if server is not None:
        return RedisChoice(url, start=server)
    return RedisChoice(
        url,
        missing=f"Redis (none answers at {url}, and no redis-server on PATH to start one: "
        "apt-get install redis-server)",
    )


def redis_answers(url: str) -> bool:
    """Whether a Redis answers PING at `url`."""
    try:
        with redis.Redis.from_url(
            url, socket_connect_timeout=REDIS_PROBE_TIMEOUT, socket_timeout=REDIS_PROBE_TIMEOUT
        ) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


class PrivateRedis:
    """The session's own `redis-server`, in a directory of its own, without persistence."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="crawler-test-redis-"))
        self.server = RedisServer(self.directory, None, "--appendonly", "no")
        self.server.start()
        atexit.register(self.stop)  # whatever ends the session

    def stop(self) -> None:
        self.server.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def _session_redis() -> tuple[RedisChoice, PrivateRedis | None]:
    choice = choose_redis(
        os.environ.get("CRAWLER_REDIS_URL") or DEFAULT_REDIS_URL,
        redis_answers,
        shutil.which("redis-server"),
    )
    if choice.start is None:
        return choice, None
    try:
        private = PrivateRedis()
    except RuntimeError as error:  # it would not start: say why, as for no binary at all
        why = " ".join(str(error).split())[:300]
        return RedisChoice(choice.url, missing=f"Redis (none at {choice.url}; {why})"), None
    # Subprocesses and Settings built in the tests read CRAWLER_REDIS_URL: the private one.
    os.environ["CRAWLER_REDIS_URL"] = private.server.url
    return choice, private


# Resolved once, as the session starts: test modules and plugins import REDIS_URL.
REDIS, PRIVATE_REDIS = _session_redis()
REDIS_URL = REDIS.url if PRIVATE_REDIS is None else PRIVATE_REDIS.server.url


def pytest_report_header() -> str:
    """One line at the top of the session: which Redis the tests use."""
    if REDIS.missing is not None:
        return f"redis: {REDIS.missing}: the tests that need it skip (fail in CI)"
    if PRIVATE_REDIS is not None:
        return f"redis: a private redis-server at {REDIS_URL} (none answers at {REDIS.url})"
    return f"redis: {REDIS_URL}"


def pytest_unconfigure() -> None:
    if PRIVATE_REDIS is not None:
        PRIVATE_REDIS.stop()


def require(available: bool, what: str) -> None:
    """Skip locally when a service is missing, but FAIL in CI, where it must be there."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but is not available")
    pytest.skip(f"{what} is not available here")


@pytest.fixture(scope="session")
def redis_server() -> redis.Redis:
    if REDIS.missing is not None:
        require(False, REDIS.missing)
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        client.ping()
    except redis.ConnectionError:
        require(False, f"Redis at {REDIS_URL}")
    return client


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Every test skipped for want of Redis is reported at one place, so that `-ra` folds them
    into one line rather than a line per test."""
    report: pytest.TestReport = yield
    if (
        REDIS.missing is not None
        and report.skipped
        and isinstance(report.longrepr, tuple)
        and REDIS.missing in str(report.longrepr[2])
    ):
        # No line: pytest prints `path: reason`, as for the skips it folds itself.
        report.longrepr = (__file__, None, str(report.longrepr[2]))  # type: ignore[assignment]
    return report


@pytest.fixture
def redis_prefix(redis_server: redis.Redis) -> Iterator[str]:
    """A key prefix of this test's own; only its keys are removed afterwards."""
    prefix = f"test:{uuid.uuid4().hex}:"
    yield prefix
    keys = list(redis_server.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        redis_server.delete(*keys)


@pytest.fixture(autouse=True)
def no_mongo_client_outlives_its_test() -> Iterator[None]:
    """A MongoClient left open fails the test that opened it.

    Its monitor threads draw request ids from the global `random`, and Hypothesis takes that for
    randomness in the strategies of whatever test runs meanwhile: a flaky failure far from here.
    """
    yield
    deadline = time.monotonic() + 5  # closed clients' threads end within a heartbeat's wait
    while alive := sorted(t.name for t in threading.enumerate() if t.name.startswith("pymongo_")):
        if time.monotonic() > deadline:
            pytest.fail(f"a MongoClient outlived the test (its threads {alive}): close it")
        time.sleep(0.05)


pytest_plugins = [
    "tests.plugins.mongo",
    "tests.plugins.dovecot",
    "tests.plugins.fakes",
    "tests.plugins.crawling",
    "tests.plugins.admin",
    "tests.plugins.logs",
]
