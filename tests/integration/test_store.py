"""The store module's operations, on mongomock, the embedded stand-in and (with MONGODB_URL) a
real MongoDB: the same contract everywhere."""

from typing import Any

import mongomock
import pytest
from pymongo.database import Database
from pymongo.errors import BulkWriteError

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
    [first] = store.save_attachments([document])
    assert first is not None
    assert store.save_attachments([{**document, "filename": "changed"}]) == [None]
    assert store.save_attachments([{**document, "part": "2.1"}]) != [None]
    assert store.save_attachments([]) == []
    assert store.attachments.count_documents({}) == 2
    assert store.attachments.find_one({"part": "2"})["filename"] == "x"
    assert "_id" not in document  # the caller's documents are left as they were
    stored = store.stored_attachments("a", [msgid, 99])
    assert set(stored) == {(msgid, "2"), (msgid, "2.1")}
    assert stored[msgid, "2"]["_id"] == first
    assert stored[msgid, "2"]["filename"] == "x"
    store.add_rule_ids_many("a", [(msgid, "2", ["r1", "r2"]), (msgid, "2.1", ["r1"])])
    store.add_rule_ids_many("a", [(msgid, "2", ["r2", "r3"]), (msgid, "9", ["r1"])])
    store.add_rule_ids_many("a", [])
    assert sorted(store.attachments.find_one({"part": "2"})["rule_ids"]) == ["r1", "r2", "r3"]
    assert store.attachments.find_one({"part": "2.1"})["rule_ids"] == ["r1"]
    assert store.attachments.count_documents({}) == 2  # no record is made for a missing key


def test_a_batch_of_records_stores_the_new_and_reports_the_rest_as_not_new(store: Store) -> None:
    """One unordered insert: a record stored before and a second copy of a key within the
    batch are not new, and do not keep the records after them from being stored."""
    [kept] = store.save_attachments([{"user_uuid": "a", "gm_msgid": 1, "part": "2", "by": 0}])
    batch = [
        {"user_uuid": "a", "gm_msgid": 1, "part": "2", "by": 1},  # stored before
        {"user_uuid": "a", "gm_msgid": 2, "part": "2", "by": 1},
        {"user_uuid": "a", "gm_msgid": 2, "part": "2", "by": 2},  # a second copy in the batch
        {"user_uuid": "a", "gm_msgid": 3, "part": "2", "by": 1},
        {"user_uuid": "b", "gm_msgid": 1, "part": "2", "by": 1},
    ]

    ids = store.save_attachments(batch)

    assert [record_id is not None for record_id in ids] == [False, True, False, True, True]
    stored = {(doc["user_uuid"], doc["gm_msgid"]): doc for doc in store.attachments.find()}
    assert {key: doc["by"] for key, doc in stored.items()} == {
        ("a", 1): 0,
        ("a", 2): 1,
        ("a", 3): 1,
        ("b", 1): 1,
    }
    assert stored["a", 1]["_id"] == kept
    assert [stored["a", 2]["_id"], stored["a", 3]["_id"], stored["b", 1]["_id"]] == [
        ids[1],
        ids[3],
        ids[4],
    ]


class RefusingCollection:
    """A collection whose unordered insert refuses the first document as a duplicate and the
    second for `code`."""

    def __init__(self, code: int) -> None:
        self.code = code

    def insert_many(self, documents: list[dict[str, Any]], ordered: bool) -> None:
        assert ordered is False
        errors = [{"index": 0, "code": 11000}, {"index": 1, "code": self.code}]
        raise BulkWriteError({"writeErrors": errors, "nInserted": len(documents) - 2})


def test_a_write_error_other_than_a_duplicate_key_raises() -> None:
    store = Store(mongomock.MongoClient()["crawler"])
    documents = [{"user_uuid": "a", "gm_msgid": n, "part": "2"} for n in range(3)]
    store.attachments = RefusingCollection(121)  # type: ignore[assignment]  # failed validation
    with pytest.raises(BulkWriteError):
        store.save_attachments(documents)
    store.attachments = RefusingCollection(11000)  # type: ignore[assignment]
    assert [record_id is None for record_id in store.save_attachments(documents)] == [
        True,
        True,
        False,
    ]


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
