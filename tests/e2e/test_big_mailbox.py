"""A worker process crawls an account of 200,000 messages: its searches go in UID windows, no
answer line nears imaplib's 1,000,000 bytes, and its peak RSS and time are reported.

The fake Gmail makes the messages as they are read (standins/fakegmail/generated.py); one in
2,000 carries a PNG. `crawler worker --once` runs in a process of its own, its peak RSS read as
in test_peer_memory.py.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from pymongo import MongoClient

from crawler.gmail.session import SEARCH_WINDOW
from crawler.oauth import TokenCipher
from standins import tokens
from standins.embedded_mongo import EmbeddedMongo
from standins.fakegmail import FakeGmail
from standins.fakeoauth import FakeTokenEndpoint
from tests.plugins.workers import run_worker_once, worker_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

EMAIL, USER = "big@example.com", "big"
MESSAGES = 200_000
MB = 2**20
MAX_RSS = 300 * MB


@pytest.mark.parametrize(
    "rule",
    [{}, {"content_types": ["image/*"]}],
    ids=["has-attachment", "every-message"],  # an image rule searches every message
)
def test_a_worker_crawls_200000_messages_with_no_answer_line_near_a_megabyte(
    fake_gmail: FakeGmail, redis_prefix: str, tmp_path: Path, rule: dict[str, Any]
) -> None:
    account = fake_gmail.add_generated_account(EMAIL, count=MESSAGES, attachment_every=2000)
    photos = account.attachment_uids()
    with EmbeddedMongo() as mongo, FakeTokenEndpoint() as oauth:
        name = f"big_{os.getpid()}_{int(time.time() * 1000)}"
        client: MongoClient[Any] = MongoClient(mongo.uri)
        db: Any = client[name]
        key = Fernet.generate_key().decode()
        db.accounts.insert_one(
            tokens.gmail_account(TokenCipher(key), USER, EMAIL, "r", time.time() + 3600)
        )
        db.rules.insert_one({"user_uuid": USER, **rule})
        env = worker_env(
            mongodb_url=f"{mongo.uri}/{name}",
            redis_prefix=redis_prefix,
            imap_port=fake_gmail.port,
            token_url=oauth.url,
            secret_key=key,
            blob_dir=tmp_path / "blobs",
        )
        started = time.monotonic()
        done, peak = run_worker_once(env)
        elapsed = time.monotonic() - started
        try:
            assert done.returncode == 0, done.stderr.decode()[-2000:]
            status = db.crawl_status.find_one({"user_uuid": USER})
            stored = list(db.attachments.find({"user_uuid": USER}))
        finally:
            client.close()

    assert status["state"] == "idle", status.get("last_error")
    assert status["last_uid"] == MESSAGES
    assert sorted(doc["filename"] for doc in stored) == sorted(f"photo-{u}.png" for u in photos)
    searches = [line for line in account.ledger.lines if b" UID SEARCH " in line]
    assert len(searches) == -(-MESSAGES // SEARCH_WINDOW)
    longest = account.ledger.longest_line_out
    assert longest < MB // 2
    assert peak < MAX_RSS
    print(
        f"\n{MESSAGES} messages, {len(photos)} with a PNG: {len(searches)} searches, longest "
        f"line {longest} bytes, worker peak RSS {peak / MB:.0f} MB, {elapsed:.1f} s"
    )
