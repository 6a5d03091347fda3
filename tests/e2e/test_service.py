"""The service as operators run it: `crawler worker` and `crawler monitor` processes sharing the
real Redis and the embedded MongoDB stand-in, crawling the fake Gmail."""

import hashlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from cryptography.fernet import Fernet
from pymongo import MongoClient

from crawler.oauth import TokenCipher
from standins import tokens
from standins.embedded_mongo import EmbeddedMongo
from standins.fakegmail import FakeGmail
from tests.plugins.fakes import build_message, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ACCOUNTS = 20
MESSAGES = 3


class Service:
    """Processes of one deployment, and what they share."""

    def __init__(self, mongo: EmbeddedMongo, gmail: FakeGmail, prefix: str, tmp: Path) -> None:
        self.gmail = gmail
        self.db_name = f"e2e_{os.getpid()}_{int(time.time() * 1000)}"
        self.client: MongoClient[Any] = MongoClient(mongo.uri)
        self.db: Any = self.client[self.db_name]
        self.logs = tmp / "logs"
        self.logs.mkdir()
        key = Fernet.generate_key().decode()
        self.cipher = TokenCipher(key)
        self.env = {
            **os.environ,
            "CRAWLER_MONGODB_URL": f"{mongo.uri}/{self.db_name}",
            "CRAWLER_REDIS_PREFIX": prefix,
            "CRAWLER_IMAP_HOST": "127.0.0.1",
            "CRAWLER_IMAP_PORT": str(gmail.port),
            "CRAWLER_IMAP_TLS": "false",
            "CRAWLER_SECRET_KEY": key,
            "CRAWLER_BLOB_DIR": str(tmp / "blobs"),
            "CRAWLER_HEARTBEAT_TTL": "3",
            "CRAWLER_LEASE_TTL": "3",
            "CRAWLER_MONITOR_INTERVAL": "1",
            "CRAWLER_FETCH_BATCH": "1",
            "CRAWLER_RETRY_WAIT": "0.1",
            "CRAWLER_CONCURRENCY": "2",
        }
        self.processes: list[subprocess.Popen[bytes]] = []
        self.expected: set[tuple[str, str]] = set()

    def add_accounts(self, count: int) -> None:
        for n in range(count):
            email, user = f"user{n}@example.com", f"user-{n}"
            account = self.gmail.add_account(email)
            for m in range(MESSAGES):
                data = f"{user} file {m}\n".encode() * 200
                account.add_message(build_message(f"m{m}", attachments={f"f{m}.txt": data}))
                self.expected.add((user, hashlib.sha256(data).hexdigest()))
            account = tokens.gmail_account(self.cipher, user, email, "r", time.time() + 3600)
            self.db.accounts.insert_one(account)
            self.db.rules.insert_one({"user_uuid": user})

    def start(self, *command: str, worker_id: str | None = None) -> subprocess.Popen[bytes]:
        env = {**self.env, **({"CRAWLER_WORKER_ID": worker_id} if worker_id else {})}
        log = self.logs / f"{command[0]}-{len(self.processes)}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-c", "from workers.cli import main; main()", *command],
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        self.processes.append(process)
        return process

    def output(self) -> str:
        return "\n".join(f"== {log.name}\n{log.read_text()[-3000:]}" for log in self.logs.iterdir())

    def stored(self) -> list[tuple[str, str]]:
        return [(d["user_uuid"], d["sha256"]) for d in self.db.attachments.find()]

    def done(self) -> bool:
        return len(self.stored()) == len(self.expected)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            process.wait(timeout=30)


@contextmanager
def running_service(gmail: FakeGmail, prefix: str, tmp_path: Path) -> Iterator[Service]:
    """A deployment on an embedded MongoDB; its processes killed and its client closed after."""
    with EmbeddedMongo() as mongo:
        deployment = Service(mongo, gmail, prefix, tmp_path)
        try:
            yield deployment
        finally:
            for process in deployment.processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
            deployment.client.close()


@pytest.fixture
def service(fake_gmail: FakeGmail, redis_prefix: str, tmp_path: Path) -> Iterator[Service]:
    with running_service(fake_gmail, redis_prefix, tmp_path) as deployment:
        yield deployment


def assert_exactly_once(service: Service) -> None:
    stored = service.stored()
    assert len(stored) == len(set(stored)) == len(service.expected)
    assert set(stored) == service.expected
    statuses = list(service.db.crawl_status.find())
    assert {doc["state"] for doc in statuses} == {"idle"}


def no_overlapping_sessions(gmail: FakeGmail, count: int) -> None:
    for n in range(count):
        sessions = sorted(
            (s.authenticated_at, s.ended_at or time.time())
            for s in gmail.account(f"user{n}@example.com").ledger.sessions
            if s.authenticated_at is not None
        )
        for (_, end), (start, _) in itertools.pairwise(sessions):
            assert start >= end, f"user{n} had two sessions at once"


def test_two_workers_and_a_monitor_store_everything_exactly_once(service: Service) -> None:
    service.add_accounts(ACCOUNTS)
    workers = [service.start("worker", worker_id=f"w{n}") for n in range(2)]
    service.start("monitor")

    eventually(service.done, timeout=60)
    service.stop()

    assert [worker.returncode for worker in workers] == [0, 0]
    assert_exactly_once(service)
    no_overlapping_sessions(service.gmail, ACCOUNTS)


def test_a_killed_worker_is_recovered_by_the_monitor(service: Service) -> None:
    service.add_accounts(ACCOUNTS)
    for n in range(ACCOUNTS):
        service.gmail.account(f"user{n}@example.com").faults.latency = 0.05
    victim = service.start("worker", worker_id="victim")
    eventually(
        lambda: (
            service.db.crawl_status.find_one({"worker": "victim", "state": "crawling"}) is not None
        )
    )
    victim.kill()
    victim.wait()
    service.start("worker", worker_id="survivor")
    service.start("monitor")

    eventually(service.done, timeout=90)
    eventually(lambda: {d["state"] for d in service.db.crawl_status.find()} == {"idle"})
    service.stop()

    assert_exactly_once(service)
    no_overlapping_sessions(service.gmail, ACCOUNTS)


def test_sigterm_stops_a_worker_gracefully(service: Service, redis_server: redis.Redis) -> None:
    service.add_accounts(4)
    for n in range(4):
        service.gmail.account(f"user{n}@example.com").faults.latency = 0.05
    worker = service.start("worker", worker_id="w")
    eventually(lambda: service.db.crawl_status.find_one({"state": "crawling"}) is not None)

    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    prefix = service.env["CRAWLER_REDIS_PREFIX"]
    assert not list(redis_server.scan_iter(match=f"{prefix}lease:*"))
    inflight = list(redis_server.scan_iter(match=f"{prefix}uids:*:inflight"))
    assert all(redis_server.scard(key) == 0 for key in inflight)
    assert redis_server.zscore(f"{prefix}workers", "w") is None
    handed_back = list(service.db.crawl_status.find({"state": {"$ne": "idle"}}))
    assert handed_back == []  # idle, and due at once for whichever worker comes next


def test_a_third_worker_joining_takes_a_share(service: Service) -> None:
    service.add_accounts(ACCOUNTS)
    for n in range(ACCOUNTS):
        service.gmail.account(f"user{n}@example.com").faults.latency = 0.15
    for n in range(2):
        service.start("worker", worker_id=f"w{n}")
    service.start("monitor")
    eventually(lambda: service.db.attachments.count_documents({}) > 0)

    service.start("worker", worker_id="w2")

    eventually(service.done, timeout=90)
    service.stop()
    assert_exactly_once(service)
    no_overlapping_sessions(service.gmail, ACCOUNTS)
    assert service.db.crawl_status.count_documents({"worker": "w2"}) > 0
