"""`crawler status`: live workers and their shards, accounts by state, throttles, failures, queues.

Everything is read, nothing is changed: the workers from the heartbeat sorted set, queue depths
with LLEN/SCARD (no lease needed), the rest from `crawl_status`. Lists are cut at `--limit` rows;
counts and totals always cover everything. `--watch` is a live view of the same stores
(`admin_watch`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Annotated, Any

import typer
from pymongo import ASCENDING, DESCENDING
from rich.table import Table

from crawler.errors import BadInput
from crawler.store import Document
from workers.admin_context import (
    JsonOption,
    MongoUrlOption,
    Operator,
    RedisUrlOption,
    operator,
    operator_command,
)
from workers.admin_fleet import QueueRow, WorkerRow, heartbeats, queue_depths, workers_table
from workers.admin_output import console, next_crawl, print_json, relative, table, timestamp
from workers.admin_watch import DEFAULT_INTERVAL, MIN_INTERVAL, live_view

STATES = ("idle", "crawling", "throttled", "auth_failed", "error")


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
        int, typer.Option(min=1, help="Rows per list (throttled, failing, queues, crawls).")
    ] = 20,
    as_json: JsonOption = False,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            help="A live view of workers, states and running crawls, until Ctrl-C.",
        ),
    ] = False,
    interval: Annotated[
        float | None,
        typer.Option(
            min=MIN_INTERVAL,
            help=f"Seconds between refreshes of --watch (default {DEFAULT_INTERVAL:g}).",
            show_default=False,
        ),
    ] = None,
    mongodb_url: MongoUrlOption = None,
    redis_url: RedisUrlOption = None,
) -> None:
    """Show workers and shards, accounts by state, throttled and failing accounts, queues; or,
    with --watch, a live view of them and of the crawls running."""
    if interval is not None and not watch:
        raise BadInput("--interval is for --watch")
    if watch and as_json:
        raise BadInput("--watch shows a live view: it prints no JSON (status --json does)")
    with operator(mongodb_url, redis_url) as ops:
        if watch:
            live_view(ops, DEFAULT_INTERVAL if interval is None else interval, limit)
            return
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


def _throttle(document: Document) -> dict[str, Any]:
    return {
        "user_uuid": document.get("user_uuid"),
        "until": document.get("throttle_backoff_timestamp"),
        "until_utc": timestamp(document.get("throttle_backoff_timestamp")),
        "reason": document.get("throttle_reason"),
        "consecutive_throttles": document.get("consecutive_throttles"),
        "next_crawl_at": document.get("next_crawl_at"),
    }


def _failure(document: Document) -> dict[str, Any]:
    return {
        "user_uuid": document.get("user_uuid"),
        "state": document.get("state"),
        "last_error": document.get("last_error"),
        "auth_revoked": document.get("auth_revoked"),
        "consecutive_errors": document.get("consecutive_errors"),
        "next_crawl_at": document.get("next_crawl_at"),
    }


def show(report: Report) -> None:
    """Print the report as tables; an empty list as one line."""
    out = console()
    states = report.accounts_by_state
    columns = ("user", "queued", "in flight", "lease held by")
    queues = [(row.user_uuid, row.queued, row.inflight, row.lease) for row in report.queues]
    for result in (
        workers_table(report.workers),
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


def _throttled_table(report: Report) -> Table:
    rows = [
        (
            row["user_uuid"],
            f"{row['until_utc']} ({relative(row['until'], report.now)})",
            f"{row['until']:.0f}" if isinstance(row["until"], int | float) else None,
            row["reason"],
            row["consecutive_throttles"],
            next_crawl("throttled", row["next_crawl_at"], report.now),
        )
        for row in report.throttled
    ]
    columns = (
        "user",
        "throttled until",
        "until (epoch)",
        "reason",
        "throttles in a row",
        "next crawl",
    )
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
                next_crawl(row["state"], row["next_crawl_at"], report.now),
            )
        )
    columns = ("user", "state", "last error", "at", "next crawl")
    return table("Failing accounts", columns, rows)
