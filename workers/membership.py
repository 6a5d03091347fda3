"""Shard membership: a static shard from configuration, or a rank among the live workers."""

from __future__ import annotations

import re

import redis

from config import Settings
from crawler.errors import ConfigError
from crawler.keys import Keys

_ORDINAL = re.compile(r"[-.](\d+)$")


def static_shard(settings: Settings) -> tuple[int, int] | None:
    """(client_id, client_count) when configured, else None for automatic membership.

    The id comes from CRAWLER_CLIENT_ID, else from a process name like honcho's `worker.3`
    (numbered from 1), else from a StatefulSet pod name like `crawler-2` (numbered from 0);
    any of them needs CRAWLER_CLIENT_COUNT.
    """
    count = settings.client_count
    if count is None:
        if settings.client_id is not None:
            raise ConfigError("CRAWLER_CLIENT_ID needs CRAWLER_CLIENT_COUNT")
        return None
    client_id = settings.client_id
    if client_id is None:
        client_id = _ordinal(settings.process_name, base=1)
    if client_id is None:
        client_id = _ordinal(settings.hostname, base=0)
    if client_id is None:
        raise ConfigError("CRAWLER_CLIENT_COUNT needs CRAWLER_CLIENT_ID (or worker.N, pod-N)")
    if not 0 <= client_id < count:
        raise ConfigError(f"client id {client_id} is not in 0..{count - 1}")
    return client_id, count


def _ordinal(name: str | None, base: int) -> int | None:
    match = _ORDINAL.search(name or "")
    return int(match.group(1)) - base if match else None


class Membership:
    """The live workers, in a sorted set scored by heartbeat expiry."""

    def __init__(self, client: redis.Redis, keys: Keys, worker_id: str, ttl: float) -> None:
        self.redis, self.keys, self.worker_id, self.ttl = client, keys, worker_id, ttl

    def heartbeat(self, now: float) -> None:
        """Say this worker is alive until `now + ttl`."""
        self.redis.zadd(self.keys.workers, {self.worker_id: now + self.ttl})

    def shard(self, now: float) -> tuple[int, int]:
        """This worker's rank among the live workers, and their number."""
        self.heartbeat(now)
        live = self.live(now)
        return live.index(self.worker_id), len(live)

    def live(self, now: float) -> list[str]:
        """Ids of the workers whose heartbeat has not expired, sorted."""
        members = self.redis.zrangebyscore(self.keys.workers, now, "+inf")
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    def leave(self) -> None:
        """Leave the membership (a clean shutdown)."""
        self.redis.zrem(self.keys.workers, self.worker_id)
