"""`crawler status --watch`: a live view of the fleet, read again every `--interval` seconds until
Ctrl-C: the workers and their shards, the accounts by state, when the next one is due, and each
crawl running with its progress.

A crawl's progress is the messages it stored while watched, of those plus the UIDs its queue
still holds: `crawl_status.totals` add up every crawl of an account, so the view notes them when
it first sees the crawl (`Progress`). `snapshot` reads, `render` draws (no I/O: tests call it),
`live_view` loops. On a terminal the view is redrawn in place (rich.live); elsewhere (a pipe, a
file) each refresh is printed after the last. A store that stops answering is shown in the
view, which keeps trying; Ctrl-C (or SIGTERM) ends it with exit code 0.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType

from pymongo import ASCENDING
from pymongo.errors import PyMongoError
from redis import RedisError
from rich.console import Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from crawler.store import Document
from crawler.store.status import State
from workers.admin_context import Operator
from workers.admin_fleet import WorkerRow, heartbeats, queue_depths, workers_table
from workers.admin_output import console, duration, printable, relative, table, timestamp

DEFAULT_INTERVAL = 2.0  # seconds between refreshes
MIN_INTERVAL = 0.2
BAR_WIDTH = 24


@dataclass(frozen=True)
class Crawl:
    """A crawl running now: where, since when, what its account stored, what its queue holds."""

    user_uuid: str
    worker: str | None
    started_at: float | None
    progress_at: float | None  # when it last stored a batch
    messages: int  # the account's totals, every crawl added up
    attachments: int
    queued: int
    inflight: int

    @property
    def key(self) -> tuple[str, float | None]:
        """This crawl of this account: a later crawl starts at another time."""
        return self.user_uuid, self.started_at


@dataclass(frozen=True)
class Snapshot:
    """What one refresh read."""

    now: float
    workers: list[WorkerRow]
    accounts_by_state: dict[str, int]
    next_due_at: float | None
    crawling: int  # crawls running, all of them; `crawls` holds the first `--limit`
    crawls: list[Crawl]


@dataclass
class Progress:
    """The account totals each crawl had when the view first saw it."""

    first_seen: dict[tuple[str, float | None], tuple[int, int]] = field(default_factory=dict)

    def stored(self, crawl: Crawl) -> tuple[int, int]:
        """(messages, attachments) the crawl stored while watched."""
        messages, attachments = self.first_seen.setdefault(
            crawl.key, (crawl.messages, crawl.attachments)
        )
        return max(crawl.messages - messages, 0), max(crawl.attachments - attachments, 0)

    def forget_all_but(self, crawls: list[Crawl]) -> None:
        """Drop the crawls that ended."""
        running = {crawl.key for crawl in crawls}
        self.first_seen = {key: seen for key, seen in self.first_seen.items() if key in running}


def snapshot(ops: Operator, now: float, limit: int) -> Snapshot:
    """Read the fleet: Redis for workers and queues, `crawl_status` for the rest."""
    workers = heartbeats(ops.redis, ops.keys, now)
    counts = ops.store.statuses.count_by_state()
    running = ops.store.statuses_in(
        [State.CRAWLING.value], [("last_started_at", ASCENDING), ("user_uuid", ASCENDING)], limit
    )
    users = [str(document.get("user_uuid")) for document in running]
    queues = {row.user_uuid: row for row in queue_depths(ops.redis, ops.keys, users)}
    crawls = []
    for document, user_uuid in zip(running, users, strict=True):
        queue = queues[user_uuid]
        crawls.append(_crawl(document, user_uuid, queue.queued, queue.inflight))
    return Snapshot(
        now=now,
        workers=workers,
        accounts_by_state={state.value: counts.get(state.value, 0) for state in State} | counts,
        next_due_at=ops.store.statuses.next_due_at(now),
        crawling=counts.get(State.CRAWLING.value, 0),
        crawls=crawls,
    )


def _crawl(document: Document, user_uuid: str, queued: int, inflight: int) -> Crawl:
    totals = document.get("totals")
    totals = totals if isinstance(totals, dict) else {}
    return Crawl(
        user_uuid=user_uuid,
        worker=None if document.get("worker") is None else str(document.get("worker")),
        started_at=_epoch(document.get("last_started_at")),
        progress_at=_epoch(document.get("progress_at")),
        messages=_count(totals.get("messages")),
        attachments=_count(totals.get("attachments")),
        queued=queued,
        inflight=inflight,
    )


def _epoch(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _count(value: object) -> int:
    return int(value) if isinstance(value, int | float) else 0


def render(
    view: Snapshot, progress: Progress, interval: float, problem: str | None = None
) -> RenderableType:
    """The live view of `view`; `problem`: why the last refresh failed (the view is older)."""
    header = Text(
        f"crawler status at {timestamp(view.now)}, every {interval:g}s; Ctrl-C to stop",
        style="bold",
    )
    parts: list[RenderableType] = [header]
    if problem is not None:
        parts.append(
            Text(
                f"could not refresh: {problem}; this is what was read at {timestamp(view.now)}, "
                f"trying again every {interval:g}s",
                style="red",
            )
        )
    states = view.accounts_by_state
    parts.append(_titled(workers_table(view.workers)))
    parts.append(_titled(table("Accounts by state", states.keys(), [states.values()])))
    due = "none scheduled" if view.next_due_at is None else relative(view.next_due_at, view.now)
    parts.append(Text(f"next account due: {due}"))
    parts.append(_titled(crawls_table(view, progress)))
    progress.forget_all_but(view.crawls)
    return Group(*parts)


def crawls_table(view: Snapshot, progress: Progress) -> Table:
    """The crawls running, with a bar: messages stored while watched, of those and the UIDs
    still queued or in flight."""
    title = "Crawls running"
    if view.crawling > len(view.crawls):
        title += f" (the first {len(view.crawls)} of {view.crawling})"
    columns = ("user", "worker", "running for", "last batch", "queued", "in flight")
    watched = ("progress (messages while watched)", "attachments while watched")
    result = Table(*columns, *watched, title=title)
    result.title_justify = "left"
    for crawl in view.crawls:
        messages, attachments = progress.stored(crawl)
        left = crawl.queued + crawl.inflight
        result.add_row(
            *(
                Text(printable(cell))
                for cell in (
                    crawl.user_uuid,
                    crawl.worker,
                    _since(crawl.started_at, view.now),
                    relative(crawl.progress_at, view.now),
                    crawl.queued,
                    crawl.inflight,
                )
            ),
            _bar(messages, left, crawl, view.now),
            Text(f"+{attachments}"),
        )
    return result


def _bar(done: int, left: int, crawl: Crawl, now: float) -> RenderableType:
    if done + left == 0:
        stored_since_start = (crawl.progress_at or 0) >= (crawl.started_at or now)
        return Text("finishing" if stored_since_start else "searching")
    bar = ProgressBar(total=done + left, completed=done, width=BAR_WIDTH)
    grid = Table.grid(padding=(0, 1))
    grid.add_row(bar, Text(f"{done}/{done + left}"))
    return grid


def _since(epoch: float | None, now: float) -> str:
    return "-" if epoch is None else duration(now - epoch)


def _titled(result: Table) -> RenderableType:
    """A table, or one line saying it is empty."""
    return result if result.row_count else Text(f"{result.title}: none")


def live_view(ops: Operator, interval: float, limit: int) -> None:
    """Show the view, refreshed every `interval` seconds, until Ctrl-C. The first read fails
    the command as any other would; a later one that fails is shown, and tried again."""
    out = console()
    progress = Progress()
    view, problem = snapshot(ops, time.time(), limit), None
    try:
        with sigterm_as_ctrl_c():
            if out.is_terminal:
                with Live(console=out, auto_refresh=False, redirect_stderr=False) as live:
                    while True:
                        live.update(render(view, progress, interval, problem), refresh=True)
                        view, problem = _next(ops, view, interval, limit)
            else:  # a pipe or a file: each refresh after the last
                while True:
                    out.print(render(view, progress, interval, problem), "", highlight=False)
                    out.file.flush()
                    view, problem = _next(ops, view, interval, limit)
    except KeyboardInterrupt:
        return


@contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """SIGTERM ends the view as Ctrl-C does, so a terminal gets its cursor back."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may handle signals
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _next(
    ops: Operator, view: Snapshot, interval: float, limit: int
) -> tuple[Snapshot, str | None]:
    """The next snapshot after `interval` seconds; the last one and why, when a store fails."""
    time.sleep(interval)
    try:
        return snapshot(ops, time.time(), limit), None
    except (PyMongoError, RedisError) as error:
        return view, " ".join(f"{type(error).__name__}: {error}".split())
