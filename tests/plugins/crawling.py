"""pytest fixtures for crawling: a `World` of fake Gmail, real Redis, mongomock and a blob dir."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import mongomock
import pytest
import redis
from cryptography.fernet import Fernet

from config import Settings
from crawler.iterate import CrawlIterator, PassResult
from crawler.oauth import TokenCipher
from standins import tokens
from standins.fakegmail import Account, FakeGmail
from standins.fakeoauth import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, FakeTokenEndpoint
from tests.plugins.dovecot import Dovecot


class World:
    """Everything one account crawl touches, with helpers to set it up and read it back."""

    def __init__(
        self,
        gmail: FakeGmail,
        oauth: FakeTokenEndpoint,
        server: redis.Redis,
        prefix: str,
        blob_dir: Path,
    ) -> None:
        self.gmail = gmail
        self.oauth = oauth
        self.redis = server
        self.db: Any = mongomock.MongoClient()["crawler"]
        key = Fernet.generate_key().decode()
        self.cipher = TokenCipher(key)
        self.now = time.time()
        self.issued: dict[str, list[str]] = {}
        self.settings = Settings(
            imap_host="127.0.0.1",
            imap_port=gmail.port,
            imap_tls=False,
            imap_timeout=10,
            oauth_token_url=oauth.url,
            oauth_client_id=DEFAULT_CLIENT_ID,
            oauth_client_secret=DEFAULT_CLIENT_SECRET,
            secret_key=key,
            blob_dir=blob_dir,
            redis_prefix=prefix,
            backoff_jitter=0,
            retry_wait=0,
        )

    def add_account(
        self,
        email: str,
        user_uuid: str,
        *,
        token_ttl: float = 7 * 86400,
        hide_all_mail: bool = False,
        **rule: Any,
    ) -> Account:
        """A fake Gmail account, its `accounts` document (with a valid token) and one rule."""
        account = self.gmail.add_account(email, hide_all_mail=hide_all_mail)
        self.oauth.add_grant(f"refresh-{user_uuid}", email)
        refresh, expires_at = f"refresh-{user_uuid}", time.time() + token_ttl
        self.db.accounts.insert_one(
            tokens.gmail_account(self.cipher, user_uuid, email, refresh, expires_at)
        )
        self.db.rules.insert_one({"user_uuid": user_uuid, **rule})
        self.issued[user_uuid] = [tokens.issue(email, expires_at), refresh]
        return account

    def add_dovecot_account(
        self, dovecot: Dovecot, user_uuid: str, messages: Sequence[bytes], **rule: Any
    ) -> str:
        """A Dovecot user holding `messages`, its `imap_password` account and one rule; the
        Dovecot user name."""
        user = f"u{uuid.uuid4().hex[:10]}"
        dovecot.add_user(user, "app-password", list(messages))
        self.db.accounts.insert_one(
            {
                "user_uuid": user_uuid,
                "email": f"{user}@example.com",
                "username": user,
                "provider": "imap_password",
                "password": self.cipher.encrypt("app-password"),
                "imap": {"host": dovecot.host, "port": dovecot.port, "tls": False},
            }
        )
        self.db.rules.insert_one({"user_uuid": user_uuid, **rule})
        return user

    def add_mailbox(
        self, server: str, messages: Sequence[bytes], request: pytest.FixtureRequest, **rule: Any
    ) -> str:
        """An account holding `messages` (UIDs 1, 2 ... in order) on `server` (`gmail`, the fake,
        or `dovecot`), with one rule; its user_uuid."""
        user_uuid = f"{server}-{uuid.uuid4().hex[:8]}"
        if server == "dovecot":
            self.add_dovecot_account(
                request.getfixturevalue("dovecot"), user_uuid, messages, **rule
            )
            return user_uuid
        account = self.add_account(f"{user_uuid}@example.com", user_uuid, **rule)
        for raw in messages:
            account.add_message(raw)
        return user_uuid

    def secrets(self, user_uuid: str) -> list[str]:
        """The account's tokens: those it was given, and those it holds now (once refreshed)."""
        oauth = self.db.accounts.find_one({"user_uuid": user_uuid})["oauth"]
        held = [
            self.cipher.decrypt(oauth[field], field) for field in ("access_token", "refresh_token")
        ]
        return self.issued[user_uuid] + held

    def iterator(self, **options: Any) -> CrawlIterator:
        """A CrawlIterator over this world (one shard unless told otherwise)."""
        options.setdefault("clock", lambda: self.now)
        return CrawlIterator(
            self.db,
            settings=options.pop("settings", self.settings),
            redis_client=self.redis,
            **options,
        )

    def iterate(self, **options: Any) -> PassResult:
        """One pass."""
        return self.iterator(**options).iterate()

    def make_due(self, user_uuid: str) -> None:
        """Move the account's next crawl (and any backoff) to now."""
        self.db.crawl_status.update_one(
            {"user_uuid": user_uuid}, {"$set": {"next_crawl_at": self.now}}
        )

    def status(self, user_uuid: str) -> dict[str, Any]:
        """The account's crawl_status."""
        document: dict[str, Any] = self.db.crawl_status.find_one({"user_uuid": user_uuid})
        return document

    def stored(self, user_uuid: str) -> dict[tuple[Any, str], dict[str, Any]]:
        """Attachment documents of the account by (gm_msgid, part)."""
        return {
            (doc["gm_msgid"], doc["part"]): doc
            for doc in self.db.attachments.find({"user_uuid": user_uuid})
        }

    def blob(self, sha256: str) -> bytes:
        """The stored bytes of a blob."""
        return (self.settings.blob_dir / sha256[:2] / sha256[2:4] / sha256).read_bytes()


@pytest.fixture
def world(
    fake_gmail: FakeGmail, redis_server: redis.Redis, redis_prefix: str, tmp_path: Path
) -> Iterator[World]:
    with FakeTokenEndpoint() as oauth:
        yield World(fake_gmail, oauth, redis_server, redis_prefix, tmp_path / "blobs")
