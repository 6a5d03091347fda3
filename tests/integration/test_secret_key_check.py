"""A worker checks CRAWLER_SECRET_KEY against the stored tokens before it crawls; and the log line
of a crawl that fails says why, without a secret.

A key that opens none of a sample of the stored ciphertexts is not the key they were encrypted
with: every account would fail and back off, crawl after crawl, so the worker refuses to run. A
few that do not open, among others that do, are their accounts' errors, as ever.
"""

from __future__ import annotations

import io
import json
from typing import Any

import mongomock
import pytest
import redis
from cryptography.fernet import Fernet
from pydantic import SecretStr
from pymongo.database import Database

from config import Settings
from crawler.errors import AuthRevoked, ConfigError, OverQuota
from crawler.gmail_crawler import GmailCrawler
from crawler.oauth import TokenCipher
from crawler.store import Store
from tests.plugins.crawling import World
from workers.worker import SECRET_KEY_SAMPLE, Worker

pytestmark = pytest.mark.integration

KEY = Fernet.generate_key().decode()
OTHER = Fernet.generate_key().decode()
REFUSAL = "CRAWLER_SECRET_KEY opens none of the {} stored tokens sampled"


def add_gmail(db: Any, user_uuid: str, key: str, **fields: Any) -> None:
    cipher = TokenCipher(key)
    oauth = {"refresh_token": cipher.encrypt("1//refresh"), "access_token": cipher.encrypt("a")}
    db.accounts.insert_one({"user_uuid": user_uuid, "oauth": oauth, **fields})


def add_imap(db: Any, user_uuid: str, key: str) -> None:
    password = TokenCipher(key).encrypt("app-password")
    db.accounts.insert_one(
        {"user_uuid": user_uuid, "provider": "imap_password", "password": password}
    )


def add_domain(db: Any, domain: str, key: str) -> None:
    db.domains.insert_one({"domain": domain, "key": TokenCipher(key).encrypt('{"type": "x"}')})


def worker(db: Any, server: redis.Redis, prefix: str, key: str = KEY) -> Worker:
    settings = Settings(
        _env_file=None, secret_key=SecretStr(key), redis_prefix=prefix, worker_id="w1"
    )
    return Worker(settings, db, server)


# -- the sample ---------------------------------------------------------------------------


def test_the_sample_holds_domains_keys_then_accounts_tokens_and_passwords(
    mongo_db: Database[dict[str, Any]],
) -> None:
    add_domain(mongo_db, "corp.example", KEY)
    add_gmail(mongo_db, "g", KEY)
    add_imap(mongo_db, "i", KEY)
    mongo_db.accounts.insert_one({"user_uuid": "none", "provider": "g_apps_oauth"})

    sample = Store(mongo_db).encrypted_sample(10)

    opened = [TokenCipher(KEY).decrypt(value, "sample") for value in sample]
    assert opened == ['{"type": "x"}', "1//refresh", "a", "app-password"]


def test_the_sample_leaves_out_what_never_was_a_ciphertext(
    mongo_db: Database[dict[str, Any]],
) -> None:
    """A token stored in plain is a broken account (its own error), not a sign of the key."""
    oauth = {"refresh_token": "1//plain", "access_token": 42}
    mongo_db.accounts.insert_one({"user_uuid": "plain", "oauth": oauth, "password": None})
    mongo_db.accounts.insert_one({"user_uuid": "odd", "oauth": "gAAAAA-not-a-document"})
    mongo_db.domains.insert_one({"domain": "x.example", "key": {"not": "text"}})

    assert Store(mongo_db).encrypted_sample(10) == []


@pytest.mark.parametrize("limit", [0, 1, 5])
def test_the_sample_is_bounded(mongo_db: Database[dict[str, Any]], limit: int) -> None:
    for number in range(3):
        add_domain(mongo_db, f"d{number}.example", KEY)
        add_gmail(mongo_db, f"u{number}", KEY)

    assert len(Store(mongo_db).encrypted_sample(limit)) == limit


# -- the worker at start --------------------------------------------------------------------


@pytest.fixture
def db() -> Any:
    return mongomock.MongoClient()["crawler"]


def test_a_worker_refuses_a_key_that_opens_none_of_the_stored_tokens(
    db: Any, redis_server: redis.Redis, redis_prefix: str
) -> None:
    add_gmail(db, "a", OTHER)
    add_imap(db, "b", OTHER)
    add_domain(db, "corp.example", OTHER)

    with pytest.raises(ConfigError) as refused:
        worker(db, redis_server, redis_prefix).run(once=True)

    assert str(refused.value) == (
        f"{REFUSAL.format(4)}: it is not the key they were encrypted with"
    )
    assert db.crawl_status.count_documents({}) == 0  # no pass ran
    assert redis_server.zcard(f"{redis_prefix}workers") == 0  # nor joined the fleet


def test_the_refusal_counts_the_sample_not_the_store(
    db: Any, redis_server: redis.Redis, redis_prefix: str
) -> None:
    for number in range(SECRET_KEY_SAMPLE + 5):
        add_gmail(db, f"u{number}", OTHER)

    with pytest.raises(ConfigError, match=REFUSAL.format(SECRET_KEY_SAMPLE)):
        worker(db, redis_server, redis_prefix).run(once=True)


@pytest.mark.parametrize(
    "stored",
    [
        {"a": OTHER, "b": OTHER, "c": KEY},  # a few that do not open, among others that do
        {"a": OTHER, "domain": KEY},  # the domain's key opens: the key is right
        {},  # nothing stored yet
    ],
    ids=["one-opens", "a-domain-key-opens", "nothing-stored"],
)
def test_a_worker_runs_when_the_key_opens_one_of_the_sample_or_there_is_none(
    db: Any, redis_server: redis.Redis, redis_prefix: str, stored: dict[str, str]
) -> None:
    for user_uuid, key in stored.items():
        if user_uuid == "domain":
            add_domain(db, "corp.example", key)
        else:
            add_gmail(db, user_uuid, key)

    assert worker(db, redis_server, redis_prefix).run(once=True) == 0


def test_tokens_stored_in_plain_are_no_reason_to_refuse(
    db: Any, redis_server: redis.Redis, redis_prefix: str
) -> None:
    db.accounts.insert_one({"user_uuid": "p", "oauth": {"refresh_token": "1//plain"}})

    assert worker(db, redis_server, redis_prefix).run(once=True) == 0


# -- the crawl's log line -------------------------------------------------------------------


def crawl_lines(stream: io.StringIO) -> dict[str, dict[str, Any]]:
    """The `crawl <state>` line of each account."""
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    return {line["user_uuid"]: line for line in lines if "state" in line}


def test_the_line_of_a_failed_crawl_carries_the_error_s_type_and_message(
    world: World, log_lines: io.StringIO
) -> None:
    token = "ya29.a0AfH6SMBx-this-is-an-access-token"

    class Failing(GmailCrawler):
        def crawl(self) -> Any:
            if self.user_uuid == "broken":  # a bug whose message quotes a token
                raise RuntimeError(f"bug near {token}")
            if self.user_uuid == "revoked":
                raise AuthRevoked("the refresh token is expired or revoked (invalid_grant)")
            if self.user_uuid == "busy":
                raise OverQuota("[OVERQUOTA] Account exceeded command or bandwidth limits.")
            return super().crawl()

    for user in ("broken", "revoked", "busy", "fine"):
        world.add_account(f"{user}@example.com", user)

    outcomes = world.iterate(crawler_map={"gmail_oauth": Failing}).outcomes

    assert outcomes == {
        "broken": "error",
        "revoked": "auth_failed",
        "busy": "throttled",
        "fine": "idle",
    }
    lines = crawl_lines(log_lines)
    said = {
        user: (line["error_type"], line["error"]) for user, line in lines.items() if user != "fine"
    }
    assert said == {
        "broken": ("RuntimeError", "bug near [Filtered]"),
        "revoked": ("AuthRevoked", "the refresh token is expired or revoked (invalid_grant)"),
        "busy": ("OverQuota", "[OVERQUOTA] Account exceeded command or bandwidth limits."),
    }
    # The line says what `crawler status` says.
    for user, (kind, message) in said.items():
        assert world.status(user)["last_error"]["type"] == kind
        assert world.status(user)["last_error"]["message"] == message
    assert "error_type" not in lines["fine"] and "error" not in lines["fine"]
    text = log_lines.getvalue()
    assert token not in text
    for user in outcomes:
        assert not [secret for secret in world.secrets(user) if secret in text]


def test_a_wrong_key_for_one_account_is_its_line_s_error(
    world: World, log_lines: io.StringIO
) -> None:
    world.add_account("fine@example.com", "fine")
    add_gmail(world.db, "stray", OTHER, email="stray@example.com")
    world.db.rules.insert_one({"user_uuid": "stray"})
    world.gmail.add_account("stray@example.com")

    assert world.iterate().outcomes == {"fine": "idle", "stray": "error"}

    line = crawl_lines(log_lines)["stray"]
    assert (line["event"], line["error_type"]) == ("crawl error", "BadAccount")
    assert "cannot be decrypted with CRAWLER_SECRET_KEY (wrong key?)" in line["error"]
