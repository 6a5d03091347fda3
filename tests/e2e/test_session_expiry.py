"""A worker process whose crawl outlives the access token it logged in with: Gmail ends the
session, the crawl logs in again with a fresh token and completes in the same pass."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from pymongo import MongoClient

from crawler.oauth import TokenCipher
from standins import tokens
from standins.embedded_mongo import EmbeddedMongo
from standins.fakegmail import FakeGmail
from standins.fakeoauth import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, FakeTokenEndpoint
from tests.plugins.fakes import build_message
from tests.plugins.workers import run_worker_once, worker_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

FILES = {f"{n}.pdf": b"%PDF-" + bytes([n]) * 500 for n in range(8)}


def test_a_worker_crawl_that_outlives_its_token_completes_in_one_pass(
    fake_gmail: FakeGmail, redis_prefix: str, tmp_path: Path
) -> None:
    email = "alice@example.com"
    account = fake_gmail.add_account(email)
    for name, data in FILES.items():
        account.add_message(build_message(name, attachments={name: data}))
    account.faults.latency = 0.25  # the crawl takes longer than a token lives
    key = Fernet.generate_key().decode()
    with EmbeddedMongo() as mongo, FakeTokenEndpoint(expires_in=3) as oauth:
        oauth.add_grant("refresh-alice", email)
        name = f"expiry_{os.getpid()}_{int(time.time() * 1000)}"
        client: MongoClient[Any] = MongoClient(mongo.uri)
        try:
            db = client[name]
            stale = tokens.gmail_account(TokenCipher(key), "u1", email, "refresh-alice", 0)
            db.accounts.insert_one(stale)
            db.rules.insert_one({"user_uuid": "u1"})
            env = worker_env(
                mongodb_url=f"{mongo.uri}/{name}",
                redis_prefix=redis_prefix,
                imap_port=fake_gmail.port,
                token_url=oauth.url,
                secret_key=key,
                blob_dir=tmp_path / "blobs",
                CRAWLER_OAUTH_CLIENT_ID=DEFAULT_CLIENT_ID,
                CRAWLER_OAUTH_CLIENT_SECRET=DEFAULT_CLIENT_SECRET,
                CRAWLER_FETCH_BATCH="1",
                CRAWLER_RETRY_MAX_TIME="0.5",  # no retry could carry it: only a new login
            )
            done, _ = run_worker_once(env, timeout=100)
            assert done.returncode == 0, done.stderr.decode()[-2000:]
            status = db.crawl_status.find_one({"user_uuid": "u1"})
            stored = {doc["filename"]: doc["sha256"] for doc in db.attachments.find()}
        finally:
            client.close()
    assert (status["state"], status["last_error"]) == ("idle", None)
    assert stored == {name: hashlib.sha256(data).hexdigest() for name, data in FILES.items()}
    assert account.ledger.sessions_opened >= 2  # one session ended with its token
    assert oauth.request_count >= 2  # a fresh token for each session
