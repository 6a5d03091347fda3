"""`crawler demo` as a user runs it: a real process, its exit code, its time and its table; and
the Workspace domain it sets up with `crawler domains add` and `sync`, whose users are crawled
without a refresh token. On the local Redis, and where none answers, on the embedded one."""

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from standins.s3 import S3Server
from tests.conftest import REDIS_URL
from workers.demo import redis_answers, throttled_cell

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
    THROTTLED,
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
EMBEDDED = "the demo runs on an embedded Redis (fakeredis) instead."
CLOCK = r"\d\d:\d\d:\d\d"


def closed_port() -> int:
    """A loopback port that was free a moment ago: nothing answers there."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


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
    cells.append("was, until 13:02:04")
    line = f"│ {' │ '.join(cells)} │"
    assert table_rows(f"bob@example.com ━━━ 46/46 messages\n{line}") == {"bob@example.com": cells}


def test_the_throttled_cell_shows_a_time_only_with_what_it_means() -> None:
    until = time.mktime((2024, 5, 1, 13, 2, 4, 0, 0, -1))
    assert throttled_cell({"state": "throttled", "throttle_backoff_timestamp": until}) == (
        "until 13:02:04"
    )
    for state in ("idle", "crawling", "error"):  # the backoff is over: it was throttled
        status = {"state": state, "throttle_backoff_timestamp": until}
        assert throttled_cell(status) == "was, until 13:02:04"
    assert throttled_cell({"state": "idle"}) == "-"
    assert throttled_cell({}) == "-"


def test_the_demo_probes_redis(redis_server: redis.Redis) -> None:
    assert redis_answers(REDIS_URL)
    assert not redis_answers(f"redis://127.0.0.1:{closed_port()}/0")
    assert redis_answers("http://nowhere")  # not a Redis URL: connecting says so


def run_demo(cwd: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """`crawler demo` in `cwd` (where its blobs, var/demo/blobs, land, and no .env is read)."""
    started = time.monotonic()
    result = subprocess.run(
        DEMO,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result, time.monotonic() - started


@pytest.fixture(params=["local Redis", "no Redis answers"])
def redis_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """CRAWLER_REDIS_URL for the demo: the tests' Redis; or a port where nothing listens."""
    if request.param == "local Redis":
        request.getfixturevalue("redis_server")
        return {}
    return {"CRAWLER_REDIS_URL": f"redis://127.0.0.1:{closed_port()}/0"}


def test_the_demo_ends_each_account_as_its_story_says(
    redis_env: dict[str, str], tmp_path: Path
) -> None:
    result, elapsed = run_demo(tmp_path, **redis_env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert elapsed < WITHIN_SECONDS
    said = [line for line in result.stdout.splitlines() if EMBEDDED in line]
    if redis_env:  # one line says so, first, naming where nothing answered
        port = redis_env["CRAWLER_REDIS_URL"].rsplit(":", 1)[1].split("/")[0]
        assert said == [f"No Redis answers at 127.0.0.1:{port} (CRAWLER_REDIS_URL): {EMBEDDED}"]
        assert result.stdout.startswith(said[0])
    else:
        assert not said
    rows = table_rows(result.stdout)
    assert {account: row[STATE] for account, row in rows.items()} == STATES, result.stdout
    assert int(rows["alice@example.com"][SAVED]) == corpus_attachments()
    # bob is idle again: his throttle is over, and the table says so
    assert re.fullmatch(f"was, until {CLOCK}", rows["bob@example.com"][THROTTLED])
    assert rows["alice@example.com"][THROTTLED] == "-"
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
    check_events(result.stdout, rows)


def check_events(output: str, rows: dict[str, list[str]]) -> None:
    """An attachment event for each attachment saved, a crawl event for each crawl that ended,
    and the last events printed as `crawler events tail` prints them."""
    counts = re.search(r"Events: (\d+) attachment events and (\d+) crawl events", output)
    assert counts, output
    assert int(counts[1]) == sum(int(row[SAVED]) for row in rows.values())
    # five accounts idle at last, bob throttled once on the way, dave auth_failed
    assert int(counts[2]) == 7
    tail = [json.loads(line) for line in output.splitlines() if line.startswith('{"stream_id"')]
    assert len(tail) == 3
    assert {event["type"] for event in tail} <= {"attachment", "crawl"}


def test_an_unusable_redis_url_is_no_reason_for_the_embedded_redis(tmp_path: Path) -> None:
    result, _ = run_demo(tmp_path, CRAWLER_REDIS_URL="http://nowhere")
    assert result.returncode == 1
    assert EMBEDDED not in result.stdout
    assert "CRAWLER_REDIS_URL is not usable" in result.stdout, result.stdout + result.stderr


def test_the_demo_stores_in_the_s3_bucket_configured(
    redis_server: redis.Redis, tmp_path: Path
) -> None:
    with S3Server() as s3:
        s3.create_bucket("demo-blobs")
        result, _ = run_demo(tmp_path, **s3.crawler_env("demo-blobs"), CRAWLER_S3_PREFIX="demo/")
        assert result.returncode == 0, result.stdout + result.stderr
        objects = s3.client().list_objects_v2(Bucket="demo-blobs", Prefix="demo/")
        keys = [item["Key"] for item in objects.get("Contents", [])]

    said = re.search(
        r"Attachments: (\d+) distinct files \(content-addressed by sha256\) in (\S+)", result.stdout
    )
    assert said, result.stdout
    assert said[2] == "s3://demo-blobs/demo/"
    assert len(keys) == int(said[1]) > 0
    assert all(re.fullmatch(r"demo/[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{64}", key) for key in keys)
    assert not (tmp_path / "var").exists()  # nothing went to the disk
    check_events(result.stdout, table_rows(result.stdout))
