"""`crawl_status`: one document per account, and the one module that writes it.

An account's crawl moves between five states; every change is a named transition below, and
nothing else in the code base writes the collection (README, "Crawl states", says the same, and
`tests/unit/test_crawl_states.py` holds the two to it):

    created ---> idle ---started---> crawling ---finished, interrupted---> idle
                  ^                   |  |  |
                  |                   |  |  +--throttled---> throttled ---started---> crawling
                  |                   |  +-----failed------> error -------started---> crawling
                  |                   +--------auth_failed-> auth_failed -reauthorized-> idle
                  +------requeued-----+ (by the monitor, when the crawl's worker died)
                  +------crawl_now------- idle, throttled, error (by an operator)

Besides the state, a crawl records its way through the mailbox (the cursor, what it searched,
progress, UIDs that failed alone): those writes change no state and are named too.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from enum import StrEnum
from typing import Any, TypedDict

from pymongo import ASCENDING
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError

Document = dict[str, Any]


class State(StrEnum):
    """Where an account's crawl stands."""

    IDLE = "idle"
    CRAWLING = "crawling"
    THROTTLED = "throttled"
    AUTH_FAILED = "auth_failed"
    ERROR = "error"


ANY = frozenset(State)
# Each transition: the states it leaves (a write from any other state does nothing), the state
# it enters.
TRANSITIONS: dict[str, tuple[frozenset[State], State]] = {
    "created": (frozenset(), State.IDLE),  # a new account: no status before
    "started": (ANY, State.CRAWLING),
    "finished": (ANY, State.IDLE),
    "interrupted": (ANY, State.IDLE),
    "deferred": (ANY, State.IDLE),
    "throttled": (ANY, State.THROTTLED),
    "auth_failed": (ANY, State.AUTH_FAILED),
    "failed": (ANY, State.ERROR),
    "requeued": (frozenset({State.CRAWLING}), State.IDLE),
    "reauthorized": (frozenset({State.AUTH_FAILED}), State.IDLE),
    "crawl_now": (frozenset({State.IDLE, State.THROTTLED, State.ERROR}), State.IDLE),
}


class LastError(TypedDict):
    """Why the last crawl did not end cleanly."""

    type: str
    message: str
    at: float


class Totals(TypedDict):
    """What every crawl of the account added up to."""

    messages: int
    attachments: int
    bytes: int


class CrawlStatus(TypedDict, total=False):
    """A `crawl_status` document: DESIGN.md's fields, then the crawler's own."""

    user_uuid: str
    state: str  # a State's value
    throttle_backoff_timestamp: float
    consecutive_throttles: int
    throttle_reason: str | None
    uidvalidity: int | None
    last_uid: int
    next_crawl_at: float | None
    last_started_at: float | None
    last_finished_at: float | None
    last_error: LastError | None
    worker: str | None
    totals: Totals
    consecutive_errors: int  # errors in a row, for the error backoff
    auth_revoked: bool  # auth_failed because the grant is revoked (invalid_grant)
    progress_at: float  # when the last batch was stored
    stall_reported_at: float  # the monitor reported this crawl stalled
    pending_uid: int | None  # the cursor once the queue drains
    pending_rules: list[str] | None  # the rules searched for up to pending_uid
    rules_seen: list[str]  # the rules the cursor is good for
    rule_errors: dict[str, str]  # rule id -> why it cannot be used
    failed_uids: list[dict[str, Any]]  # UIDs (and parts) that failed alone, the newest last
    suspect_uids: dict[str, Any] | None  # UIDs no answer could be read for, crawls in a row
    folder_warning: str | None  # the folder may be cut short by the account's IMAP settings
    all_mail: str  # the name All Mail had when last listed (Gmail), so a crawl need not LIST
    auth_refusals: int  # Gmail refused a token just issued, this many logins in a row
    downloaded: dict[str, int]  # bytes received from the server by hour (epoch seconds)


def new_status(user_uuid: str, now: float) -> CrawlStatus:
    """A fresh `crawl_status`: idle and due now."""
    return {
        "user_uuid": user_uuid,
        "state": State.IDLE.value,
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


class StatusBook:
    """The `crawl_status` collection: its reads for the crawl path, and every write."""

    def __init__(self, database: Database[Document]) -> None:
        self.collection: Collection[Document] = database["crawl_status"]

    def ensure_indexes(self) -> None:
        """The indexes the queries below rely on (idempotent)."""
        self.collection.create_index("user_uuid", unique=True)
        self.collection.create_index("next_crawl_at")
        self.collection.create_index("state")

    # -- reading --------------------------------------------------------------------------

    def of(self, user_uuid: str) -> Document | None:
        """The account's status."""
        return self.collection.find_one({"user_uuid": user_uuid})

    def due(self, now: float) -> Iterator[Document]:
        """Statuses due by `now`, most overdue first (an index range: O(due))."""
        return self.collection.find({"next_crawl_at": {"$lte": now}}).sort(
            "next_crawl_at", ASCENDING
        )

    def next_due_at(self, now: float) -> float | None:
        """When the next account after `now` is due, if any is scheduled."""
        upcoming = self.collection.find({"next_crawl_at": {"$gt": now}}, {"next_crawl_at": 1})
        for document in upcoming.sort("next_crawl_at", ASCENDING).limit(1):
            return float(document["next_crawl_at"])
        return None

    def count_by_state(self) -> dict[str, int]:
        """How many accounts are in each crawl state."""
        grouped = self.collection.aggregate([{"$group": {"_id": "$state", "count": {"$sum": 1}}}])
        return {str(group["_id"]): int(group["count"]) for group in grouped}

    def count_throttled(self, now: float) -> int:
        """Accounts whose throttle backoff has not ended."""
        return self.collection.count_documents(
            {"state": State.THROTTLED.value, "throttle_backoff_timestamp": {"$gt": now}}
        )

    def known(self) -> set[str]:
        """Every user_uuid that has a status."""
        return {str(uuid) for uuid in self.collection.distinct("user_uuid")}

    # -- transitions ----------------------------------------------------------------------

    def created(self, user_uuids: Iterable[Any], now: float) -> int:
        """A status (idle, due now) for each account that has none; how many were new."""
        statuses = [new_status(uuid, now) for uuid in user_uuids if isinstance(uuid, str)]
        if not statuses:
            return 0
        try:
            inserted = self.collection.insert_many([dict(s) for s in statuses], ordered=False)
        except BulkWriteError as error:  # the unique index refused the ones that exist
            return int(error.details.get("nInserted", 0))
        return len(inserted.inserted_ids)

    def started(self, user_uuid: str, worker: str, now: float) -> None:
        """A worker took the account's lease and crawls it."""
        self._enter("started", user_uuid, last_started_at=now, worker=worker)

    def finished(self, user_uuid: str, now: float, next_crawl_at: float) -> None:
        """A clean crawl: throttles and errors in a row start over."""
        self._enter(
            "finished",
            user_uuid,
            next_crawl_at=next_crawl_at,
            last_finished_at=now,
            consecutive_throttles=0,
            consecutive_errors=0,
            throttle_reason=None,
            last_error=None,
        )

    def interrupted(self, user_uuid: str, now: float) -> None:
        """The crawl stopped between batches (a shutdown, its time up): due at once, so
        whichever worker takes the lease next resumes from the queue."""
        self._enter("interrupted", user_uuid, next_crawl_at=now)

    def deferred(self, user_uuid: str, until: float) -> None:
        """Nothing of the account's doing stops its crawl (Google refuses our OAuth client):
        idle, due again at `until`."""
        self._enter("deferred", user_uuid, next_crawl_at=until)

    def throttled(
        self, user_uuid: str, reason: str, consecutive: int, until: float, error: LastError
    ) -> None:
        """Gmail asked to back off until `until`."""
        self._enter(
            "throttled",
            user_uuid,
            throttle_backoff_timestamp=until,
            next_crawl_at=until,
            consecutive_throttles=consecutive,
            throttle_reason=reason,
            last_finished_at=error["at"],
            last_error=error,
        )

    def auth_failed(self, user_uuid: str, error: LastError, *, revoked: bool) -> None:
        """Google refused the account: only re-authorizing it brings it back."""
        self._enter(
            "auth_failed",
            user_uuid,
            next_crawl_at=None,
            last_finished_at=error["at"],
            last_error=error,
            auth_revoked=revoked,
        )

    def failed(
        self, user_uuid: str, error: LastError, consecutive: int, next_crawl_at: float
    ) -> None:
        """The crawl failed: retried at `next_crawl_at`."""
        self._enter(
            "failed",
            user_uuid,
            next_crawl_at=next_crawl_at,
            consecutive_errors=consecutive,
            last_finished_at=error["at"],
            last_error=error,
        )

    def requeued(self, user_uuid: str, now: float) -> bool:
        """The monitor put back what a dead crawl held: due at once, if it was still
        `crawling` (a crawl that ended throttled or failed keeps its backoff)."""
        return self._enter("requeued", user_uuid, next_crawl_at=now)

    def reauthorized(self, user_uuid: str, now: float) -> bool:
        """An `auth_failed` account has a new grant: idle and due now; False if it was not
        `auth_failed`."""
        return self._enter(
            "reauthorized", user_uuid, next_crawl_at=now, last_error=None, auth_revoked=False
        )

    def crawl_now(self, user_uuid: str, now: float) -> bool:
        """An operator wants the account crawled at once: idle and due now, its backoff and its
        throttles and errors in a row cleared; False if it is `crawling` or `auth_failed`."""
        return self._enter(
            "crawl_now",
            user_uuid,
            next_crawl_at=now,
            throttle_backoff_timestamp=0,
            consecutive_throttles=0,
            consecutive_errors=0,
        )

    def removed(self, user_uuid: str) -> None:
        """The account is gone: so is its status."""
        self.collection.delete_one({"user_uuid": user_uuid})

    def _enter(self, transition: str, user_uuid: str, **fields: Any) -> bool:
        leaves, enters = TRANSITIONS[transition]
        query: Document = {"user_uuid": user_uuid}
        if leaves != ANY:
            query["state"] = {"$in": sorted(leaves)}
        update = {"$set": {"state": enters.value, **fields}}
        if leaves != ANY:  # only from those states: an account in another is left alone
            return self.collection.update_one(query, update).modified_count == 1
        self._upsert(user_uuid, update)
        return True

    # -- what a crawl records on its way ---------------------------------------------------

    def progressed(
        self,
        user_uuid: str,
        now: float,
        counts: Mapping[str, int],
        download: Download | None = None,
    ) -> None:
        """A batch was stored: `counts` (messages, attachments, bytes) join the totals, and what
        it received (`download`, see `downloaded`) the rolling count, in the same write."""
        inc = {f"totals.{name}": value for name, value in counts.items()}
        update: Document = {"$set": {"progress_at": now}, "$inc": inc}
        if download is not None:
            _add_download(update, download)
        self._upsert(user_uuid, update)

    def recorded(self, user_uuid: str, **fields: Any) -> None:
        """The crawl's way through the mailbox: `uidvalidity`, `last_uid`, `rules_seen`,
        `pending_uid`, `pending_rules`, `suspect_uids`, `folder_warning`, `all_mail`,
        `auth_refusals`; never the state."""
        unknown = set(fields) - _WAY
        if unknown:
            raise ValueError(f"not a field a crawl records on its way: {sorted(unknown)}")
        self._upsert(user_uuid, {"$set": fields})

    def downloaded(self, user_uuid: str, download: Download) -> None:
        """`download` (see `Download`) joins `downloaded`, the rolling count of the last 24 h."""
        update: Document = {"$inc": {}}
        _add_download(update, download)
        self._upsert(user_uuid, update)

    def download_forgotten(self, user_uuid: str) -> None:
        """An operator lets the account download at once: its rolling count starts over."""
        self.collection.update_one({"user_uuid": user_uuid}, {"$set": {"downloaded": {}}})

    def rule_errors(self, user_uuid: str, errors: Mapping[str, str], *, merge: bool) -> None:
        """Rules that cannot be used, with the reason: all of them, or (`merge`) these too."""
        if merge:
            fields = {f"rule_errors.{rule_id}": reason for rule_id, reason in errors.items()}
            if fields:
                self._upsert(user_uuid, {"$set": fields})
            return
        self._upsert(user_uuid, {"$set": {"rule_errors": dict(errors)}})

    def uid_failed(self, user_uuid: str, entry: Mapping[str, Any], keep: int) -> None:
        """A UID (or one part of it) that failed alone, with why; the newest `keep` are kept."""
        self.collection.update_one(
            {"user_uuid": user_uuid},
            {"$push": {"failed_uids": {"$each": [dict(entry)], "$slice": -keep}}},
        )

    def stalled(self, progress_before: float, now: float) -> list[str]:
        """Accounts `crawling` with no progress since `progress_before`, not yet reported;
        marks them reported, so each stall is reported once."""
        stalled = []
        query = {
            "state": State.CRAWLING.value,
            "last_started_at": {"$lt": progress_before},
            "$or": [{"progress_at": {"$exists": False}}, {"progress_at": {"$lt": progress_before}}],
            "stall_reported_at": {"$not": {"$gte": progress_before}},
        }
        for document in self.collection.find(query, {"user_uuid": 1}):
            self.collection.update_one(
                {"_id": document["_id"]}, {"$set": {"stall_reported_at": now}}
            )
            stalled.append(str(document["user_uuid"]))
        return stalled

    def _upsert(self, user_uuid: str, update: Document) -> None:
        self.collection.update_one({"user_uuid": user_uuid}, update, upsert=True)


Download = tuple[int, int, Iterable[str]]
"""Bytes received from the server: (the hour they came in, as epoch seconds of its start; how
many; the hours that have left the 24-hour window)."""


def _add_download(update: Document, download: Download) -> None:
    hour, size, expired = download
    update["$inc"][f"downloaded.{hour}"] = size
    unset = {f"downloaded.{key}": "" for key in expired if key != str(hour)}
    if unset:
        update["$unset"] = unset


_WAY = frozenset(
    {
        "uidvalidity",
        "last_uid",
        "rules_seen",
        "pending_uid",
        "pending_rules",
        "suspect_uids",
        "folder_warning",
        "all_mail",
        "auth_refusals",
    }
)
