"""MongoDB's command layer over mongomock: the document a MongoDB server answers to each command.

The embedded stand-in (`standins.embedded_mongo`) hands every decoded command here. Commands
run one at a time under one lock, because mongomock is not thread-safe. Replies are shaped as
MongoDB shapes them (cursors that page through getMore, one write error per failed statement,
error documents with MongoDB's codes), so pymongo raises what it raises against a real server.
A command or option the stand-in cannot honour is refused with an error, never answered `ok`.
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import bson
import mongomock
from bson import json_util
from bson.errors import BSONError
from bson.int64 import Int64
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import CollectionInvalid, DuplicateKeyError, OperationFailure, PyMongoError
from pymongo.results import UpdateResult

from standins.mongo_index import IndexedCollection, Plan, indexed_client

logger = logging.getLogger(__name__)

Document = dict[str, Any]
MongoCollection = Collection[Document]
MongoDatabase = Database[Document]

SERVER_VERSION = "7.0.0"
MAX_WIRE_VERSION = 21  # MongoDB 7.0: OP_MSG only, within what pymongo 4.x speaks
MAX_BSON_OBJECT_SIZE = 16 * 1024 * 1024
MAX_MESSAGE_SIZE_BYTES = 48_000_000
MAX_WRITE_BATCH_SIZE = 100_000
LOGICAL_SESSION_TIMEOUT_MINUTES = 30
FIRST_BATCH_SIZE = 101  # MongoDB's default for the first batch of a cursor
CURSOR_IDLE_TIMEOUT_SECONDS = 600.0  # MongoDB closes idle cursors after 10 minutes too
MAX_REMEMBERED_SESSIONS = 10_000

INTERNAL_ERROR = 1
BAD_VALUE = 2
FAILED_TO_PARSE = 9
INVALID_NAMESPACE = 73
NAMESPACE_NOT_FOUND = 26
CURSOR_NOT_FOUND = 43
NAMESPACE_EXISTS = 48
COMMAND_NOT_FOUND = 59
NOT_IMPLEMENTED = 238
DUPLICATE_KEY = 11000

CODE_NAMES = {
    INTERNAL_ERROR: "InternalError",
    BAD_VALUE: "BadValue",
    FAILED_TO_PARSE: "FailedToParse",
    INVALID_NAMESPACE: "InvalidNamespace",
    NAMESPACE_NOT_FOUND: "NamespaceNotFound",
    CURSOR_NOT_FOUND: "CursorNotFound",
    NAMESPACE_EXISTS: "NamespaceExists",
    COMMAND_NOT_FOUND: "CommandNotFound",
    NOT_IMPLEMENTED: "NotImplemented",
    DUPLICATE_KEY: "DuplicateKey",
}

# Fields drivers add to any command (sessions, cluster time, read/write concerns, limits). They
# change nothing on a single in-memory server, so every command accepts and ignores them.
ENVELOPE_FIELDS = frozenset(
    {
        "$db",
        "lsid",
        "$clusterTime",
        "txnNumber",
        "$readPreference",
        "readConcern",
        "writeConcern",
        "maxTimeMS",
        "comment",
        "apiVersion",
        "apiStrict",
        "apiDeprecationErrors",
        "bypassDocumentValidation",
        "hint",
        "allowDiskUse",
    }
)
INDEX_SPEC_FIELDS = frozenset(
    {"key", "name", "unique", "sparse", "expireAfterSeconds", "partialFilterExpression"}
)
IGNORED_INDEX_SPEC_FIELDS = frozenset({"v", "background"})
RETRYABLE_WRITES = frozenset({"insert", "update", "delete", "findAndModify"})


class CommandError(Exception):
    """A command failed; carries what MongoDB reports: a code, a message and extra fields."""

    def __init__(self, code: int, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = dict(details or {})

    def fields(self) -> Document:
        """The error's fields, as in a write error entry."""
        named = {"codeName": CODE_NAMES[self.code]} if self.code in CODE_NAMES else {}
        return {"code": self.code, **named, "errmsg": self.message, **self.details}

    def reply(self) -> Document:
        """The whole reply to a command that failed."""
        return {"ok": 0.0, **self.fields()}


@dataclass(frozen=True)
class Invocation:
    """One command as received: its database, its document and the connection it came on."""

    database: str
    command: Mapping[str, Any]
    connection_id: int

    @property
    def name(self) -> str:
        """The command's name: its document's first key."""
        return next(iter(self.command), "")

    @property
    def target(self) -> Any:
        """The value of the command's first field: a collection name, or 1."""
        return self.command[self.name]

    @property
    def namespace(self) -> str:
        """`database.collection` for commands on a collection."""
        return f"{self.database}.{self.target}"


Handler = Callable[[Invocation], Document]


@dataclass(frozen=True)
class CommandSpec:
    """How to run one command, and the fields it honours besides the envelope.

    `fields` is None for the handshake, whose fields only describe the client: drivers add new
    ones over time, and MongoDB accepts them all too.
    """

    handler: Handler
    fields: frozenset[str] | None = frozenset()


@contextmanager
def mongomock_errors(duplicate: Callable[[], CommandError] | None = None) -> Iterator[None]:
    """Turn what mongomock raises into the error MongoDB answers; `duplicate` names an E11000."""
    try:
        yield
    except DuplicateKeyError as error:
        raise (duplicate() if duplicate else CommandError(DUPLICATE_KEY, str(error))) from error
    except OperationFailure as error:
        raise CommandError(error.code or BAD_VALUE, str(error)) from error
    except NotImplementedError as error:
        message = f"not supported by the embedded MongoDB stand-in: {error}"
        raise CommandError(NOT_IMPLEMENTED, message) from error
    except (PyMongoError, BSONError, ValueError, TypeError) as error:
        # mongomock reports malformed operators, documents and options with these.
        raise CommandError(BAD_VALUE, str(error)) from error


def check_fields(command: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    """Refuse an option the stand-in would otherwise silently ignore: it never fakes success."""
    unsupported = sorted(set(command) - allowed)
    if unsupported:
        message = f"{where}.{unsupported[0]} is not supported by the embedded MongoDB stand-in"
        raise CommandError(NOT_IMPLEMENTED, message)


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise CommandError(BAD_VALUE, f"{what} must be a document, not {type(value).__name__}")
    return value


def _sequence(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise CommandError(BAD_VALUE, f"{what} must be an array, not {type(value).__name__}")
    return value


def _sort(value: Any) -> list[tuple[str, Any]] | None:
    return list(_mapping(value, "sort").items()) if value else None


def _batch_size(value: Any) -> int | None:
    return int(value) if value else None


def _cursor_batch_size(invocation: Invocation) -> int | None:
    """The batch size of a command's `cursor` option: `{cursor: {batchSize: n}}`."""
    cursor = _mapping(invocation.command.get("cursor", {}), "cursor")
    return _batch_size(cursor.get("batchSize"))


# ---------------------------------------------------------------------------------------------
# Cursors


@dataclass
class _OpenCursor:
    namespace: str
    documents: list[Document]
    position: int
    expires_at: float


def _next_batch(documents: list[Document], start: int, limit: int | None) -> list[Document]:
    """Up to `limit` documents from `start`, within MongoDB's 16 MiB batch (at least one)."""
    end = len(documents) if limit is None else min(len(documents), start + limit)
    batch: list[Document] = []
    size = 0
    for document in itertools.islice(documents, start, end):
        size += len(bson.encode(document))
        if batch and size > MAX_BSON_OBJECT_SIZE:
            break
        batch.append(document)
    return batch


def _cursor_reply(cursor_id: int, namespace: str, key: str, batch: list[Document]) -> Document:
    return {"cursor": {"id": Int64(cursor_id), "ns": namespace, key: batch}, "ok": 1.0}


class CursorRegistry:
    """Server-side cursors: result sets handed out batch by batch, through getMore."""

    def __init__(
        self,
        idle_timeout: float = CURSOR_IDLE_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._idle_timeout = idle_timeout
        self._clock = clock
        self._open: dict[int, _OpenCursor] = {}
        self._ids = itertools.count(1)

    def open(
        self,
        namespace: str,
        documents: list[Document],
        batch_size: int | None,
        *,
        single_batch: bool = False,
    ) -> Document:
        """The reply with the first batch; keeps a cursor open when documents remain."""
        self._expire_idle()
        batch = _next_batch(documents, 0, batch_size or FIRST_BATCH_SIZE)
        cursor_id = 0
        if len(batch) < len(documents) and not single_batch:
            cursor_id = next(self._ids)
            expires_at = self._clock() + self._idle_timeout
            self._open[cursor_id] = _OpenCursor(namespace, documents, len(batch), expires_at)
        return _cursor_reply(cursor_id, namespace, "firstBatch", batch)

    def more(self, cursor_id: int, batch_size: int | None) -> Document:
        """The reply to getMore: the next batch, and cursor id 0 once the last was sent."""
        self._expire_idle()
        cursor = self._open.get(cursor_id)
        if cursor is None:
            raise CommandError(CURSOR_NOT_FOUND, f"cursor id {cursor_id} not found")
        batch = _next_batch(cursor.documents, cursor.position, batch_size)
        cursor.position += len(batch)
        cursor.expires_at = self._clock() + self._idle_timeout
        if cursor.position >= len(cursor.documents):
            del self._open[cursor_id]
            cursor_id = 0
        return _cursor_reply(cursor_id, cursor.namespace, "nextBatch", batch)

    def kill(self, cursor_ids: Sequence[int]) -> Document:
        """The reply to killCursors."""
        killed = [cursor_id for cursor_id in cursor_ids if self._open.pop(cursor_id, None)]
        not_found = [cursor_id for cursor_id in cursor_ids if cursor_id not in killed]
        return {
            "cursorsKilled": killed,
            "cursorsNotFound": not_found,
            "cursorsAlive": [],
            "cursorsUnknown": [],
            "ok": 1.0,
        }

    def _expire_idle(self) -> None:
        now = self._clock()
        for cursor_id in [key for key, cursor in self._open.items() if cursor.expires_at <= now]:
            del self._open[cursor_id]


# ---------------------------------------------------------------------------------------------
# Retried writes


class RetriedWrites:
    """The reply to each session's latest retryable write, so a retry is answered, not redone."""

    def __init__(self, max_sessions: int = MAX_REMEMBERED_SESSIONS) -> None:
        self._max_sessions = max_sessions
        self._latest: OrderedDict[bytes, tuple[int, Document]] = OrderedDict()

    def run(self, invocation: Invocation, handler: Handler) -> Document:
        """Run a write once per (session, txnNumber); a repeat gets the first reply again."""
        lsid = invocation.command.get("lsid")
        txn_number = invocation.command.get("txnNumber")
        if not isinstance(lsid, Mapping) or txn_number is None:
            return handler(invocation)
        session = bytes(lsid["id"])
        latest = self._latest.get(session)
        if latest is not None and latest[0] == txn_number:
            return latest[1]
        reply = handler(invocation)
        self._latest[session] = (int(txn_number), reply)
        self._latest.move_to_end(session)
        while len(self._latest) > self._max_sessions:
            self._latest.popitem(last=False)
        return reply

    def forget(self, lsids: Iterable[Mapping[str, Any]]) -> None:
        """Drop what ended sessions left behind."""
        for lsid in lsids:
            self._latest.pop(bytes(lsid["id"]), None)


# ---------------------------------------------------------------------------------------------
# Writes


@dataclass(frozen=True)
class _Update:
    """One update statement: filter, update document or pipeline, and its flags."""

    q: Mapping[str, Any]
    u: Any
    upsert: bool
    multi: bool

    @classmethod
    def parse(cls, statement: Any) -> _Update:
        statement = _mapping(statement, "update statement")
        check_fields(statement, frozenset({"q", "u", "upsert", "multi", "hint"}), "update")
        if "u" not in statement:
            raise CommandError(FAILED_TO_PARSE, "update statement is missing 'u'")
        query = _mapping(statement.get("q", {}), "q")
        upsert, multi = bool(statement.get("upsert")), bool(statement.get("multi"))
        return cls(q=query, u=statement["u"], upsert=upsert, multi=multi)

    @property
    def is_replacement(self) -> bool:
        """A plain document replaces the matched one; `$` operators or a pipeline update it."""
        return isinstance(self.u, Mapping) and not str(next(iter(self.u), "")).startswith("$")


@dataclass(frozen=True)
class _Outcome:
    """What one write statement did."""

    n: int
    modified: int = 0
    upserted: bool = False
    upserted_id: Any = None


@dataclass
class _WriteSummary:
    """What a write command reports: counts, upserted ids and one entry per failed statement."""

    n: int = 0
    modified: int = 0
    upserted: list[Document] = field(default_factory=list)
    errors: list[Document] = field(default_factory=list)

    def add(self, index: int, outcome: _Outcome) -> None:
        self.n += outcome.n
        self.modified += outcome.modified
        if outcome.upserted:
            self.upserted.append({"index": index, "_id": outcome.upserted_id})

    def reply(self, *, count_modified: bool = False) -> Document:
        reply: Document = {"n": self.n}
        if count_modified:
            reply["nModified"] = self.modified
        if self.upserted:
            reply["upserted"] = self.upserted
        if self.errors:
            reply["writeErrors"] = self.errors
        reply["ok"] = 1.0
        return reply


def _run_statements(
    statements: Sequence[Any], ordered: bool, apply: Callable[[Any], _Outcome]
) -> _WriteSummary:
    """Apply statements in order: ordered stops at the first error, unordered goes on."""
    summary = _WriteSummary()
    for index, statement in enumerate(statements):
        try:
            outcome = apply(statement)
        except CommandError as error:
            summary.errors.append({"index": index, **error.fields()})
            if ordered:
                break
        else:
            summary.add(index, outcome)
    return summary


def _apply_update(collection: MongoCollection, update: _Update) -> UpdateResult:
    if update.is_replacement:
        if update.multi:
            message = "multi update is not supported for replacement-style update"
            raise CommandError(FAILED_TO_PARSE, message)
        return collection.replace_one(update.q, update.u, upsert=update.upsert)
    if update.multi:
        return collection.update_many(update.q, update.u, upsert=update.upsert)
    return collection.update_one(update.q, update.u, upsert=update.upsert)


@dataclass(frozen=True)
class _Candidate:
    """A document a write tried to store; `stored` when it is a new version of a stored one."""

    document: Mapping[str, Any]
    stored: bool


def _value_at(document: Mapping[str, Any], path: str) -> Any:
    value: Any = document
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None  # a unique index keys a missing field as null
        value = value[part]
    return value


def _clashes(
    collection: MongoCollection, candidate: _Candidate, key: Document, index: Mapping[str, Any]
) -> bool:
    conditions: list[Mapping[str, Any]] = [key]
    if candidate.stored:
        conditions.append({"_id": {"$ne": candidate.document.get("_id")}})
    if "partialFilterExpression" in index:
        conditions.append(index["partialFilterExpression"])
    return collection.find_one({"$and": conditions}) is not None


def duplicate_key_error(
    collection: MongoCollection, candidates: Iterable[_Candidate]
) -> CommandError:
    """MongoDB's E11000 error naming the index and key that the first clashing candidate hit."""
    unique = [
        (name, index)
        for name, index in collection.index_information().items()
        if name == "_id_" or index.get("unique")
    ]
    for candidate in candidates:
        for name, index in unique:
            key = {path: _value_at(candidate.document, path) for path, _ in index["key"]}
            if index.get("sparse") and all(value is None for value in key.values()):
                continue
            if _clashes(collection, candidate, key, index):
                shown = ", ".join(
                    f"{path}: {json_util.dumps(value)}" for path, value in key.items()
                )
                message = (
                    f"E11000 duplicate key error collection: {collection.full_name}"
                    f" index: {name} dup key: {{ {shown} }}"
                )
                details = {"keyPattern": dict(index["key"]), "keyValue": key}
                return CommandError(DUPLICATE_KEY, message, details)
    message = f"E11000 duplicate key error collection: {collection.full_name}"
    return CommandError(DUPLICATE_KEY, message)


def _updated_documents(collection: MongoCollection, update: _Update) -> list[_Candidate]:
    """What the update would write, replayed on a scratch copy of its targets to name an E11000."""
    targets = list(collection.find(update.q, limit=0 if update.multi else 1))
    scratch: MongoCollection = mongomock.MongoClient().scratch.documents
    if targets:
        scratch.insert_many(targets)
    _apply_update(scratch, update)
    return [_Candidate(document, stored=bool(targets)) for document in scratch.find()]


def _insert_document(collection: MongoCollection, document: Any) -> _Outcome:
    document = dict(_mapping(document, "document to insert"))
    candidate = _Candidate(document, stored=False)
    with mongomock_errors(lambda: duplicate_key_error(collection, [candidate])):
        collection.insert_one(document)
    return _Outcome(n=1)


def _update_statement(collection: MongoCollection, statement: Any) -> _Outcome:
    update = _Update.parse(statement)
    with mongomock_errors(
        lambda: duplicate_key_error(collection, _updated_documents(collection, update))
    ):
        result = _apply_update(collection, update)
    upserted = result.upserted_id is not None
    return _Outcome(
        n=result.matched_count + int(upserted),
        modified=result.modified_count,
        upserted=upserted,
        upserted_id=result.upserted_id,
    )


def _delete_statement(collection: MongoCollection, statement: Any) -> _Outcome:
    statement = _mapping(statement, "delete statement")
    check_fields(statement, frozenset({"q", "limit", "hint"}), "delete")
    query = _mapping(statement.get("q", {}), "q")
    with mongomock_errors():
        if statement.get("limit"):
            return _Outcome(n=collection.delete_one(query).deleted_count)
        return _Outcome(n=collection.delete_many(query).deleted_count)


# ---------------------------------------------------------------------------------------------
# The executor


class MongoCommandExecutor:
    """Runs MongoDB commands against one in-memory mongomock server, one command at a time."""

    def __init__(self) -> None:
        self._client: mongomock.MongoClient[Document] = indexed_client()
        self._lock = threading.Lock()
        self._cursors = CursorRegistry()
        self._retried = RetriedWrites()
        self._commands = self._command_table()
        # mongomock builds a Collection on every lookup; its own accesses are stable across drops.
        self._collections: dict[tuple[str, str], IndexedCollection] = {}

    def execute(self, invocation: Invocation) -> Document:
        """The reply document to one command, an error document when it fails."""
        with self._lock:
            try:
                return self._run(invocation)
            except CommandError as error:
                return error.reply()
            except Exception as error:
                # A fault in the stand-in itself: the client gets an error document (and this
                # connection lives on), the traceback goes to the log.
                logger.exception("embedded MongoDB failed on %r", invocation.name)
                return CommandError(INTERNAL_ERROR, f"{type(error).__name__}: {error}").reply()

    def _run(self, invocation: Invocation) -> Document:
        spec = self._commands.get(invocation.name)
        if spec is None:
            raise CommandError(COMMAND_NOT_FOUND, f"no such command: '{invocation.name}'")
        if spec.fields is not None:
            allowed = spec.fields | ENVELOPE_FIELDS | {invocation.name}
            check_fields(invocation.command, allowed, invocation.name)
        if invocation.name in RETRYABLE_WRITES:
            return self._retried.run(invocation, spec.handler)
        return spec.handler(invocation)

    def _command_table(self) -> dict[str, CommandSpec]:
        hello = CommandSpec(self._hello, fields=None)
        cursor = frozenset({"cursor"})
        return {
            "hello": hello,
            "isMaster": hello,
            "ismaster": hello,
            "ping": CommandSpec(_ok),
            "buildInfo": CommandSpec(_build_info),
            "endSessions": CommandSpec(self._end_sessions),
            "insert": CommandSpec(self._insert, frozenset({"documents", "ordered"})),
            "update": CommandSpec(self._update, frozenset({"updates", "ordered"})),
            "delete": CommandSpec(self._delete, frozenset({"deletes", "ordered"})),
            "findAndModify": CommandSpec(
                self._find_and_modify,
                frozenset({"query", "sort", "update", "remove", "new", "upsert", "fields"}),
            ),
            "find": CommandSpec(
                self._find,
                frozenset(
                    {"filter", "projection", "sort", "skip", "limit", "batchSize", "singleBatch"}
                    | {"noCursorTimeout", "allowPartialResults"}
                ),
            ),
            "explain": CommandSpec(self._explain, frozenset({"verbosity"})),
            "getMore": CommandSpec(self._get_more, frozenset({"collection", "batchSize"})),
            "killCursors": CommandSpec(self._kill_cursors, frozenset({"cursors"})),
            "count": CommandSpec(self._count, frozenset({"query", "limit", "skip"})),
            "distinct": CommandSpec(self._distinct, frozenset({"key", "query"})),
            "aggregate": CommandSpec(self._aggregate, frozenset({"pipeline", "cursor"})),
            "createIndexes": CommandSpec(self._create_indexes, frozenset({"indexes"})),
            "listIndexes": CommandSpec(self._list_indexes, cursor),
            "listCollections": CommandSpec(
                self._list_collections,
                frozenset({"filter", "nameOnly", "authorizedCollections"}) | cursor,
            ),
            "listDatabases": CommandSpec(
                self._list_databases, frozenset({"filter", "nameOnly", "authorizedDatabases"})
            ),
            "create": CommandSpec(self._create),
            "drop": CommandSpec(self._drop),
            "dropDatabase": CommandSpec(self._drop_database),
        }

    def _database(self, invocation: Invocation) -> MongoDatabase:
        return self._client[invocation.database]

    def _collection(self, invocation: Invocation) -> IndexedCollection:
        name = invocation.target
        if not isinstance(name, str) or not name:
            message = f"collection name has invalid type {type(name).__name__}"
            raise CommandError(INVALID_NAMESPACE, message)
        key = (invocation.database, name)
        if key not in self._collections:
            database = self._database(invocation)
            with mongomock_errors():
                self._collections[key] = IndexedCollection(
                    database, name=name, _db_store=database._store
                )
        return self._collections[key]

    # -- handshake and sessions

    def _hello(self, invocation: Invocation) -> Document:
        primary = "isWritablePrimary" if invocation.name == "hello" else "ismaster"
        # No `setName`: a standalone, so pymongo sends no retryable writes. No `topologyVersion`:
        # pymongo then polls with hello instead of holding a streaming one open.
        return {
            primary: True,
            "helloOk": True,
            "maxBsonObjectSize": MAX_BSON_OBJECT_SIZE,
            "maxMessageSizeBytes": MAX_MESSAGE_SIZE_BYTES,
            "maxWriteBatchSize": MAX_WRITE_BATCH_SIZE,
            "localTime": datetime.now(UTC),
            "logicalSessionTimeoutMinutes": LOGICAL_SESSION_TIMEOUT_MINUTES,
            "connectionId": invocation.connection_id,
            "minWireVersion": 0,
            "maxWireVersion": MAX_WIRE_VERSION,
            "readOnly": False,
            "ok": 1.0,
        }

    def _end_sessions(self, invocation: Invocation) -> Document:
        lsids = _sequence(invocation.target, "endSessions")
        self._retried.forget(_mapping(lsid, "session id") for lsid in lsids)
        return _ok(invocation)

    # -- writes

    def _write(
        self, invocation: Invocation, key: str, apply: Callable[[Any], _Outcome]
    ) -> _WriteSummary:
        statements = _sequence(invocation.command.get(key, []), key)
        return _run_statements(statements, bool(invocation.command.get("ordered", True)), apply)

    def _insert(self, invocation: Invocation) -> Document:
        apply = functools.partial(_insert_document, self._collection(invocation))
        return self._write(invocation, "documents", apply).reply()

    def _update(self, invocation: Invocation) -> Document:
        apply = functools.partial(_update_statement, self._collection(invocation))
        return self._write(invocation, "updates", apply).reply(count_modified=True)

    def _delete(self, invocation: Invocation) -> Document:
        apply = functools.partial(_delete_statement, self._collection(invocation))
        return self._write(invocation, "deletes", apply).reply()

    def _find_and_modify(self, invocation: Invocation) -> Document:
        collection = self._collection(invocation)
        command = invocation.command
        query = _mapping(command.get("query") or {}, "query")
        if bool(command.get("remove")) == ("update" in command):
            message = "Either an update or remove=true must be specified"
            raise CommandError(FAILED_TO_PARSE, message)
        with mongomock_errors():
            found = collection.find_one(query, sort=_sort(command.get("sort")))
        if command.get("remove"):
            return _find_and_remove(collection, found, command)
        return _find_and_update(collection, query, found, command)

    # -- reads

    def _find(self, invocation: Invocation) -> Document:
        collection = self._collection(invocation)
        command = invocation.command
        limit = int(command.get("limit") or 0)
        projection = command.get("projection") or None
        with mongomock_errors():
            documents = collection.query(
                _mapping(command.get("filter") or {}, "filter"),
                projection,
                sort=_sort(command.get("sort")),
                skip=int(command.get("skip") or 0),
                limit=abs(limit),
            )
        # A negative limit is the legacy spelling of "this many, in one batch".
        single_batch = bool(command.get("singleBatch")) or limit < 0
        batch_size = _batch_size(command.get("batchSize"))
        return self._cursors.open(
            invocation.namespace, documents, batch_size, single_batch=single_batch
        )

    def _explain(self, invocation: Invocation) -> Document:
        """The plan a query would be read with: an index scan, or the whole collection."""
        explained = Invocation(
            invocation.database, _mapping(invocation.target, "explain"), invocation.connection_id
        )
        query, sort = _explained_query(explained)
        chosen = self._collection(explained).plan(query, sort)
        planner = {"namespace": explained.namespace, "winningPlan": _winning_plan(chosen)}
        return {"queryPlanner": planner, "ok": 1.0}

    def _get_more(self, invocation: Invocation) -> Document:
        batch_size = _batch_size(invocation.command.get("batchSize"))
        return self._cursors.more(int(invocation.target), batch_size)

    def _kill_cursors(self, invocation: Invocation) -> Document:
        cursor_ids = [int(cursor_id) for cursor_id in invocation.command.get("cursors", [])]
        return self._cursors.kill(cursor_ids)

    def _count(self, invocation: Invocation) -> Document:
        collection = self._collection(invocation)
        command = invocation.command
        options: dict[str, Any] = {
            option: abs(int(command[option])) for option in ("skip", "limit") if command.get(option)
        }
        with mongomock_errors():
            count = collection.count_documents(
                _mapping(command.get("query") or {}, "query"), **options
            )
        return {"n": count, "ok": 1.0}

    def _distinct(self, invocation: Invocation) -> Document:
        collection = self._collection(invocation)
        key = invocation.command.get("key")
        if not isinstance(key, str):
            raise CommandError(FAILED_TO_PARSE, "distinct needs a string 'key'")
        query = _mapping(invocation.command.get("query") or {}, "query")
        with mongomock_errors():
            values = collection.distinct(key, query)
        return {"values": values, "ok": 1.0}

    def _aggregate(self, invocation: Invocation) -> Document:
        collection = self._collection(invocation)
        pipeline = _sequence(invocation.command.get("pipeline"), "pipeline")
        if "cursor" not in invocation.command:
            raise CommandError(FAILED_TO_PARSE, "The 'cursor' option is required")
        with mongomock_errors():
            documents = list(collection.aggregate(pipeline))
        return self._cursors.open(invocation.namespace, documents, _cursor_batch_size(invocation))

    # -- collections, indexes, databases

    def _create_indexes(self, invocation: Invocation) -> Document:
        collection = self._collection(invocation)
        existed = collection.name in self._database(invocation).list_collection_names()
        before = len(collection.index_information()) if existed else 1
        for spec in _sequence(invocation.command.get("indexes"), "indexes"):
            _create_index(collection, _mapping(spec, "index"))
        return {
            "createdCollectionAutomatically": not existed,
            "numIndexesBefore": before,
            "numIndexesAfter": len(collection.index_information()),
            "ok": 1.0,
        }

    def _list_indexes(self, invocation: Invocation) -> Document:
        collection = self._collection(invocation)
        if collection.name not in self._database(invocation).list_collection_names():
            message = f"ns does not exist: {invocation.namespace}"
            raise CommandError(NAMESPACE_NOT_FOUND, message)
        indexes = [dict(index) for index in collection.list_indexes()]
        return self._cursors.open(invocation.namespace, indexes, _cursor_batch_size(invocation))

    def _list_collections(self, invocation: Invocation) -> Document:
        command = invocation.command
        names = self._database(invocation).list_collection_names()
        described = [_describe_collection(name) for name in sorted(names)]
        chosen = _matching(described, command.get("filter"))
        if command.get("nameOnly"):
            chosen = [{"name": entry["name"], "type": entry["type"]} for entry in chosen]
        namespace = f"{invocation.database}.$cmd.listCollections"
        return self._cursors.open(namespace, chosen, _cursor_batch_size(invocation))

    def _list_databases(self, invocation: Invocation) -> Document:
        command = invocation.command
        described = [
            {"name": name, "sizeOnDisk": 0, "empty": False}
            for name in sorted(self._client.list_database_names())
        ]
        chosen = _matching(described, command.get("filter"))
        if command.get("nameOnly"):
            chosen = [{"name": entry["name"]} for entry in chosen]
        return {"databases": chosen, "totalSize": 0, "totalSizeMb": 0, "ok": 1.0}

    def _create(self, invocation: Invocation) -> Document:
        collection = self._collection(invocation)
        try:
            self._database(invocation).create_collection(collection.name)
        except CollectionInvalid as error:
            message = f"Collection {invocation.namespace} already exists."
            raise CommandError(NAMESPACE_EXISTS, message) from error
        return _ok(invocation)

    def _drop(self, invocation: Invocation) -> Document:
        collection = self._collection(invocation)
        indexes = len(collection.index_information())
        self._database(invocation).drop_collection(collection.name)
        return {"nIndexesWas": indexes, "ns": invocation.namespace, "ok": 1.0}

    def _drop_database(self, invocation: Invocation) -> Document:
        self._client.drop_database(invocation.database)
        return {"dropped": invocation.database, "ok": 1.0}


EXPLAINED_FILTERS = {
    "find": "filter",
    "count": "query",
    "distinct": "query",
    "findAndModify": "query",
}
EXPLAINED_STATEMENTS = {"update": "updates", "delete": "deletes"}


def _explained_query(explained: Invocation) -> tuple[Mapping[str, Any], Any]:
    """The filter and sort of the command that `explain` describes."""
    command = explained.command
    if explained.name in EXPLAINED_FILTERS:
        query = command.get(EXPLAINED_FILTERS[explained.name]) or {}
    elif explained.name in EXPLAINED_STATEMENTS:
        statements = _sequence(command.get(EXPLAINED_STATEMENTS[explained.name]), "statements")
        if len(statements) != 1:
            raise CommandError(BAD_VALUE, "explain takes exactly one write statement")
        query = _mapping(statements[0], "statement").get("q") or {}
    else:
        message = f"explain of {explained.name!r} is not supported by the embedded MongoDB stand-in"
        raise CommandError(NOT_IMPLEMENTED, message)
    return _mapping(query, "filter"), _sort(command.get("sort"))


def _winning_plan(chosen: Plan | None) -> Document:
    """MongoDB's shape of a plan: FETCH over IXSCAN of an index, or COLLSCAN."""
    if chosen is None:
        return {"stage": "COLLSCAN", "direction": "forward"}
    index = chosen.index
    scan = {
        "stage": "IXSCAN",
        "indexName": index.name,
        "keyPattern": dict(zip(index.fields, index.directions, strict=True)),
        "direction": "backward" if chosen.order == -1 else "forward",
    }
    return {"stage": "FETCH", "inputStage": scan}


def _ok(invocation: Invocation) -> Document:
    return {"ok": 1.0}


def _build_info(invocation: Invocation) -> Document:
    return {
        "version": SERVER_VERSION,
        "versionArray": [int(part) for part in SERVER_VERSION.split(".")] + [0],
        "gitVersion": "embedded-mongomock",
        "bits": 64,
        "maxBsonObjectSize": MAX_BSON_OBJECT_SIZE,
        "ok": 1.0,
    }


def _describe_collection(name: str) -> Document:
    return {
        "name": name,
        "type": "collection",
        "options": {},
        "info": {"readOnly": False},
        "idIndex": {"v": 2, "key": {"_id": 1}, "name": "_id_"},
    }


def _matching(documents: list[Document], query: Any) -> list[Document]:
    """The documents a filter selects, matched by mongomock on a scratch collection."""
    if not query:
        return documents
    scratch: MongoCollection = mongomock.MongoClient().scratch.documents
    scratch.insert_many([{"_id": position, **doc} for position, doc in enumerate(documents)])
    with mongomock_errors():
        positions = [match["_id"] for match in scratch.find(_mapping(query, "filter"))]
    return [documents[position] for position in positions]


def _create_index(collection: MongoCollection, spec: Mapping[str, Any]) -> None:
    check_fields(spec, INDEX_SPEC_FIELDS | IGNORED_INDEX_SPEC_FIELDS, "createIndexes.indexes")
    key = list(_mapping(spec.get("key"), "index key").items())
    options = {option: spec[option] for option in INDEX_SPEC_FIELDS - {"key"} if option in spec}
    with mongomock_errors(lambda: _unique_index_violated(collection, spec)):
        collection.create_index(key, **options)


def _unique_index_violated(collection: MongoCollection, spec: Mapping[str, Any]) -> CommandError:
    message = (
        f"Index build failed: E11000 duplicate key error collection: {collection.full_name}"
        f" index: {spec.get('name')}"
    )
    return CommandError(DUPLICATE_KEY, message)


def _projected(collection: MongoCollection, document: Document, projection: Any) -> Document | None:
    """A stored document as `projection` shows it (findAndModify's `fields`)."""
    if not projection:
        return document
    return collection.find_one({"_id": document["_id"]}, projection)


def _find_and_remove(
    collection: MongoCollection, found: Document | None, command: Mapping[str, Any]
) -> Document:
    if command.get("new"):
        raise CommandError(FAILED_TO_PARSE, "remove and returnNew can't co-exist")
    value = None
    if found is not None:
        value = _projected(collection, found, command.get("fields"))
        collection.delete_one({"_id": found["_id"]})
    return {"lastErrorObject": {"n": int(found is not None)}, "value": value, "ok": 1.0}


def _find_and_update(
    collection: MongoCollection,
    query: Mapping[str, Any],
    found: Document | None,
    command: Mapping[str, Any],
) -> Document:
    projection = command.get("fields")
    update = _Update(
        q=query if found is None else {"_id": found["_id"]},
        u=command["update"],
        upsert=bool(command.get("upsert")) and found is None,
        multi=False,
    )
    before = None if found is None else _projected(collection, found, projection)
    with mongomock_errors(
        lambda: duplicate_key_error(collection, _updated_documents(collection, update))
    ):
        result = _apply_update(collection, update)
    upserted = result.upserted_id is not None
    last_error: Document = {
        "n": int(found is not None or upserted),
        "updatedExisting": found is not None,
    }
    value = before
    if upserted:
        last_error["upserted"] = result.upserted_id
    if command.get("new") and last_error["n"]:
        target = found["_id"] if found is not None else result.upserted_id
        value = collection.find_one({"_id": target}, projection or None)
    return {"lastErrorObject": last_error, "value": value, "ok": 1.0}
