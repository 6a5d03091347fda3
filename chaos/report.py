"""The tables a run prints: faults by kind, what the crawlers did, recovery after each disruption.

They render as Markdown tables, so that README can quote a run as it printed.
"""

from __future__ import annotations

import io
import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from chaos.checks import Events, Storage
from chaos.injector import Disruption, Injection, Kind
from chaos.logs import crawl_events
from chaos.watcher import CrawlMark


@dataclass(frozen=True)
class Recovery:
    """How long the fleet took to get going again after one disruption."""

    disruption: Disruption
    seconds: float | None  # None: nothing to recover (the victim held no crawl)


def crawl_outcomes(logs: Path) -> Counter[str]:
    """How the crawls ended, by state, from the workers' logs."""
    return Counter(event.state for event in crawl_events(logs))


def recoveries(disruptions: Iterable[Disruption], marks: set[CrawlMark]) -> list[Recovery]:
    """For a kill: until every crawl the victim held was started again by another worker.
    For a store restart: until the first crawl started after it came back had finished."""
    found = []
    for disruption in disruptions:
        if disruption.kind in (Kind.SIGKILL, Kind.SIGTERM):
            found.append(Recovery(disruption, _taken_over(disruption, marks)))
        else:
            done = [
                m.finished_at
                for m in marks
                if m.started_at
                and m.finished_at
                and m.started_at > disruption.up_at
                and m.finished_at > m.started_at
            ]
            found.append(Recovery(disruption, min(done) - disruption.at if done else None))
    return found


def _taken_over(disruption: Disruption, marks: set[CrawlMark]) -> float | None:
    if not disruption.held:
        return None
    waits = []
    for user_uuid in disruption.held:
        starts = [
            m.started_at
            for m in marks
            if m.user_uuid == user_uuid
            and m.started_at
            and m.started_at > disruption.at
            and m.worker != disruption.victim
        ]
        waits.append(min(starts) - disruption.at if starts else float("inf"))
    return max(waits)


def faults_table(injections: list[Injection]) -> Table:
    """Faults injected by kind, and how many took effect."""
    table = Table(title="Faults injected", box=box.MARKDOWN)
    for column in ("fault", "injected", "took effect"):
        table.add_column(column, justify="left" if column == "fault" else "right")
    by_kind = {kind: [i for i in injections if i.kind is kind] for kind in Kind}
    for kind, done in by_kind.items():
        effective = sum(1 for i in done if i.effect is None or i.effect())
        table.add_row(kind.value, str(len(done)), str(effective))
    total = sum(1 for i in injections if i.effect is None or i.effect())
    table.add_row("total", str(len(injections)), str(total))
    return table


def outcome_table(
    outcomes: Counter[str],
    storage: Storage,
    most_sessions: int,
    backoffs: int,
    *,
    events: Events,
    refused_starts: int,
    violations: int,
) -> Table:
    """Crawls by outcome, attachments expected / stored / duplicated / lost, their events,
    the checks."""
    table = Table(title="Outcome", box=box.MARKDOWN)
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("crawls completed (idle)", outcomes["idle"]),
        ("crawls throttled", outcomes["throttled"]),
        ("crawls failed (error, retried later)", outcomes["error"]),
        ("crawls interrupted (SIGTERM)", outcomes["interrupted"]),
        ("crawls auth_failed", outcomes["auth_failed"]),
        ("throttle backoffs recorded", backoffs),
        ("attachments expected", storage.expected),
        ("attachments stored", storage.stored),
        ("attachments duplicated", storage.duplicated),
        ("attachments lost", storage.lost),
        ("attachment events seen", events.seen),
        ("attachments stored without an event", events.missing),
        ("duplicate events (same id, at least once)", events.duplicates),
        ("most sessions of one account at once", most_sessions),
        ("workers refused at start (a store was down), restarted", refused_starts),
        ("violated checks", violations),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    return table


def recovery_summary(found: list[Recovery]) -> Table:
    """Recovery times by kind of disruption: how many, and the fastest, median and slowest."""
    table = Table(title="Recovery by kind", box=box.MARKDOWN)
    for column in ("disruption", "count", "crawls cut", "fastest (s)", "median (s)", "slowest (s)"):
        table.add_column(column, justify="left" if column == "disruption" else "right")
    for kind in Kind:
        mine = [r for r in found if r.disruption.kind is kind]
        if not mine:
            continue
        times = sorted(r.seconds for r in mine if r.seconds is not None)
        kill = kind in (Kind.SIGKILL, Kind.SIGTERM)
        cut = str(sum(len(r.disruption.held) for r in mine)) if kill else "-"
        shown = (
            [_seconds(t) for t in (times[0], statistics.median(times), times[-1])]
            if times
            else ["-"] * 3
        )
        table.add_row(kind.value, str(len(mine)), cut, *shown)
    return table


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return "never" if value == float("inf") else f"{value:.1f}"


def recovery_table(found: list[Recovery], started: float) -> Table:
    """One row per kill or store restart: when, whom, and the time to recover."""
    table = Table(title="Recovery", box=box.MARKDOWN)
    for column in ("disruption", "at (s)", "victim", "crawls cut", "recovered in (s)"):
        table.add_column(column, justify="left" if column in {"disruption", "victim"} else "right")
    for recovery in found:
        disruption = recovery.disruption
        seconds = recovery.seconds
        shown = (
            "-" if seconds is None else ("never" if seconds == float("inf") else f"{seconds:.1f}")
        )
        cut = str(len(disruption.held)) if disruption.kind in (Kind.SIGKILL, Kind.SIGTERM) else "-"
        table.add_row(
            disruption.kind.value,
            f"{disruption.at - started:.1f}",
            disruption.victim or "-",
            cut,
            shown,
        )
    return table


def render(tables: Iterable[Table], width: int = 110) -> str:
    """The tables as plain text (Markdown), one after the other."""
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    for table in tables:
        console.print(table)
        console.print()
    return console.export_text()
