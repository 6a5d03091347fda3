"""`crawler demo` as a user runs it: a real process, its exit code, its time and its table; and
the Workspace domain it sets up with `crawler domains add` and `sync`, whose users are crawled
without a refresh token."""

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
(
    ACCOUNT,
    STORY,
    PROVIDER,
    REFRESH_TOKEN,
    STATE,
    SAVED,
    BYTES,
    COMMANDS,
    TOKEN_REQUESTS,
    THROTTLED_UNTIL,
) = range(10)
STATES = {
    "alice@example.com": "idle",
    "bob@example.com": "idle",
    "carol@example.com": "idle",
    "dave@example.com": "auth_failed",
    "erin@corp.example": "idle",  # the domain's administrator, synced from its directory
    "frank@corp.example": "idle",  # a user of the domain, synced
    "grace@corp.example": "no account",  # suspended in the directory: the sync skips her
}
DOMAIN_ACCOUNTS = ("erin@corp.example", "frank@corp.example")


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
    cells = ["bob@example.com", "throttled", "gmail_oauth", "stored", "idle", "7", "9", "48", "0"]
    cells.append("13:02:04")
    line = f"│ {' │ '.join(cells)} │"
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
    for account in ("alice@example.com", "bob@example.com", "carol@example.com"):
        assert (rows[account][PROVIDER], rows[account][REFRESH_TOKEN]) == ("gmail_oauth", "stored")
    assert "$ crawler domains add corp.example" in result.stdout
    assert "corp.example: 3 users in the directory (1 suspended or archived), 2 accounts added" in (
        result.stdout
    )
    for account in DOMAIN_ACCOUNTS:  # crawled with tokens from the domain's service account
        row = rows[account]
        assert (row[PROVIDER], row[REFRESH_TOKEN]) == ("g_apps_oauth", "none"), row
        assert int(row[SAVED]) == corpus_attachments(), row
        assert row[TOKEN_REQUESTS] == "1", row  # one assertion; the token serves the whole crawl
    grace = rows["grace@corp.example"]
    assert (grace[PROVIDER], grace[SAVED], grace[COMMANDS]) == ("-", "0", "0")
    blobs = tmp_path / "var" / "demo" / "blobs"
    assert str(blobs) in result.stdout
    assert any(path.is_file() for path in blobs.rglob("*"))
