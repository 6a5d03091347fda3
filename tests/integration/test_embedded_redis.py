"""The embedded Redis (fakeredis behind Redis's protocol): the crawler's Lua scripts, pipelines and
transactions run on it as on Redis, several clients share it, and `crawler embedded-redis` serves
it as a process until SIGTERM.

The crawl on it end to end: `crawler demo` where no Redis answers (test_demo.py), and
Procfile.dev's worker and monitor processes (tests/e2e/test_procfile_dev.py).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
import redis

from crawler.keys import Keys
from crawler.lease import Lease, LeaseLost
from crawler.uidqueue import UidQueue, requeue_abandoned
from standins.embedded_redis import EmbeddedRedis, LuaMissing

pytestmark = pytest.mark.integration

USER = "user-1"
CLI = [sys.executable, "-c", "from workers.cli import main; main()"]


@pytest.fixture
def embedded() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture
def client(embedded: EmbeddedRedis) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(embedded.url, socket_timeout=5) as connected:
        yield connected


def test_the_uid_queue_and_the_lease_run_their_scripts(client: redis.Redis) -> None:
    keys = Keys("demo:")
    lease = Lease(client, keys, USER, "worker-a", 30.0)
    other = Lease(client, keys, USER, "worker-b", 30.0)
    assert lease.acquire()
    assert not other.acquire()
    queue = UidQueue(client, keys, USER, lease)

    assert queue.push([5, 6, 7, 8], {5: [0], 6: [0, 1], 7: [1]}, [{"r1"}, {"r2", "r3"}]) == 4
    assert queue.push([7, 8, 9]) == 1  # 7 and 8 are queued already
    claimed = queue.claim(2)
    assert len(claimed) == 2
    assert queue.depth() == (3, 2)
    pending = queue.rule_ids([5, 6, 7])
    assert pending == {5: {"r1"}, 6: {"r1", "r2", "r3"}, 7: {"r2", "r3"}}
    assert queue.ack(claimed) == 2
    assert queue.depth() == (3, 0)

    queue.claim(3)
    assert requeue_abandoned(client, keys, USER) == 0  # the lease is held: nothing goes back
    assert lease.release()
    assert requeue_abandoned(client, keys, USER) == 3
    assert other.acquire()
    with pytest.raises(LeaseLost):  # fenced: the lease is no longer ours
        UidQueue(client, keys, USER, lease).claim(1)


def test_clients_share_it_with_pipelines_and_transactions(
    embedded: EmbeddedRedis, client: redis.Redis
) -> None:
    with redis.Redis.from_url(embedded.url, socket_timeout=5) as second:
        with client.pipeline(transaction=True) as pipe:
            pipe.rpush("queue", 1, 2, 3)
            pipe.sadd("set", "a")
            pipe.expire("queue", 60)
            assert pipe.execute() == [3, 1, True]
        with second.pipeline(transaction=False) as pipe:
            pipe.llen("queue")
            pipe.scard("set")
            pipe.ttl("queue")
            length, members, ttl = pipe.execute()
        assert (length, members) == (3, 1)
        assert 0 < ttl <= 60
        assert [key.decode() for key in second.scan_iter(match="q*")] == ["queue"]


def test_it_needs_lua(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "lupa", None)  # as if fakeredis had no `lua` extra
    with pytest.raises(LuaMissing, match=r"fakeredis\[lua\]"), EmbeddedRedis():
        pass


def test_the_command_serves_until_sigterm() -> None:
    with subprocess.Popen(
        [*CLI, "embedded-redis", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            url = process.stdout.readline().strip()
            assert url.startswith("redis://127.0.0.1:"), url
            with redis.Redis.from_url(url, socket_timeout=5) as client:
                script = client.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
                assert script(keys=["counter"], args=[2]) == 2
                assert client.get("counter") == b"2"
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()
        _, stderr = process.communicate()
    assert "Traceback" not in stderr, stderr
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port)):
        pass
