"""The live view of `crawler status --watch`, drawn from snapshots made by hand."""

import io

import pytest
from rich.console import Console

from workers.admin_fleet import WorkerRow
from workers.admin_watch import Crawl, Progress, Snapshot, render

pytestmark = pytest.mark.unit

NOW = 1_700_000_000.0
STATES = {"idle": 3, "crawling": 2, "throttled": 1, "auth_failed": 0, "error": 0}
WORKERS = [WorkerRow("host:1", 25.0, "0/1"), WorkerRow("gone:7", -12.0, None)]


def drawn(view: Snapshot, progress: Progress, problem: str | None = None) -> str:
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(render(view, progress, 2.0, problem))
    return console.export_text()


def alice(at: float, messages: int, attachments: int, queued: int, inflight: int) -> Crawl:
    return Crawl("alice", "host:1", NOW - 95, at, messages, attachments, queued, inflight)


def test_the_view_shows_workers_states_and_crawls_running() -> None:
    searching = Crawl("bob", "host:1", NOW - 2, None, 0, 0, 0, 0)
    view = Snapshot(NOW, WORKERS, STATES, NOW + 130, 2, [alice(NOW - 3, 40, 7, 6, 4), searching])

    text = drawn(view, Progress())

    assert text.startswith("crawler status at 2023-11-14 22:13:20 UTC, every 2s; Ctrl-C to stop")
    for shown in ("host:1", "0/1", "expired 12s ago", "next account due: in 2m 10s"):
        assert shown in text, shown
    [states] = [line for line in text.splitlines() if "│ 3 " in line]
    assert states.split() == ["│", "3", "│", "2", "│", "1", "│", "0", "│", "0", "│"]
    [running] = [line for line in text.splitlines() if "alice" in line]
    assert running.split("│")[2:7] == [
        " host:1 ",
        " 1m 35s      ",
        " 3s ago     ",
        " 6      ",
        " 4         ",
    ]
    assert "0/10" in running and "+0" in running
    [bob] = [line for line in text.splitlines() if "bob" in line]
    assert "searching" in bob


def test_progress_counts_what_a_crawl_stored_while_watched() -> None:
    progress = Progress()
    drawn(Snapshot(NOW, WORKERS, STATES, None, 1, [alice(NOW - 3, 40, 7, 6, 4)]), progress)

    later = Snapshot(NOW + 2, WORKERS, STATES, None, 1, [alice(NOW - 1, 43, 9, 3, 4)])
    text = drawn(later, progress)

    [running] = [line for line in text.splitlines() if "alice" in line]
    assert "3/10" in running and "+2" in running and "━" in running
    done = alice(NOW, 50, 12, 0, 0)
    [finishing] = [
        line
        for line in drawn(
            Snapshot(NOW + 4, WORKERS, STATES, None, 1, [done]), progress
        ).splitlines()
        if "alice" in line
    ]
    assert "10/10" in finishing


def test_a_crawl_that_ended_is_forgotten_and_a_new_one_starts_from_nothing() -> None:
    progress = Progress()
    drawn(Snapshot(NOW, WORKERS, STATES, None, 1, [alice(NOW, 40, 7, 6, 4)]), progress)
    drawn(Snapshot(NOW + 2, WORKERS, STATES, None, 0, []), progress)

    assert progress.first_seen == {}
    again = Crawl("alice", "host:1", NOW + 3, NOW + 3, 50, 9, 0, 0)
    text = drawn(Snapshot(NOW + 4, WORKERS, STATES, None, 1, [again]), progress)
    [running] = [line for line in text.splitlines() if "alice" in line]
    assert "finishing" in running  # stored a batch since it started; nothing left


def test_an_empty_fleet_reads_none_and_a_long_list_says_it_is_cut() -> None:
    empty = drawn(Snapshot(NOW, [], dict.fromkeys(STATES, 0), None, 0, []), Progress())
    cut = drawn(Snapshot(NOW, WORKERS, STATES, None, 5, [alice(NOW, 1, 1, 1, 1)]), Progress())

    assert "Workers: none" in empty and "Crawls running: none" in empty
    assert "next account due: none scheduled" in empty
    assert "Crawls running (the first 1 of 5)" in cut


def test_a_failed_refresh_is_shown_over_the_last_view() -> None:
    view = Snapshot(NOW, WORKERS, STATES, None, 0, [])

    text = drawn(view, Progress(), "ServerSelectionTimeoutError: no primary")

    assert (
        "could not refresh: ServerSelectionTimeoutError: no primary; this is what was read at "
        "2023-11-14 22:13:20 UTC, trying again every 2s"
    ) in " ".join(text.split())


def test_stored_names_are_never_markup_or_terminal_controls() -> None:
    hostile = Crawl("[bold]x", "w\x1b[2J", NOW, None, 0, 0, 0, 0)

    text = drawn(Snapshot(NOW, WORKERS, STATES, None, 1, [hostile]), Progress())

    assert "[bold]x" in text and "w\\x1b[2J" in text and "\x1b" not in text
