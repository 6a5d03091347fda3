"""Every MongoDB call the crawler makes: the `rules`, `accounts`, `crawl_status` and
`attachments` collections and their indexes.

Keeping them here keeps the contract narrow: the same operations run on mongomock, on the
embedded stand-in and on a real MongoDB.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError

Document = dict[str, Any]


def stable_hash(user_uuid: str) -> int:
    """A hash of `user_uuid` that every process and Python version agrees on."""
    return int.from_bytes(hashlib.blake2b(user_uuid.encode(), digest_size=8).digest(), "big")


def in_shard(user_uuid: str, client_id: int, client_count: int) -> bool:
    """Whether the account belongs to shard `client_id` of `client_count`."""
    return stable_hash(user_uuid) % client_count == client_id


def storable_msgid(gm_msgid: int) -> int | str:
    """X-GM-MSGID as BSON holds it: unsigned 64-bit ids past int64 become decimal strings."""
    return gm_msgid if gm_msgid < 2**63 else str(gm_msgid)


class Store:
    """The crawler's MongoDB collections."""

    def __init__(self, database: Database[Document]) -> None:
        self.db = database
        self.rules = database["rules"]
        self.accounts = database["accounts"]
        self.status = database["crawl_status"]
        self.attachments = database["attachments"]
        self.meta = database["crawler_meta"]

    def ensure_indexes(self) -> None:
        """Create the indexes the queries below rely on (idempotent)."""
        self.rules.create_index([("user_uuid", ASCENDING), ("enabled", ASCENDING)])
        self.accounts.create_index("user_uuid", unique=True)
        self.status.create_index("user_uuid", unique=True)
        self.status.create_index("next_crawl_at")
        self.status.create_index("state")
        self.attachments.create_index(
            [("user_uuid", ASCENDING), ("gm_msgid", ASCENDING), ("part", ASCENDING)], unique=True
        )
        self.attachments.create_index("sha256")

    # -- accounts and rules -------------------------------------------------------------

    def discover_accounts(self, now: float) -> int:
        """Give accounts with rules added since the last call a `crawl_status`, due now.

        Costs in proportion to the rules added since then, not to all rules: it reads the rules
        whose ObjectId is above a watermark. `resync_accounts` catches the rest.
        """
        meta = self.meta.find_one({"_id": "discovery"}) or {}
        query: Document = {"_id": {"$gt": meta["watermark"]}} if "watermark" in meta else {}
        newest = self.rules.find(query, {"_id": 1}).sort("_id", DESCENDING).limit(1)
        top = next(iter(newest), None)
        if top is None or not isinstance(top["_id"], ObjectId):
            return 0
        query["_id"] = {**query.get("_id", {}), "$lte": top["_id"], "$type": "objectId"}
        created = self.ensure_statuses(self.rules.distinct("user_uuid", query), now)
        self.meta.update_one({"_id": "discovery"}, {"$max": {"watermark": top["_id"]}}, upsert=True)
        return created

    def resync_due(self, now: float, interval: float) -> bool:
        """Whether a full resync is due; claims it, so one worker does it per interval."""
        try:
            self.meta.update_one(
                {"_id": "resync", "at": {"$not": {"$gt": now - interval}}},
                {"$set": {"at": now}},
                upsert=True,
            )
        except DuplicateKeyError:  # done recently: the filter missed and the insert collided
            return False
        return True

    def resync_accounts(self, now: float) -> int:
        """A full scan of `rules` for accounts without status (e.g. rules with string ids)."""
        known = set(self.status.distinct("user_uuid"))
        wanted = self.rules.distinct("user_uuid", {"enabled": {"$ne": False}})
        return self.ensure_statuses([uuid for uuid in wanted if uuid not in known], now)

    def ensure_statuses(self, user_uuids: list[Any], now: float) -> int:
        """Create a `crawl_status` (due now) for each account that has none; how many."""
        statuses = [new_status(uuid, now) for uuid in user_uuids if isinstance(uuid, str)]
        if not statuses:
            return 0
        try:
            return len(self.status.insert_many(statuses, ordered=False).inserted_ids)
        except BulkWriteError as error:  # the unique index refused the ones that exist
            return int(error.details.get("nInserted", 0))

    def enabled_rules(self, user_uuid: str) -> list[Document]:
        """The account's rule documents that are not disabled."""
        return list(self.rules.find({"user_uuid": user_uuid, "enabled": {"$ne": False}}))

    def account(self, user_uuid: str) -> Document | None:
        """The `accounts` document, or None."""
        return self.accounts.find_one({"user_uuid": user_uuid})

    def save_oauth(self, user_uuid: str, fields: Mapping[str, Any]) -> None:
        """Store refreshed (already encrypted) token fields under `oauth`."""
        self.accounts.update_one(
            {"user_uuid": user_uuid},
            {"$set": {f"oauth.{key}": value for key, value in fields.items()}},
        )

    # -- crawl_status -------------------------------------------------------------------

    def due(self, now: float) -> Iterator[Document]:
        """Statuses due by `now`, most overdue first (an index range: O(due))."""
        return self.status.find({"next_crawl_at": {"$lte": now}}).sort("next_crawl_at", ASCENDING)

    def next_due_at(self, now: float) -> float | None:
        """When the next account after `now` is due, if any is scheduled."""
        upcoming = self.status.find({"next_crawl_at": {"$gt": now}}, {"next_crawl_at": 1})
        for document in upcoming.sort("next_crawl_at", ASCENDING).limit(1):
            return float(document["next_crawl_at"])
        return None

    def count_by_state(self) -> dict[str, int]:
        """How many accounts are in each crawl state."""
        grouped = self.status.aggregate([{"$group": {"_id": "$state", "count": {"$sum": 1}}}])
        return {str(group["_id"]): int(group["count"]) for group in grouped}

    def count_throttled(self, now: float) -> int:
        """Accounts whose throttle backoff has not ended."""
        return self.status.count_documents(
            {"state": "throttled", "throttle_backoff_timestamp": {"$gt": now}}
        )

    def report_stalled(self, progress_before: float, now: float) -> list[str]:
        """Accounts `crawling` with no progress since `progress_before`, not yet reported;
        marks them reported, so each stall is reported once."""
        stalled = []
        query = {
            "state": "crawling",
            "last_started_at": {"$lt": progress_before},
            "$or": [{"progress_at": {"$exists": False}}, {"progress_at": {"$lt": progress_before}}],
            "stall_reported_at": {"$not": {"$gte": progress_before}},
        }
        for document in self.status.find(query, {"user_uuid": 1}):
            self.status.update_one({"_id": document["_id"]}, {"$set": {"stall_reported_at": now}})
            stalled.append(str(document["user_uuid"]))
        return stalled

    def status_of(self, user_uuid: str) -> Document | None:
        """The account's `crawl_status`."""
        return self.status.find_one({"user_uuid": user_uuid})

    def update_status(
        self, user_uuid: str, fields: Mapping[str, Any], inc: Mapping[str, int] | None = None
    ) -> Document:
        """Set `fields` (and add `inc`) on the account's status; returns the new document."""
        update: Document = {"$set": dict(fields)}
        if inc:
            update["$inc"] = dict(inc)
        document = self.status.find_one_and_update(
            {"user_uuid": user_uuid}, update, upsert=True, return_document=ReturnDocument.AFTER
        )
        if document is None:  # impossible with upsert=True; say so rather than return None
            raise RuntimeError(f"crawl_status of {user_uuid} vanished during an upsert")
        return document

    # -- attachments --------------------------------------------------------------------

    def save_attachment(self, document: Mapping[str, Any]) -> bool:
        """Insert the attachment unless (user_uuid, gm_msgid, part) is stored; True if new.

        The unique index (`ensure_indexes`) refuses a second copy: an insert costs one index
        lookup where an upsert would first search for the key, then insert."""
        try:
            self.attachments.insert_one(dict(document))
        except DuplicateKeyError:  # stored before, or a concurrent crawl of the key won the race
            return False
        return True

    def add_rule_ids(self, user_uuid: str, gm_msgid: Any, part: str, rule_ids: list[str]) -> None:
        """Record that more rules keep an attachment that is already stored."""
        self.attachments.update_one(
            {"user_uuid": user_uuid, "gm_msgid": gm_msgid, "part": part},
            {"$addToSet": {"rule_ids": {"$each": rule_ids}}},
        )

    def push_failed_uid(self, user_uuid: str, entry: Mapping[str, Any], keep: int) -> None:
        """Record a UID that could not be processed (the newest `keep` are kept)."""
        self.status.update_one(
            {"user_uuid": user_uuid},
            {"$push": {"failed_uids": {"$each": [dict(entry)], "$slice": -keep}}},
        )

    def attachment_keys(self, user_uuid: str, gm_msgids: list[Any]) -> set[tuple[Any, str]]:
        """(gm_msgid, part) of the attachments already stored for these messages."""
        cursor = self.attachments.find(
            {"user_uuid": user_uuid, "gm_msgid": {"$in": gm_msgids}},
            {"gm_msgid": 1, "part": 1, "_id": 0},
        )
        return {(doc["gm_msgid"], doc["part"]) for doc in cursor}

    # -- operator queries (crawler status, accounts, rules, attachments) --

    def add_account(self, document: Mapping[str, Any]) -> bool:
        """Insert an `accounts` document; False if its user_uuid has one already."""
        self.ensure_indexes()  # the unique index on user_uuid is what refuses a second one
        try:
            self.accounts.insert_one(dict(document))
        except DuplicateKeyError:
            return False
        return True

    def account_summaries(self, limit: int) -> list[Document]:
        """Accounts without their secrets (`oauth`, `password`), by user_uuid."""
        cursor = self.accounts.find({}, {"oauth": 0, "password": 0})
        return list(cursor.sort("user_uuid", ASCENDING).limit(limit))

    def states_of(self, user_uuids: list[str]) -> dict[str, str]:
        """The crawl state of each of these accounts that has a `crawl_status`."""
        cursor = self.status.find({"user_uuid": {"$in": user_uuids}}, {"user_uuid": 1, "state": 1})
        return {str(doc["user_uuid"]): str(doc.get("state")) for doc in cursor}

    def remove_account(self, user_uuid: str) -> bool:
        """Delete the account and its `crawl_status`, nothing else; False if it is unknown."""
        if not self.accounts.delete_one({"user_uuid": user_uuid}).deleted_count:
            return False
        self.status.delete_one({"user_uuid": user_uuid})
        return True

    def reauthorize(self, user_uuid: str, now: float) -> bool:
        """Bring an `auth_failed` account back, idle and due now; False if it was not."""
        fields = {"state": "idle", "next_crawl_at": now, "last_error": None, "auth_revoked": False}
        result = self.status.update_one(
            {"user_uuid": user_uuid, "state": "auth_failed"}, {"$set": fields}
        )
        return result.modified_count == 1

    def add_rule(self, document: Mapping[str, Any]) -> None:
        """Insert a (validated) `rules` document."""
        self.rules.insert_one(dict(document))

    def find_rules(self, user_uuid: str | None, limit: int) -> list[Document]:
        """Rules, of one account or all, by `_id` (ObjectIds: the oldest first)."""
        query = {} if user_uuid is None else {"user_uuid": user_uuid}
        return list(self.rules.find(query).sort("_id", ASCENDING).limit(limit))

    def rule(self, rule_id: str) -> Document | None:
        """The rule whose `_id` is `rule_id` (an ObjectId in hex, or a string id)."""
        return self.rules.find_one({"_id": {"$in": self._rule_ids(rule_id)}})

    def remove_rule(self, rule_id: str) -> bool:
        """Delete a rule; False if there is no such rule."""
        return bool(self.rules.delete_one({"_id": {"$in": self._rule_ids(rule_id)}}).deleted_count)

    @staticmethod
    def _rule_ids(rule_id: str) -> list[Any]:
        # Rules added by the CLI have ObjectIds; rules written by other tools may have strings.
        return [ObjectId(rule_id), rule_id] if ObjectId.is_valid(rule_id) else [rule_id]

    def statuses_in(
        self, states: list[str], sort: list[tuple[str, int]], limit: int
    ) -> list[Document]:
        """Statuses in these states, in `sort` order, without their lists of failed UIDs."""
        cursor = self.status.find({"state": {"$in": states}}, {"failed_uids": 0})
        return list(cursor.sort(sort).limit(limit))

    def rule_errors(self, limit: int) -> list[Document]:
        """Statuses whose account has rules that cannot be used (`rule_errors` not empty)."""
        found = {"rule_errors": {"$exists": True, "$nin": [{}, None]}}
        cursor = self.status.find(found, {"user_uuid": 1, "rule_errors": 1, "_id": 0})
        return list(cursor.sort([("user_uuid", 1)]).limit(limit))

    def crawl_totals(self) -> dict[str, int]:
        """Messages, attachments and bytes crawled, summed over all accounts."""
        fields = ("messages", "attachments", "bytes")
        group = {field: {"$sum": f"$totals.{field}"} for field in fields}
        found = list(self.status.aggregate([{"$group": {"_id": None, **group}}]))
        return {field: int(found[0][field]) if found else 0 for field in fields}

    def recent_attachments(self, user_uuid: str | None, limit: int) -> list[Document]:
        """Stored attachments, of one account or all, newest first."""
        query = {} if user_uuid is None else {"user_uuid": user_uuid}
        return list(self.attachments.find(query).sort("saved_at", DESCENDING).limit(limit))

    def attachments_of(self, user_uuid: str) -> Iterator[Document]:
        """Every attachment of the account, oldest first: a stable order for exports."""
        cursor = self.attachments.find({"user_uuid": user_uuid})
        return iter(cursor.sort([("saved_at", ASCENDING), ("_id", ASCENDING)]))


def new_status(user_uuid: str, now: float) -> Document:
    """A fresh `crawl_status`: idle and due now."""
    return {
        "user_uuid": user_uuid,
        "state": "idle",
        "throttle_backoff_timestamp": 0,
        "consecutive_throttles": 0,
        "throttle_reason": None,
        "uidvalidity": None,
        "last_uid": 0,
        "next_crawl_at": now,
        "last_started_at": None,
        "last_finished_at": None,
        "last_error": None,
        "worker": None,
        "totals": {"messages": 0, "attachments": 0, "bytes": 0},
    }
