"""Indexes for the embedded MongoDB stand-in: mongomock's collections, answered as MongoDB would.

mongomock scans a whole collection for every query and for every unique-key check. Here each
index of a collection is kept as a sorted map from its key to the documents under it, and:

- a unique key is checked by looking its key up (`IndexedCollection._ensure_uniques`);
- a query is planned (`plan`) on the index whose leading fields it pins with equalities (or `$in`)
  followed by a range on the next field, and reads only the documents under those keys; every
  document read is still matched against the whole filter by mongomock, so the answer is exactly
  mongomock's, only cheaper;
- a sort on the index's next fields (after the pinned ones), in its order or the reverse, walks
  the index in that order and stops at the cursor's limit (`IndexedCollection.query`).

Keys are ranked as MongoDB (and mongomock) compare types: null < numbers < strings < ObjectId <
dates. A value an index cannot order this way (an array, a subdocument, a boolean, NaN, bytes)
puts its document in the index's `unordered` set, which every plan on that index reads too: the
answer stays right and the document costs what it costs in mongomock. Sparse and partial indexes
enforce uniqueness; a partial index serves no query, and a sparse one only those that cannot
match a missing field, as the documents they leave out could match.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import mongomock
from bson import ObjectId
from mongomock import filtering, helpers
from mongomock.filtering import RE_TYPE  # type: ignore[attr-defined]
from mongomock.store import CollectionStore, DatabaseStore, ServerStore
from pymongo.errors import DuplicateKeyError
from sortedcontainers import SortedDict

Document = dict[str, Any]
Key = tuple[tuple[Any, ...], ...]

ID_INDEX = "_id_"
MISSING: tuple[Any, ...] = (5,)  # a missing field is keyed as null, as MongoDB keys it
RANKS = ((str, 15), (ObjectId, 35), (datetime, 45))  # numbers are 10; bool is checked first
END = 1000  # a rank above every type's: (END,) sorts after every key element


class Unordered(Exception):
    """A value that an index cannot place in its order."""


def key_element(value: Any) -> tuple[Any, ...]:
    """A value as an index orders it: (type rank, value); Unordered for what it cannot order."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        raise Unordered(value)
    if isinstance(value, int | float) and not (isinstance(value, float) and math.isnan(value)):
        return (10, value)
    for kind, rank in RANKS:
        if isinstance(value, kind):
            if isinstance(value, datetime):
                value = helpers.patch_datetime_awareness_in_document(value)
            return (rank, value)
    raise Unordered(value)


def value_at(document: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path (None when missing); Unordered when the path crosses an array."""
    value: Any = document
    for part in path.split("."):
        if isinstance(value, list):
            raise Unordered(value)
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


@dataclass
class Index:
    """One index: its key's documents in key order, and those it cannot order."""

    name: str
    fields: tuple[str, ...]
    directions: tuple[int, ...]
    unique: bool = False
    sparse: bool = False
    partial: Mapping[str, Any] | None = None
    keys: SortedDict = field(default_factory=SortedDict)  # Key -> {_id: None}
    unordered: dict[Any, None] = field(default_factory=dict)
    placed: dict[Any, Key | None] = field(default_factory=dict)  # _id -> its key (None: unordered)

    @classmethod
    def from_spec(cls, name: str, spec: Mapping[str, Any]) -> Index:
        fields, directions = zip(*spec["key"], strict=True)
        return cls(
            name,
            tuple(fields),
            tuple(1 if direction == 1 else -1 for direction in directions),
            unique=bool(spec.get("unique")),
            sparse=bool(spec.get("sparse")),
            partial=spec.get("partialFilterExpression"),
        )

    @property
    def serves_queries(self) -> bool:
        return self.partial is None

    def add(self, store_id: Any, document: Mapping[str, Any]) -> None:
        if self.partial is not None and not filtering.filter_applies(self.partial, document):
            return
        try:
            values = [value_at(document, path) for path in self.fields]
            if self.sparse and all(value is None for value in values):
                return
            key: Key | None = tuple(key_element(value) for value in values)
        except Unordered:
            key = None
        self.placed[store_id] = key
        if key is None:
            self.unordered[store_id] = None
        else:
            self.keys.setdefault(key, {})[store_id] = None

    def remove(self, store_id: Any) -> None:
        if store_id not in self.placed:
            return
        key = self.placed.pop(store_id)
        if key is None:
            del self.unordered[store_id]
            return
        bucket = self.keys[key]
        del bucket[store_id]
        if not bucket:
            del self.keys[key]

    def clashes(self, store_id: Any) -> bool:
        """Whether another document holds the key this one is indexed under (ordered keys only;
        the caller checks unordered ones by matching)."""
        key = self.placed.get(store_id)
        return key is not None and len(self.keys[key]) > 1


# ---------------------------------------------------------------------------------------------
# Plans


@dataclass(frozen=True)
class Condition:
    """What a filter says of one field, as far as an index can use it."""

    equals: tuple[tuple[Any, ...], ...] = ()  # the key elements it may equal ($in: several)
    low: tuple[Any, ...] = ()  # range bounds (inclusive: the filter checks the rest)
    high: tuple[Any, ...] = ()

    @property
    def is_range(self) -> bool:
        return bool(self.low)

    @property
    def may_be_null(self) -> bool:
        """Whether a missing field can match: then a sparse index, which leaves such documents
        out, cannot serve it."""
        return MISSING in self.equals or self.low[:1] == MISSING


def _condition(value: Any) -> Condition | None:
    """The index-usable part of one field's condition, or None when it has none."""
    try:
        if not isinstance(value, Mapping):
            return _equality(value)
        if not value or not all(str(operator).startswith("$") for operator in value):
            return None
        if "$eq" in value:
            return _equality(value["$eq"])
        if "$in" in value:
            return _membership(value["$in"])
        return _range(value)
    except (Unordered, TypeError):
        return None


def _equality(value: Any) -> Condition | None:
    if isinstance(value, list | Mapping | RE_TYPE):
        return None
    return Condition(equals=(key_element(value),))


def _membership(values: Any) -> Condition | None:
    if not isinstance(values, list):
        return None
    if any(isinstance(item, list | Mapping | RE_TYPE) for item in values):
        return None
    return Condition(equals=tuple(dict.fromkeys(map(key_element, values))))


def _range(operators: Mapping[str, Any]) -> Condition | None:
    """Bounds from $gt/$gte and $lt/$lte, within the bounding value's type as MongoDB compares."""
    low = next((operators[op] for op in ("$gte", "$gt") if op in operators), None)
    high = next((operators[op] for op in ("$lte", "$lt") if op in operators), None)
    low_key = key_element(low) if low is not None else None
    high_key = key_element(high) if high is not None else None
    if low_key is None and high_key is None:
        return None
    rank = (low_key or high_key or MISSING)[0]
    return Condition(
        low=low_key if low_key is not None else (rank,),
        high=(*high_key, (END,)) if high_key is not None else (rank + 0.5,),
    )


def conditions(query: Mapping[str, Any]) -> dict[str, Condition]:
    """The conditions of a filter's top-level conjunction ($and included) an index can use."""
    found: dict[str, Condition] = {}
    for name, value in query.items():
        if name == "$and" and isinstance(value, list):
            for clause in value:
                if isinstance(clause, Mapping):
                    for path, each in conditions(clause).items():
                        found.setdefault(path, each)
        elif not name.startswith("$") and (condition := _condition(value)) is not None:
            found.setdefault(name, condition)
    return found


@dataclass(frozen=True)
class Plan:
    """An index and the key ranges of it that hold every document a query can match."""

    index: Index
    prefixes: tuple[Key, ...]  # the pinned leading fields' keys
    range: Condition | None  # on the field after them
    order: int = 0  # 1 or -1 when walking the index gives the query's sort; 0 when it does not
    decisive: int = 0  # how many leading key fields decide that order (pinned and sorted)

    @property
    def score(self) -> tuple[int, int, bool]:
        pinned = len(self.prefixes[0]) if self.prefixes else 0
        return (pinned + int(self.range is not None), int(self.order != 0), self.index.unique)

    def index_keys(self) -> Iterator[Key]:
        """The index keys that may hold matches, in index order (reversed for order -1)."""
        reverse = self.order == -1
        for prefix in self.prefixes:
            if self.range is not None:
                low: Key = (*prefix, self.range.low)
                high: Key = (*prefix, self.range.high)
            else:
                low, high = prefix, (*prefix, (END,))
            yield from self.index.keys.irange(low, high, reverse=reverse)


def _sort_order(index: Index, pinned: int, sort: Sequence[tuple[str, int]] | None) -> int:
    """1 (or -1) when walking the index up (or down) past its `pinned` fields gives the sort.

    Keys are kept in ascending order whatever the index's directions, so a sort whose fields
    follow the pinned ones is served when all its directions agree."""
    if not sort or index.unordered:
        return 0
    if tuple(path for path, _ in sort) != index.fields[pinned : pinned + len(sort)]:
        return 0
    directions = {1 if direction == 1 else -1 for _, direction in sort}
    return directions.pop() if len(directions) == 1 else 0


def plan(
    indexes: Iterable[Index], query: Mapping[str, Any], sort: Sequence[tuple[str, int]] | None
) -> Plan | None:
    """The best plan for the query (most fields constrained, then serving the sort), or None."""
    found = conditions(query)
    best: Plan | None = None
    for index in indexes:
        if not index.serves_queries:
            continue
        pinned: list[tuple[tuple[Any, ...], ...]] = []
        for path in index.fields:
            condition = found.get(path)
            if condition is None or condition.is_range:
                break
            pinned.append(condition.equals)
        following = index.fields[len(pinned)] if len(pinned) < len(index.fields) else None
        range_condition = found.get(following) if following else None
        if range_condition is not None and not range_condition.is_range:
            range_condition = None
        single = all(len(equals) == 1 for equals in pinned)
        order = _sort_order(index, len(pinned), sort) if single else 0
        if not pinned and range_condition is None and not order:
            continue
        constrained = [found[path] for path in index.fields[: len(pinned)]]
        if range_condition is not None:
            constrained.append(range_condition)
        may_be_null = not constrained or any(each.may_be_null for each in constrained)
        if index.sparse and may_be_null:
            continue
        prefixes = tuple(itertools.product(*pinned))
        decisive = len(pinned) + len(sort or ()) if order else 0
        candidate = Plan(index, prefixes, range_condition, order, decisive)
        if best is None or candidate.score > best.score:
            best = candidate
    return best


# ---------------------------------------------------------------------------------------------
# Stores and collections


class IndexedCollectionStore(CollectionStore):
    """mongomock's documents of one collection, with the indexes kept beside them."""

    def __init__(self, name: str) -> None:
        self.key_indexes: dict[str, Index] = {}
        self.positions: dict[Any, int] = {}  # store id -> place in insertion order
        self._next_position = itertools.count()
        super().__init__(name)

    @property
    def indexes(self) -> dict[str, Any]:
        return self._index_specs

    @indexes.setter
    def indexes(self, specs: dict[str, Any]) -> None:
        self._index_specs = specs
        self.key_indexes = {}
        self._build(ID_INDEX, {"key": [("_id", 1)]})
        for name, spec in specs.items():
            self._build(name, spec)

    def _build(self, name: str, spec: Mapping[str, Any]) -> None:
        index = Index.from_spec(name, spec)
        for store_id, document in self._documents.items():
            index.add(store_id, document)
        self.key_indexes[name] = index

    def create_index(self, index_name: str, index_dict: Mapping[str, Any]) -> None:
        super().create_index(index_name, index_dict)
        self._build(index_name, index_dict)

    def drop_index(self, index_name: str) -> None:
        super().drop_index(index_name)
        del self.key_indexes[index_name]

    def drop(self) -> None:
        super().drop()
        self.positions = {}

    def __setitem__(self, key: Any, value: Document) -> None:
        if key not in self.positions:
            self.positions[key] = next(self._next_position)
        super().__setitem__(key, value)
        self.reindex(key, value)

    def __delitem__(self, key: Any) -> None:
        super().__delitem__(key)
        del self.positions[key]
        for index in self.key_indexes.values():
            index.remove(key)

    def reindex(self, key: Any, document: Mapping[str, Any]) -> None:
        """Index the document anew (mongomock updates stored documents in place)."""
        for index in self.key_indexes.values():
            index.remove(key)
            index.add(key, document)

    def candidates(self, chosen: Plan) -> list[Document]:
        """The documents under the plan's keys (and the index's unordered ones), in insertion
        order, as mongomock would have met them."""
        index = chosen.index
        ids = [store_id for key in chosen.index_keys() for store_id in index.keys[key]]
        ids.extend(index.unordered)
        ids.sort(key=self.positions.__getitem__)
        return [self._documents[store_id] for store_id in ids]

    def walk(self, chosen: Plan) -> Iterator[Document]:
        """The documents under the plan's keys in the sort's order: keys that agree on the
        sorted fields are ties, met in insertion order as mongomock's stable sort meets them."""
        keys = chosen.index.keys
        ties = itertools.groupby(chosen.index_keys(), key=lambda key: key[: chosen.decisive])
        for _, tied in ties:
            ids = sorted(
                itertools.chain.from_iterable(keys[key] for key in tied),
                key=self.positions.__getitem__,
            )
            for store_id in ids:
                yield self._documents[store_id]


class IndexedDatabaseStore(DatabaseStore):
    def __getitem__(self, col_name: str) -> CollectionStore:
        if col_name not in self._collections:
            self._collections[col_name] = IndexedCollectionStore(col_name)
        return self._collections[col_name]


class IndexedServerStore(ServerStore):
    def __getitem__(self, db_name: str) -> DatabaseStore:
        if db_name not in self._databases:
            self._databases[db_name] = IndexedDatabaseStore()
        return self._databases[db_name]


def indexed_client() -> mongomock.MongoClient:  # type: ignore[type-arg]
    """A mongomock server whose collections keep their indexes (see IndexedCollection)."""
    return mongomock.MongoClient(_store=IndexedServerStore())


class IndexedCollection(mongomock.Collection):  # type: ignore[type-arg]
    """A mongomock collection whose finds, updates, deletes and unique checks use its indexes."""

    @property
    def _indexed(self) -> IndexedCollectionStore:
        store = self._store
        assert isinstance(store, IndexedCollectionStore)
        return store

    def plan(self, query: Any, sort: Sequence[tuple[str, int]] | None = None) -> Plan | None:
        """The index plan a query (and sort) is read with; None: the whole collection."""
        if not isinstance(query, Mapping):
            return None
        return plan(self._indexed.key_indexes.values(), query, sort)

    def _iter_documents(self, filter: Any) -> Iterator[Document]:
        chosen = self.plan(filter)
        if chosen is None:
            return super()._iter_documents(filter)  # type: ignore[misc]
        filtering.filter_applies(filter, {})  # a malformed filter fails even when nothing is read
        documents = self._indexed.candidates(chosen)
        return (document for document in documents if filtering.filter_applies(filter, document))

    def _ensure_uniques(self, new_data: Document) -> None:
        store = self._indexed
        store_id = new_data["_id"]
        if isinstance(store_id, dict):
            store_id = helpers.hashdict(store_id)
        store.reindex(store_id, new_data)
        for index in store.key_indexes.values():
            if not index.unique or store_id not in index.placed:
                continue
            if index.clashes(store_id) or self._clashes_unordered(index, store_id, new_data):
                raise DuplicateKeyError("E11000 Duplicate Key Error", 11000)

    def _clashes_unordered(self, index: Index, store_id: Any, document: Document) -> bool:
        """Whether another document matches this one's key where the index cannot tell by its
        order (an array holding the value, say), matched as mongomock matches."""
        store = self._indexed
        if index.placed[store_id] is None:  # this one's key is unordered: any may match it
            others: Iterable[Any] = store.positions
        elif index.unordered:
            others = index.unordered
        else:
            return False
        key: Mapping[str, Any] = {path: _dotted(document, path) for path in index.fields}
        if index.partial is not None:
            key = {"$and": [index.partial, key]}
        return any(
            filtering.filter_applies(key, store[other]) for other in others if other != store_id
        )

    def query(
        self,
        query: Mapping[str, Any],
        projection: Any,
        sort: Sequence[tuple[str, int]] | None,
        skip: int,
        limit: int,
    ) -> list[Document]:
        """What `find` answers; a sort an index gives is read in its order, up to the limit."""
        chosen = self.plan(query, sort) if sort else None
        if chosen is None or not chosen.order:
            found = self.find(query, projection, skip=skip, limit=limit, sort=sort)
            return list(found)
        matches = (
            document
            for document in self._indexed.walk(chosen)
            if filtering.filter_applies(query, document)
        )
        window = itertools.islice(matches, skip, skip + limit if limit else None)
        return [self._copy_only_fields(document, projection, dict) for document in window]


def _dotted(document: Mapping[str, Any], path: str) -> Any:
    """mongomock's value at a dotted path, None when missing (as its unique check takes it)."""
    try:
        return helpers.get_value_by_dot(document, path)
    except KeyError:
        return None
