"""A crawler worker against the fake Gmail, for the measurements that run one in a process of
their own (polling, backfill): its settings, its token cipher, its database on the embedded
MongoDB (a process of its own, as a MongoDB server) and its Redis, whose keys go at the end."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis
from cryptography.fernet import Fernet
from pydantic import SecretStr
from pymongo import MongoClient

from config import Settings
from crawler.iterate import CrawlIterator
from crawler.oauth import TokenCipher
from standins import tokens
from standins.embedded_mongo import embedded_mongo_process


@dataclass(frozen=True)
class Worker:
    """What one worker process crawls with."""

    settings: Settings
    cipher: TokenCipher
    db: Any
    redis: redis.Redis

    def gmail_account(self, user_uuid: str, email: str) -> dict[str, Any]:
        """An `accounts` document of a fake Gmail account, its access token valid for a day."""
        expires = time.time() + 86_400
        return tokens.gmail_account(self.cipher, user_uuid, email, "not-needed", expires)

    def iterator(self) -> CrawlIterator:
        """A CrawlIterator over the worker's database."""
        return CrawlIterator(self.db, settings=self.settings, redis_client=self.redis)


@contextmanager
def fake_gmail_worker(port: int, **settings: Any) -> Iterator[Worker]:
    """A worker against the fake Gmail on `port`; `settings` are more Settings fields."""
    key = Fernet.generate_key().decode()
    prefix = f"bench:{uuid.uuid4().hex}:"
    server = redis.Redis()
    try:
        with embedded_mongo_process() as uri:
            chosen = Settings(
                imap_host="127.0.0.1",
                imap_port=port,
                imap_tls=False,
                secret_key=SecretStr(key),
                redis_prefix=prefix,
                **settings,
            )
            client: MongoClient[dict[str, Any]] = MongoClient(uri)
            yield Worker(chosen, TokenCipher(key), client["bench"], server)
            client.close()
    finally:
        keys = list(server.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            server.delete(*keys)
