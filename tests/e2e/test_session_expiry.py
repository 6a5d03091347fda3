"""A worker process whose crawl outlives the access token it logged in with, against the fake
Gmail as a process of its own: Gmail ends the session, the crawl logs in again with a fresh token
and completes in the same pass.

The fake Gmail reads a token's expiry from the signed token itself (standins/tokens.py), so the
token endpoint, here in the test's process, shares nothing with it. That a session ended with
its token and another logged in is read from the fake's session log."""

from __future__ import annotations

import hashlib
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from pymongo import MongoClient

from crawler.oauth import TokenCipher
from standins import tokens
from standins.embedded_mongo import EmbeddedMongo
from standins.fakegmail import texts
from standins.fakeoauth import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, FakeTokenEndpoint
from tests.plugins.fakes import build_message
from tests.plugins.gmail_process import fake_gmail_process
from tests.plugins.workers import run_worker_once, worker_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

EMAIL = "alice@example.com"
FILES = {f"{n}.pdf": b"%PDF-" + bytes([n]) * 500 for n in range(8)}
TOKEN_LIFETIME = 3  # seconds
LATENCY = 0.25  # seconds before each answer: the crawl takes longer than a token lives


def write_messages(folder: Path) -> None:
    folder.mkdir()
    for name, data in FILES.items():
        (folder / f"{name}.eml").write_bytes(build_message(name, attachments={name: data}))


def test_a_worker_crawl_that_outlives_its_token_completes_in_one_pass(
    redis_prefix: str, tmp_path: Path
) -> None:
    write_messages(tmp_path / "mail")
    account = {"email": EMAIL, "latency": LATENCY, "messages": [{"path": "mail/*.eml"}]}
    key = Fernet.generate_key().decode()
    name = f"expiry_{uuid.uuid4().hex[:16]}"
    with (
        fake_gmail_process({"accounts": [account]}, tmp_path) as gmail,
        EmbeddedMongo() as mongo,
        FakeTokenEndpoint(expires_in=TOKEN_LIFETIME) as oauth,
    ):
        oauth.add_grant("refresh-alice", EMAIL)
        client: MongoClient[Any] = MongoClient(mongo.uri)
        try:
            db = client[name]
            stale = tokens.gmail_account(TokenCipher(key), "u1", EMAIL, "refresh-alice", 0)
            db.accounts.insert_one(stale)
            db.rules.insert_one({"user_uuid": "u1"})
            env = worker_env(
                mongodb_url=f"{mongo.uri}/{name}",
                redis_prefix=redis_prefix,
                imap_port=gmail.port,
                token_url=oauth.url,
                secret_key=key,
                blob_dir=tmp_path / "blobs",
                CRAWLER_OAUTH_CLIENT_ID=DEFAULT_CLIENT_ID,
                CRAWLER_OAUTH_CLIENT_SECRET=DEFAULT_CLIENT_SECRET,
                CRAWLER_FETCH_BATCH="1",
                CRAWLER_RETRY_MAX_TIME="0.5",  # no retry could carry it: only a new login
            )
            started = time.monotonic()
            done, _ = run_worker_once(env, timeout=100)
            elapsed = time.monotonic() - started
            assert done.returncode == 0, done.stderr.decode()[-2000:]
            status = db.crawl_status.find_one({"user_uuid": "u1"})
            stored = {doc["filename"]: doc["sha256"] for doc in db.attachments.find()}
        finally:
            client.close()
        sessions = gmail.sessions(EMAIL)  # those that logged in

    assert (status["state"], status["last_error"]) == ("idle", None)
    assert stored == {name: hashlib.sha256(data).hexdigest() for name, data in FILES.items()}
    assert elapsed > TOKEN_LIFETIME
    # The first session ended with its token, mid-crawl; the crawl went on in a new one.
    assert len(sessions) >= 2, gmail.output()[-3000:]
    assert sessions[0]["last_words"] == texts.BYE_SESSION_EXPIRED.decode()
    assert all(session["commands"].get("UID FETCH") for session in sessions[:2])
    assert oauth.request_count >= len(sessions)  # a fresh token for each session
