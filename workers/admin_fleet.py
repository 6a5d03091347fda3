"""What Redis says of the fleet, for `crawler status` and its live view: the workers in the
heartbeat set with the shard automatic membership gives each, and the accounts' queues.

Read only: LLEN, SCARD and GET need no lease.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import redis
from rich.table import Table

from crawler.keys import Keys
from workers.admin_output import duration, table


@dataclass(frozen=True)
class WorkerRow:
    """A worker in the heartbeat set; `shard` (`id/count`) is its automatic shard while live."""

    worker: str
    expires_in: float
    shard: str | None


@dataclass(frozen=True)
class QueueRow:
    """One account's UIDs in Redis, and the worker holding its lease."""

    user_uuid: str
    queued: int
    inflight: int
    lease: str | None


def heartbeats(client: redis.Redis, keys: Keys, now: float) -> list[WorkerRow]:
    """The workers in the heartbeat set, by id; the expired ones (not yet dropped) without shard."""
    # With scores, redis-py answers (member, score) pairs; its annotation covers every shape.
    scored = cast("list[tuple[bytes, float]]", client.zrange(keys.workers, 0, -1, withscores=True))
    members = [(text(member), float(score)) for member, score in scored]
    # A worker's automatic shard is its rank among the live workers' ids (see Membership).
    live = sorted(worker for worker, expiry in members if expiry >= now)
    rank = {worker: index for index, worker in enumerate(live)}
    return [
        WorkerRow(worker, expiry - now, f"{rank[worker]}/{len(live)}" if worker in rank else None)
        for worker, expiry in sorted(members)
    ]


def queue_depths(
    client: redis.Redis, keys: Keys, accounts: Iterable[str] | None = None
) -> list[QueueRow]:
    """Queued and in-flight UIDs of these accounts (else of every account with a queue), the
    deepest first."""
    if accounts is None:
        accounts = (text(member) for member in client.smembers(keys.crawls))
    users = sorted(accounts)
    with client.pipeline(transaction=False) as pipe:
        for user_uuid in users:
            pipe.llen(keys.uids(user_uuid))
            pipe.scard(keys.inflight(user_uuid))
            pipe.get(keys.lease(user_uuid))
        replies = pipe.execute()
    rows = [
        QueueRow(user_uuid, int(queued), int(inflight), None if lease is None else text(lease))
        for user_uuid, queued, inflight, lease in zip(
            users, replies[::3], replies[1::3], replies[2::3], strict=True
        )
    ]
    return sorted(rows, key=lambda row: (-(row.queued + row.inflight), row.user_uuid))


def text(value: Any) -> str:
    """A Redis reply as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def workers_table(workers: list[WorkerRow]) -> Table:
    """The workers in the heartbeat set, with the shard automatic membership gives each."""
    rows = [
        (
            row.worker,
            f"{row.expires_in:.1f}" if row.shard else f"expired {duration(row.expires_in)} ago",
            row.shard,
        )
        for row in workers
    ]
    return table("Workers", ("worker", "heartbeat expires in (s)", "shard (automatic)"), rows)
