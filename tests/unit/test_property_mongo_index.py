"""The embedded MongoDB's indexed collections answer exactly as mongomock does: the same random
operations (writes under unique and compound indexes, finds with equalities, `$in`, ranges,
`$and`, sorts, skips and limits) against both give the same answers, errors included, and the
same documents in the same order. Then the plans themselves: what an index serves, and what it
must not."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import mongomock
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymongo.errors import PyMongoError

from standins.mongo_index import IndexedCollection, indexed_client

FIELDS = ("a", "b", "c", "d.e")
INDEXES: list[tuple[list[tuple[str, int]], dict[str, Any]]] = [
    ([("a", 1)], {}),
    ([("a", 1), ("b", -1)], {}),
    ([("b", 1), ("c", 1)], {"unique": True}),
    ([("c", 1)], {"unique": True, "sparse": True}),
    ([("d.e", 1)], {}),
]

scalars = st.sampled_from([0, 1, 2, 1.0, 2.5, "a", "b", None, datetime(2026, 1, 1)])
odd = st.sampled_from([True, False, [1, 2], [], {"x": 1}, float("nan")])
# Mostly values an index orders, so that most plans walk an index rather than fall back.
values = st.one_of(*[scalars] * 7, odd)
# mongomock raises TypeError for an array or subdocument under a unique index (MongoDB takes it)
unique_values = st.one_of(*[scalars] * 7, st.sampled_from([True, False, float("nan")]))
field_names = st.sampled_from(FIELDS)
UNIQUE_FIELDS = ("b", "c")


@st.composite
def documents(draw: st.DrawFn, ordered: bool = False) -> dict[str, Any]:
    """A document of the fields above; `ordered`: only values an index can order."""
    document: dict[str, Any] = {}
    for name in draw(st.lists(field_names, max_size=4, unique=True)):
        value = draw(scalars if ordered else unique_values if name in UNIQUE_FIELDS else values)
        if name == "d.e":
            document["d"] = draw(st.sampled_from([{"e": value}, value]))
        else:
            document[name] = value
    return document


@st.composite
def conditions(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["eq", "in", "range", "ne", "$eq"]))
    if kind == "eq":
        return draw(values)
    if kind == "$eq":
        return {"$eq": draw(scalars)}
    if kind == "in":
        return {"$in": draw(st.lists(values, max_size=3))}
    if kind == "ne":
        return {"$ne": draw(scalars)}
    bounds = draw(st.lists(st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), min_size=1, max_size=2))
    return {bound: draw(scalars) for bound in bounds}


@st.composite
def filters(draw: st.DrawFn) -> dict[str, Any]:
    query = {name: draw(conditions()) for name in draw(st.lists(field_names, max_size=3))}
    if draw(st.booleans()):
        query = {"$and": [query, {draw(field_names): draw(conditions())}]}
    return query


sorts = st.one_of(
    st.none(),
    st.lists(
        st.tuples(field_names, st.sampled_from([1, -1])),
        min_size=1,
        max_size=2,
        unique_by=lambda item: item[0],
    ),
)


@st.composite
def operations(draw: st.DrawFn) -> tuple[Any, ...]:
    kind = draw(
        st.sampled_from(
            ["insert", "insert", "update", "update_many", "delete", "find", "find", "count"]
        )
    )
    if kind == "insert":
        return (kind, draw(documents()))
    if kind in ("update", "update_many"):
        return (kind, draw(filters()), {"$set": draw(documents()) or {"a": 1}})
    if kind == "delete":
        return (kind, draw(filters()))
    if kind == "count":
        return (kind, draw(filters()))
    limit = draw(st.sampled_from([0, 1, 2, 5]))
    return (kind, draw(filters()), draw(sorts), draw(st.sampled_from([0, 1])), limit)


def _find(collection: Any, query: Any, sort: Any, skip: int, limit: int) -> list[Any]:
    if isinstance(collection, IndexedCollection):
        return collection.query(query, {"_id": 0}, sort, skip, limit)
    return list(collection.find(query, {"_id": 0}, sort=sort, skip=skip, limit=limit))


def _updated(result: Any) -> tuple[int, int]:
    return result.matched_count, result.modified_count


ANSWERS = {
    "insert": lambda collection, document: collection.insert_one(dict(document)).acknowledged,
    "update": lambda collection, *args: _updated(collection.update_one(*args)),
    "update_many": lambda collection, *args: _updated(collection.update_many(*args)),
    "delete": lambda collection, query: collection.delete_one(query).deleted_count,
    "count": lambda collection, query: collection.count_documents(query),
    "find": _find,
}


def _apply(collection: Any, operation: tuple[Any, ...]) -> Any:
    kind, *arguments = operation
    try:
        return ANSWERS[kind](collection, *arguments)
    except (PyMongoError, NotImplementedError, TypeError, ValueError) as error:
        return type(error).__name__


def _pair() -> tuple[Any, IndexedCollection]:
    plain = mongomock.MongoClient().db.items
    client = indexed_client()
    database = client.db
    indexed = IndexedCollection(database, name="items", _db_store=database._store)
    for keys, options in INDEXES:
        plain.create_index(keys, **options)
        indexed.create_index(keys, **options)
    return plain, indexed


def _same(left: Any, right: Any) -> bool:
    """Equal, where NaN equals NaN (a stored NaN comes back as itself)."""
    return repr(left) == repr(right)


@settings(max_examples=300)
@given(st.lists(operations(), min_size=1, max_size=40))
def test_the_same_operations_give_the_same_answers(ops: list[tuple[Any, ...]]) -> None:
    plain, indexed = _pair()
    for number, operation in enumerate(ops):
        expected, got = _apply(plain, operation), _apply(indexed, operation)
        assert _same(got, expected), (number, operation, expected, got)
    every = ("find", {}, None, 0, 0)
    assert _same(_apply(indexed, every), _apply(plain, every))


served_sorts = st.sampled_from(
    [
        [("a", 1)],
        [("a", -1)],
        [("a", 1), ("b", -1)],
        [("a", -1), ("b", 1)],
        [("b", 1), ("c", 1)],
        [("b", -1), ("c", -1)],
        [("b", 1)],
        [("_id", -1)],
    ]
)


@st.composite
def served_filters(draw: st.DrawFn) -> dict[str, Any]:
    """Filters that pin the leading fields of an index, or range over them."""
    shape = draw(st.sampled_from(["none", "a", "a+b", "b", "range b"]))
    ranged = st.builds(
        dict, st.dictionaries(st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), scalars)
    )
    if shape == "a":
        return {"a": draw(scalars)}
    if shape == "a+b":
        return {"a": draw(scalars), "b": draw(ranged)}
    if shape == "b":
        return {"b": draw(scalars)}
    if shape == "range b":
        return {"b": draw(ranged)}
    return {}


@settings(max_examples=300)
@given(
    st.lists(documents(ordered=True), min_size=3, max_size=30),
    st.lists(
        st.tuples(served_filters(), served_sorts, st.sampled_from([0, 2]), st.sampled_from([0, 3])),
        min_size=1,
        max_size=8,
    ),
)
def test_sorted_finds_read_in_index_order_as_mongomock_sorts(
    stored: list[dict[str, Any]], finds: list[tuple[Any, ...]]
) -> None:
    plain, indexed = _pair()
    for document in stored:
        _apply(plain, ("insert", document))
        _apply(indexed, ("insert", document))
    for query, sort, skip, limit in finds:
        find = ("find", query, sort, skip, limit)
        assert _same(_apply(indexed, find), _apply(plain, find)), find


def _indexed(count: int) -> IndexedCollection:
    _, indexed = _pair()
    indexed.insert_many([{"a": n % 10, "b": n, "c": f"c{n}"} for n in range(count)])
    return indexed


@pytest.mark.parametrize(
    ("query", "sort", "index"),
    [
        ({"a": 3}, None, "a_1"),
        ({"a": 3, "b": {"$lte": 40}}, None, "a_1_b_-1"),
        ({"b": 4, "c": "c4"}, None, "b_1_c_1"),
        ({"b": {"$gt": 5}}, None, "b_1_c_1"),
        ({"a": {"$in": [1, 2]}}, None, "a_1"),
        ({"$and": [{"c": "c1"}, {"b": 1}]}, None, "b_1_c_1"),
        ({"c": "c1"}, None, "c_1"),
        ({"_id": {"$gt": 0}}, None, "_id_"),
        ({}, [("_id", -1)], "_id_"),
        ({"a": 1}, [("b", 1)], "a_1_b_-1"),
    ],
)
def test_queries_an_index_serves(query: dict[str, Any], sort: Any, index: str) -> None:
    chosen = _indexed(10).plan(query, sort)
    assert chosen is not None and chosen.index.name == index


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"c": None},
        {"c": {"$in": ["c1", None]}},
        {"b": {"$ne": 3}},
        {"$or": [{"a": 1}, {"b": 2}]},
        {"a": {"$exists": True}},
    ],
)
def test_queries_no_index_serves(query: dict[str, Any]) -> None:
    """`c` may be null: its index is sparse, it leaves such documents out; the others pin no
    leading field."""
    assert _indexed(10).plan(query, None) is None


def test_a_sorted_limited_find_reads_only_what_it_returns() -> None:
    indexed = _indexed(2_000)
    read: list[Any] = []
    store = indexed._indexed
    walk = store.walk
    store.walk = lambda chosen: (read.append(doc) or doc for doc in walk(chosen))  # type: ignore[method-assign]
    found = indexed.query({"b": {"$gte": 100}}, None, [("b", 1), ("c", 1)], 0, 3)
    assert [doc["b"] for doc in found] == [100, 101, 102]
    assert len(read) == 3


def test_a_unique_key_is_looked_up_not_scanned(monkeypatch: pytest.MonkeyPatch) -> None:
    indexed = _indexed(2_000)
    matched: list[Any] = []
    original = mongomock.filtering.filter_applies

    def counted(*args: Any) -> bool:
        matched.append(args)
        return bool(original(*args))

    for module in (mongomock.filtering, mongomock.collection):
        monkeypatch.setattr(module, "filter_applies", counted)
    with pytest.raises(PyMongoError):
        indexed.insert_one({"b": 7, "c": "c7"})
    indexed.insert_one({"b": 7, "c": "new"})
    indexed.update_one({"c": "new"}, {"$set": {"b": 8}})
    assert len(matched) < 20


@pytest.mark.parametrize("bound", ["$gt", "$gte", "$lt", "$lte"])
@pytest.mark.parametrize("value", [0, 5, 9, 2.5, "c5"])
def test_a_range_on_a_compound_index_keeps_its_bounds(bound: str, value: Any) -> None:
    """The bound's own key, followed by more fields, is in (or out of) the range as it should."""
    plain, indexed = _pair()
    stored = [{"b": n, "c": f"c{n}"} for n in range(10)] + [{"b": f"c{n}"} for n in range(10)]
    plain.insert_many([dict(document) for document in stored])
    indexed.insert_many([dict(document) for document in stored])
    find = ("find", {"b": {bound: value}}, None, 0, 0)
    assert indexed.plan(find[1]) is not None
    assert _apply(indexed, find) == _apply(plain, find)
