"""`crawler status`: live workers and their shards, accounts by state, throttles, failures, queues.

Everything is read, nothing is changed: the workers from the heartbeat sorted set, queue depths
with LLEN/SCARD (no lease needed), the rest from `crawl_status`. Lists are cut at `--limit` rows;
counts and totals always cover everything.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Annotated, Any, cast

import redis
import typer
from pymongo import ASCENDING, DESCENDING
from rich.table import Table

from crawler.keys import Keys
from crawler.store import Document
from workers.admin_context import (
    JsonOption,
    MongoUrlOption,
    Operator,
    RedisUrlOption,
    operator,
    operator_command,
)
from workers.admin_output import console, duration, print_json, relative, table, timestamp

STATES = ("idle", "crawling", "throttled", "auth_failed", "error")


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


@dataclass
class Report:
    """What `crawler status` shows."""

    now: float
    workers: list[WorkerRow]
    accounts_by_state: dict[str, int]
    throttled: list[dict[str, Any]]
    failing: list[dict[str, Any]]
    rule_errors: list[tuple[str, str, str]]  # (user_uuid, rule id, reason)
    warnings: list[tuple[str, str]]  # (user_uuid, what may be wrong with the account)
    refused_domains: list[tuple[str, str, str]]  # (domain, until, why Google refuses it)
    queues: list[QueueRow]
    totals: dict[str, int]


@operator_command
def status(
    *,
    limit: Annotated[
        int, typer.Option(min=1, help="Rows per list (throttled, failing, queues).")
    ] = 20,
    as_json: JsonOption = False,
    mongodb_url: MongoUrlOption = None,
    redis_url: RedisUrlOption = None,
) -> None:
    """Show workers and shards, accounts by state, throttled and failing accounts, queues."""
    with operator(mongodb_url, redis_url) as ops:
        report = gather(ops, time.time(), limit)
    if as_json:
        print_json(asdict(report))
    else:
        show(report)


def gather(ops: Operator, now: float, limit: int) -> Report:
    """Read everything the status shows."""
    workers = heartbeats(ops.redis, ops.keys, now)
    queues = queue_depths(ops.redis, ops.keys)
    counts = ops.store.statuses.count_by_state()
    totals = {
        "accounts": sum(counts.values()),
        "live_workers": sum(row.shard is not None for row in workers),
        "queued": sum(row.queued for row in queues),
        "inflight": sum(row.inflight for row in queues),
        **ops.store.crawl_totals(),
    }
    throttled = ops.store.statuses_in(
        ["throttled"], [("throttle_backoff_timestamp", ASCENDING)], limit
    )
    failing = ops.store.statuses_in(
        ["error", "auth_failed"], [("last_error.at", DESCENDING)], limit
    )
    return Report(
        now=now,
        workers=workers,
        accounts_by_state={state: counts.get(state, 0) for state in STATES} | counts,
        throttled=[_throttle(document) for document in throttled],
        failing=[_failure(document) for document in failing],
        rule_errors=[
            (str(document.get("user_uuid")), str(rule_id), str(reason))
            for document in ops.store.rule_errors(limit)
            for rule_id, reason in sorted(dict(document["rule_errors"]).items())
        ][:limit],
        queues=queues[:limit],
        totals=totals,
        warnings=[
            (str(document.get("user_uuid")), str(document["folder_warning"]))
            for document in ops.store.folder_warnings(limit)
        ],
        refused_domains=[
            (str(domain["domain"]), timestamp(refused.get("until")), str(refused.get("message")))
            for domain in ops.store.domains.all()
            if isinstance(refused := domain.get("refused"), dict)
        ][:limit],
    )


def heartbeats(client: redis.Redis, keys: Keys, now: float) -> list[WorkerRow]:
    """The workers in the heartbeat set, by id; the expired ones (not yet dropped) without shard."""
    # With scores, redis-py answers (member, score) pairs; its annotation covers every shape.
    scored = cast("list[tuple[bytes, float]]", client.zrange(keys.workers, 0, -1, withscores=True))
    members = [(_text(member), float(score)) for member, score in scored]
    # A worker's automatic shard is its rank among the live workers' ids (see Membership).
    live = sorted(worker for worker, expiry in members if expiry >= now)
    rank = {worker: index for index, worker in enumerate(live)}
    return [
        WorkerRow(worker, expiry - now, f"{rank[worker]}/{len(live)}" if worker in rank else None)
        for worker, expiry in sorted(members)
    ]


def queue_depths(client: redis.Redis, keys: Keys) -> list[QueueRow]:
    """Queued and in-flight UIDs of every account with a queue, the deepest first."""
    accounts = sorted(_text(member) for member in client.smembers(keys.crawls))
    with client.pipeline(transaction=False) as pipe:
        for user_uuid in accounts:
            pipe.llen(keys.uids(user_uuid))
            pipe.scard(keys.inflight(user_uuid))
            pipe.get(keys.lease(user_uuid))
        replies = pipe.execute()
    rows = [
        QueueRow(user_uuid, int(queued), int(inflight), None if lease is None else _text(lease))
        for user_uuid, queued, inflight, lease in zip(
            accounts, replies[::3], replies[1::3], replies[2::3], strict=True
        )
    ]
    return sorted(rows, key=lambda row: (-(row.queued + row.inflight), row.user_uuid))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _throttle(document: Document) -> dict[str, Any]:
    return {
        "user_uuid": document.get("user_uuid"),
        "until": document.get("throttle_backoff_timestamp"),
        "until_utc": timestamp(document.get("throttle_backoff_timestamp")),
        "reason": document.get("throttle_reason"),
        "consecutive_throttles": document.get("consecutive_throttles"),
    }


def _failure(document: Document) -> dict[str, Any]:
    return {
        "user_uuid": document.get("user_uuid"),
        "state": document.get("state"),
        "last_error": document.get("last_error"),
        "auth_revoked": document.get("auth_revoked"),
    }


def show(report: Report) -> None:
    """Print the report as tables; an empty list as one line."""
    out = console()
    states = report.accounts_by_state
    columns = ("user", "queued", "in flight", "lease held by")
    queues = [(row.user_uuid, row.queued, row.inflight, row.lease) for row in report.queues]
    for result in (
        _workers_table(report),
        table("Accounts by state", states.keys(), [states.values()]),
        _throttled_table(report),
        _failing_table(report),
        table("Rules that cannot be used", ("user", "rule", "reason"), report.rule_errors),
        table("Accounts that may be cut short", ("user", "warning"), report.warnings),
        table(
            "Workspace domains Google refuses (their accounts wait)",
            ("domain", "until", "why"),
            report.refused_domains,
        ),
        table("Queues", columns, queues),
        table("Totals", report.totals.keys(), [report.totals.values()]),
    ):
        out.print(result if result.row_count else f"{result.title}: none", highlight=False)


def _workers_table(report: Report) -> Table:
    rows = [
        (
            row.worker,
            f"{row.expires_in:.1f}" if row.shard else f"expired {duration(row.expires_in)} ago",
            row.shard,
        )
        for row in report.workers
    ]
    return table("Workers", ("worker", "heartbeat expires in (s)", "shard (automatic)"), rows)


def _throttled_table(report: Report) -> Table:
    rows = [
        (
            row["user_uuid"],
            f"{row['until_utc']} ({relative(row['until'], report.now)})",
            f"{row['until']:.0f}" if isinstance(row["until"], int | float) else None,
            row["reason"],
            row["consecutive_throttles"],
        )
        for row in report.throttled
    ]
    columns = ("user", "throttled until", "until (epoch)", "reason", "throttles in a row")
    return table("Throttled accounts", columns, rows)


def _failing_table(report: Report) -> Table:
    rows = []
    for row in report.failing:
        error = row["last_error"] if isinstance(row["last_error"], dict) else {}
        at = error.get("at")
        message = f"{error.get('type', '?')}: {error.get('message', '')}"
        rows.append(
            (
                row["user_uuid"],
                row["state"],
                message,
                f"{timestamp(at)} ({relative(at, report.now)})",
            )
        )
    return table("Failing accounts", ("user", "state", "last error", "at"), rows)
