"""A worker process crawls an account of 200,000 messages on the fake Gmail, a process of its
own: its searches go in UID windows, no answer line nears imaplib's 1,000,000 bytes, and its
peak RSS and time are reported.

The fake Gmail makes the messages as they are read (the config's `generated` account,
standins/fakegmail/generated.py); one in 2,000 carries a PNG. The searches and the longest answer
line are read from the fake's session log. `crawler worker --once` runs in a process of its own,
its peak RSS read as in test_peer_memory.py.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from pymongo import MongoClient

from crawler.gmail.session import SEARCH_WINDOW
from crawler.oauth import TokenCipher
from standins import tokens
from standins.embedded_mongo import EmbeddedMongo
from standins.fakegmail import GeneratedAccount
from standins.fakeoauth import FakeTokenEndpoint
from tests.plugins.gmail_process import fake_gmail_process
from tests.plugins.workers import run_worker_once, worker_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

EMAIL, USER = "big@example.com", "big"
MESSAGES = 200_000
ATTACHMENT_EVERY = 2000
MB = 2**20
MAX_RSS = 300 * MB


@pytest.mark.parametrize(
    "rule",
    [{}, {"content_types": ["image/*"]}],
    ids=["has-attachment", "every-message"],  # an image rule searches every message
)
def test_a_worker_crawls_200000_messages_with_no_answer_line_near_a_megabyte(
    redis_prefix: str, tmp_path: Path, rule: dict[str, Any]
) -> None:
    generated = {"count": MESSAGES, "attachment_every": ATTACHMENT_EVERY}
    config = {"accounts": [{"email": EMAIL, "generated": generated}]}
    # The fake's mailbox, made here too only to know which messages carry a PNG.
    same = GeneratedAccount(EMAIL, count=MESSAGES, attachment_every=ATTACHMENT_EVERY)
    photos = same.attachment_uids()
    key = Fernet.generate_key().decode()
    name = f"big_{uuid.uuid4().hex[:16]}"
    with (
        fake_gmail_process(config, tmp_path) as gmail,
        EmbeddedMongo() as mongo,
        FakeTokenEndpoint() as oauth,
    ):
        client: MongoClient[Any] = MongoClient(mongo.uri)
        try:
            db: Any = client[name]
            db.accounts.insert_one(
                tokens.gmail_account(TokenCipher(key), USER, EMAIL, "r", time.time() + 3600)
            )
            db.rules.insert_one({"user_uuid": USER, **rule})
            env = worker_env(
                mongodb_url=f"{mongo.uri}/{name}",
                redis_prefix=redis_prefix,
                imap_port=gmail.port,
                token_url=oauth.url,
                secret_key=key,
                blob_dir=tmp_path / "blobs",
            )
            started = time.monotonic()
            done, peak = run_worker_once(env)
            elapsed = time.monotonic() - started
            assert done.returncode == 0, done.stderr.decode()[-2000:]
            status = db.crawl_status.find_one({"user_uuid": USER})
            stored = list(db.attachments.find({"user_uuid": USER}))
        finally:
            client.close()
        sessions = gmail.sessions(EMAIL)

    assert status["state"] == "idle", status.get("last_error")
    assert status["last_uid"] == MESSAGES
    assert sorted(doc["filename"] for doc in stored) == sorted(f"photo-{u}.png" for u in photos)
    searches = sum(session["commands"].get("UID SEARCH", 0) for session in sessions)
    assert searches == -(-MESSAGES // SEARCH_WINDOW)
    longest = max(session["longest_line_out"] for session in sessions)
    assert longest < MB // 2
    assert peak < MAX_RSS
    print(
        f"\n{MESSAGES} messages, {len(photos)} with a PNG: {searches} searches, longest "
        f"line {longest} bytes, worker peak RSS {peak / MB:.0f} MB, {elapsed:.1f} s"
    )
