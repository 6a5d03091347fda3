"""The operator commands' queries (`crawler status`, `accounts`, `rules`, `attachments`), apart
from the crawl path's: they read what crawls wrote, and change accounts and rules, never a crawl's
state but through `crawler.store.status`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from crawler.store import Store
from crawler.store.status import Document


class AdminStore(Store):
    """The collections as operators see them."""

    # -- accounts -------------------------------------------------------------------------

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

    def save_password(self, user_uuid: str, ciphertext: str) -> bool:
        """Replace an `imap_password` account's (already encrypted) password; False if there is
        no such account."""
        found = self.accounts.update_one(
            {"user_uuid": user_uuid, "provider": "imap_password"},
            {"$set": {"password": ciphertext}},
        )
        return found.matched_count == 1

    def remove_account(self, user_uuid: str) -> bool:
        """Delete the account and its `crawl_status`, nothing else; False if it is unknown."""
        if not self.accounts.delete_one({"user_uuid": user_uuid}).deleted_count:
            return False
        self.statuses.removed(user_uuid)
        return True

    # -- rules ----------------------------------------------------------------------------

    def add_rule(self, document: Mapping[str, Any]) -> None:
        """Insert a (validated) `rules` document."""
        self.rules.insert_one(dict(document))

    def find_rules(self, user_uuid: str | None, limit: int) -> list[Document]:
        """Rules, of one account or all, by `_id` (ObjectIds: the oldest first)."""
        query = {} if user_uuid is None else {"user_uuid": user_uuid}
        return list(self.rules.find(query).sort("_id", ASCENDING).limit(limit))

    def rule(self, rule_id: str) -> Document | None:
        """The rule whose `_id` is `rule_id` (an ObjectId in hex, or a string id)."""
        return self.rules.find_one({"_id": {"$in": _rule_ids(rule_id)}})

    def remove_rules(self, user_uuid: str) -> int:
        """Delete every rule of the account; how many there were."""
        return self.rules.delete_many({"user_uuid": user_uuid}).deleted_count

    def remove_rule(self, rule_id: str) -> bool:
        """Delete a rule; False if there is no such rule."""
        return bool(self.rules.delete_one({"_id": {"$in": _rule_ids(rule_id)}}).deleted_count)

    def set_rule_enabled(self, rule_id: str, enabled: bool) -> Document | None:
        """Enable or disable a rule; the rule as it was before, or None if there is none."""
        return self.rules.find_one_and_update(
            {"_id": {"$in": _rule_ids(rule_id)}},
            {"$set": {"enabled": enabled}},
            return_document=ReturnDocument.BEFORE,
        )

    def rule_counts(self, user_uuids: list[str]) -> dict[str, tuple[int, int]]:
        """(rules, enabled rules) of each of these accounts that has a rule."""
        enabled = {"$cond": [{"$eq": ["$enabled", False]}, 0, 1]}
        grouped = self.rules.aggregate(
            [
                {"$match": {"user_uuid": {"$in": user_uuids}}},
                {
                    "$group": {
                        "_id": "$user_uuid",
                        "rules": {"$sum": 1},
                        "enabled": {"$sum": enabled},
                    }
                },
            ]
        )
        return {
            str(group["_id"]): (int(group["rules"]), int(group["enabled"])) for group in grouped
        }

    def has_rules(self, user_uuid: str) -> bool:
        """Whether any rule, enabled or not, names the account."""
        return self.rules.count_documents({"user_uuid": user_uuid}, limit=1) > 0

    # -- crawl states ---------------------------------------------------------------------

    def schedules_of(self, user_uuids: list[str]) -> dict[str, Document]:
        """The `state` and `next_crawl_at` of each of these accounts that has a `crawl_status`."""
        cursor = self.statuses.collection.find(
            {"user_uuid": {"$in": user_uuids}},
            {"_id": 0, "user_uuid": 1, "state": 1, "next_crawl_at": 1},
        )
        return {str(doc["user_uuid"]): doc for doc in cursor}

    def statuses_in(
        self, states: list[str], sort: list[tuple[str, int]], limit: int
    ) -> list[Document]:
        """Statuses in these states, in `sort` order, without their lists of failed UIDs."""
        cursor = self.statuses.collection.find({"state": {"$in": states}}, {"failed_uids": 0})
        return list(cursor.sort(sort).limit(limit))

    def rule_errors(self, limit: int) -> list[Document]:
        """Statuses whose account has rules that cannot be used (`rule_errors` not empty)."""
        found = {"rule_errors": {"$exists": True, "$nin": [{}, None]}}
        cursor = self.statuses.collection.find(found, {"user_uuid": 1, "rule_errors": 1, "_id": 0})
        return list(cursor.sort([("user_uuid", 1)]).limit(limit))

    def folder_warnings(self, limit: int) -> list[Document]:
        """Statuses whose folder may be cut short by the account's IMAP settings."""
        found = {"folder_warning": {"$nin": [None, ""]}}
        cursor = self.statuses.collection.find(found, {"user_uuid": 1, "folder_warning": 1})
        return list(cursor.sort([("user_uuid", 1)]).limit(limit))

    def crawl_totals(self) -> dict[str, int]:
        """Messages, attachments and bytes crawled, summed over all accounts."""
        fields = ("messages", "attachments", "bytes")
        group = {field: {"$sum": f"$totals.{field}"} for field in fields}
        found = list(self.statuses.collection.aggregate([{"$group": {"_id": None, **group}}]))
        return {field: int(found[0][field]) if found else 0 for field in fields}

    # -- attachments ----------------------------------------------------------------------

    def recent_attachments(self, user_uuid: str | None, limit: int) -> list[Document]:
        """Stored attachments, of one account or all, newest first."""
        query = {} if user_uuid is None else {"user_uuid": user_uuid}
        return list(self.attachments.find(query).sort("saved_at", DESCENDING).limit(limit))

    def has_attachments(self, user_uuid: str) -> bool:
        """Whether any attachment of the account is recorded (its account may be gone)."""
        return self.attachments.count_documents({"user_uuid": user_uuid}, limit=1) > 0

    def attachments_of(self, user_uuid: str) -> Iterator[Document]:
        """Every attachment of the account, oldest first: a stable order for exports."""
        cursor = self.attachments.find({"user_uuid": user_uuid})
        return iter(cursor.sort([("saved_at", ASCENDING), ("_id", ASCENDING)]))


def _rule_ids(rule_id: str) -> list[Any]:
    # Rules added by the CLI have ObjectIds; rules written by other tools may have strings.
    return [ObjectId(rule_id), rule_id] if ObjectId.is_valid(rule_id) else [rule_id]
