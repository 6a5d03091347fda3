"""Content-addressed attachment storage: a blob's key is the sha256 of its decoded bytes.

A blob is streamed into a staging area of its store (a temp file on the same filesystem, or a
GridFS upload under a temporary name) while it is hashed, then published under its key in one
atomic step. Publishing content that is already stored discards the new copy, so the same
attachment saved twice, by one worker or by two at once, is stored once. Keys are validated
before they name anything: paths never come from attachment names.

    with store.writer() as blob:
        for chunk in chunks:
            blob.write(decoder.feed(chunk))
        blob.write(decoder.finish())
        key = store.commit(blob)

Leaving the block without a commit (an exception, a size cap) discards what was written.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Generic, Literal, Protocol, TypeVar

from gridfs import GridFSBucket, GridIn
from gridfs.errors import NoFile
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from crawler.errors import BadInput, ConfigError

_KEY = re.compile(r"[0-9a-f]{64}")


def validate_key(key: str) -> str:
    """`key` if it is a blob key (64 lowercase hex digits), else `BadInput`."""
    if not _KEY.fullmatch(key):
        raise BadInput(f"not a blob key (64 lowercase hex digits): {key[:80]!r}")
    return key


class Staging(Protocol):
    """Where a blob's bytes wait until its store publishes or discards them."""

    def write(self, data: bytes) -> None:
        """Append `data`."""

    def close(self) -> None:
        """Make what was written durable."""

    def discard(self) -> None:
        """Remove what was written, unless it was published; safe to call again."""


StagingT = TypeVar("StagingT", bound=Staging)


class BlobWriter(Generic[StagingT]):
    """Streams one blob into its store's staging area, hashing and counting as it goes."""

    def __init__(self, staging: StagingT) -> None:
        self.staging = staging
        self.size = 0
        self._digest = hashlib.sha256()
        self._closed = False

    def write(self, data: bytes) -> None:
        """Append `data` to the blob."""
        self._digest.update(data)
        self.staging.write(data)
        self.size += len(data)

    def close(self) -> str:
        """Make the written bytes durable and return their sha256, the blob's key."""
        if not self._closed:
            self.staging.close()
            self._closed = True
        return self.sha256

    @property
    def sha256(self) -> str:
        """The hex sha256 of the blob, known once the writer is closed."""
        if not self._closed:
            raise RuntimeError("the sha256 of a blob is known once its writer is closed")
        return self._digest.hexdigest()

    def __enter__(self) -> BlobWriter[StagingT]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.discard()

    def discard(self) -> None:
        """Remove what was written, unless it was committed; safe to call again."""
        self.staging.discard()


class BlobStore(Protocol):
    """Where attachments are stored, by the sha256 of their content."""

    def writer(self) -> BlobWriter[Any]:
        """A writer for one new blob; use it as a context manager."""

    def commit(self, writer: BlobWriter[Any]) -> str:
        """Publish the writer's blob and return its key; content already stored is kept once."""

    def open(self, key: str) -> BinaryIO:
        """The blob's bytes; `FileNotFoundError` if there is no such blob."""

    def exists(self, key: str) -> bool:
        """Whether the blob is stored."""


class _TempFile:
    """A temp file in the store's own temp directory, renamed into place on commit."""

    def __init__(self, directory: Path) -> None:
        descriptor, name = tempfile.mkstemp(dir=directory, prefix="blob-", suffix=".part")
        self.path = Path(name)
        self.file = os.fdopen(descriptor, "wb")
        self.settled = False  # published or discarded

    def write(self, data: bytes) -> None:
        self.file.write(data)

    def close(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()

    def publish(self, target: Path) -> None:
        """Rename to `target`; overwriting a racing writer's copy (same bytes) is harmless."""
        os.replace(self.path, target)
        self.settled = True

    def discard(self) -> None:
        if not self.settled:
            self.file.close()
            self.path.unlink(missing_ok=True)
            self.settled = True


class FileBlobStore:
    """Blobs as files `<root>/ab/cd/<sha256>`, written to `<root>/tmp` first."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.temp_dir = root / "tmp"  # same filesystem as the blobs, so the rename is atomic

    def writer(self) -> BlobWriter[_TempFile]:
        """A writer for one new blob; use it as a context manager."""
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        return BlobWriter(_TempFile(self.temp_dir))

    def commit(self, writer: BlobWriter[_TempFile]) -> str:
        """Publish the writer's blob and return its key; content already stored is kept once."""
        key = writer.close()
        target = self.path(key)
        if target.exists():
            writer.staging.discard()
            return key
        _make_dirs(target.parent)
        writer.staging.publish(target)
        _fsync_dir(target.parent)
        return key

    def open(self, key: str) -> BinaryIO:
        """The blob's bytes; `FileNotFoundError` if there is no such blob."""
        return self.path(key).open("rb")

    def exists(self, key: str) -> bool:
        """Whether the blob is stored."""
        return self.path(key).is_file()

    def path(self, key: str) -> Path:
        """Where the blob `key` lives; `BadInput` for anything but a blob key."""
        validate_key(key)
        return self.root / key[:2] / key[2:4] / key


def _make_dirs(directory: Path) -> None:
    """Create `<root>/ab/cd` (the root exists: it holds the temp dir), syncing each new entry."""
    for path in (directory.parent, directory):
        try:
            path.mkdir()
        except FileExistsError:  # made earlier, or by another writer just now
            continue
        _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make the entries of `directory` (a rename, a new subdirectory) survive a power loss."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class _GridUpload:
    """A GridFS upload under a temporary name, renamed to the blob's key on commit."""

    def __init__(self, bucket: GridFSBucket) -> None:
        self.bucket = bucket
        self.upload: GridIn = bucket.open_upload_stream(f"staging-{uuid.uuid4().hex}")
        self.settled = False  # published or discarded

    def write(self, data: bytes) -> None:
        self.upload.write(data)

    def close(self) -> None:
        self.upload.close()

    def publish(self, key: str) -> None:
        """Rename the upload to `key`; `DuplicateKeyError` if that content is stored already."""
        self.bucket.rename(self.upload._id, key)
        self.settled = True

    def discard(self) -> None:
        if not self.settled:
            self.upload.abort()  # removes the chunks, and the file document once closed
            self.settled = True


class GridFSBlobStore:
    """Blobs in GridFS, for deployments without a shared disk: one file per sha256, by name."""

    def __init__(self, database: Database[Any], bucket_name: str = "blobs") -> None:
        """Creates the unique index on file names that keeps each content stored once."""
        self.bucket = GridFSBucket(database, bucket_name=bucket_name)
        self.files = database[f"{bucket_name}.files"]
        self.files.create_index("filename", unique=True)

    def writer(self) -> BlobWriter[_GridUpload]:
        """A writer for one new blob; use it as a context manager."""
        return BlobWriter(_GridUpload(self.bucket))

    def commit(self, writer: BlobWriter[_GridUpload]) -> str:
        """Publish the writer's blob and return its key; content already stored is kept once."""
        key = writer.close()
        if self.exists(key):
            writer.staging.discard()
            return key
        try:
            writer.staging.publish(key)
        except DuplicateKeyError:  # another writer published the same content just now
            writer.staging.discard()
        return key

    def open(self, key: str) -> BinaryIO:
        """The blob's bytes; `FileNotFoundError` if there is no such blob."""
        try:
            return self.bucket.open_download_stream_by_name(validate_key(key))
        except NoFile:
            raise FileNotFoundError(f"no blob {key}") from None

    def exists(self, key: str) -> bool:
        """Whether the blob is stored."""
        return self.files.find_one({"filename": validate_key(key)}, {"_id": 1}) is not None


class BlobSettings(Protocol):
    """The settings that choose the blob store."""

    @property
    def blob_store(self) -> Literal["file", "gridfs"]:
        """`CRAWLER_BLOB_STORE`."""

    @property
    def blob_dir(self) -> Path:
        """`CRAWLER_BLOB_DIR`."""


def open_blob_store(settings: BlobSettings, database: Database[Any] | None = None) -> BlobStore:
    """The configured store: files under `blob_dir`, or GridFS in `database`."""
    if settings.blob_store == "file":
        return FileBlobStore(settings.blob_dir)
    if database is None:
        raise ConfigError("CRAWLER_BLOB_STORE=gridfs needs the MongoDB database to store blobs in")
    return GridFSBlobStore(database)
