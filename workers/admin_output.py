"""How operator commands print: rich tables of plain text, JSON, and times for people."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

# Senders choose file names and subjects: their control characters (ESC, and the C1 range with
# its one-byte CSI) would drive the operator's terminal, so they are shown escaped.
_ESCAPED = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))}


def print_json(data: Any) -> None:
    """Print `data` as ASCII JSON (ids and other BSON values as strings)."""
    typer.echo(json.dumps(data, indent=2, default=str))


def console() -> Console:
    """Where tables go: standard output."""
    return Console()


def timestamp(epoch: object) -> str:
    """Epoch seconds as `YYYY-MM-DD HH:MM:SS UTC`; '-' for none."""
    if not isinstance(epoch, int | float):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def duration(seconds: float) -> str:
    """A span of time, coarsely: `45s`, `4m 12s`, `2h 5m`, `3d 4h`."""
    whole = int(abs(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    for big, big_unit, small, small_unit in (
        (days, "d", hours, "h"),
        (hours, "h", minutes, "m"),
        (minutes, "m", secs, "s"),
    ):
        if big:
            return f"{big}{big_unit} {small}{small_unit}"
    return f"{secs}s"


def relative(epoch: object, now: float) -> str:
    """`in 4m 12s` or `3d 4h ago`; '-' for none."""
    if not isinstance(epoch, int | float):
        return "-"
    span = duration(epoch - now)
    return f"in {span}" if epoch >= now else f"{span} ago"


def next_crawl(state: object, epoch: object, now: float) -> str:
    """When a worker crawls the account next (`crawl_status.next_crawl_at`), for people."""
    if state == "crawling":
        return "crawling now"
    if state == "auth_failed":
        return "not until re-authorized"
    if not isinstance(epoch, int | float):
        return "-"
    if epoch <= now:
        return "due now"
    return f"{timestamp(epoch)} ({relative(epoch, now)})"


def table(title: str, columns: Iterable[str], rows: Iterable[Iterable[object]]) -> Table:
    """A rich table of plain text: stored values never act as markup or terminal controls."""
    result = Table(*columns, title=title, title_justify="left")
    for row in rows:
        result.add_row(*(Text(printable(cell)) for cell in row))
    return result


def printable(value: object) -> str:
    """`value` as text with control characters escaped; '-' for None."""
    return "-" if value is None else str(value).translate(_ESCAPED)
