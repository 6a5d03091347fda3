"""Shared fixtures: services that are real here (Redis), each test on its own keys."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from hypothesis import settings

# Timing is the machine's business, not a property: no per-example deadline. CI explores the
# same examples every run, so that a red run is reproducible; locally each run explores anew.
settings.register_profile("crawler", deadline=None, print_blob=True)
settings.register_profile("ci", parent=settings.get_profile("crawler"), derandomize=True)

REDIS_URL = os.environ.get("CRAWLER_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
settings.load_profile("ci" if IN_CI else "crawler")


def require(available: bool, what: str) -> None:
    """Skip locally when a service is missing, but FAIL in CI, where it must be there."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but is not available")
    pytest.skip(f"{what} is not available here")


@pytest.fixture(scope="session")
def redis_server() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        client.ping()
    except redis.ConnectionError:
        require(False, f"Redis at {REDIS_URL}")
    return client


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
]
