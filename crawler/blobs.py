"""Content-addressed attachment storage: a blob's key is the sha256 of its decoded bytes.

A blob is streamed into a staging area of its store (a temp file on the same filesystem, a
GridFS upload under a temporary name, or for S3 memory up to one part and past it a multipart
upload to a staging key) while it is hashed, then published under its key in one atomic step.
Publishing content that is already stored discards the new copy, so the same attachment saved
twice, by one worker or by two at once, is stored once. Keys are validated before they name
anything: paths and object keys never come from attachment names.

    with store.writer(content_type="application/pdf") as blob:
        for chunk in chunks:
            blob.write(decoder.feed(chunk))
        blob.write(decoder.finish())
        key = store.commit(blob)

Leaving the block without a commit (an exception, a size cap) discards what was written.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO, Generic, Literal, Protocol, TypeVar, cast

from botocore.exceptions import (  # botocore's errors only: boto3 loads with the s3 store
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from gridfs import GridFSBucket, GridIn
from gridfs.errors import NoFile
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from crawler.errors import BadInput, ConfigError, CrawlerError, Transient

if TYPE_CHECKING:  # boto3 loads only for the s3 store: `import crawler.blobs` stays light
    from _typeshed import WriteableBuffer
    from botocore.response import StreamingBody
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

_KEY = re.compile(r"[0-9a-f]{64}")
DEFAULT_CONTENT_TYPE = "application/octet-stream"


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

    def writer(self, *, content_type: str = DEFAULT_CONTENT_TYPE) -> BlobWriter[Any]:
        """A writer for one new blob of `content_type`; use it as a context manager."""

    def commit(self, writer: BlobWriter[Any]) -> str:
        """Publish the writer's blob and return its key; content already stored is kept once."""

    def open(self, key: str) -> BinaryIO:
        """The blob's bytes; `FileNotFoundError` if there is no such blob."""

    def exists(self, key: str) -> bool:
        """Whether the blob is stored."""

    def location(self, key: str) -> str:
        """Where the blob is, for a reader elsewhere: a path, or a `gridfs://` or `s3://` URL."""


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

    def writer(self, *, content_type: str = DEFAULT_CONTENT_TYPE) -> BlobWriter[_TempFile]:
        """A writer for one new blob; use it as a context manager (a file has no type)."""
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

    def location(self, key: str) -> str:
        """The blob's absolute path."""
        return str(self.path(key).absolute())

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
        self.where = f"gridfs://{database.name}/{bucket_name}"

    def writer(self, *, content_type: str = DEFAULT_CONTENT_TYPE) -> BlobWriter[_GridUpload]:
        """A writer for one new blob; use it as a context manager (its type is not kept)."""
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

    def location(self, key: str) -> str:
        """`gridfs://<database>/<bucket>/<sha256>`: the file of that name in the bucket."""
        return f"{self.where}/{validate_key(key)}"


S3_PART_SIZE = 5 * 2**20  # S3's least part of a multipart upload (the last may be smaller)
_CONTENT_TYPE = re.compile(r"[\w!#$%&'*+.^`|~-]{1,127}/[\w!#$%&'*+.^`|~-]{1,127}", re.ASCII)
# What S3 answers when only the configuration can help: the bucket, the credentials, their
# permissions, the bucket's region. (A HEAD has no body: a refused one is just HTTP 403.)
_S3_REFUSALS = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "AccountProblem",
        "AuthorizationHeaderMalformed",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidBucketName",
        "InvalidToken",
        "PermanentRedirect",
        "SignatureDoesNotMatch",
        "TokenRefreshRequired",
    }
)
_NO_SUCH_OBJECT = frozenset({"NoSuchKey", "404", "NotFound"})  # HEAD says "404"


def s3_error(error: Exception, action: str, bucket: str, key: str) -> CrawlerError:
    """What a failed S3 request (a botocore error) means to the crawler, naming the object.

    `ConfigError` when only the configuration can fix it: no such bucket (CRAWLER_S3_BUCKET),
    missing or refused credentials, missing permissions, the wrong region. `Transient`, retried
    like a dropped IMAP session, for the rest: no connection, a timeout, 5xx, SlowDown.
    """
    where = f"cannot {action} s3://{bucket}/{key}"
    if isinstance(error, NoCredentialsError | PartialCredentialsError):
        return ConfigError(
            f"{where}: no AWS credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a "
            "profile or an instance role)"
        )
    if not isinstance(error, ClientError):
        return Transient(f"{where}: {type(error).__name__}: {error}")
    code = str(error.response.get("Error", {}).get("Code") or "")
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    said = f"{code or 'an error'} (HTTP {status})"
    if code == "NoSuchBucket":
        return ConfigError(f"{where}: S3 answered {said}: check CRAWLER_S3_BUCKET")
    if code in _S3_REFUSALS or status in {301, 403}:
        return ConfigError(
            f"{where}: S3 answered {said}: check the AWS credentials, their permissions on "
            "CRAWLER_S3_BUCKET and its region"
        )
    return Transient(f"{where}: S3 answered {said}")


@contextmanager
def _s3_errors(action: str, bucket: str, key: str, *, missing: str = "") -> Iterator[None]:
    """Raise a failed request as `s3_error` says; no such object as `FileNotFoundError(missing)`
    when `missing` is given."""
    try:
        yield
    except ClientError as error:
        if missing and error.response.get("Error", {}).get("Code") in _NO_SUCH_OBJECT:
            raise FileNotFoundError(missing) from None
        raise s3_error(error, action, bucket, key) from error
    except BotoCoreError as error:
        raise s3_error(error, action, bucket, key) from error


@contextmanager
def _best_effort() -> Iterator[None]:
    """Ignore a failed S3 request: for clean-ups that the bucket's lifecycle rule also does."""
    with suppress(BotoCoreError, ClientError):
        yield


def _unstubbed(data: bytearray) -> bytes:
    """`data` as it is: botocore sends a bytearray as it sends bytes (its stubs say bytes only),
    and copying a part to make it bytes would double the memory an upload holds."""
    return cast(bytes, data)


class _S3Upload:
    """A blob on its way into S3, in bounded memory: held in memory while it fits in one part,
    else sent as it arrives, a part at a time, as a multipart upload to a staging key under
    `<prefix>tmp/`, where no reader looks. Published by one PUT (or, for a multipart upload, by
    completing it and copying the staged object) under the blob's key: never seen partial."""

    def __init__(self, store: S3BlobStore, content_type: str) -> None:
        self.client, self.bucket = store.client, store.bucket
        # A part's type is `type/subtype` (crawler.mime); anything else never reaches a header.
        valid = _CONTENT_TYPE.fullmatch(content_type) is not None
        self.content_type = content_type if valid else DEFAULT_CONTENT_TYPE
        self.staging_key = f"{store.prefix}tmp/{uuid.uuid4().hex}"
        self.buffer = bytearray()  # at most one part, and what the last write added
        self.upload_id: str | None = None  # once the blob outgrew one part
        self.parts: list[CompletedPartTypeDef] = []
        self.staged = False  # the multipart upload is completed: an object at `staging_key`
        self.settled = False  # published or discarded

    def write(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) > S3_PART_SIZE:
            part, self.buffer = self.buffer, self.buffer[S3_PART_SIZE:]
            del part[S3_PART_SIZE:]  # in place: the part is never copied
            self._send(part)

    def close(self) -> None:
        """Send the last part of a multipart upload; a blob within one part stays in memory
        until it is published."""
        if self.upload_id is not None and self.buffer:
            part, self.buffer = self.buffer, bytearray()
            self._send(part)

    def _send(self, part: bytearray) -> None:
        with _s3_errors("upload a part of", self.bucket, self.staging_key):
            if self.upload_id is None:
                self.upload_id = self.client.create_multipart_upload(
                    Bucket=self.bucket, Key=self.staging_key, ContentType=self.content_type
                )["UploadId"]
            number = len(self.parts) + 1
            sent = self.client.upload_part(
                Bucket=self.bucket,
                Key=self.staging_key,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=_unstubbed(part),
            )
        self.parts.append({"PartNumber": number, "ETag": sent["ETag"]})

    def publish(self, key: str, sha256: str) -> None:
        """Store the blob as the object `key`, with its sha256 and type: in one PUT, or by
        completing the multipart upload and copying the staged object (then deleted)."""
        metadata = {"sha256": sha256}
        if self.upload_id is None:
            with _s3_errors("store", self.bucket, key):
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=_unstubbed(self.buffer),
                    ContentType=self.content_type,
                    Metadata=metadata,
                )
            self.settled, self.buffer = True, bytearray()
            return
        with _s3_errors("complete the upload of", self.bucket, self.staging_key):
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.staging_key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": self.parts},
            )
        self.staged = True
        with _s3_errors("store", self.bucket, key):
            self.client.copy_object(
                Bucket=self.bucket,
                Key=key,
                CopySource={"Bucket": self.bucket, "Key": self.staging_key},
                MetadataDirective="REPLACE",
                ContentType=self.content_type,
                Metadata=metadata,
            )
        self.settled = True
        self._delete_staged()

    def discard(self) -> None:
        """Abort the multipart upload, or delete its staged object; a failure to (the endpoint
        is gone, say) is left to the bucket's lifecycle rule, never raised over the error that
        made the writer discard."""
        if self.settled:
            return
        self.settled, self.buffer = True, bytearray()
        if self.staged:
            self._delete_staged()
        elif self.upload_id is not None:
            with _best_effort():
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self.staging_key, UploadId=self.upload_id
                )

    def _delete_staged(self) -> None:
        with _best_effort():
            self.client.delete_object(Bucket=self.bucket, Key=self.staging_key)


class _S3Body(io.RawIOBase):
    """An S3 object's bytes as they arrive from the answer to its GET; a failure while reading
    is raised as `s3_error` says."""

    def __init__(self, body: StreamingBody, bucket: str, key: str) -> None:
        super().__init__()
        self.body, self.bucket, self.key = body, bucket, key

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        with _s3_errors("read", self.bucket, self.key):
            data = self.body.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self.body.close()
        super().close()


class S3BlobStore:
    """Blobs as S3 objects `<prefix>ab/cd/<sha256>`, written once, with their sha256 and type.

    `client` is a boto3 S3 client. Writers stage under `<prefix>tmp/`: an upload that was cut
    off (a killed worker) leaves nothing under any blob's key, only a multipart upload or a
    staged object that the bucket's lifecycle rule removes (README: "Storing attachments in S3").
    """

    def __init__(self, client: S3Client, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    def writer(self, *, content_type: str = DEFAULT_CONTENT_TYPE) -> BlobWriter[_S3Upload]:
        """A writer for one new blob of `content_type`; use it as a context manager."""
        return BlobWriter(_S3Upload(self, content_type))

    def commit(self, writer: BlobWriter[_S3Upload]) -> str:
        """Publish the writer's blob and return its key; content already stored is kept once."""
        key = writer.close()
        if self.exists(key):
            writer.staging.discard()
            return key
        # Another writer may publish the same bytes meanwhile: the second PUT or copy of the
        # same content under the same key changes nothing a reader sees.
        writer.staging.publish(self.object_key(key), key)
        return key

    def open(self, key: str) -> BinaryIO:
        """The blob's bytes, streamed as they are read; `FileNotFoundError` if there is no
        such blob."""
        name = self.object_key(key)
        with _s3_errors("read", self.bucket, name, missing=f"no blob {key}"):
            body = self.client.get_object(Bucket=self.bucket, Key=name)["Body"]
        return io.BufferedReader(_S3Body(body, self.bucket, name), buffer_size=2**16)

    def exists(self, key: str) -> bool:
        """Whether the blob is stored."""
        name = self.object_key(key)
        try:
            with _s3_errors("look up", self.bucket, name, missing=f"no blob {key}"):
                self.client.head_object(Bucket=self.bucket, Key=name)
        except FileNotFoundError:
            return False
        return True

    def location(self, key: str) -> str:
        """`s3://<bucket>/<object key>`."""
        return f"s3://{self.bucket}/{self.object_key(key)}"

    def object_key(self, key: str) -> str:
        """The object key of the blob `key`; `BadInput` for anything but a blob key."""
        validate_key(key)
        return f"{self.prefix}{key[:2]}/{key[2:4]}/{key}"


def s3_client(endpoint_url: str = "") -> S3Client:
    """A boto3 S3 client for `endpoint_url` (empty: AWS), with the region and credentials
    that boto3 finds (AWS_* variables, a profile, an instance role); a few retries, bounded
    waits."""
    # Here, not at the top: only the s3 store loads boto3, and it takes a while.
    import boto3  # noqa: PLC0415
    import botocore.config  # noqa: PLC0415

    config = botocore.config.Config(
        retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=60
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url or None, config=config)


class BlobSettings(Protocol):
    """The settings that choose the blob store."""

    @property
    def blob_store(self) -> Literal["file", "gridfs", "s3"]:
        """`CRAWLER_BLOB_STORE`."""

    @property
    def blob_dir(self) -> Path:
        """`CRAWLER_BLOB_DIR`."""

    @property
    def s3_bucket(self) -> str:
        """`CRAWLER_S3_BUCKET`."""

    @property
    def s3_prefix(self) -> str:
        """`CRAWLER_S3_PREFIX`."""

    @property
    def s3_endpoint_url(self) -> str:
        """`CRAWLER_S3_ENDPOINT_URL`."""


def open_blob_store(settings: BlobSettings, database: Database[Any] | None = None) -> BlobStore:
    """The configured store: files under `blob_dir`, GridFS in `database`, or objects in the
    S3 bucket `s3_bucket` (boto3 is loaded only then)."""
    if settings.blob_store == "file":
        return FileBlobStore(settings.blob_dir)
    if settings.blob_store == "s3":
        if not settings.s3_bucket:
            raise ConfigError(
                "CRAWLER_BLOB_STORE=s3 needs CRAWLER_S3_BUCKET, the bucket to store blobs in"
            )
        client = s3_client(settings.s3_endpoint_url)
        return S3BlobStore(client, settings.s3_bucket, settings.s3_prefix)
    if database is None:
        raise ConfigError("CRAWLER_BLOB_STORE=gridfs needs the MongoDB database to store blobs in")
    return GridFSBlobStore(database)
