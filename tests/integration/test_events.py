"""Attachment and crawl events on the Redis Stream `<prefix>events`, delivered at least once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from crawler.events import EventStream
from crawler.keys import Keys
from standins.fakegmail import Fault, FaultKind
from tests.integration.test_crawl import EMAIL, deliver, files
from tests.plugins.crawling import World

pytestmark = pytest.mark.integration


def events(world: World) -> list[dict[str, str]]:
    """Every event of the stream, oldest first."""
    stream = Keys(world.settings.redis_prefix).events
    return [
        {name.decode(): value.decode() for name, value in fields.items()}
        for _, fields in world.redis.xrange(stream)
    ]


def of_type(world: World, kind: str) -> list[dict[str, str]]:
    return [event for event in events(world) if event["type"] == kind]


def test_each_stored_attachment_has_an_event_with_its_record(world: World) -> None:
    world.add_account(EMAIL, "u1")
    deliver(world, files(3))

    assert world.iterate().outcomes == {"u1": "idle"}

    records = {str(doc["_id"]): doc for doc in world.stored("u1").values()}
    sent = {event["id"]: event for event in of_type(world, "attachment")}
    assert sent.keys() == records.keys()
    for record_id, event in sent.items():
        record = records[record_id]
        assert event["user_uuid"] == "u1"
        assert event["sha256"] == record["sha256"] == event["blob"]
        assert int(event["size"]) == record["size"]
        assert event["filename"] == record["filename"]
        assert event["content_type"] == "application/octet-stream"
        assert json.loads(event["rule_ids"]) == sorted(record["rule_ids"])
        assert event["part"] == "2"
        assert Path(event["location"]).read_bytes() == world.blob(record["sha256"])


def test_a_crawl_that_ends_sends_its_outcome(world: World) -> None:
    world.add_account(EMAIL, "u1")
    deliver(world, files(2))

    world.iterate()

    [crawl] = of_type(world, "crawl")
    assert crawl["user_uuid"] == "u1"
    assert crawl["state"] == "idle"
    assert crawl["attachments"] == "2"
    assert float(crawl["at"]) == world.now


def test_a_throttled_crawl_sends_its_outcome_and_why(world: World) -> None:
    world.add_account(EMAIL, "u1")
    deliver(world, files(1))
    world.gmail.account(EMAIL).faults.add(
        Fault(FaultKind.THROTTLED, commands={"UID FETCH"}, times=1)
    )

    world.iterate()

    [crawl] = of_type(world, "crawl")
    assert crawl["state"] == "throttled"
    assert crawl["error_type"] == "Throttled"


class Killed(BaseException):
    """The worker dies: no code of the crawl runs after it."""


def test_a_worker_killed_before_the_events_sends_them_at_the_next_crawl(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.add_account(EMAIL, "u1")
    deliver(world, files(3))
    publish = EventStream.publish
    calls = []

    def killed_once(self: EventStream, batch: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise Killed
        publish(self, batch)

    monkeypatch.setattr(EventStream, "publish", killed_once)
    with pytest.raises(Killed):
        world.iterate()
    assert len(world.stored("u1")) == 3  # stored, but no event yet
    assert of_type(world, "attachment") == []

    world.make_due("u1")
    world.iterate()

    records = {str(doc["_id"]) for doc in world.stored("u1").values()}
    assert len(records) == 3  # nothing stored twice
    assert {event["id"] for event in of_type(world, "attachment")} == records


def test_a_repeated_event_carries_the_same_id(world: World) -> None:
    world.add_account(EMAIL, "u1")
    deliver(world, files(2))
    world.iterate()
    first = {event["id"] for event in of_type(world, "attachment")}

    # The same messages met again: a new UIDVALIDITY makes every UID new.
    world.gmail.account(EMAIL).set_uidvalidity(2)
    world.make_due("u1")
    world.iterate()

    sent = [event["id"] for event in of_type(world, "attachment")]
    assert len(sent) == 4
    assert set(sent) == first


def test_events_off_sends_nothing(world: World) -> None:
    world.add_account(EMAIL, "u1")
    deliver(world, files(2))

    world.iterate(settings=replace_settings(world, events_maxlen=0))

    assert len(world.stored("u1")) == 2
    assert events(world) == []


def test_the_stream_is_capped_near_its_maxlen(world: World) -> None:
    stream = EventStream(world.redis, Keys(world.settings.redis_prefix), maxlen=10)
    for start in range(0, 2000, 100):
        stream.publish({"type": "test", "n": str(n)} for n in range(start, start + 100))

    length = world.redis.xlen(Keys(world.settings.redis_prefix).events)
    assert 10 <= length < 500, length  # MAXLEN ~ trims whole nodes of the stream
    last = events(world)[-1]
    assert last["n"] == "1999"


def replace_settings(world: World, **changes: Any) -> Any:
    return world.settings.model_copy(update=changes)
