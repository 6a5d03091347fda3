"""Every MongoDB call the crawler makes, in four modules: this one, the crawl path's (`rules`,
`accounts`, `attachments` and their indexes); `status`, the one writer of `crawl_status`;
`domains`, the Workspace domains and their service accounts; and `admin`, the operator commands'
queries.

Keeping them here keeps the contract narrow: the same operations run on mongomock, on the
embedded stand-in and on a real MongoDB.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, UpdateMany
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError

from crawler.events import RECORD_FIELDS
from crawler.store.domains import DomainBook
from crawler.store.status import Document, StatusBook

__all__ = ["Document", "Store", "in_shard", "stable_hash", "storable_msgid"]

# Where CRAWLER_SECRET_KEY's ciphertexts are: the accounts' tokens and IMAP passwords, and the
# domains' service account keys. A Fernet token begins `gAAAAA` (its version byte, then the high
# bytes of its timestamp), which tells a ciphertext from a value that never was one.
ENCRYPTED_ACCOUNT_FIELDS = ("oauth.refresh_token", "oauth.access_token", "password")
ENCRYPTED_DOMAIN_FIELD = "key"
CIPHERTEXT_START = "gAAAAA"
_CIPHERTEXT = {"$regex": f"^{CIPHERTEXT_START}"}
# The codes of a write error that pymongo raises as DuplicateKeyError.
DUPLICATE_KEY_CODES = frozenset({11000, 11001, 12582})


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
        self.statuses = StatusBook(database)
        self.domains = DomainBook(database)
        self.attachments = database["attachments"]
        self.meta = database["crawler_meta"]

    def ensure_indexes(self) -> None:
        """Create the indexes the queries below rely on (idempotent)."""
        self.rules.create_index([("user_uuid", ASCENDING), ("enabled", ASCENDING)])
        self.accounts.create_index("user_uuid", unique=True)
        self.statuses.ensure_indexes()
        self.domains.ensure_indexes()
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
        created = self.statuses.created(self.rules.distinct("user_uuid", query), now)
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
        known = self.statuses.known()
        wanted = self.rules.distinct("user_uuid", {"enabled": {"$ne": False}})
        return self.statuses.created([uuid for uuid in wanted if uuid not in known], now)

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

    def encrypted_sample(self, limit: int) -> list[str]:
        """Up to `limit` ciphertexts stored with CRAWLER_SECRET_KEY: domains' keys first (each
        serves many accounts), then accounts' tokens and passwords. Values that are no
        ciphertext (broken documents) are left out."""
        if limit < 1:
            return []
        found: list[str] = []
        keys = self.domains.collection.find(
            {ENCRYPTED_DOMAIN_FIELD: _CIPHERTEXT}, {ENCRYPTED_DOMAIN_FIELD: 1}
        )
        found += [str(domain[ENCRYPTED_DOMAIN_FIELD]) for domain in keys.limit(limit)]
        if limit <= len(found):  # (a limit of 0 would be none at all)
            return found[:limit]
        accounts = self.accounts.find(
            {"$or": [{field: _CIPHERTEXT} for field in ENCRYPTED_ACCOUNT_FIELDS]},
            {field: 1 for field in ENCRYPTED_ACCOUNT_FIELDS},
        )
        for account in accounts.limit(limit - len(found)):
            for field in ENCRYPTED_ACCOUNT_FIELDS:
                value = _dotted(account, field)
                if isinstance(value, str) and value.startswith(CIPHERTEXT_START):
                    found.append(value)
        return found[:limit]

    # -- attachments --------------------------------------------------------------------

    def save_attachments(self, documents: Sequence[Mapping[str, Any]]) -> list[Any | None]:
        """Insert, in one unordered write, the attachments whose (user_uuid, gm_msgid, part) is
        not stored; for each document in order, its `_id` if new, else None.

        The unique index (`ensure_indexes`) refuses a second copy, whether stored before, won
        by a concurrent crawl or met earlier in `documents`: an insert costs one index lookup
        where an upsert would first search for the key, then insert. Any other error raises."""
        if not documents:
            return []
        copies = [{"_id": ObjectId(), **document} for document in documents]
        refused: set[int] = set()
        try:
            self.attachments.insert_many(copies, ordered=False)
        except BulkWriteError as error:
            errors = error.details.get("writeErrors") or []
            others = [e for e in errors if e.get("code") not in DUPLICATE_KEY_CODES]
            if others or error.details.get("writeConcernErrors"):
                raise
            refused = {e["index"] for e in errors}
        return [None if n in refused else copy["_id"] for n, copy in enumerate(copies)]

    def add_rule_ids_many(
        self, user_uuid: str, additions: Sequence[tuple[Any, str, Sequence[str]]]
    ) -> None:
        """Record, in one unordered write, that more rules keep attachments already stored:
        `additions` holds (gm_msgid, part, rule_ids).

        UpdateMany, though the unique key matches one record at most: mongomock's bulk_write
        refuses pymongo's UpdateOne (it passes `sort=` since pymongo 4.10)."""
        if not additions:
            return
        self.attachments.bulk_write(
            [
                UpdateMany(
                    {"user_uuid": user_uuid, "gm_msgid": gm_msgid, "part": part},
                    {"$addToSet": {"rule_ids": {"$each": list(rule_ids)}}},
                )
                for gm_msgid, part, rule_ids in additions
            ],
            ordered=False,
        )

    def stored_attachments(
        self, user_uuid: str, gm_msgids: list[Any]
    ) -> dict[tuple[Any, str], Document]:
        """The attachments already stored for these messages, by (gm_msgid, part): the fields
        of their events."""
        cursor = self.attachments.find(
            {"user_uuid": user_uuid, "gm_msgid": {"$in": gm_msgids}}, list(RECORD_FIELDS)
        )
        return {(doc["gm_msgid"], doc["part"]): doc for doc in cursor}


def _dotted(document: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted `path` of `document`, or None."""
    value: Any = document
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value
