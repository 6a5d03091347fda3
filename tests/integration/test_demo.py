"""`crawler demo` as a user runs it: a real process, its exit code, its time and its table."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

CORPUS = Path(__file__).resolve().parents[2] / "fixtures" / "messages"
DEMO = [sys.executable, "-c", "from workers.cli import main; main()", "demo"]
WITHIN_SECONDS = 30  # the requirement is under a minute; the demo takes a few seconds

# The table's columns, in order.
ACCOUNT, STORY, STATE, SAVED, BYTES, COMMANDS, TOKEN_REQUESTS, THROTTLED_UNTIL = range(8)
STATES = {
    "alice@example.com": "idle",
    "bob@example.com": "idle",
    "carol@example.com": "idle",
    "dave@example.com": "auth_failed",
}


def corpus_attachments() -> int:
    """The attachments the fixture sidecars list: what a full crawl of the corpus saves."""
    return sum(
        len(json.loads(path.read_text("utf-8"))["attachments"]) for path in CORPUS.glob("*.json")
    )


def table_rows(output: str) -> dict[str, list[str]]:
    """The cells of the final table's rows, by account."""
    rows = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
        if line.lstrip().startswith("│") and cells[ACCOUNT] in STATES:
            rows[cells[ACCOUNT]] = cells
    return rows


def test_table_rows_reads_the_cells_of_a_row() -> None:
    line = "│ bob@example.com │ throttled midway │ idle │ 7 │ 9 │ 48 │ 0 │ 13:02:04 │"
    cells = ["bob@example.com", "throttled midway", "idle", "7", "9", "48", "0", "13:02:04"]
    assert table_rows(f"bob@example.com ━━━ 46/46 messages\n{line}") == {"bob@example.com": cells}


def test_the_demo_ends_each_account_as_its_story_says(
    redis_server: redis.Redis, tmp_path: Path
) -> None:
    started = time.monotonic()
    result = subprocess.run(
        DEMO,
        cwd=tmp_path,  # the demo's blobs (var/demo/blobs) land here, and no .env is read
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    elapsed = time.monotonic() - started

    assert result.returncode == 0, result.stdout + result.stderr
    assert elapsed < WITHIN_SECONDS
    rows = table_rows(result.stdout)
    assert {account: row[STATE] for account, row in rows.items()} == STATES, result.stdout
    assert int(rows["alice@example.com"][SAVED]) == corpus_attachments()
    assert re.fullmatch(r"\d\d:\d\d:\d\d", rows["bob@example.com"][THROTTLED_UNTIL])
    assert rows["alice@example.com"][THROTTLED_UNTIL] == "-"
    assert rows["carol@example.com"][TOKEN_REQUESTS] == "1"  # the expired token, refreshed
    assert rows["dave@example.com"][SAVED] == "0"
    blobs = tmp_path / "var" / "demo" / "blobs"
    assert str(blobs) in result.stdout
    assert any(path.is_file() for path in blobs.rglob("*"))
