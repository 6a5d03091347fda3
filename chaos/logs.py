"""The crawls the workers logged: one JSON line per crawl (`crawl <state>`, with its duration)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


@dataclass(frozen=True)
class CrawlEvent:
    """One crawl as its worker logged it (epoch seconds)."""

    user_uuid: str
    worker: str
    state: str
    started_at: float
    ended_at: float


def crawl_events(logs: Path) -> list[CrawlEvent]:
    """Every crawl logged in `logs`, by account and then time."""
    events = []
    for log in sorted(logs.glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            event = _parse(line)
            if event is not None:
                events.append(event)
    return sorted(events, key=lambda e: (e.user_uuid, e.ended_at))


def _parse(line: str) -> CrawlEvent | None:
    if not line.startswith("{"):
        return None
    try:
        fields = json.loads(line)
    except ValueError:  # a line cut short by SIGKILL
        return None
    if not str(fields.get("event", "")).startswith("crawl ") or "duration" not in fields:
        return None
    ended = datetime.fromisoformat(str(fields["ts"]).replace("Z", "+00:00")).timestamp()
    return CrawlEvent(
        user_uuid=str(fields.get("user_uuid")),
        worker=str(fields.get("worker")),
        state=str(fields.get("state")),
        started_at=ended - float(fields["duration"]),
        ended_at=ended,
    )
