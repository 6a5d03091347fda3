import base64
import hashlib
import multiprocessing
import random
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import gridfs
import mongomock
import mongomock.gridfs
import pytest
from pymongo.database import Database

from crawler.blobs import (
    BlobStore,
    FileBlobStore,
    GridFSBlobStore,
    open_blob_store,
)
from crawler.decode import PartDecoder
from crawler.errors import BadInput, ConfigError

pytestmark = pytest.mark.integration

MB = 1024 * 1024
CONTENT = b"%PDF-1.7 an attachment\r\n" * 1000
CONTENT_KEY = hashlib.sha256(CONTENT).hexdigest()
BAD_KEYS = [
    "../../etc/passwd",
    "/etc/passwd",
    CONTENT_KEY.upper(),
    CONTENT_KEY[:-1],
    CONTENT_KEY + "0",
    CONTENT_KEY + "\n",
    "../" + CONTENT_KEY[3:],
    "",
]


@pytest.fixture(scope="module")
def gridfs_on_mongomock() -> None:
    """Let gridfs accept mongomock databases (it checks types with isinstance)."""
    mongomock.gridfs.enable_gridfs_integration()  # type: ignore[no-untyped-call]  # unannotated


@pytest.fixture
def database(gridfs_on_mongomock: None) -> Database[Any]:
    database: Database[Any] = mongomock.MongoClient().get_database("crawler")
    return database


@pytest.fixture(params=["file", "gridfs"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "file":
        return FileBlobStore(tmp_path / "blobs")
    return GridFSBlobStore(request.getfixturevalue("database"))


def save(store: BlobStore, *chunks: bytes) -> str:
    with store.writer() as blob:
        for chunk in chunks:
            blob.write(chunk)
        return store.commit(blob)


def read(store: BlobStore, key: str) -> bytes:
    with store.open(key) as stored:
        return stored.read()


def staged(store: BlobStore) -> list[str]:
    """What writers left in the store's staging area; empty once each writer is done."""
    if isinstance(store, FileBlobStore):
        return sorted(path.name for path in store.temp_dir.iterdir())
    assert isinstance(store, GridFSBlobStore)
    published = {
        document["_id"] for document in store.files.find({"filename": {"$regex": "^[0-9a-f]{64}$"}})
    }
    files = [
        document["filename"] for document in store.files.find() if document["_id"] not in published
    ]
    chunks = store.files.database["blobs.chunks"].find({"files_id": {"$nin": list(published)}})
    return sorted([*files, *(f"chunk of {chunk['files_id']}" for chunk in chunks)])


def stored_copies(store: BlobStore, key: str) -> int:
    if isinstance(store, FileBlobStore):
        return sum(1 for path in store.root.rglob("*") if path.name == key)
    assert isinstance(store, GridFSBlobStore)
    return store.files.count_documents({"filename": key})


# -- both stores -----------------------------------------------------------------------


def test_a_blob_is_stored_under_the_sha256_of_its_content(store: BlobStore) -> None:
    with store.writer() as blob:
        blob.write(CONTENT[:100])
        blob.write(CONTENT[100:])
        key = store.commit(blob)
    assert key == blob.sha256 == CONTENT_KEY
    assert blob.size == len(CONTENT)
    assert store.exists(key)
    assert read(store, key) == CONTENT
    assert staged(store) == []


def test_the_same_content_twice_is_stored_once(store: BlobStore) -> None:
    assert save(store, CONTENT) == save(store, CONTENT[:7], CONTENT[7:]) == CONTENT_KEY
    assert stored_copies(store, CONTENT_KEY) == 1
    assert staged(store) == []


def test_different_content_gets_different_keys(store: BlobStore) -> None:
    other = save(store, b"another attachment")
    assert other != save(store, CONTENT)
    assert read(store, other) == b"another attachment"


def test_an_empty_attachment_is_a_blob_too(store: BlobStore) -> None:
    key = save(store)
    assert key == hashlib.sha256(b"").hexdigest()
    assert read(store, key) == b""


def test_a_failed_writer_leaves_nothing_behind(store: BlobStore) -> None:
    with pytest.raises(ConnectionResetError), store.writer() as blob:
        blob.write(CONTENT)
        raise ConnectionResetError("the IMAP session dropped mid-attachment")
    assert staged(store) == []
    assert not store.exists(CONTENT_KEY)


def test_a_writer_left_without_commit_is_discarded(store: BlobStore) -> None:
    with store.writer() as blob:
        blob.write(CONTENT)
        blob.close()  # closed, hashed, but never committed: over a size cap, say
    assert staged(store) == []
    assert not store.exists(CONTENT_KEY)


def test_the_sha256_is_known_only_after_close(store: BlobStore) -> None:
    with store.writer() as blob:
        blob.write(CONTENT)
        with pytest.raises(RuntimeError, match="closed"):
            _ = blob.sha256
        assert blob.close() == blob.sha256 == CONTENT_KEY


@pytest.mark.parametrize("key", BAD_KEYS)
def test_anything_but_a_sha256_is_refused_as_a_key(store: BlobStore, key: str) -> None:
    save(store, CONTENT)
    with pytest.raises(BadInput, match="not a blob key"):
        store.open(key)
    with pytest.raises(BadInput, match="not a blob key"):
        store.exists(key)


def test_a_missing_blob_is_file_not_found(store: BlobStore) -> None:
    with pytest.raises(FileNotFoundError):
        store.open(CONTENT_KEY)
    assert not store.exists(CONTENT_KEY)


# -- the file store --------------------------------------------------------------------


def test_file_layout_is_two_levels_of_hex(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    key = save(store, CONTENT)
    path = tmp_path / key[:2] / key[2:4] / key
    assert path.read_bytes() == CONTENT
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        key[:2],
        f"{key[:2]}/{key[2:4]}",
        f"{key[:2]}/{key[2:4]}/{key}",
        "tmp",
    ]


def test_file_path_refuses_traversal_before_building_a_path(tmp_path: Path) -> None:
    with pytest.raises(BadInput):
        FileBlobStore(tmp_path).path("../../etc/passwd")


def test_a_second_commit_keeps_the_first_file(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    key = save(store, CONTENT)
    first = store.path(key).stat()
    save(store, CONTENT)
    assert store.path(key).stat().st_ino == first.st_ino
    assert staged(store) == []


def test_a_failed_rename_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(*_: object) -> None:
        raise OSError(28, "No space left on device")

    store = FileBlobStore(tmp_path)
    monkeypatch.setattr("crawler.blobs.os.replace", full_disk)
    with pytest.raises(OSError, match="No space"):
        save(store, CONTENT)
    assert staged(store) == []
    assert not store.exists(CONTENT_KEY)


def commit_after_barrier(root: str, content: bytes, barrier: Any, keys: Any) -> None:
    """In a child process: stage `content`, wait for the other child, then commit at once."""
    store = FileBlobStore(Path(root))
    with store.writer() as blob:
        blob.write(content)
        blob.close()
        barrier.wait(timeout=30)
        keys.put(store.commit(blob))


def test_two_processes_committing_the_same_content_both_succeed(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    barrier, keys = context.Barrier(2), context.Queue()
    children = [
        context.Process(target=commit_after_barrier, args=(str(tmp_path), CONTENT, barrier, keys))
        for _ in range(2)
    ]
    for child in children:
        child.start()
    results = [keys.get(timeout=30) for _ in children]
    for child in children:
        child.join(timeout=30)
    assert [child.exitcode for child in children] == [0, 0]
    assert results == [CONTENT_KEY, CONTENT_KEY]
    store = FileBlobStore(tmp_path)
    assert stored_copies(store, CONTENT_KEY) == 1
    assert read(store, CONTENT_KEY) == CONTENT
    assert staged(store) == []


# -- the GridFS store ------------------------------------------------------------------


def test_gridfs_names_each_blob_by_its_sha256(database: Database[Any]) -> None:
    store = GridFSBlobStore(database)
    key = save(store, CONTENT)
    document = database["blobs.files"].find_one({"filename": key})
    assert document is not None
    assert document["length"] == len(CONTENT)
    assert (
        gridfs.GridFSBucket(database, "blobs").open_download_stream_by_name(key).read() == CONTENT
    )


def test_gridfs_a_lost_race_discards_the_losers_upload(
    database: Database[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    winner, loser = GridFSBlobStore(database), GridFSBlobStore(database)
    monkeypatch.setattr(loser, "exists", lambda key: False)  # both looked before either published
    assert save(winner, CONTENT) == save(loser, CONTENT) == CONTENT_KEY
    assert stored_copies(winner, CONTENT_KEY) == 1
    assert staged(winner) == []
    assert read(winner, CONTENT_KEY) == CONTENT


# -- choosing the store ----------------------------------------------------------------


@dataclass(frozen=True)
class BlobSettings:
    blob_dir: Path
    blob_store: Literal["file", "gridfs"] = "file"


def test_the_file_store_is_the_default(tmp_path: Path) -> None:
    store = open_blob_store(BlobSettings(blob_dir=tmp_path))
    assert isinstance(store, FileBlobStore)
    assert store.root == tmp_path


def test_gridfs_is_chosen_by_setting(tmp_path: Path, database: Database[Any]) -> None:
    store = open_blob_store(BlobSettings(blob_dir=tmp_path, blob_store="gridfs"), database)
    assert isinstance(store, GridFSBlobStore)
    assert read(store, save(store, CONTENT)) == CONTENT
    assert list(tmp_path.iterdir()) == []


def test_gridfs_without_a_database_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CRAWLER_BLOB_STORE=gridfs"):
        open_blob_store(BlobSettings(blob_dir=tmp_path, blob_store="gridfs"))


# -- memory ----------------------------------------------------------------------------


def imap_chunks(text: bytes, size: int) -> Iterator[bytes]:
    """`text` in `<offset.length>` slices, each a fresh bytes object as a socket read gives."""
    for offset in range(0, len(text), size):
        yield text[offset : offset + size]


def test_a_25_mb_attachment_streams_in_memory_bounded_by_the_chunk(tmp_path: Path) -> None:
    attachment = random.Random(25).randbytes(25 * MB)
    encoded = base64.encodebytes(attachment).replace(b"\n", b"\r\n")
    expected = hashlib.sha256(attachment).hexdigest()
    del attachment
    store, decoder = FileBlobStore(tmp_path), PartDecoder("base64")

    tracemalloc.start()
    try:
        with store.writer() as blob:
            for chunk in imap_chunks(encoded, MB):
                blob.write(decoder.feed(chunk))
            blob.write(decoder.finish())
            key = store.commit(blob)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert key == expected
    assert blob.size == 25 * MB
    assert peak < 4 * MB
