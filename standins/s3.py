"""A fake S3 on loopback: moto's S3 server (`moto[server]`), in a process of its own.

A process, not a thread: a test can kill it mid-upload, as an endpoint that goes away, and the
crawler's requests cross a real socket to a real HTTP server. `S3Server` starts it on a free port
(moto announces the one it got), waits until it answers, and always kills it when the block
ends. `client()` is a boto3 client for it with dummy credentials and region, so that nothing ever
reaches AWS. Its buckets live as long as the process: a new server starts empty.

    with S3Server() as s3:
        s3.create_bucket("attachments")
        store = S3BlobStore(s3.client(), "attachments", "blobs/")
"""

from __future__ import annotations

import atexit
import logging
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from types import TracebackType
from typing import IO, TYPE_CHECKING

from standins.serving import stop_requested

if TYPE_CHECKING:
    from botocore.config import Config
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

START_TIMEOUT = 30.0  # seconds for moto's server to start and answer
STOP_TIMEOUT = 5.0  # seconds for it to end on SIGTERM before it is killed
REGION = "us-east-1"
ACCESS_KEY_ID = "testing"  # moto takes any credentials
SECRET_ACCESS_KEY = "testing"  # noqa: S105  # a fake's well-known test value
_ANNOUNCED = re.compile(r"Running on (http://[^\s/]+:[0-9]+)")


class S3Server:
    """moto's S3 server listening on `host:port` while started; port 0 picks a free port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._address = (host, port)
        self._process: subprocess.Popen[str] | None = None
        self._log: threading.Thread | None = None  # reads the process's log to its end
        self._endpoint_url: str | None = None
        self._admin: S3Client | None = None

    @property
    def endpoint_url(self) -> str:
        """`http://host:port`, for boto3's `endpoint_url` and CRAWLER_S3_ENDPOINT_URL."""
        if self._endpoint_url is None:
            raise RuntimeError("the fake S3 is not running")
        return self._endpoint_url

    def start(self) -> None:
        """Start the server process and wait until it answers; RuntimeError if it does not."""
        if self._process is not None:
            raise RuntimeError("the fake S3 is already running")
        host, port = self._address
        self._process = subprocess.Popen(  # noqa: S603  # this Python, moto's module
            [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        atexit.register(self.kill)
        announced: list[str] = []
        ready = threading.Event()
        self._log = threading.Thread(
            target=_drain,
            args=(self._process.stderr, announced, ready),
            name=f"fake-s3-log:{self._process.pid}",
            daemon=True,
        )
        self._log.start()
        try:
            self._endpoint_url = self._wait_until_it_answers(announced, ready)
        except BaseException:
            self.kill()
            raise

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def _wait_until_it_answers(self, announced: list[str], ready: threading.Event) -> str:
        deadline = time.monotonic() + START_TIMEOUT
        while not ready.wait(0.05):
            if not self.running or time.monotonic() > deadline:
                raise RuntimeError(
                    "the fake S3 (python -m moto.server) did not start; is moto[server] installed?"
                )
        url = announced[0]
        while True:
            try:
                with urllib.request.urlopen(f"{url}/", timeout=1):  # noqa: S310  # our own http URL
                    return url
            except urllib.error.HTTPError:  # an answer all the same
                return url
            except OSError:
                if not self.running or time.monotonic() > deadline:
                    raise RuntimeError(f"the fake S3 at {url} does not answer") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """End the server (SIGTERM, then SIGKILL if it lingers) and wait for it."""
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
        self._forget()

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as an endpoint that goes away mid-request."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
        self._forget()

    def _forget(self) -> None:
        if self._process is not None:
            self._process.wait()
            atexit.unregister(self.kill)
        if self._log is not None:
            self._log.join(STOP_TIMEOUT)  # the log ends with the process, and is closed
        if self._admin is not None:
            self._admin.close()
        self._process = self._log = self._endpoint_url = self._admin = None

    def client(self, config: Config | None = None) -> S3Client:
        """A new boto3 S3 client for this server, with dummy credentials (never AWS's)."""
        import boto3  # noqa: PLC0415  # loaded only once a client is wanted

        session = boto3.session.Session(
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            region_name=REGION,
        )
        return session.client("s3", endpoint_url=self.endpoint_url, config=config)

    def create_bucket(self, name: str) -> None:
        """Make the bucket `name`."""
        if self._admin is None:
            self._admin = self.client()
        self._admin.create_bucket(Bucket=name)

    def crawler_env(self, bucket: str) -> dict[str, str]:
        """The environment of a crawler process that stores its blobs in `bucket` here."""
        return {
            "CRAWLER_BLOB_STORE": "s3",
            "CRAWLER_S3_BUCKET": bucket,
            "CRAWLER_S3_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": REGION,
        }

    def __enter__(self) -> S3Server:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.kill()


def _drain(stream: IO[str] | None, announced: list[str], ready: threading.Event) -> None:
    """Read the server's log to its end (a full pipe would stall it): the first line that
    announces its URL sets `ready`; the rest (a line per request) is logged at debug level."""
    if stream is None:
        return
    with stream:
        for line in stream:
            if not ready.is_set() and (match := _ANNOUNCED.search(line)):
                announced.append(match.group(1))
                ready.set()
            logger.debug("moto: %s", line.rstrip())


def serve(host: str, port: int) -> None:
    """Run the fake S3 until SIGTERM or SIGINT; prints its endpoint URL once it answers."""
    with stop_requested() as stopping:
        server = S3Server(host, port)
        server.start()
        try:
            print(server.endpoint_url, flush=True)
            while not stopping.wait(0.5):
                if not server.running:
                    raise RuntimeError("the fake S3 process ended")
        finally:
            server.stop()
