"""One deployment under test: the stand-ins, the accounts, and the crawler's processes.

The fake Gmail (behind the run's hostile front, standins/imapfront.py), the fake token endpoint and
the embedded MongoDB run in this process, so that the injector can reach into them; Redis is a
`redis-server` of the run's own, and the blobs go to a directory or to a fake S3 (moto's server,
a process); `crawler worker` and `crawler monitor` are real processes, as a
process manager runs them.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from cryptography.fernet import Fernet
from pymongo import MongoClient

from chaos.mail import Truth, corpus
from chaos.servers import free_port
from crawler.blobs import BlobStore, FileBlobStore, S3BlobStore
from crawler.keys import Keys
from crawler.oauth import TokenCipher
from standins import tokens
from standins.embedded_mongo import EmbeddedMongo
from standins.fakegmail import Account, FakeGmail
from standins.fakeoauth import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, FakeTokenEndpoint
from standins.imapfront import ImapProxy
from standins.s3 import S3Server
from workers.connections import redis_client

DATABASE = "chaos"
BUCKET = "chaos-blobs"  # the blobs' bucket, when they go to S3
REPOSITORY = Path(__file__).resolve().parents[1]

# The crawler's settings for a run: production's proportions, on a scale of seconds, so that
# backoffs end and leases expire within the run. The lease outlives two socket timeouts, as in
# production (120 s and 60 s). Attachments over 64 KiB stream, so that resets and truncated
# literals land inside streamed parts too.
SETTINGS: Mapping[str, str] = {
    "CRAWLER_STREAM_SIZE": "65536",
    "CRAWLER_IMAP_TIMEOUT": "2",
    # A command may take 2 s plus its budget at 1 MiB/s: 6 s for the default 4 MiB.
    "CRAWLER_IMAP_MIN_RATE": "1048576",
    "CRAWLER_LEASE_TTL": "4",
    "CRAWLER_HEARTBEAT_TTL": "3",
    "CRAWLER_MONITOR_INTERVAL": "1",
    "CRAWLER_CRAWL_INTERVAL": "3",
    "CRAWLER_FETCH_BATCH": "2",
    "CRAWLER_CONCURRENCY": "2",
    "CRAWLER_RETRY_ATTEMPTS": "3",
    "CRAWLER_RETRY_WAIT": "0.2",
    "CRAWLER_RETRY_MAX_TIME": "20",
    "CRAWLER_THROTTLE_BACKOFF": "3",
    "CRAWLER_OVERQUOTA_BACKOFF": "5",
    "CRAWLER_CONNECTIONS_BACKOFF": "2",
    "CRAWLER_THROTTLE_BACKOFF_MAX": "10",
    "CRAWLER_ERROR_BACKOFF": "1",
    "CRAWLER_ERROR_BACKOFF_MAX": "5",
    "CRAWLER_OAUTH_REFRESH_MARGIN": "1",
    "CRAWLER_OAUTH_TIMEOUT": "2",
    "CRAWLER_SHUTDOWN_DEADLINE": "10",
    "CRAWLER_STALL_AFTER": "60",
    "CRAWLER_LOG_FORMAT": "json",
    "CRAWLER_DAILY_DOWNLOAD_LIMIT": "50000000",
    "CRAWLER_DOWNLOAD_BUDGET": "4194304",
}
TOKEN_LIFETIME = 20  # seconds an access token from the fake endpoint lives: they expire in a run
GMAIL_LATENCY = 0.01  # seconds before each answer of the fake Gmail: crawls take a moment


@dataclass(frozen=True)
class ChaosAccount:
    """One account of the run."""

    user_uuid: str
    email: str
    fake: Account
    revoked: bool

    @property
    def refresh_token(self) -> str:
        """Its refresh token, as the fake token endpoint knows it."""
        return f"1//chaos-{self.user_uuid}"


@dataclass
class Proc:
    """A crawler process and what became of it."""

    name: str
    role: str
    popen: subprocess.Popen[bytes]
    log: Path
    started: float
    signalled: signal.Signals | None = None
    exit_code: int | None = None

    @property
    def alive(self) -> bool:
        """Still running."""
        return self.popen.poll() is None


@dataclass
class Fleet:
    """The worker and monitor processes, started and stopped as a process manager would."""

    env: dict[str, str]
    logs: Path
    procs: list[Proc] = field(default_factory=list)
    _serial: int = 0

    def start(self, role: str) -> Proc:
        """Start a `crawler worker` (with a new worker id) or `crawler monitor`."""
        self._serial += 1
        name = f"chaos-{role[0]}{self._serial}"
        env = {**self.env, "CRAWLER_WORKER_ID": name} if role == "worker" else self.env
        log = self.logs / f"{name}.log"
        with log.open("wb") as output:
            popen = subprocess.Popen(  # noqa: S603  # this interpreter, the crawler's own CLI
                [sys.executable, "-c", "from workers.cli import main; main()", role],
                env=env,
                cwd=REPOSITORY,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        proc = Proc(name, role, popen, log, time.time())
        self.procs.append(proc)
        return proc

    def workers(self) -> list[Proc]:
        """Workers running and not signalled by us."""
        return [p for p in self.procs if p.role == "worker" and p.alive and p.signalled is None]

    def send(self, proc: Proc, how: signal.Signals) -> None:
        """Signal a process (SIGKILL, SIGTERM)."""
        proc.signalled = how
        proc.popen.send_signal(how)

    def reap(self) -> list[Proc]:
        """Processes that ended since the last call; those we did not signal are returned."""
        unexpected = []
        for proc in self.procs:
            if proc.exit_code is None and not proc.alive:
                proc.exit_code = proc.popen.returncode
                if proc.signalled is None:
                    unexpected.append(proc)
        return unexpected

    def stop(self, timeout: float) -> None:
        """SIGTERM every process, wait for them all, SIGKILL what is left after `timeout`."""
        running = [p for p in self.procs if p.alive]
        for proc in running:
            self.send(proc, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in running:
            try:
                proc.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait()
        self.reap()

    def kill_all(self) -> None:
        """SIGKILL whatever still runs (cleanup after a failure)."""
        for proc in self.procs:
            if proc.alive:
                proc.popen.kill()
                proc.popen.wait()


class Deployment:
    """The stand-ins, the accounts in them, the stores' clients and the process fleet."""

    def __init__(self, workdir: Path, redis_url: str, prefix: str, blob_store: str) -> None:
        self.workdir = workdir
        self.prefix = prefix
        self.keys = Keys(prefix)
        self.truth = Truth()
        self.accounts: list[ChaosAccount] = []
        self.gmail = FakeGmail()
        self.oauth = FakeTokenEndpoint(expires_in=TOKEN_LIFETIME)
        self.mongo = EmbeddedMongo("127.0.0.1", free_port())
        self.redis_url = redis_url
        self.cipher_key = Fernet.generate_key().decode()
        self.cipher = TokenCipher(self.cipher_key)
        self.blob_dir = workdir / "blobs"
        self.s3 = S3Server() if blob_store == "s3" else None
        self._stack = ExitStack()
        self.mongo_client: MongoClient[dict[str, Any]] | None = None
        self.redis: redis.Redis | None = None
        self.fleet: Fleet | None = None
        self.proxy: ImapProxy | None = None

    @contextmanager
    def running(self) -> Iterator[Deployment]:
        """Start the stand-ins; on the way out stop every process and every stand-in."""
        with self._stack:
            self._stack.enter_context(self.gmail)
            self.proxy = ImapProxy(self.gmail.port).start()
            self._stack.callback(self.proxy.stop)
            self._stack.enter_context(self.oauth)
            if self.s3 is not None:
                self._stack.enter_context(self.s3)
                self.s3.create_bucket(BUCKET)
            self._stack.callback(self._stop_mongo)
            self.mongo.start()
            self.mongo_client = MongoClient(
                self.mongo.uri, serverSelectionTimeoutMS=5000, connectTimeoutMS=2000
            )
            self._stack.callback(self.mongo_client.close)
            self.redis = redis_client(self.redis_url)
            self._stack.callback(self.redis.close)
            self.fleet = Fleet(self._env(), self._logs())
            self._stack.callback(self.fleet.kill_all)
            yield self

    @property
    def db(self) -> Any:
        """The crawler's database (through pymongo, as the workers see it)."""
        if self.mongo_client is None:
            raise RuntimeError("the deployment is not running")
        return self.mongo_client[DATABASE]

    def processes(self) -> Fleet:
        """The fleet (once running)."""
        if self.fleet is None:
            raise RuntimeError("the deployment is not running")
        return self.fleet

    def network(self) -> ImapProxy:
        """The relay between the crawlers and the fake Gmail (once running)."""
        if self.proxy is None:
            raise RuntimeError("the deployment is not running")
        return self.proxy

    def blobs(self) -> BlobStore:
        """The workers' blob store, as the runner reads it."""
        if self.s3 is None:
            return FileBlobStore(self.blob_dir)
        return S3BlobStore(self.s3.client(), BUCKET)

    def store_redis(self) -> redis.Redis:
        """The runner's own client of the crawler's Redis."""
        if self.redis is None:
            raise RuntimeError("the deployment is not running")
        return self.redis

    def add_accounts(
        self, count: int, revoked: int, per_account: tuple[int, int], seed: int
    ) -> None:
        """`count` accounts filled from the corpus; the last `revoked` have a revoked grant."""
        rng = random.Random(seed)  # noqa: S311  # a reproducible mix, not secrecy
        messages = corpus()
        for n in range(count):
            user_uuid, email = f"chaos-{n:03d}", f"chaos{n:03d}@example.com"
            account = ChaosAccount(
                user_uuid, email, self.gmail.add_account(email), n >= count - revoked
            )
            account.fake.faults.latency = GMAIL_LATENCY
            for message in rng.sample(messages, rng.randint(*per_account)):
                self.truth.deliver_corpus(
                    account.fake, user_uuid, message, reachable=not account.revoked
                )
            self.oauth.add_grant(account.refresh_token, email)
            # Access tokens run out during the run; a revoked account's is spent already.
            expires_at = time.time() + (-60 if account.revoked else rng.uniform(3, 40))
            if account.revoked:
                self.oauth.revoke(account.refresh_token)
            self._insert(account, expires_at)
            self.accounts.append(account)

    def crawlable(self) -> list[ChaosAccount]:
        """Accounts whose grant stands."""
        return [account for account in self.accounts if not account.revoked]

    def account(self, user_uuid: str) -> ChaosAccount:
        """The account of `user_uuid`."""
        return next(a for a in self.accounts if a.user_uuid == user_uuid)

    def restart_mongo(self, down_for: float) -> None:
        """Stop the embedded MongoDB, stay down, start it on the same port with its data."""
        self.mongo.stop()
        time.sleep(down_for)
        self.mongo.start()

    def _insert(self, account: ChaosAccount, expires_at: float) -> None:
        self.db.accounts.insert_one(
            tokens.gmail_account(
                self.cipher, account.user_uuid, account.email, account.refresh_token, expires_at
            )
        )
        self.db.rules.insert_one({"user_uuid": account.user_uuid})

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            **SETTINGS,
            "CRAWLER_MONGODB_URL": f"{self.mongo.uri}/{DATABASE}",
            "CRAWLER_REDIS_URL": self.redis_url,
            "CRAWLER_REDIS_PREFIX": self.prefix,
            "CRAWLER_IMAP_HOST": "127.0.0.1",
            "CRAWLER_IMAP_PORT": str(self.network().port),
            "CRAWLER_IMAP_TLS": "false",
            "CRAWLER_OAUTH_TOKEN_URL": self.oauth.url,
            "CRAWLER_OAUTH_CLIENT_ID": DEFAULT_CLIENT_ID,
            "CRAWLER_OAUTH_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
            "CRAWLER_SECRET_KEY": self.cipher_key,
            "CRAWLER_BLOB_DIR": str(self.blob_dir),
            **(self.s3.crawler_env(BUCKET) if self.s3 is not None else {}),
        }

    def _logs(self) -> Path:
        logs = self.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        return logs

    def _stop_mongo(self) -> None:
        self.mongo.stop()
