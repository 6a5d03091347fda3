"""Events for the next stage of a pipeline, on the Redis Stream `<prefix>events`.

An `attachment` event follows every attachment record with a blob; a `crawl` event follows every
crawl that ends `idle`, `throttled`, `auth_failed` or `error`. Every field is a string (lists
are JSON). The stream is capped near CRAWLER_EVENTS_MAXLEN entries (`XADD MAXLEN ~`); 0 turns
events off.

Delivery is at least once. A batch's attachment events are added in one round trip before the
batch leaves the account's queue, so a worker killed between storing a record and adding its
event leaves the batch queued: the next crawl meets the record as stored and sends its event
again. A repeated event carries the same `id` (the record's `_id`), so a consumer drops
what it has seen.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import redis

from crawler.keys import Keys

Event = dict[str, str]

# An attachment event's fields taken from its record as they are; and all it takes from one.
ATTACHMENT_FIELDS: tuple[str, ...] = ("user_uuid", "gm_msgid", "uid", "part", "sha256", "size")
ATTACHMENT_FIELDS += ("filename", "content_type")
RECORD_FIELDS = (*ATTACHMENT_FIELDS, "_id", "rule_ids", "blob", "saved_at")


class EventStream:
    """Adds events to `<prefix>events`, capped near `maxlen` entries (0: adds nothing)."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        maxlen: int,
        locate: Callable[[str], str] = str,
    ) -> None:
        """`locate` gives where a blob is from its key (`BlobStore.location`)."""
        self.client = client
        self.key = keys.events
        self.maxlen = maxlen
        self.locate = locate

    def publish(self, events: Iterable[Event]) -> None:
        """Add `events`, in order, in one round trip."""
        events = list(events)
        if not events or not self.maxlen:
            return
        pipeline = self.client.pipeline(transaction=False)
        for event in events:
            pipeline.xadd(self.key, event, maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]
        pipeline.execute()

    def attachment(self, record: Mapping[str, Any]) -> Event:
        """The event of a stored attachment record (one with a blob, and its `_id`)."""
        blob = str(record["blob"])
        return {
            "type": "attachment",
            "id": str(record["_id"]),
            **{name: _text(record.get(name)) for name in ATTACHMENT_FIELDS},
            "rule_ids": json.dumps(sorted(record.get("rule_ids") or [])),
            "blob": blob,
            "location": self.locate(blob),
            "saved_at": _text(record.get("saved_at")),
        }


def crawl_event(user_uuid: str, state: str, at: float, details: Mapping[str, Any]) -> Event:
    """The event of a crawl that ended in `state`; `details` are its counts and error."""
    fields = {name: _text(value) for name, value in details.items()}
    return {"type": "crawl", "user_uuid": user_uuid, "state": state, "at": _text(at), **fields}


def _text(value: Any) -> str:
    """A field's value as the stream holds it: '' for None."""
    return "" if value is None else str(value)
