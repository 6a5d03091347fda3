"""`crawler monitor`: makes sure every crawl completes, even when its worker dies.

Every interval one monitor of the fleet (a `SET NX EX` lock) moves the in-flight UIDs of
accounts whose lease expired back to their queues and marks those accounts whose crawl died
mid-way due at once (a throttled account keeps its backoff), drops
dead workers from the membership, and reports crawls that stalled (once each). Every monitor
checks, acting or not; when its checks stop, its `/healthz` says so (workers.health).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
from pymongo.database import Database

from config import Settings
from crawler import airbrake, metrics
from crawler.errors import Stalled
from crawler.keys import Keys
from crawler.store import Document, Store
from crawler.uidqueue import requeue_abandoned
from workers.health import Liveness, monitor_limit
from workers.service import guarded, through_outages

log = logging.getLogger(__name__)


@dataclass
class Check:
    """What one monitor check did."""

    acted: bool = False
    requeued: dict[str, int] = field(default_factory=dict)
    dead_workers: int = 0
    stalled: list[str] = field(default_factory=list)


class Monitor:
    """One monitor process."""

    def __init__(
        self,
        settings: Settings,
        database: Database[Document],
        redis_client: redis.Redis,
        *,
        monitor_id: str | None = None,
        clock: Callable[[], float] = time.time,
        liveness: Liveness | None = None,
    ) -> None:
        self.settings = settings
        self.store = Store(database)
        self.redis = redis_client
        self.keys = Keys(settings.redis_prefix)
        self.monitor_id = monitor_id or f"{socket.gethostname()}:{os.getpid()}"
        self.clock = clock
        self.stopping = threading.Event()
        # What `/healthz` reads: when a check last started or ended (see workers.health).
        self.liveness = liveness or Liveness("monitor", monitor_limit(settings))

    def run(self) -> None:
        """Check every interval until stopped; an error left after retries is raised."""
        context = {"component": "monitor", "monitor": self.monitor_id}
        policy = through_outages(self.settings, context)
        try:
            while not self.stopping.is_set():
                guarded(self.check, policy, context)
                self.liveness.tick("check ended")
                self.stopping.wait(self.settings.monitor_interval)
        finally:
            self.liveness.end()

    def check(self) -> Check:
        """One check, if no other monitor acted in this interval."""
        self.liveness.tick("check started")
        interval = max(1, int(self.settings.monitor_interval))
        if not self.redis.set(self.keys.monitor_lock, self.monitor_id, nx=True, ex=interval):
            return Check()
        now = self.clock()
        result = Check(acted=True)
        result.dead_workers = int(self.redis.zremrangebyscore(self.keys.workers, "-inf", now))
        for user_uuid in self._watched():
            moved = requeue_abandoned(self.redis, self.keys, user_uuid)
            if moved:
                result.requeued[user_uuid] = moved
                # Due at once only if its crawl died mid-way: a crawl that ended throttled
                # (or failed) with UIDs in flight keeps its backoff.
                self.store.statuses.requeued(user_uuid, now)
        result.stalled = self.store.statuses.stalled(now - self.settings.stall_after, now)
        for user_uuid in result.stalled:
            stalled = Stalled(f"no progress for {self.settings.stall_after:.0f}s")
            log.warning(
                "crawl of %s stalled: %s", user_uuid, stalled, extra={"user_uuid": user_uuid}
            )
            airbrake.report(stalled, {"component": "monitor", "user_uuid": user_uuid})
        if result.requeued or result.dead_workers:
            log.info("monitor requeued=%s dead_workers=%d", result.requeued, result.dead_workers)
        self._gauges(now)
        return result

    def _gauges(self, now: float) -> None:
        for state, count in self.store.statuses.count_by_state().items():
            metrics.ACCOUNTS.labels(state).set(count)
        metrics.THROTTLED.set(self.store.statuses.count_throttled(now))
        metrics.WORKERS.set(self.redis.zcount(self.keys.workers, now, "+inf"))
        watched = self._watched()
        with self.redis.pipeline(transaction=False) as pipe:
            for user_uuid in watched:
                pipe.llen(self.keys.uids(user_uuid))
                pipe.scard(self.keys.inflight(user_uuid))
            depths = pipe.execute()
        metrics.QUEUE.labels("queued").set(sum(depths[0::2]))
        metrics.QUEUE.labels("inflight").set(sum(depths[1::2]))

    def _watched(self) -> list[str]:
        members = self.redis.smembers(self.keys.crawls)
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)
