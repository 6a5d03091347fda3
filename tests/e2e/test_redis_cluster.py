"""Beyond one machine: the service on a 3-node Redis Cluster, one of whose nodes restarts.

Three `redis-server`s in cluster mode on loopback ports, joined by `redis-cli --cluster create`;
`crawler worker` and `crawler monitor` processes reach them through
`CRAWLER_REDIS_URL=redis+cluster://...`. Every account's keys share one hash slot (their hash
tag), so the queue's and the lease's scripts run on one node each; the accounts are spread over
all three. One node restarts (SIGTERM, then again from its append-only file) mid-crawl; the
result must be the same as on one Redis: every attachment exactly once, nothing left queued.
"""

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import mongomock
import pytest
from redis.cluster import RedisCluster, key_slot

from chaos import checks
from chaos.deployment import Deployment
from chaos.servers import RedisClusterServers, redis_server_binary
from config import Settings
from crawler import CrawlIterator
from tests.conftest import require
from tests.plugins.fakes import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

ACCOUNTS = 12
PREFIX = "cluster-e2e:"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RedisClusterServers]:
    available = redis_server_binary() is not None and shutil.which("redis-cli") is not None
    require(available, "redis-server and redis-cli (Debian's redis-server package)")
    servers = RedisClusterServers(tmp_path / "cluster")
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def deployment(cluster: RedisClusterServers, tmp_path: Path) -> Iterator[Deployment]:
    deployment = Deployment(tmp_path / "deployment", cluster.url, PREFIX, "file")
    with deployment.running():
        deployment.add_accounts(ACCOUNTS, revoked=0, per_account=(4, 8), seed=5)
        for account in deployment.accounts:
            account.fake.faults.latency = 0.03  # crawls long enough for a restart to land in
        yield deployment


def stored_everything(deployment: Deployment) -> bool:
    stored, _ = checks.storage(deployment)
    return stored.stored == stored.expected and not checks.statuses(deployment)


def test_the_accounts_spread_over_every_node(deployment: Deployment) -> None:
    keys = deployment.keys
    for account in deployment.accounts:
        user = account.user_uuid
        slots = {key_slot(k.encode()) for k in (keys.uids(user), keys.inflight(user))}
        slots |= {key_slot(keys.rule_hits(user).encode()), key_slot(keys.lease(user).encode())}
        assert len(slots) == 1, f"{user}'s keys span slots {slots}"
    client = cast(RedisCluster, deployment.store_redis())
    nodes = {client.get_node_from_key(keys.uids(a.user_uuid)).port for a in deployment.accounts}
    assert len(nodes) == 3


def test_workers_and_a_monitor_store_everything_exactly_once_through_a_node_restart(
    cluster: RedisClusterServers, deployment: Deployment
) -> None:
    fleet = deployment.processes()
    fleet.start("monitor")
    workers = [fleet.start("worker") for _ in range(3)]
    eventually(lambda: deployment.db.attachments.count_documents({}) > 0, timeout=60)

    restarted_at = time.time()
    stored_before = deployment.db.attachments.count_documents({})
    cluster.restart(1)  # SIGTERM; back up a second later with its AOF and nodes.conf
    eventually(lambda: stored_everything(deployment), timeout=90)
    fleet.stop(30)

    storage, violations = checks.storage(deployment)
    assert stored_before < storage.expected, "the node restarted mid-crawl"
    assert (storage.stored, storage.duplicated, storage.lost) == (storage.expected, 0, 0)
    assert storage.expected > 0
    assert violations == []
    assert checks.queues(deployment) == []
    assert checks.statuses(deployment) == []
    most, overlaps = checks.sessions(deployment)
    assert (most, overlaps) == (1, [])
    crashed = {w.name: w.log.read_text()[-3000:] for w in workers if w.exit_code != 0}
    assert crashed == {}, "a worker did not ride out the restart"
    assert deployment.db.crawl_status.count_documents({"last_finished_at": {"$gt": restarted_at}})


def test_a_crawl_iterator_built_from_settings_reaches_the_cluster(
    cluster: RedisClusterServers, tmp_path: Path
) -> None:
    """The library API as well as the worker: CRAWLER_REDIS_URL alone picks the cluster client."""
    settings = Settings(redis_url=cluster.url, redis_prefix=PREFIX, blob_dir=tmp_path)

    iterator = CrawlIterator(mongomock.MongoClient().db, settings=settings)

    assert isinstance(iterator.redis, RedisCluster)
    assert iterator.iterate().outcomes == {}  # a pass over no account, through the cluster
