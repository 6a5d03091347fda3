"""The embedded MongoDB stand-in as processes use it: over TCP, from processes and threads."""

from __future__ import annotations

import datetime
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import bson
import pymongo
import pytest
from bson.int64 import Int64
from pymongo import monitoring
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError, OperationFailure
from pymongo.write_concern import WriteConcern

from standins.embedded_mongo import EmbeddedMongo, embedded_mongo_process
from standins.mongo_commands import CURSOR_NOT_FOUND, CommandError, CursorRegistry

pytestmark = pytest.mark.integration

Db = Database[dict[str, Any]]
Client = pymongo.MongoClient[dict[str, Any]]

WRITER = """
import sys, pymongo
client = pymongo.MongoClient(sys.argv[1])
client[sys.argv[2]].notes.insert_many([{"by": "A", "n": n} for n in range(50)])
client.close()
"""
READER_WRITER = """
import sys, pymongo
client = pymongo.MongoClient(sys.argv[1])
notes = client[sys.argv[2]].notes
seen = notes.count_documents({"by": "A"})
notes.insert_one({"by": "B", "saw": seen})
notes.update_many({"by": "A"}, {"$set": {"read_by": "B"}})
client.close()
"""


@pytest.fixture
def db(embedded_mongo_client: Client) -> Iterator[Db]:
    name = f"test_{uuid.uuid4().hex[:16]}"
    yield embedded_mongo_client[name]
    embedded_mongo_client.drop_database(name)


def run_python(script: str, *args: str) -> None:
    subprocess.run([sys.executable, "-c", script, *args], check=True, timeout=30)


def port_is_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


class CommandLog(monitoring.CommandListener):
    """The names of the commands a client sent."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def test_two_processes_share_one_database(embedded_mongo: EmbeddedMongo, db: Db) -> None:
    run_python(WRITER, embedded_mongo.uri, db.name)
    run_python(READER_WRITER, embedded_mongo.uri, db.name)
    assert db.notes.find_one({"by": "B"}, {"_id": 0}) == {"by": "B", "saw": 50}
    assert db.notes.count_documents({"by": "A", "read_by": "B"}) == 50


def test_concurrent_increments_from_many_clients_add_up(embedded_mongo: EmbeddedMongo) -> None:
    name = f"test_{uuid.uuid4().hex[:16]}"
    clients: list[Client] = [pymongo.MongoClient(embedded_mongo.uri) for _ in range(4)]
    clients[0][name].counters.insert_one({"_id": "c", "n": 0})

    def bump(client: Client) -> None:
        for _ in range(50):
            client[name].counters.update_one({"_id": "c"}, {"$inc": {"n": 1}})

    threads = [threading.Thread(target=bump, args=(client,)) for client in clients * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert clients[0][name].counters.find_one({"_id": "c"}) == {"_id": "c", "n": 400}
    clients[0].drop_database(name)
    for client in clients:
        client.close()


def test_find_pages_through_get_more(embedded_mongo: EmbeddedMongo, db: Db) -> None:
    db.pages.insert_many([{"n": n} for n in range(1000)])
    log = CommandLog()
    client: Client = pymongo.MongoClient(embedded_mongo.uri, event_listeners=[log])
    found = client[db.name].pages.find({}, {"_id": 0}).sort("n", 1).batch_size(100)
    assert [document["n"] for document in found] == list(range(1000))
    assert log.names.count("find") == 1
    assert log.names.count("getMore") == 9
    client.close()


def test_killed_cursor_is_gone(db: Db) -> None:
    db.pages.insert_many([{"n": n} for n in range(30)])
    cursor = db.pages.find().batch_size(10)
    next(cursor)
    cursor_id = cursor.cursor_id
    assert cursor_id
    cursor.close()
    with pytest.raises(OperationFailure) as raised:
        db.command("getMore", cursor_id, collection="pages")
    assert raised.value.code == 43


def test_idle_cursors_expire() -> None:
    now = [0.0]
    cursors = CursorRegistry(idle_timeout=60, clock=lambda: now[0])
    first = cursors.open("db.c", [{"n": n} for n in range(5)], batch_size=2)
    cursor_id = int(first["cursor"]["id"])
    now[0] = 59.0
    assert cursors.more(cursor_id, 2)["cursor"]["nextBatch"] == [{"n": 2}, {"n": 3}]
    now[0] = 59.0 + 60.0
    with pytest.raises(CommandError) as raised:
        cursors.more(cursor_id, 2)
    assert raised.value.code == CURSOR_NOT_FOUND


def test_a_batch_stays_within_16_mib() -> None:
    blobs = [{"blob": b"x" * (5 * 1024 * 1024)} for _ in range(5)]
    first = CursorRegistry().open("db.c", blobs, batch_size=None)
    assert len(first["cursor"]["firstBatch"]) == 3
    assert first["cursor"]["id"] != 0


def test_unsupported_command_is_an_error(db: Db) -> None:
    with pytest.raises(OperationFailure) as raised:
        db.command("fooBar")
    assert raised.value.code == 59
    assert raised.value.details is not None
    assert raised.value.details["codeName"] == "CommandNotFound"
    assert raised.value.details["errmsg"] == "no such command: 'fooBar'"


def test_unsupported_option_is_an_error_not_a_silent_ok(db: Db) -> None:
    db.words.insert_one({"w": "a"})
    with pytest.raises(OperationFailure) as raised:
        list(db.words.find({}, collation={"locale": "fr"}))
    assert raised.value.code == 238


def test_bad_operator_is_bad_value(db: Db) -> None:
    with pytest.raises(OperationFailure) as raised:
        db.words.find_one({"w": {"$bogus": 1}})
    assert raised.value.code == 2


def test_duplicate_key_errors_name_the_index_and_key(db: Db) -> None:
    db.att.create_index([("user", 1), ("part", 1)], unique=True, name="user_part")
    db.att.insert_one({"user": "u", "part": "2"})
    expected = 'index: user_part dup key: { user: "u", part: "2" }'
    with pytest.raises(DuplicateKeyError) as on_insert:
        db.att.insert_one({"user": "u", "part": "2"})
    with pytest.raises(DuplicateKeyError) as on_upsert:
        db.att.update_one({"user": "u", "x": 1}, {"$set": {"part": "2"}}, upsert=True)
    for raised in (on_insert, on_upsert):
        assert raised.value.details is not None
        assert raised.value.details["errmsg"].startswith(
            f"E11000 duplicate key error collection: {db.name}.att"
        )
        assert raised.value.details["errmsg"].endswith(expected)
        assert raised.value.details["keyValue"] == {"user": "u", "part": "2"}


def test_a_retried_write_is_applied_once(embedded_mongo_client: Client, db: Db) -> None:
    with embedded_mongo_client.start_session() as session:
        for _ in range(2):
            reply = db.command(
                "insert",
                "once",
                documents=[{"_id": 1}],
                txnNumber=Int64(1),
                session=session,
            )
            assert reply["n"] == 1
            assert "writeErrors" not in reply
    assert db.once.count_documents({}) == 1


def test_unacknowledged_writes_land(db: Db) -> None:
    fire_and_forget = db.get_collection("w0", write_concern=WriteConcern(w=0))
    fire_and_forget.insert_one({"_id": 1})
    deadline = time.monotonic() + 5
    while db.w0.count_documents({}) == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert db.w0.find_one() == {"_id": 1}


def test_aware_datetimes_round_trip_in_utc(embedded_mongo: EmbeddedMongo, db: Db) -> None:
    client: Client = pymongo.MongoClient(embedded_mongo.uri, tz_aware=True)
    when = datetime.datetime(2024, 3, 4, 5, 6, 7, 8000, tzinfo=datetime.UTC)
    client[db.name].times.insert_one({"_id": 1, "at": when})
    found = client[db.name].times.find_one({"at": {"$gte": when}})
    assert found is not None
    assert found["at"] == when
    assert found["at"].tzinfo is not None
    client.close()


def test_legacy_op_query_handshake_is_answered(embedded_mongo: EmbeddedMongo) -> None:
    query = bson.encode({"isMaster": 1, "helloOk": True})
    body = struct.pack("<i", 0) + b"admin.$cmd\x00" + struct.pack("<ii", 0, -1) + query
    op_query, op_reply = 2004, 1
    with socket.create_connection(("127.0.0.1", embedded_mongo.port), timeout=5) as client:
        client.sendall(struct.pack("<iiii", 16 + len(body), 7, 0, op_query) + body)
        with client.makefile("rb") as stream:
            length, _, response_to, opcode = struct.unpack("<iiii", stream.read(16))
            # OP_REPLY: flags, cursor id, starting from, count, then the documents
            document = bson.decode(stream.read(length - 16)[20:])
    assert (response_to, opcode) == (7, op_reply)
    assert document["ismaster"] is True
    assert document["maxWireVersion"] >= 9


def test_stop_closes_the_port() -> None:
    server = EmbeddedMongo()
    server.start()
    port = server.port
    client: Client = pymongo.MongoClient(server.uri)
    assert client.admin.command("ping")["ok"] == 1
    server.stop()
    assert not port_is_open(port)
    client.close()


def test_a_stand_in_process_serves_until_it_is_ended() -> None:
    with embedded_mongo_process() as uri:
        assert uri.startswith("mongodb://127.0.0.1:")
        client: Client = pymongo.MongoClient(uri)
        assert client.admin.command("ping")["ok"] == 1
        client.close()
    assert not port_is_open(int(uri.rsplit(":", 1)[1]))


def test_explain_names_the_index_a_query_is_read_with(db: Db) -> None:
    db.items.create_index([("user", 1), ("at", 1)])
    db.items.insert_many([{"user": f"u{n % 7}", "at": n} for n in range(50)])

    def plan(command: dict[str, Any]) -> Any:
        return db.command("explain", {**command})["queryPlanner"]["winningPlan"]

    read = plan({"find": "items", "filter": {"user": "u1", "at": {"$gt": 10}}})
    assert read["inputStage"]["stage"] == "IXSCAN"
    assert read["inputStage"]["indexName"] == "user_1_at_1"
    assert plan({"find": "items", "filter": {"at": 3}})["stage"] == "COLLSCAN"
    statement = {"q": {"user": "u2"}, "u": {"$set": {"seen": True}}}
    assert plan({"update": "items", "updates": [statement]})["stage"] == "FETCH"
    with pytest.raises(OperationFailure, match="not supported"):
        db.command("explain", {"aggregate": "items", "pipeline": [], "cursor": {}})
