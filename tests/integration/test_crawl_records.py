"""Attachment records: a batch writes them to MongoDB in one round trip once its parts are
downloaded, and its rule additions in another; what is stored already is no new record."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pymongo
import pytest
from pymongo import monitoring

from crawler.blobs import BlobWriter, FileBlobStore
from crawler.download import PARTS_AT_ONCE
from crawler.store import storable_msgid
from standins.embedded_mongo import EmbeddedMongo
from tests.integration.test_crawl import EMAIL, deliver, files
from tests.integration.test_events import of_type
from tests.plugins.crawling import World
from tests.plugins.dovecot import Dovecot
from tests.plugins.fakes import build_message

pytestmark = pytest.mark.integration


class Writes(monitoring.CommandListener):
    """The write commands a client sent to the `attachments` collection: (name, statements)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        name, command = event.command_name, event.command
        if name in ("insert", "update", "delete") and command.get(name) == "attachments":
            statements = {"insert": "documents", "update": "updates", "delete": "deletes"}[name]
            self.sent.append((name, len(command[statements])))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
def writes(world: World, embedded_mongo: EmbeddedMongo) -> Iterator[Writes]:
    """The world on the embedded MongoDB stand-in, through a client that notes its writes."""
    listener = Writes()
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        embedded_mongo.uri, event_listeners=[listener], serverSelectionTimeoutMS=5000
    )
    name = f"test_{uuid.uuid4().hex[:16]}"
    world.db = client[name]
    yield listener
    client.drop_database(name)
    client.close()


def test_a_batch_costs_one_insert_for_its_records_and_one_update_for_its_rules(
    world: World, writes: Writes
) -> None:
    settings = world.settings.model_copy(update={"fetch_batch": 4, "max_attachment_size": 2000})
    world.add_account(EMAIL, "u1")
    deliver(world, [*files(5), {"big.bin": b"b" * 3000}])  # the last one is skipped

    assert world.iterate(settings=settings).outcomes == {"u1": "idle"}

    assert writes.sent == [("insert", 4), ("insert", 2)]  # UIDs 1-4, then 5-6
    stored = world.stored("u1").values()
    assert sorted(doc["filename"] for doc in stored if doc.get("skipped")) == ["big.bin"]
    totals = world.status("u1")["totals"]
    assert totals["attachments"] == 5
    assert totals["bytes"] == sum(len(data) for named in files(5) for data in named.values())
    assert len(of_type(world, "attachment")) == 5
    [crawl] = of_type(world, "crawl")
    assert (crawl["attachments"], crawl["skipped"]) == ("5", "1")

    writes.sent.clear()
    world.db.rules.insert_one({"_id": "new", "user_uuid": "u1"})  # keeps what is stored
    world.make_due("u1")
    assert world.iterate(settings=settings).outcomes == {"u1": "idle"}

    assert writes.sent == [("update", 4), ("update", 2)]
    assert all("new" in doc["rule_ids"] for doc in world.stored("u1").values())


class RacingStore(FileBlobStore):
    """A blob store that, on its first commit, lets another crawl store the record of
    `msgid`'s part 2 first."""

    def __init__(self, world: World, user_uuid: str, msgid: Any) -> None:
        super().__init__(world.settings.blob_dir)
        self.world, self.user_uuid, self.msgid = world, user_uuid, msgid

    def commit(self, writer: BlobWriter[Any]) -> str:
        if self.msgid is not None:
            record = {"user_uuid": self.user_uuid, "gm_msgid": self.msgid, "part": "2"}
            self.world.db.attachments.insert_one({**record, "filename": "theirs"})
            self.msgid = None
        return super().commit(writer)


def test_a_record_another_crawl_stored_meanwhile_is_not_new(world: World) -> None:
    """The record of a part written by another crawl between the batch's query and its insert
    is left as it is, and neither counted nor sent; the rest of the batch is stored."""
    world.add_account(EMAIL, "u1")
    deliver(world, files(3))
    raced = world.gmail.account(EMAIL).messages()[1]
    blobs = RacingStore(world, "u1", storable_msgid(raced.gm_msgid))

    assert world.iterate(blobs=blobs).outcomes == {"u1": "idle"}

    stored = world.stored("u1")
    assert len(stored) == 3
    assert stored[storable_msgid(raced.gm_msgid), "2"]["filename"] == "theirs"
    assert world.status("u1")["totals"]["attachments"] == 2
    sent = {event["id"] for event in of_type(world, "attachment")}
    assert sent == {str(doc["_id"]) for doc in stored.values() if doc.get("sha256")}
    assert len(sent) == 2


def test_a_message_twice_in_one_batch_is_one_record(world: World, dovecot: Dovecot) -> None:
    """The same message delivered twice has one identity: one record, counted and sent once."""
    twice = build_message("twice", attachments={"twice.txt": b"one and the same\n"})
    once = build_message("once", attachments={"once.txt": b"another\n"})
    world.add_dovecot_account(dovecot, "d1", [twice, once, twice])

    assert world.iterate().outcomes == {"d1": "idle"}, world.status("d1")["last_error"]

    stored = world.stored("d1")
    uids = {doc["filename"]: doc["uid"] for doc in stored.values()}
    assert len(stored) == 2 and uids["once.txt"] == 2 and uids["twice.txt"] in (1, 3)
    totals = world.status("d1")["totals"]
    assert (totals["messages"], totals["attachments"]) == (3, 2)
    assert totals["bytes"] == len(b"one and the same\n") + len(b"another\n")
    assert {event["id"] for event in of_type(world, "attachment")} == {
        str(doc["_id"]) for doc in stored.values()
    }


class OverlapStore(FileBlobStore):
    """A blob store that notes how many commits were under way at once."""

    def __init__(self, world: World) -> None:
        super().__init__(world.settings.blob_dir)
        self.running = self.most = 0
        self.lock = threading.Lock()

    def commit(self, writer: BlobWriter[Any]) -> str:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(0.05)  # as long as an fsync on a busy disk
            return super().commit(writer)
        finally:
            with self.lock:
                self.running -= 1


def test_the_parts_of_one_answer_are_stored_several_at_once(world: World) -> None:
    """A blob's fsyncs wait on the disk: an answer's parts do not wait for one another."""
    world.add_account(EMAIL, "u1")
    deliver(world, files(8))
    blobs = OverlapStore(world)

    assert world.iterate(blobs=blobs).outcomes == {"u1": "idle"}

    assert len(world.stored("u1")) == 8
    assert blobs.most == PARTS_AT_ONCE
