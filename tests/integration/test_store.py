"""The store module's operations, on mongomock, the embedded stand-in and (with MONGODB_URL) a
real MongoDB: the same contract everywhere."""

from typing import Any

import pytest
from pymongo.database import Database

from crawler.store import Store, in_shard, stable_hash, storable_msgid

pytestmark = pytest.mark.integration


@pytest.fixture
def store(mongo_db: Database[dict[str, Any]]) -> Store:
    store = Store(mongo_db)
    store.ensure_indexes()
    return store


def test_stable_hash_is_stable_and_spreads() -> None:
    assert stable_hash("aaabbb") == int.from_bytes(
        __import__("hashlib").blake2b(b"aaabbb", digest_size=8).digest(), "big"
    )
    counts = [sum(in_shard(f"u{n}", shard, 4) for n in range(4000)) for shard in range(4)]
    assert sum(counts) == 4000
    assert all(800 < count < 1200 for count in counts)


@pytest.mark.parametrize(
    ("msgid", "stored"),
    [
        (1, 1),
        (1883078976959676416, 1883078976959676416),
        (2**63, str(2**63)),
        (2**64 - 1, str(2**64 - 1)),
    ],
)
def test_msgids_beyond_signed_64_bits_are_stored_as_decimal_strings(
    msgid: int, stored: object
) -> None:
    assert storable_msgid(msgid) == stored


def test_discovery_reads_only_rules_added_since_last_time(store: Store) -> None:
    store.rules.insert_many(
        [{"user_uuid": "a"}, {"user_uuid": "b"}, {"user_uuid": "a", "query": "x"}]
    )
    assert store.discover_accounts(now=10) == 2
    assert store.discover_accounts(now=11) == 0
    store.rules.insert_one({"user_uuid": "c"})
    store.rules.insert_one({"_id": "string-id", "user_uuid": "d"})
    assert store.discover_accounts(now=12) == 1
    assert store.resync_accounts(now=13) == 1  # the rule with a string _id
    assert store.resync_accounts(now=14) == 0
    due = [(doc["user_uuid"], doc["next_crawl_at"]) for doc in store.statuses.due(now=12)]
    assert sorted(due) == [("a", 10), ("b", 10), ("c", 12)]
    assert store.statuses.of("d")["state"] == "idle"


def test_attachments_are_stored_once_per_message_part(store: Store) -> None:
    msgid = storable_msgid(2**64 - 1)  # X-GM-MSGID is unsigned 64-bit; BSON ints are signed
    document = {"user_uuid": "a", "gm_msgid": msgid, "part": "2", "filename": "x"}
    first = store.save_attachment(document)
    assert first is not None
    assert store.save_attachment({**document, "filename": "changed"}) is None
    assert store.save_attachment({**document, "part": "2.1"}) is not None
    assert store.attachments.count_documents({}) == 2
    assert store.attachments.find_one({"part": "2"})["filename"] == "x"
    stored = store.stored_attachments("a", [msgid, 99])
    assert set(stored) == {(msgid, "2"), (msgid, "2.1")}
    assert stored[msgid, "2"]["_id"] == first
    assert stored[msgid, "2"]["filename"] == "x"
    store.add_rule_ids("a", msgid, "2", ["r1", "r2"])
    store.add_rule_ids("a", msgid, "2", ["r2", "r3"])
    assert sorted(store.attachments.find_one({"part": "2"})["rule_ids"]) == ["r1", "r2", "r3"]


def test_oauth_fields_are_updated_in_place(store: Store) -> None:
    store.accounts.insert_one(
        {"user_uuid": "a", "oauth": {"refresh_token": "r", "access_token": "old"}}
    )
    store.save_oauth("a", {"access_token": "new", "expires_at": 9.5})
    assert store.account("a")["oauth"] == {
        "refresh_token": "r",
        "access_token": "new",
        "expires_at": 9.5,
    }


def test_enabled_rules(store: Store) -> None:
    store.rules.insert_many(
        [
            {"user_uuid": "a", "n": 1},
            {"user_uuid": "a", "enabled": False},
            {"user_uuid": "a", "enabled": True},
            {"user_uuid": "b"},
        ]
    )
    assert sorted(rule.get("n", 0) for rule in store.enabled_rules("a")) == [0, 1]


def test_a_resync_is_claimed_once_per_interval(store: Store) -> None:
    assert store.resync_due(100, interval=50) is True
    assert store.resync_due(120, interval=50) is False
    assert store.resync_due(151, interval=50) is True
