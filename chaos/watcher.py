"""What `crawl_status` went through during a run, polled from a thread of the runner.

`crawl_status` keeps only the latest state of an account; the checks need the history: every
throttle backoff that was set (to find commands sent inside one), every crawl start and finish
(to time recoveries), and any crawl seen under way that started before its account was due (a
crawl in progress still shows the `next_crawl_at` it was due by). These carry the crawler's own
timestamps, so the poll interval bounds what can be missed, not the precision. A throttle window
lasts until the next crawl starts, at least the shortest backoff with its jitter: much longer
than a poll.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pymongo.errors import PyMongoError

POLL_SECONDS = 0.15
FIELDS = {
    "_id": 0,
    "user_uuid": 1,
    "state": 1,
    "worker": 1,
    "last_started_at": 1,
    "last_finished_at": 1,
    "throttle_backoff_timestamp": 1,
    "throttle_reason": 1,
    "last_error": 1,
    "next_crawl_at": 1,
}
EARLY_SLACK = 0.001  # seconds: float rounding only, both times are the crawler's


@dataclass(frozen=True)
class ThrottleWindow:
    """From the end of a throttled crawl to its backoff timestamp: no command may go out."""

    user_uuid: str
    start: float
    end: float
    reason: str


@dataclass(frozen=True)
class EarlyStart:
    """A crawl seen under way although its account was not due when it started."""

    user_uuid: str
    worker: str | None
    started_at: float
    next_crawl_at: float | None


@dataclass(frozen=True)
class CrawlMark:
    """One crawl as `crawl_status` showed it: who started it, when, and how it ended."""

    user_uuid: str
    worker: str | None
    started_at: float | None
    finished_at: float | None
    state: str


class Watcher:
    """Polls `crawl_status` until stopped; keeps throttle windows, crawl marks and errors."""

    def __init__(self, statuses: Callable[[], Any]) -> None:
        self._statuses = statuses
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-watcher", daemon=True)
        self._lock = threading.Lock()
        self.windows: set[ThrottleWindow] = set()
        self.marks: set[CrawlMark] = set()
        self.errors: set[tuple[str, str, float]] = set()  # (user_uuid, error type, at)
        self.early: set[EarlyStart] = set()
        self.polls = 0
        self.failed_polls = 0

    def start(self) -> None:
        """Start polling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop polling, after one last poll."""
        self._stop.set()
        self._thread.join()
        self.poll()

    def poll(self) -> None:
        """Read every status once (a store that is down is tried again next time)."""
        try:
            documents = list(self._statuses().find({}, FIELDS))
        except PyMongoError:
            self.failed_polls += 1
            return
        with self._lock:
            self.polls += 1
            for document in documents:
                self._note(document)

    def snapshot(self) -> tuple[set[ThrottleWindow], set[CrawlMark], set[EarlyStart]]:
        """Copies of what was seen so far: throttle windows, crawls, early starts."""
        with self._lock:
            return set(self.windows), set(self.marks), set(self.early)

    def _run(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            self.poll()

    def _note(self, document: dict[str, Any]) -> None:
        user_uuid, state = str(document.get("user_uuid")), str(document.get("state"))
        started, finished = document.get("last_started_at"), document.get("last_finished_at")
        self.marks.add(CrawlMark(user_uuid, document.get("worker"), started, finished, state))
        until = document.get("throttle_backoff_timestamp")
        if state == "throttled" and isinstance(finished, float | int) and until:
            reason = str(document.get("throttle_reason"))
            self.windows.add(ThrottleWindow(user_uuid, float(finished), float(until), reason))
        # A crawl under way still shows the `next_crawl_at` its start was due by.
        due = document.get("next_crawl_at")
        if state == "crawling" and isinstance(started, float | int):
            due_at = float(due) if isinstance(due, float | int) else None
            if due_at is None or started < due_at - EARLY_SLACK:
                start = EarlyStart(user_uuid, document.get("worker"), float(started), due_at)
                self.early.add(start)
        error = document.get("last_error")
        if isinstance(error, dict) and error.get("at") is not None:
            self.errors.add((user_uuid, str(error.get("type")), float(error["at"])))
