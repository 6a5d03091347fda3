"""This crawler: one `CrawlIterator` pass over one account, on the embedded MongoDB (a process of
its own, over a socket, as a MongoDB server) and the real Redis; its blobs in files, or (the job
says so) in a bucket of the runner's fake S3.

On the fake Gmail the account is `gmail_oauth` with a valid access token (XOAUTH2); on Dovecot it
is `imap_password` (LOGIN with an app password). The job's rule is the account's one rule (none
given: every attachment). After each pass it writes the sha256 of every stored attachment
document to `manifest.json`: the blob store keeps identical files once, so the files alone would
hide a missing duplicate.
"""

from __future__ import annotations

import atexit
import json
import os
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import redis
from cryptography.fernet import Fernet
from pydantic import SecretStr
from pymongo import MongoClient

from bench.child import MANIFEST, Job
from config import Settings
from crawler.iterate import CrawlIterator
from crawler.oauth import TokenCipher
from standins.embedded_mongo import embedded_mongo_process

USER_UUID = "bench"


class Contender:
    """The account, its rule and the stores live as long as the process: a re-crawl resumes."""

    external = False

    def __init__(self, job: Job) -> None:
        self.job = job
        key = Fernet.generate_key().decode()
        self.cipher = TokenCipher(key)
        os.environ.update(job.s3)  # on S3: CRAWLER_BLOB_STORE, its bucket, endpoint, credentials
        self.settings = Settings(
            imap_host=job.host,
            imap_port=job.port,
            imap_tls=False,
            secret_key=SecretStr(key),
            blob_dir=Path(job.out),
            redis_prefix=job.redis_prefix,
            retry_attempts=1,
        )
        self.redis = redis.Redis.from_url(self.settings.redis_url)
        stack = ExitStack()  # the stand-in lives as long as this process
        atexit.register(stack.close)
        client: MongoClient[dict[str, Any]] = MongoClient(
            stack.enter_context(embedded_mongo_process())
        )
        self.db = client["bench"]
        self.db.accounts.insert_one(self._account())
        self.db.rules.insert_one({"user_uuid": USER_UUID, **job.rule})

    def _account(self) -> dict[str, Any]:
        job = self.job
        account: dict[str, Any] = {"user_uuid": USER_UUID, "email": job.user}
        if job.gmail:
            expires = time.time() + 86_400
            account["oauth"] = {
                "refresh_token": self.cipher.encrypt("not-needed"),
                "access_token": self.cipher.encrypt(job.token),
                "expires_at": expires,
            }
            return {**account, "provider": "gmail_oauth"}
        imap = {"host": job.host, "port": job.port, "tls": False}
        password = self.cipher.encrypt(job.password)
        return {**account, "provider": "imap_password", "password": password, "imap": imap}

    def crawl(self) -> None:
        """One pass; the account is made due first (a re-crawl comes before its interval)."""
        self.db.crawl_status.update_many({}, {"$set": {"next_crawl_at": 0}})
        iterator = CrawlIterator(self.db, settings=self.settings, redis_client=self.redis)
        outcomes = iterator.iterate().outcomes
        if outcomes != {USER_UUID: "idle"}:
            status = self.db.crawl_status.find_one({"user_uuid": USER_UUID}) or {}
            raise RuntimeError(f"the crawl ended {outcomes}: {status.get('last_error')}")
        digests = [doc["sha256"] for doc in self.db.attachments.find({}, {"sha256": 1})]
        (Path(self.job.state) / MANIFEST).write_text(json.dumps(digests))
        self._forget_keys()

    def _forget_keys(self) -> None:
        keys = list(self.redis.scan_iter(match=f"{self.job.redis_prefix}*", count=1000))
        if keys:
            self.redis.delete(*keys)
