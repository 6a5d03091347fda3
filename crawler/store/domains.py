"""`domains`: the Google Workspace domains crawled through domain-wide delegation.

One document per domain: its service account (`client_email`, `client_id`, `key_id`, and `key`,
the whole JSON key file encrypted with CRAWLER_SECRET_KEY), the administrator whose directory
`crawler domains sync` reads, and, while Google refuses the service account, why and until when
(`refused`). Its accounts are `g_apps_oauth` accounts whose `domain` names it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypedDict

from pymongo.collection import Collection
from pymongo.database import Database

from crawler.store.status import Document

PROVIDER = "g_apps_oauth"


class Refusal(TypedDict):
    """Why Google refused the domain's service account, and when its accounts try again."""

    message: str
    at: float
    until: float


class DomainBook:
    """The `domains` collection, and the accounts of each domain."""

    def __init__(self, database: Database[Document]) -> None:
        self.collection: Collection[Document] = database["domains"]
        self.accounts: Collection[Document] = database["accounts"]

    def ensure_indexes(self) -> None:
        """One document per domain; accounts found by their domain."""
        self.collection.create_index("domain", unique=True)
        self.accounts.create_index("domain", sparse=True)

    def of(self, domain: str) -> Document | None:
        """The domain's document, or None."""
        return self.collection.find_one({"domain": domain})

    def all(self) -> list[Document]:
        """Every domain, by name."""
        return list(self.collection.find({}).sort("domain", 1))

    def saved(self, domain: str, fields: dict[str, Any], now: float) -> None:
        """The domain's service account (new or rotated) and administrator; a refusal of the
        key it replaces is forgotten."""
        self.collection.update_one(
            {"domain": domain},
            {"$set": {**fields, "refused": None, "saved_at": now}},
            upsert=True,
        )

    def removed(self, domain: str) -> bool:
        """The domain is gone (its accounts stay); False if it was not there."""
        return self.collection.delete_one({"domain": domain}).deleted_count == 1

    def refused(self, domain: str, refusal: Refusal) -> None:
        """Google refused the domain's service account: its accounts wait until `until`."""
        self.collection.update_one({"domain": domain}, {"$set": {"refused": dict(refusal)}})

    def accepted(self, domain: str) -> None:
        """Google accepted the domain's service account again."""
        self.collection.update_one(
            {"domain": domain, "refused": {"$ne": None}}, {"$set": {"refused": None}}
        )

    def synced(self, domain: str, now: float) -> None:
        """`crawler domains sync` read the domain's directory."""
        self.collection.update_one({"domain": domain}, {"$set": {"synced_at": now}})

    def account_emails(self, domain: str) -> Iterator[tuple[str, str]]:
        """(email, user_uuid) of every account of the domain."""
        found = self.accounts.find({"domain": domain}, {"email": 1, "user_uuid": 1})
        for account in found:
            yield str(account.get("email")), str(account.get("user_uuid"))
