"""The monitor, in-process: recovery of abandoned crawls, dead workers, stalls, metrics."""

from typing import Any

import mongomock
import pytest
import redis

from config import Settings
from crawler import metrics
from crawler.keys import Keys
from crawler.lease import Lease
from crawler.store import Store
from crawler.store.status import LastError
from crawler.uidqueue import UidQueue
from workers.monitor import Monitor

pytestmark = pytest.mark.integration

NOW = 1_800_000_000.0


@pytest.fixture
def parts(redis_server: redis.Redis, redis_prefix: str) -> tuple[Monitor, Store, Keys, Any]:
    settings = Settings(redis_prefix=redis_prefix, monitor_interval=60, stall_after=600)
    database = mongomock.MongoClient().db
    monitor = Monitor(settings, database, redis_server, clock=lambda: NOW)
    return monitor, Store(database), Keys(redis_prefix), redis_server


def test_an_abandoned_crawl_is_requeued_and_due_at_once(
    parts: tuple[Monitor, Store, Keys, Any],
) -> None:
    monitor, store, keys, client = parts
    store.statuses.created(["u1"], now=NOW - 100)
    store.statuses.finished("u1", now=NOW - 100, next_crawl_at=NOW + 500)
    store.statuses.started("u1", "dead-worker", now=NOW - 50)
    lease = Lease(client, keys, "u1", "dead-worker", ttl=60)
    lease.acquire()
    queue = UidQueue(client, keys, "u1", lease)
    queue.push([1, 2, 3, 4])
    assert sorted(queue.claim(2)) == [3, 4]
    client.delete(keys.lease("u1"))  # the worker died; its lease expired

    check = monitor.check()

    assert check.acted and check.requeued == {"u1": 2}
    assert queue.depth() == (4, 0)
    status = store.statuses.of("u1")
    assert (status["state"], status["next_crawl_at"]) == ("idle", NOW)


def test_a_held_lease_is_left_alone(parts: tuple[Monitor, Store, Keys, Any]) -> None:
    monitor, _, keys, client = parts
    lease = Lease(client, keys, "u1", "live-worker", ttl=60)
    lease.acquire()
    queue = UidQueue(client, keys, "u1", lease)
    queue.push([1, 2])
    queue.claim(1)

    assert monitor.check().requeued == {}
    assert queue.depth() == (1, 1)


def test_one_monitor_acts_per_interval(parts: tuple[Monitor, Store, Keys, Any]) -> None:
    monitor, _, keys, client = parts
    other = Monitor(monitor.settings, mongomock.MongoClient().db, client, monitor_id="other")
    assert monitor.check().acted is True
    assert other.check().acted is False
    client.delete(keys.monitor_lock)  # the interval passed
    assert other.check().acted is True


def test_dead_workers_leave_the_membership(parts: tuple[Monitor, Store, Keys, Any]) -> None:
    monitor, _, keys, client = parts
    client.zadd(keys.workers, {"dead": NOW - 1, "alive": NOW + 30})

    assert monitor.check().dead_workers == 1
    assert client.zrange(keys.workers, 0, -1) == [b"alive"]
    assert metrics.REGISTRY.get_sample_value("crawler_live_workers") == 1


def test_a_stalled_crawl_is_reported_once(parts: tuple[Monitor, Store, Keys, Any]) -> None:
    monitor, store, keys, client = parts
    store.statuses.created(["slow", "fine"], now=NOW)
    for user_uuid, progress_at in (("slow", NOW - 900), ("fine", NOW - 5)):
        store.statuses.started(user_uuid, "w", now=NOW - 3600)
        store.statuses.progressed(user_uuid, now=progress_at, counts={})

    assert monitor.check().stalled == ["slow"]
    client.delete(keys.monitor_lock)
    assert monitor.check().stalled == []


def test_gauges_follow_the_stores(parts: tuple[Monitor, Store, Keys, Any]) -> None:
    monitor, store, keys, client = parts
    store.statuses.created(["a", "b", "c"], now=NOW)
    error: LastError = {"type": "Throttled", "message": "x", "at": NOW}
    store.statuses.throttled("a", "throttled", consecutive=1, until=NOW + 60, error=error)
    store.statuses.throttled("b", "throttled", consecutive=1, until=NOW - 60, error=error)
    lease = Lease(client, keys, "a", "w", ttl=60)
    lease.acquire()
    queue = UidQueue(client, keys, "a", lease)
    queue.push([1, 2, 3])
    queue.claim(1)

    monitor.check()

    sample = metrics.REGISTRY.get_sample_value
    assert sample("crawler_accounts", {"state": "throttled"}) == 2
    assert sample("crawler_accounts", {"state": "idle"}) == 1
    assert sample("crawler_throttled_accounts") == 1
    assert sample("crawler_queue_uids", {"where": "queued"}) == 2
    assert sample("crawler_queue_uids", {"where": "inflight"}) == 1
