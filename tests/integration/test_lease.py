"""The account lease against a real Redis: exclusive, renewable, and lost for good once expired."""

from __future__ import annotations

import time

import pytest
import redis

from crawler.keys import Keys
from crawler.lease import Lease
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.integration

USER = "user-1"


@pytest.fixture
def keys(redis_prefix: str) -> Keys:
    return Keys(redis_prefix)


def lease(client: redis.Redis, keys: Keys, worker_id: str, ttl: float = 30.0) -> Lease:
    return Lease(client, keys, USER, worker_id, ttl)


def test_one_holder_at_a_time(redis_server: redis.Redis, keys: Keys) -> None:
    first, second = lease(redis_server, keys, "worker-a"), lease(redis_server, keys, "worker-b")
    assert first.acquire()
    assert not second.acquire()
    assert first.holder() == second.holder() == "worker-a"
    assert redis_server.get(keys.lease(USER)) == b"worker-a"


def test_taking_a_lease_already_ours_extends_it(redis_server: redis.Redis, keys: Keys) -> None:
    held = lease(redis_server, keys, "worker-a", ttl=30.0)
    assert held.acquire()
    redis_server.pexpire(keys.lease(USER), 1000)
    assert held.acquire()
    assert redis_server.pttl(keys.lease(USER)) > 10_000


def test_renew_extends_only_the_holders_lease(redis_server: redis.Redis, keys: Keys) -> None:
    held, other = lease(redis_server, keys, "worker-a"), lease(redis_server, keys, "worker-b")
    assert held.acquire()
    redis_server.pexpire(keys.lease(USER), 1000)
    assert not other.renew()
    assert redis_server.pttl(keys.lease(USER)) <= 1000
    assert held.renew()
    assert redis_server.pttl(keys.lease(USER)) > 10_000


def test_release_never_drops_another_workers_lease(redis_server: redis.Redis, keys: Keys) -> None:
    held, other = lease(redis_server, keys, "worker-a"), lease(redis_server, keys, "worker-b")
    assert held.acquire()
    assert not other.release()
    assert held.holder() == "worker-a"
    assert held.release()
    assert held.holder() is None
    assert not held.release()
    assert other.acquire()


def test_an_expired_lease_is_lost_to_the_next_worker(redis_server: redis.Redis, keys: Keys) -> None:
    zombie = lease(redis_server, keys, "worker-a", ttl=0.0001)  # below PX's millisecond
    assert zombie.acquire()
    deadline = time.monotonic() + 5
    while zombie.holder() is not None:  # poll until Redis has expired the key
        assert time.monotonic() < deadline, "the lease never expired"
    assert not zombie.renew()
    successor = lease(redis_server, keys, "worker-b")
    assert successor.acquire()
    assert not zombie.renew()
    assert not zombie.release()
    assert successor.holder() == "worker-b"


def test_holder_reads_as_text_with_either_decoding(redis_server: redis.Redis, keys: Keys) -> None:
    with redis.Redis.from_url(REDIS_URL, decode_responses=True) as decoded:
        assert lease(decoded, keys, "worker-a").acquire()
        assert lease(decoded, keys, "worker-b").holder() == "worker-a"
    assert lease(redis_server, keys, "worker-b").holder() == "worker-a"


@pytest.mark.parametrize(
    ("worker_id", "ttl"), [("", 30.0), ("w", 0.0), ("w", -1.0), ("w", float("nan"))]
)
def test_nonsense_leases_are_refused(
    redis_server: redis.Redis, keys: Keys, worker_id: str, ttl: float
) -> None:
    with pytest.raises(ValueError, match=r"worker id|ttl"):
        Lease(redis_server, keys, USER, worker_id, ttl)
