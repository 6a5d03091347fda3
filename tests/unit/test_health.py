"""`/healthz`'s judgement: a loop is alive once started, until it ends, while it ticks within
its limit; the limits come from the settings."""

import pytest

from config import Settings
from workers.health import Liveness, monitor_limit, worker_limit

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_loop_that_has_not_started_is_not_alive(clock: Clock) -> None:
    health = Liveness("worker", 60, clock=clock).health()

    assert not health.alive
    assert health.body["status"] == "unhealthy"
    assert health.body["reason"] == "the worker loop has not started"
    assert health.body["limit_s"] == 60


def test_a_loop_is_alive_while_it_ticks_within_its_limit(clock: Clock) -> None:
    liveness = Liveness("worker", 60, clock=clock)
    liveness.tick("pass started")
    clock.now += 60

    health = liveness.health()

    assert health.alive
    assert health.body == {
        "status": "ok",
        "reason": "last progress (pass started) 60 s ago, limit 60 s",
        "component": "worker",
        "limit_s": 60,
        "last": "pass started",
        "last_s_ago": 60.0,
    }


def test_a_loop_that_stopped_ticking_is_not_alive_and_says_for_how_long(clock: Clock) -> None:
    liveness = Liveness("monitor", 165, clock=clock)
    liveness.tick("check started")
    clock.now += 165.5

    health = liveness.health()

    assert not health.alive
    assert health.body["status"] == "unhealthy"
    assert health.body["reason"] == "last progress (check started) 166 s ago, limit 165 s"
    assert (health.body["last"], health.body["last_s_ago"]) == ("check started", 165.5)


def test_a_tick_brings_it_back(clock: Clock) -> None:
    liveness = Liveness("worker", 10, clock=clock)
    liveness.tick("pass started")
    clock.now += 11
    assert not liveness.health().alive

    liveness.tick("crawl started or batch ended")

    assert liveness.health().alive


def test_a_loop_that_ended_is_not_alive(clock: Clock) -> None:
    liveness = Liveness("worker", 60, clock=clock)
    liveness.tick("pass ended")
    liveness.end()

    health = liveness.health()

    assert not health.alive
    assert health.body["reason"].startswith("the worker loop ended; last progress (pass ended)")


def test_the_limits_come_from_the_settings() -> None:
    defaults = Settings()
    assert worker_limit(defaults) == 900 + 120  # CRAWLER_STALL_AFTER + CRAWLER_RETRY_MAX_TIME
    assert monitor_limit(defaults) == 15 + 120 + 30  # interval + retries + their last attempt
    # An idle worker passes every third of the heartbeat TTL: a short stall_after is no limit.
    short = Settings(stall_after=1, heartbeat_ttl=30, retry_max_time=5)
    assert worker_limit(short) == 30 + 5
    assert monitor_limit(Settings(monitor_interval=60, retry_max_time=10)) == 60 + 10 + 30
