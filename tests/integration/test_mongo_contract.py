"""One contract for every MongoDB backend: mongomock, the embedded stand-in, a real server.

Each test runs once per backend (`mongo_db`), so a behaviour the crawler relies on holds alike
in unit tests, in integration tests and against MongoDB. Add a class per new area of use.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import mongomock
import pytest
from bson import ObjectId
from bson.binary import Binary, UuidRepresentation
from bson.int64 import Int64
from pymongo import ASCENDING, DESCENDING, DeleteOne, InsertOne, ReplaceOne, UpdateOne
from pymongo.collection import Collection, ReturnDocument
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

pytestmark = pytest.mark.integration

Db = Database[dict[str, Any]]
Coll = Collection[dict[str, Any]]


@pytest.fixture
def coll(mongo_db: Db) -> Coll:
    return mongo_db["things"]


def without_ids(documents: Any) -> list[dict[str, Any]]:
    return [{k: v for k, v in document.items() if k != "_id"} for document in documents]


def skip_on_mongomock(db: Db, why: str) -> None:
    if isinstance(db.client, mongomock.MongoClient):
        pytest.skip(f"mongomock itself: {why}")


class TestInsertAndFind:
    def test_insert_one_returns_the_id_and_find_one_reads_it_back(self, coll: Coll) -> None:
        inserted = coll.insert_one({"name": "a", "size": 3})
        assert isinstance(inserted.inserted_id, ObjectId)
        assert coll.find_one({"_id": inserted.inserted_id}) == {
            "_id": inserted.inserted_id,
            "name": "a",
            "size": 3,
        }

    def test_find_filters_sorts_skips_and_limits(self, coll: Coll) -> None:
        coll.insert_many([{"n": n, "even": n % 2 == 0} for n in range(10)])
        found = coll.find({"even": True}).sort("n", DESCENDING).skip(1).limit(3)
        assert [document["n"] for document in found] == [6, 4, 2]

    def test_sort_on_two_keys(self, coll: Coll) -> None:
        coll.insert_many([{"a": 1, "b": 2}, {"a": 0, "b": 1}, {"a": 1, "b": 1}])
        found = coll.find({}, {"_id": False}).sort([("a", ASCENDING), ("b", DESCENDING)])
        assert list(found) == [{"a": 0, "b": 1}, {"a": 1, "b": 2}, {"a": 1, "b": 1}]

    def test_projection_includes_or_excludes_fields(self, coll: Coll) -> None:
        coll.insert_one({"_id": 1, "a": 1, "b": {"c": 2, "d": 3}})
        assert coll.find_one({}, {"a": 1}) == {"_id": 1, "a": 1}
        assert coll.find_one({}, {"b.c": 1, "_id": 0}) == {"b": {"c": 2}}
        assert coll.find_one({}, {"b": 0}) == {"_id": 1, "a": 1}

    def test_query_operators(self, coll: Coll) -> None:
        coll.insert_many([{"n": n, "tags": [f"t{n % 3}"]} for n in range(6)])
        assert coll.count_documents({"n": {"$gte": 2, "$lt": 5}}) == 3
        assert coll.count_documents({"n": {"$in": [1, 5, 9]}}) == 2
        assert coll.count_documents({"tags": "t0"}) == 2
        assert coll.count_documents({"$or": [{"n": 0}, {"tags": "t2"}]}) == 3
        assert coll.count_documents({"missing": {"$exists": False}}) == 6

    def test_cursor_pages_past_one_batch(self, coll: Coll) -> None:
        coll.insert_many([{"n": n} for n in range(250)])
        found = coll.find({}, {"_id": 0}).sort("n", ASCENDING).batch_size(100)
        assert [document["n"] for document in found] == list(range(250))

    def test_find_one_on_nothing_is_none(self, coll: Coll) -> None:
        assert coll.find_one({"nope": 1}) is None


class TestBsonTypes:
    def test_values_round_trip(self, coll: Coll) -> None:
        document = {
            "_id": ObjectId(),
            "when": datetime.datetime(2024, 5, 6, 7, 8, 9, 123000),
            "big": Int64(2**40),
            "small": Int64(7),
            "raw": b"\x00\xff bytes",
            "uuid": Binary.from_uuid(uuid.UUID(int=1), UuidRepresentation.STANDARD),
            "nested": {"list": [1, "two", {"three": 3.0}], "empty": {}},
            "flag": True,
            "nothing": None,
        }
        coll.insert_one(document)
        found = coll.find_one({"_id": document["_id"]})
        assert found == document
        assert found is not None
        assert isinstance(found["big"], Int64)
        assert isinstance(found["small"], Int64)

    def test_datetimes_compare_in_queries(self, coll: Coll) -> None:
        start = datetime.datetime(2024, 1, 1)
        coll.insert_many([{"at": start + datetime.timedelta(days=day)} for day in range(5)])
        assert coll.count_documents({"at": {"$gte": start + datetime.timedelta(days=3)}}) == 2


UPDATE_OPERATORS = [
    pytest.param({"a": 1}, {"$set": {"a": 2, "b.c": 3}}, {"a": 2, "b": {"c": 3}}, id="set"),
    pytest.param({"a": 1}, {"$inc": {"a": 5, "new": 2}}, {"a": 6, "new": 2}, id="inc"),
    pytest.param({"a": 5}, {"$min": {"a": 3}}, {"a": 3}, id="min-lower"),
    pytest.param({"a": 5}, {"$min": {"a": 9}}, {"a": 5}, id="min-higher"),
    pytest.param({"a": 5}, {"$max": {"a": 9}}, {"a": 9}, id="max"),
    pytest.param({"l": [1]}, {"$push": {"l": 2}}, {"l": [1, 2]}, id="push"),
    pytest.param({"l": [1]}, {"$push": {"l": {"$each": [2, 3]}}}, {"l": [1, 2, 3]}, id="push-each"),
    pytest.param({"l": [1]}, {"$addToSet": {"l": 1}}, {"l": [1]}, id="add-to-set-present"),
    pytest.param({"l": [1]}, {"$addToSet": {"l": 2}}, {"l": [1, 2]}, id="add-to-set-new"),
    pytest.param({"a": 1, "b": 2}, {"$unset": {"b": ""}}, {"a": 1}, id="unset"),
    pytest.param({"a": 1}, {"$setOnInsert": {"a": 9}}, {"a": 1}, id="set-on-insert-existing"),
]


class TestUpdates:
    @pytest.mark.parametrize(("before", "update", "after"), UPDATE_OPERATORS)
    def test_operator(
        self, coll: Coll, before: dict[str, Any], update: dict[str, Any], after: dict[str, Any]
    ) -> None:
        coll.insert_one({"_id": 1, **before})
        result = coll.update_one({"_id": 1}, update)
        assert result.matched_count == 1
        assert coll.find_one({"_id": 1}, {"_id": 0}) == after

    def test_update_many_counts_matched_and_modified(self, coll: Coll) -> None:
        coll.insert_many([{"g": 1, "v": 0}, {"g": 1, "v": 1}, {"g": 2, "v": 1}])
        result = coll.update_many({"g": 1}, {"$set": {"v": 1}})
        assert (result.matched_count, result.modified_count) == (2, 1)
        assert coll.count_documents({"v": 1}) == 3

    def test_update_without_match_changes_nothing(self, coll: Coll) -> None:
        result = coll.update_one({"_id": "absent"}, {"$set": {"v": 1}})
        assert (result.matched_count, result.modified_count, result.upserted_id) == (0, 0, None)
        assert coll.count_documents({}) == 0

    def test_replace_one_keeps_the_id(self, coll: Coll) -> None:
        coll.insert_one({"_id": 1, "a": 1, "b": 2})
        coll.replace_one({"_id": 1}, {"c": 3})
        assert coll.find_one({"_id": 1}) == {"_id": 1, "c": 3}


class TestUpserts:
    def test_upsert_inserts_with_set_on_insert_then_only_updates(self, coll: Coll) -> None:
        update = {"$set": {"seen": 1}, "$setOnInsert": {"created": "first"}}
        first = coll.update_one({"user": "u1"}, update, upsert=True)
        assert first.upserted_id is not None
        assert first.matched_count == 0
        update = {"$set": {"seen": 2}, "$setOnInsert": {"created": "second"}}
        second = coll.update_one({"user": "u1"}, update, upsert=True)
        assert (second.upserted_id, second.matched_count) == (None, 1)
        assert without_ids(coll.find()) == [{"user": "u1", "seen": 2, "created": "first"}]

    def test_upsert_with_an_id_in_the_filter_uses_it(self, coll: Coll) -> None:
        result = coll.update_one({"_id": "u2"}, {"$inc": {"n": 1}}, upsert=True)
        assert result.upserted_id == "u2"
        assert coll.find_one({"_id": "u2"}) == {"_id": "u2", "n": 1}

    def test_find_one_and_update_after_with_upsert(self, coll: Coll) -> None:
        created = coll.find_one_and_update(
            {"user": "u3"},
            {"$inc": {"n": 1}, "$setOnInsert": {"state": "idle"}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
            projection={"_id": 0},
        )
        assert created == {"user": "u3", "n": 1, "state": "idle"}
        updated = coll.find_one_and_update(
            {"user": "u3"},
            {"$inc": {"n": 1}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
            projection={"_id": 0},
        )
        assert updated == {"user": "u3", "n": 2, "state": "idle"}

    def test_find_one_and_update_before_returns_the_old_version(self, coll: Coll) -> None:
        assert coll.find_one_and_update({"k": 1}, {"$set": {"v": 1}}, upsert=True) is None
        before = coll.find_one_and_update({"k": 1}, {"$set": {"v": 2}}, projection={"_id": 0})
        assert before == {"k": 1, "v": 1}
        assert coll.find_one({"k": 1}, {"_id": 0}) == {"k": 1, "v": 2}

    def test_find_one_and_update_picks_by_sort(self, coll: Coll) -> None:
        coll.insert_many([{"q": 1, "p": 2}, {"q": 1, "p": 9}, {"q": 1, "p": 5}])
        taken = coll.find_one_and_update(
            {"q": 1}, {"$set": {"taken": True}}, sort=[("p", DESCENDING)]
        )
        assert taken is not None
        assert taken["p"] == 9
        assert coll.find_one({"taken": True}, {"_id": 0}) == {"q": 1, "p": 9, "taken": True}

    def test_find_one_and_delete(self, coll: Coll) -> None:
        coll.insert_many([{"p": 1}, {"p": 2}])
        removed = coll.find_one_and_delete({}, sort=[("p", ASCENDING)], projection={"_id": 0})
        assert removed == {"p": 1}
        assert without_ids(coll.find()) == [{"p": 2}]


class TestUniqueIndexes:
    @pytest.fixture
    def unique(self, coll: Coll) -> Coll:
        coll.create_index([("user", ASCENDING), ("part", ASCENDING)], unique=True)
        coll.insert_one({"user": "u", "part": "1", "v": 0})
        return coll

    def test_duplicate_insert_is_rejected(self, unique: Coll) -> None:
        with pytest.raises(DuplicateKeyError) as raised:
            unique.insert_one({"user": "u", "part": "1", "v": 1})
        assert raised.value.code == 11000
        assert without_ids(unique.find()) == [{"user": "u", "part": "1", "v": 0}]

    def test_other_compound_keys_are_fine(self, unique: Coll) -> None:
        unique.insert_one({"user": "u", "part": "2"})
        unique.insert_one({"user": "w", "part": "1"})
        assert unique.count_documents({}) == 3

    def test_duplicate_id_is_rejected(self, coll: Coll) -> None:
        coll.insert_one({"_id": 7})
        with pytest.raises(DuplicateKeyError):
            coll.insert_one({"_id": 7})

    def test_upsert_that_would_duplicate_is_rejected(self, unique: Coll) -> None:
        with pytest.raises(DuplicateKeyError):
            unique.update_one(
                {"user": "u", "v": 5},
                {"$set": {"part": "1"}, "$setOnInsert": {"x": 1}},
                upsert=True,
            )
        assert unique.count_documents({}) == 1

    def test_update_that_would_duplicate_is_rejected_and_rolled_back(self, unique: Coll) -> None:
        unique.insert_one({"user": "u", "part": "2", "v": 2})
        with pytest.raises(DuplicateKeyError):
            unique.update_one({"part": "2"}, {"$set": {"part": "1"}})
        assert unique.count_documents({"part": "2", "v": 2}) == 1

    def test_index_is_listed(self, unique: Coll) -> None:
        information = unique.index_information()
        assert information["user_1_part_1"]["unique"] is True
        assert information["user_1_part_1"]["key"] == [("user", 1), ("part", 1)]
        assert "_id_" in information

    def test_creating_it_over_duplicates_fails(self, coll: Coll) -> None:
        coll.insert_many([{"a": 1}, {"a": 1}])
        with pytest.raises(DuplicateKeyError):
            coll.create_index("a", unique=True)


class TestBulkWrites:
    def test_ordered_insert_many_stops_at_the_first_error(self, coll: Coll) -> None:
        coll.insert_one({"_id": 2})
        with pytest.raises(BulkWriteError) as raised:
            coll.insert_many([{"_id": 1}, {"_id": 2}, {"_id": 3}])
        details = raised.value.details
        assert details["nInserted"] == 1
        assert [(error["index"], error["code"]) for error in details["writeErrors"]] == [(1, 11000)]
        assert sorted(document["_id"] for document in coll.find()) == [1, 2]

    def test_unordered_insert_many_goes_on(self, coll: Coll) -> None:
        coll.insert_many([{"_id": 2}, {"_id": 4}])
        with pytest.raises(BulkWriteError) as raised:
            coll.insert_many([{"_id": n} for n in range(1, 6)], ordered=False)
        details = raised.value.details
        assert details["nInserted"] == 3
        assert [error["index"] for error in details["writeErrors"]] == [1, 3]
        assert sorted(document["_id"] for document in coll.find()) == [1, 2, 3, 4, 5]

    def test_bulk_write_mixes_operations(self, mongo_db: Db, coll: Coll) -> None:
        skip_on_mongomock(mongo_db, "its bulk_write predates pymongo 4.9's UpdateOne(sort=)")
        coll.insert_many([{"_id": 1, "v": 0}, {"_id": 2, "v": 0}])
        result = coll.bulk_write(
            [
                InsertOne({"_id": 3}),
                UpdateOne({"_id": 1}, {"$inc": {"v": 1}}),
                UpdateOne({"_id": 9}, {"$set": {"v": 9}}, upsert=True),
                ReplaceOne({"_id": 2}, {"v": 2}),
                DeleteOne({"_id": 3}),
            ]
        )
        assert (result.inserted_count, result.matched_count, result.modified_count) == (1, 2, 2)
        assert (result.upserted_count, result.deleted_count) == (1, 1)
        assert result.upserted_ids == {2: 9}
        assert list(coll.find().sort("_id", ASCENDING)) == [
            {"_id": 1, "v": 1},
            {"_id": 2, "v": 2},
            {"_id": 9, "v": 9},
        ]


class TestCountsAndAggregation:
    @pytest.fixture
    def sales(self, coll: Coll) -> Coll:
        coll.insert_many(
            [
                {"shop": "a", "amount": 5, "kind": "x"},
                {"shop": "a", "amount": 7, "kind": "y"},
                {"shop": "b", "amount": 1, "kind": "x"},
                {"shop": "c", "amount": 4, "kind": "x"},
            ]
        )
        return coll

    def test_count_documents(self, sales: Coll) -> None:
        assert sales.count_documents({}) == 4
        assert sales.count_documents({"kind": "x"}) == 3
        assert sales.count_documents({"kind": "x"}, skip=1, limit=1) == 1
        assert sales.count_documents({"kind": "none"}) == 0

    def test_estimated_document_count(self, sales: Coll) -> None:
        assert sales.estimated_document_count() == 4

    def test_distinct(self, sales: Coll) -> None:
        assert sorted(sales.distinct("shop")) == ["a", "b", "c"]
        assert sorted(sales.distinct("shop", {"kind": "x"})) == ["a", "b", "c"]
        assert sales.distinct("shop", {"kind": "y"}) == ["a"]

    def test_aggregate_match_group_sort(self, sales: Coll) -> None:
        totals = sales.aggregate(
            [
                {"$match": {"kind": "x"}},
                {"$group": {"_id": "$shop", "total": {"$sum": "$amount"}, "n": {"$sum": 1}}},
                {"$sort": {"total": DESCENDING}},
            ]
        )
        assert list(totals) == [
            {"_id": "a", "total": 5, "n": 1},
            {"_id": "c", "total": 4, "n": 1},
            {"_id": "b", "total": 1, "n": 1},
        ]

    def test_aggregate_project_limit_count(self, sales: Coll) -> None:
        projected = sales.aggregate(
            [{"$sort": {"amount": ASCENDING}}, {"$limit": 2}, {"$project": {"_id": 0, "amount": 1}}]
        )
        assert list(projected) == [{"amount": 1}, {"amount": 4}]
        assert list(sales.aggregate([{"$match": {"shop": "a"}}, {"$count": "n"}])) == [{"n": 2}]

    def test_bad_operator_fails(self, sales: Coll) -> None:
        with pytest.raises(OperationFailure):
            sales.count_documents({"amount": {"$bogus": 1}})


class TestDeletesAndDrops:
    def test_delete_many_and_delete_one(self, coll: Coll) -> None:
        coll.insert_many([{"g": 1}, {"g": 1}, {"g": 1}, {"g": 2}])
        assert coll.delete_one({"g": 1}).deleted_count == 1
        assert coll.delete_many({"g": 1}).deleted_count == 2
        assert coll.delete_many({"g": 1}).deleted_count == 0
        assert without_ids(coll.find()) == [{"g": 2}]

    def test_drop_removes_documents_and_indexes(self, mongo_db: Db, coll: Coll) -> None:
        coll.create_index("a", unique=True)
        coll.insert_one({"a": 1})
        assert "things" in mongo_db.list_collection_names()
        coll.drop()
        assert "things" not in mongo_db.list_collection_names()
        coll.insert_one({"a": 1})
        coll.insert_one({"a": 1})
        assert coll.count_documents({}) == 2

    def test_collections_are_listed_and_filtered(self, mongo_db: Db) -> None:
        mongo_db["one"].insert_one({})
        mongo_db.create_collection("two")
        assert sorted(mongo_db.list_collection_names()) == ["one", "two"]
        assert mongo_db.list_collection_names(filter={"name": "two"}) == ["two"]
