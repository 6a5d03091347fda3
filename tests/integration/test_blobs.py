import base64
import hashlib
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import threading
import tracemalloc
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import gridfs
import mongomock
import mongomock.gridfs
import pytest
from botocore.awsrequest import AWSPreparedRequest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
from pymongo.database import Database

from crawler.blobs import (
    S3_PART_SIZE,
    BlobStore,
    FileBlobStore,
    GridFSBlobStore,
    S3BlobStore,
    open_blob_store,
    s3_client,
    s3_error,
)
from crawler.decode import PartDecoder
from crawler.errors import BadInput, ConfigError, Transient
from standins.s3 import S3Server

pytestmark = pytest.mark.integration

MB = 1024 * 1024
PREFIX = "blobs/"
BIG = random.Random(12).randbytes(12 * MB)  # a multipart upload of three parts in S3
BIG_KEY = hashlib.sha256(BIG).hexdigest()
AWS_ENV = {  # boto3 finds these first: no profile, no instance role, never AWS
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
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


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    """One moto server process for the module; each test has a bucket of its own."""
    with S3Server() as server:
        yield server


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials and region where boto3 looks first, and no configuration file."""
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture
def s3_store(s3_server: S3Server, aws_env: None) -> Iterator[S3BlobStore]:
    """The S3 store in a new bucket of the module's server, with the crawler's own client."""
    bucket = f"test-{uuid.uuid4().hex[:16]}"
    s3_server.create_bucket(bucket)
    store = S3BlobStore(s3_client(s3_server.endpoint_url), bucket, PREFIX)
    yield store
    store.client.close()


@pytest.fixture(params=["file", "gridfs", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "file":
        return FileBlobStore(tmp_path / "blobs")
    if request.param == "s3":
        s3: S3BlobStore = request.getfixturevalue("s3_store")
        return s3
    return GridFSBlobStore(request.getfixturevalue("database"))


def save(store: BlobStore, *chunks: bytes, content_type: str = "application/pdf") -> str:
    with store.writer(content_type=content_type) as blob:
        for chunk in chunks:
            blob.write(chunk)
        return store.commit(blob)


def pieces(content: bytes, size: int = MB) -> Iterator[bytes]:
    """`content` a `size` at a time, as the crawler's decoder hands it over."""
    for offset in range(0, len(content), size):
        yield content[offset : offset + size]


def objects(store: S3BlobStore) -> list[str]:
    """The keys of every object in the store's bucket."""
    listed = store.client.list_objects_v2(Bucket=store.bucket)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def uploads(store: S3BlobStore) -> list[str]:
    """The keys of the multipart uploads in progress (neither completed nor aborted)."""
    listed = store.client.list_multipart_uploads(Bucket=store.bucket)
    return sorted(item["Key"] for item in listed.get("Uploads", []))


def read(store: BlobStore, key: str) -> bytes:
    with store.open(key) as stored:
        return stored.read()


def staged(store: BlobStore) -> list[str]:
    """What writers left in the store's staging area; empty once each writer is done."""
    if isinstance(store, FileBlobStore):
        return sorted(path.name for path in store.temp_dir.iterdir())
    if isinstance(store, S3BlobStore):
        staging = [key for key in objects(store) if key.startswith(f"{PREFIX}tmp/")]
        return sorted([*staging, *(f"upload of {key}" for key in uploads(store))])
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
    if isinstance(store, S3BlobStore):
        return sum(1 for name in objects(store) if name.rsplit("/", 1)[-1] == key)
    assert isinstance(store, GridFSBlobStore)
    return store.files.count_documents({"filename": key})


# -- every store ----------------------------------------------------------------------


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


def test_a_blob_of_several_parts_is_stored_and_read_back(store: BlobStore) -> None:
    assert save(store, *pieces(BIG)) == BIG_KEY
    assert read(store, BIG_KEY) == BIG
    assert stored_copies(store, BIG_KEY) == 1
    assert staged(store) == []


def test_an_upload_of_content_already_stored_is_discarded(store: BlobStore) -> None:
    """Another writer committed the same content first: the new upload leaves nothing."""
    save(store, BIG)
    with store.writer() as blob:
        for piece in pieces(BIG):
            blob.write(piece)
        assert store.commit(blob) == BIG_KEY
    assert stored_copies(store, BIG_KEY) == 1
    assert staged(store) == []  # S3: no staged object, no multipart upload left
    assert read(store, BIG_KEY) == BIG


KILLED_MID_UPLOAD = r"""
import random, sys, time
from pathlib import Path
from pymongo import MongoClient
from crawler.blobs import FileBlobStore, GridFSBlobStore, S3BlobStore, s3_client

kind, where, bucket, prefix = sys.argv[1:]
if kind == "file":
    store = FileBlobStore(Path(where))
elif kind == "gridfs":
    store = GridFSBlobStore(MongoClient(where)[bucket])
else:
    store = S3BlobStore(s3_client(where), bucket, prefix)
content = random.Random(12).randbytes(12 * 2**20)
with store.writer() as blob:
    for offset in range(0, len(content), 2**20):
        blob.write(content[offset : offset + 2**20])
        print(offset + 2**20, flush=True)
        if offset + 2**20 == 8 * 2**20:
            time.sleep(60)  # SIGKILLed here: 8 MiB written, a part of it uploaded
    store.commit(blob)
"""


@pytest.mark.parametrize("kind", ["file", "gridfs", "s3"])
def test_an_upload_killed_mid_blob_leaves_nothing_under_any_blobs_key(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The writer is a process of its own, SIGKILLed 8 MiB into a 12 MiB blob. GridFS is on the
    embedded MongoDB here (a server: the killed process wrote to it over a socket)."""
    if kind == "file":
        store: BlobStore = FileBlobStore(tmp_path / "blobs")
        arguments = [str(tmp_path / "blobs"), "", ""]
    elif kind == "gridfs":
        database = request.getfixturevalue("embedded_mongo_client")[f"b{uuid.uuid4().hex[:12]}"]
        store = GridFSBlobStore(database)
        arguments = [request.getfixturevalue("embedded_mongo").uri, database.name, ""]
    else:
        store = request.getfixturevalue("s3_store")
        assert isinstance(store, S3BlobStore)
        arguments = [request.getfixturevalue("s3_server").endpoint_url, store.bucket, PREFIX]
    with subprocess.Popen(
        [sys.executable, "-c", KILLED_MID_UPLOAD, kind, *arguments],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ | AWS_ENV,
    ) as child:
        assert child.stdout is not None
        for line in child.stdout:
            if int(line) == 8 * MB:
                break
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL

    assert not store.exists(BIG_KEY)
    if isinstance(store, FileBlobStore):
        left = [path for path in store.root.rglob("*") if path.is_file()]
        assert [path.parent for path in left] == [store.temp_dir]  # the temp file, killed with it
        assert left[0].stat().st_size > S3_PART_SIZE
    elif isinstance(store, GridFSBlobStore):
        # A file's document is written at its close; its chunks (pymongo buffers up to 32 MiB
        # of them before sending) are under the upload's own id, which no reader asks for.
        assert store.files.count_documents({}) == 0
    else:
        assert isinstance(store, S3BlobStore)
        assert objects(store) == []  # no object at all, under a blob's key or under tmp/
        [upload] = uploads(store)  # killed mid-upload: the lifecycle rule aborts it
        assert upload.startswith(f"{PREFIX}tmp/")


class PeakRss:
    """How far the resident memory of this process rose above its level at the start of the
    block: its peak (VmHWM, reset through clear_refs), or else sampled every millisecond."""

    def __init__(self) -> None:
        self.start = self.peak = 0
        self._done = threading.Event()
        self._sampler: threading.Thread | None = None

    @property
    def growth(self) -> int:
        return self.peak - self.start

    def __enter__(self) -> "PeakRss":
        try:
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        except OSError:
            self._sampler = threading.Thread(target=self._sample, daemon=True)
        self.start = self.peak = _status("VmRSS")
        if self._sampler is not None:
            self._sampler.start()
        return self

    def _sample(self) -> None:
        while not self._done.wait(0.001):
            self.peak = max(self.peak, _status("VmRSS"))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._done.set()
        if self._sampler is not None:
            self._sampler.join()
        else:
            self.peak = _status("VmHWM")


def _status(field: str) -> int:
    """A memory figure of /proc/self/status, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


# GridFS is left out: on mongomock, the store is this process's memory.
@pytest.mark.parametrize("store", ["file", "s3"], indirect=True)
def test_a_25_mb_blob_goes_in_and_out_in_memory_bounded_by_a_part(store: BlobStore) -> None:
    """Stored as it arrives (in S3, a 5 MiB part at a time) and read back as a stream: the
    process grows by a part and the pieces in flight, never by the blob (26 MiB if it were
    held whole)."""
    attachment = random.Random(25).randbytes(25 * MB)
    expected = hashlib.sha256(attachment).hexdigest()
    read(store, save(store, b"warm-up"))  # the client's connections and models, loaded

    with PeakRss() as rss:
        with store.writer() as blob:
            for piece in pieces(attachment):
                blob.write(piece)
            key = store.commit(blob)
        digest = hashlib.sha256()
        with store.open(key) as stored:
            while piece := stored.read(MB):
                digest.update(piece)

    assert key == digest.hexdigest() == expected
    assert rss.growth < 16 * MB, f"RSS grew by {rss.growth / MB:.1f} MiB for a 25 MiB blob"


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


# -- the S3 store ----------------------------------------------------------------------


def test_s3_layout_is_the_prefix_and_two_levels_of_hex(s3_store: S3BlobStore) -> None:
    key = save(s3_store, CONTENT)
    assert objects(s3_store) == [f"{PREFIX}{key[:2]}/{key[2:4]}/{key}"]


@pytest.mark.parametrize("content", [CONTENT, BIG], ids=["one PUT", "multipart"])
def test_s3_objects_carry_their_sha256_and_content_type(
    s3_store: S3BlobStore, content: bytes
) -> None:
    key = save(s3_store, *pieces(content), content_type="application/pdf")
    head = s3_store.client.head_object(Bucket=s3_store.bucket, Key=s3_store.object_key(key))
    assert (head["ContentType"], head["Metadata"]) == ("application/pdf", {"sha256": key})
    assert head["ContentLength"] == len(content)


def test_s3_a_content_type_that_is_no_type_is_stored_as_octet_stream(
    s3_store: S3BlobStore,
) -> None:
    key = save(s3_store, CONTENT, content_type="text/plain\r\nX-Amz-Acl: public-read")
    head = s3_store.client.head_object(Bucket=s3_store.bucket, Key=s3_store.object_key(key))
    assert head["ContentType"] == "application/octet-stream"


def test_s3_a_stored_blob_is_never_written_again(s3_store: S3BlobStore) -> None:
    save(s3_store, CONTENT)
    save(s3_store, *pieces(BIG))
    calls: list[str] = []
    for operation in ("PutObject", "CopyObject", "CompleteMultipartUpload", "AbortMultipartUpload"):
        s3_store.client.meta.events.register(
            f"before-send.s3.{operation}",
            lambda request, operation=operation, **_: calls.append(operation),
        )

    save(s3_store, CONTENT)
    save(s3_store, *pieces(BIG))

    assert calls == ["AbortMultipartUpload"]  # the second upload of BIG, never completed
    assert staged(s3_store) == []


def test_s3_an_upload_is_out_of_sight_until_committed(s3_store: S3BlobStore) -> None:
    with s3_store.writer() as blob:
        for piece in pieces(BIG[: 6 * MB]):
            blob.write(piece)
        [upload] = uploads(s3_store)  # the first part is up: sent as it arrived
        assert upload.startswith(f"{PREFIX}tmp/")
        assert objects(s3_store) == []
        for piece in pieces(BIG[6 * MB :]):
            blob.write(piece)
        assert not s3_store.exists(BIG_KEY)
        s3_store.commit(blob)
    assert objects(s3_store) == [s3_store.object_key(BIG_KEY)]
    assert uploads(s3_store) == []


def test_s3_a_part_that_cannot_be_sent_is_transient_and_leaves_nothing(
    s3_store: S3BlobStore,
) -> None:
    """The connection fails from the third part on (botocore retries it, then gives up): the
    writer raises Transient, naming the staging object, and aborts the multipart upload."""
    sent: list[int] = []

    def drop_from_the_third_part(request: AWSPreparedRequest, **_: Any) -> None:
        sent.append(1)
        if len(sent) >= 3:
            raise EndpointConnectionError(endpoint_url=request.url)

    s3_store.client.meta.events.register("before-send.s3.UploadPart", drop_from_the_third_part)
    with pytest.raises(Transient) as raised, s3_store.writer() as blob:
        for piece in pieces(BIG + BIG):
            blob.write(piece)
        s3_store.commit(blob)

    assert str(raised.value).startswith(
        f"cannot upload a part of s3://{s3_store.bucket}/{PREFIX}tmp/"
    )
    assert isinstance(raised.value.__cause__, EndpointConnectionError)
    assert len(sent) > 3  # retried before it gave up
    assert not s3_store.exists(BIG_KEY)
    assert objects(s3_store) == []
    assert uploads(s3_store) == []  # aborted


def test_s3_an_endpoint_gone_mid_upload_is_transient(aws_env: None) -> None:
    """The server dies after two parts: the next request is refused, Transient; the abort
    that follows fails too, and that failure is not what the writer raises."""
    with S3Server() as server:
        server.create_bucket("endpoint-gone")
        store = S3BlobStore(s3_client(server.endpoint_url), "endpoint-gone", PREFIX)
        with (
            pytest.raises(Transient, match="EndpointConnectionError") as raised,
            store.writer() as blob,
        ):
            for number, piece in enumerate(pieces(BIG), start=1):
                if number == 12:
                    assert len(blob.staging.parts) == 2
                    server.kill()
                blob.write(piece)
            store.commit(blob)
        store.client.close()
    assert f"s3://endpoint-gone/{PREFIX}tmp/" in str(raised.value)


def client_error(code: str, status: int) -> ClientError:
    """An S3 refusal as botocore raises it; the message quotes a key id, as S3's do."""
    message = "The request signature we calculated does not match: AWSAccessKeyId AKIASECRET"
    answer: Any = {
        "Error": {"Code": code, "Message": message, "AWSAccessKeyId": "AKIASECRET"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(answer, "PutObject")


@pytest.mark.parametrize(
    ("error", "kind", "says"),
    [
        (client_error("NoSuchBucket", 404), ConfigError, "CRAWLER_S3_BUCKET"),
        (client_error("AccessDenied", 403), ConfigError, "AWS credentials"),
        (client_error("InvalidAccessKeyId", 403), ConfigError, "AWS credentials"),
        (client_error("SignatureDoesNotMatch", 403), ConfigError, "AWS credentials"),
        (client_error("403", 403), ConfigError, "AWS credentials"),  # a HEAD's, without body
        (client_error("PermanentRedirect", 301), ConfigError, "region"),
        (NoCredentialsError(), ConfigError, "no AWS credentials"),
        (client_error("SlowDown", 503), Transient, "SlowDown (HTTP 503)"),
        (client_error("InternalError", 500), Transient, "InternalError (HTTP 500)"),
        (client_error("NoSuchUpload", 404), Transient, "NoSuchUpload"),
        (EndpointConnectionError(endpoint_url="http://s3"), Transient, "EndpointConnection"),
    ],
)
def test_s3_failures_are_config_errors_or_transient(
    error: Exception, kind: type[Exception], says: str
) -> None:
    mapped = s3_error(error, "store", "attachments", f"{PREFIX}ab/cd/{CONTENT_KEY}")
    assert type(mapped) is kind
    assert str(mapped).startswith(f"cannot store s3://attachments/{PREFIX}ab/cd/{CONTENT_KEY}: ")
    assert says in str(mapped)
    assert "AKIASECRET" not in str(mapped)


def test_s3_a_missing_bucket_is_a_config_error_naming_the_setting(
    s3_server: S3Server, aws_env: None
) -> None:
    store = S3BlobStore(s3_client(s3_server.endpoint_url), "no-such-bucket-here", PREFIX)
    with pytest.raises(ConfigError, match=r"no-such-bucket-here/.*: check CRAWLER_S3_BUCKET"):
        save(store, CONTENT)
    with pytest.raises(ConfigError, match="CRAWLER_S3_BUCKET"):
        store.open(CONTENT_KEY)
    store.client.close()


# -- choosing the store ----------------------------------------------------------------


@dataclass(frozen=True)
class BlobSettings:
    blob_dir: Path
    blob_store: Literal["file", "gridfs", "s3"] = "file"
    s3_bucket: str = ""
    s3_prefix: str = ""
    s3_endpoint_url: str = ""


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


def test_s3_is_chosen_by_setting(tmp_path: Path, s3_server: S3Server, aws_env: None) -> None:
    s3_server.create_bucket("chosen-by-setting")
    settings = BlobSettings(
        blob_dir=tmp_path,
        blob_store="s3",
        s3_bucket="chosen-by-setting",
        s3_prefix="attachments/",
        s3_endpoint_url=s3_server.endpoint_url,
    )
    store = open_blob_store(settings)
    assert isinstance(store, S3BlobStore)
    assert (store.bucket, store.prefix) == ("chosen-by-setting", "attachments/")
    assert read(store, save(store, CONTENT)) == CONTENT
    assert objects(store) == [f"attachments/{CONTENT_KEY[:2]}/{CONTENT_KEY[2:4]}/{CONTENT_KEY}"]
    assert list(tmp_path.iterdir()) == []
    store.client.close()


def test_s3_without_a_bucket_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CRAWLER_BLOB_STORE=s3 needs CRAWLER_S3_BUCKET"):
        open_blob_store(BlobSettings(blob_dir=tmp_path, blob_store="s3"))


def test_the_blob_stores_load_without_boto3() -> None:
    """Only the s3 store loads boto3, when it is opened: a worker on files never pays for it."""
    check = "import crawler.blobs, sys; assert 'boto3' not in sys.modules, 'boto3 loaded'"
    subprocess.run([sys.executable, "-c", check], check=True, timeout=30)


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
