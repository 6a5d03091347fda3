"""The daily download limit with `crawler worker --once` processes against the fake Gmail as a
process of its own: a backfill bigger than CRAWLER_DAILY_DOWNLOAD_LIMIT stops under it, and later
passes resume it until every attachment is stored once, Gmail never locking the account.

Every process runs on the system clock, which a test cannot move. Gmail's rolling day is
shortened instead (the fake's `daily_window`, GMAIL_DAY seconds) and waited out; the crawler's
day passing is played by clearing the account's rolling count (`StatusBook.download_forgotten`)
and making it due (`crawl_now`), as the day would have. Had Gmail said OVERQUOTA, the fake's
session log would show the BYE that ended the session, and the crawl would not be throttled for
`daily_limit`.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from pymongo import MongoClient

from crawler import daily
from crawler.oauth import TokenCipher
from crawler.store.status import StatusBook
from standins import tokens
from standins.embedded_mongo import EmbeddedMongo
from tests.plugins.fakes import build_message
from tests.plugins.gmail_process import GmailProcess, fake_gmail_process
from tests.plugins.workers import run_worker_once, worker_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

MESSAGES = 12
CRAWLER_LIMIT = 150_000
GMAIL_LIMIT = 200_000
# Longer than a pass's downloads take: all a pass fetches counts against Gmail's limit at once.
GMAIL_DAY = 3.0
USER, EMAIL = "user-0", "user0@example.com"


@dataclass
class Deployment:
    gmail: GmailProcess
    db: Any
    env: dict[str, str]
    expected: set[str]

    def one_pass(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """A worker pass: the account's crawl_status after it, and the sessions Gmail logged."""
        before = len(self.gmail.sessions(EMAIL))
        done, _ = run_worker_once(self.env, timeout=60)
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        assert b"OVERQUOTA" not in done.stdout + done.stderr
        sessions = self.gmail.sessions(EMAIL)[before:]
        assert [s["last_words"] for s in sessions if s["last_words"]] == []
        status: dict[str, Any] = self.db.crawl_status.find_one({"user_uuid": USER})
        return status, sessions

    def stored(self) -> list[str]:
        return [doc["sha256"] for doc in self.db.attachments.find({"user_uuid": USER})]


def write_backfill(folder: Path) -> set[str]:
    """MESSAGES messages of about 24 KB of attachment each, as .eml files; their sha256s."""
    folder.mkdir()
    expected = set()
    for number in range(MESSAGES):
        data = f"{USER} attachment {number}\n".encode() * 1000
        message = build_message(f"m{number}", attachments={f"f{number}.txt": data})
        (folder / f"m{number:02}.eml").write_bytes(message)
        expected.add(hashlib.sha256(data).hexdigest())
    return expected


@pytest.fixture
def deployment(redis_prefix: str, tmp_path: Path) -> Iterator[Deployment]:
    expected = write_backfill(tmp_path / "mail")
    account = {
        "email": EMAIL,
        "daily_limit": GMAIL_LIMIT,
        "daily_window": GMAIL_DAY,
        "messages": [{"path": "mail/*.eml"}],
    }
    key = Fernet.generate_key().decode()
    name = f"daily_{uuid.uuid4().hex[:16]}"
    with (
        fake_gmail_process({"accounts": [account]}, tmp_path) as gmail,
        EmbeddedMongo() as mongo,
    ):
        client: MongoClient[Any] = MongoClient(mongo.uri)
        try:
            db = client[name]
            document = tokens.gmail_account(TokenCipher(key), USER, EMAIL, "r", time.time() + 3600)
            db.accounts.insert_one(document)
            db.rules.insert_one({"user_uuid": USER})
            env = worker_env(
                mongodb_url=f"{mongo.uri}/{name}",
                redis_prefix=redis_prefix,
                imap_port=gmail.port,
                token_url="http://127.0.0.1:9/token",  # never asked: the token outlives the test
                secret_key=key,
                blob_dir=tmp_path / "blobs",
                CRAWLER_DAILY_DOWNLOAD_LIMIT=str(CRAWLER_LIMIT),
                CRAWLER_DOWNLOAD_BUDGET="4096",
                CRAWLER_FETCH_BATCH="1",
                CRAWLER_RETRY_WAIT="0.1",
            )
            yield Deployment(gmail, db, env, expected)
        finally:
            client.close()


def sent(sessions: list[dict[str, Any]]) -> int:
    """What Gmail sent in `sessions`: every byte, more than its daily limit counts."""
    return sum(session["bytes_out"] for session in sessions)


def test_a_backfill_stops_under_the_daily_limit_and_later_passes_resume_it(
    deployment: Deployment,
) -> None:
    started = time.time()
    status, sessions = deployment.one_pass()
    assert status["state"] == "throttled", status
    assert status["throttle_reason"] == "daily_limit"
    assert status["consecutive_throttles"] == 0
    window = status["downloaded"]
    assert 0 < sent(sessions) <= CRAWLER_LIMIT
    assert sum(window.values()) <= CRAWLER_LIMIT
    earliest = daily.hour_of(started) + 3600 + 86400
    assert earliest <= status["next_crawl_at"] <= daily.hour_of(time.time()) + 3600 + 86400
    assert 0 < len(deployment.stored()) < MESSAGES

    status, sessions = deployment.one_pass()  # not due: nothing more is fetched
    assert status["state"] == "throttled"
    assert sessions == []
    assert len(deployment.stored()) < MESSAGES

    statuses = StatusBook(deployment.db)
    for _ in range(5):  # a day passes, for Gmail and for the crawler
        time.sleep(GMAIL_DAY)
        statuses.download_forgotten(USER)
        assert statuses.crawl_now(USER, time.time())
        status, sessions = deployment.one_pass()
        assert sent(sessions) <= CRAWLER_LIMIT
        if status["state"] != "throttled":
            break
        assert (status["throttle_reason"], status["consecutive_throttles"]) == ("daily_limit", 0)

    assert status["state"] == "idle", status
    stored = deployment.stored()
    assert len(stored) == len(set(stored)) == MESSAGES
    assert set(stored) == deployment.expected
