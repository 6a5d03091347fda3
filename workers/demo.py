"""`crawler demo`: the crawler on an embedded default, start to finish, in under a minute.

A fake Gmail holds four accounts filled from the fixture corpus: one ordinary, one that Gmail
throttles midway, one whose access token has expired (refreshed from the fake token endpoint)
and one whose grant was revoked. Two shard workers crawl them on a simulated clock, so the
throttled account's five-minute backoff passes at once; then a table shows each account.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mongomock
import redis
from cryptography.fernet import Fernet
from rich.console import Console
from rich.table import Table

from config import Settings, load_settings
from crawler.iterate import CrawlIterator
from crawler.oauth import TokenCipher
from crawler.testing import tokens
from crawler.testing.fakegmail import FakeGmail, Fault, FaultKind
from crawler.testing.fakeoauth import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, FakeTokenEndpoint

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "messages"
BLOB_DIR = Path("var/demo/blobs")
SHARDS = 2
MAX_ROUNDS = 10


@dataclass(frozen=True)
class DemoAccount:
    """One account of the demo and what happens to it."""

    user_uuid: str
    email: str
    story: str
    token_ttl: float = 3600.0
    revoked: bool = False
    throttled: bool = False


ACCOUNTS = (
    DemoAccount("alice", "alice@example.com", "crawled"),
    DemoAccount("bob", "bob@example.com", "throttled midway, resumed", throttled=True),
    DemoAccount("carol", "carol@example.com", "token expired, refreshed", token_ttl=-60),
    DemoAccount("dave", "dave@example.com", "grant revoked", token_ttl=-60, revoked=True),
)


class SimulatedClock:
    """Time that the demo moves forward to the next due crawl."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def run(console: Console | None = None) -> bool:
    """Run the demo; True when every account ended as its story says."""
    console = console or Console(width=max(Console().width, 110))
    with _world() as world:
        for round_number in range(1, MAX_ROUNDS + 1):
            outcomes = world.crawl_round()
            for user_uuid, state in sorted(outcomes.items()):
                console.print(f"round {round_number}: {user_uuid:<6} -> {state}")
            if not world.advance():
                break
        console.print(world.table())
        console.print(f"Attachments are in {world.settings.blob_dir.resolve()}")
        return world.as_expected()


class _World:
    def __init__(self, gmail: FakeGmail, oauth: FakeTokenEndpoint, settings: Settings) -> None:
        self.gmail, self.oauth, self.settings = gmail, oauth, settings
        self.clock = SimulatedClock()
        self.db: Any = mongomock.MongoClient()["crawler"]
        self.redis = redis.Redis.from_url(settings.redis_url)
        self.cipher = TokenCipher(settings.secret_key.get_secret_value())
        for account in ACCOUNTS:
            self._add(account)
        self.shards = [
            CrawlIterator(
                self.db,
                client_id=shard,
                client_count=SHARDS,
                settings=settings,
                redis_client=self.redis,
                worker_id=f"demo-worker-{shard}",
                clock=self.clock,
            )
            for shard in range(SHARDS)
        ]

    def _add(self, account: DemoAccount) -> None:
        fake = self.gmail.add_account(account.email)
        for path in sorted(CORPUS.glob("*.eml")):
            fake.add_message(path.read_bytes(), labels=["\\Inbox"])
        if account.throttled:
            fake.faults.add(
                Fault(FaultKind.THROTTLED, commands={"UID FETCH"}, after_commands=3, times=1)
            )
        refresh_token = f"1//demo-{account.user_uuid}"
        self.oauth.add_grant(refresh_token, account.email)
        if account.revoked:
            self.oauth.revoke(refresh_token)
        expires_at = self.clock.now + account.token_ttl
        self.db.accounts.insert_one(
            {
                "user_uuid": account.user_uuid,
                "email": account.email,
                "provider": "gmail_oauth",
                "oauth": {
                    "refresh_token": self.cipher.encrypt(refresh_token),
                    "access_token": self.cipher.encrypt(tokens.issue(account.email, expires_at)),
                    "expires_at": expires_at,
                },
            }
        )
        self.db.rules.insert_one({"user_uuid": account.user_uuid})

    def crawl_round(self) -> dict[str, str]:
        outcomes: dict[str, str] = {}
        for shard in self.shards:
            outcomes.update(shard.iterate().outcomes)
        return outcomes

    def advance(self) -> bool:
        """Jump to the next backoff that ends; False when nothing is left to wait for."""
        waiting = [
            status["next_crawl_at"]
            for status in self.db.crawl_status.find({"state": {"$in": ["throttled", "error"]}})
            if status.get("next_crawl_at") is not None
        ]
        if not waiting:
            return False
        self.clock.now = max(self.clock.now, min(waiting)) + 1
        return True

    def table(self) -> Table:
        table = Table(title="Demo: one crawl per account, on a simulated clock")
        for column in (
            "account",
            "story",
            "state",
            "attachments",
            "bytes",
            "IMAP commands",
            "throttled until",
        ):
            table.add_column(column)
        for account in ACCOUNTS:
            status = self.db.crawl_status.find_one({"user_uuid": account.user_uuid}) or {}
            totals = status.get("totals", {})
            commands = sum(self.gmail.account(account.email).ledger.commands.values())
            until = status.get("throttle_backoff_timestamp") or 0
            table.add_row(
                account.email,
                account.story,
                str(status.get("state")),
                str(totals.get("attachments", 0)),
                str(totals.get("bytes", 0)),
                str(commands),
                time.strftime("%H:%M:%S", time.localtime(until)) if until else "-",
            )
        return table

    def as_expected(self) -> bool:
        states = {
            doc["user_uuid"]: doc["state"]
            for doc in self.db.crawl_status.find({}, {"user_uuid": 1, "state": 1})
        }
        expected = {
            account.user_uuid: "auth_failed" if account.revoked else "idle" for account in ACCOUNTS
        }
        return states == expected

    def close(self) -> None:
        keys = list(self.redis.scan_iter(match=f"{self.settings.redis_prefix}*"))
        if keys:
            self.redis.delete(*keys)


@contextmanager
def _world() -> Iterator[_World]:
    with ExitStack() as stack:
        gmail = stack.enter_context(FakeGmail())
        oauth = stack.enter_context(FakeTokenEndpoint())
        settings = load_settings(
            imap_host="127.0.0.1",
            imap_port=gmail.port,
            imap_tls=False,
            oauth_token_url=oauth.url,
            oauth_client_id=DEFAULT_CLIENT_ID,
            oauth_client_secret=DEFAULT_CLIENT_SECRET,
            secret_key=Fernet.generate_key().decode(),
            blob_dir=BLOB_DIR,
            redis_prefix=f"demo:{uuid.uuid4().hex[:8]}:",
            retry_wait=0.1,
            fetch_batch=10,  # several batches per account, so a throttle lands midway
        )
        world = _World(gmail, oauth, settings)
        stack.callback(world.close)
        yield world
