"""`honcho -f Procfile.dev start`: the whole system on one machine, as a developer runs it.

The stand-ins (embedded Redis, embedded MongoDB, fake Gmail, fake token endpoint), the seed, a
worker and the monitor all come from Procfile.dev, on free ports and a Redis prefix of this
test's own: on Python alone, with the embedded Redis; and on the real Redis that DEV_REDIS_URL
names.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, suppress
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
import redis
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from tests.conftest import REDIS_URL, require
from tests.plugins.fakes import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CORPUS = REPO / "fixtures" / "messages"
PROCESSES = {"redis.1", "mongo.1", "gmail.1", "oauth.1", "seed.1", "worker.1", "monitor.1"}
STARTED = re.compile(r"\| (\S+) started \(pid=(\d+)\)")
RENEWED_TOKEN = "1//dev-carol-renewed"  # granted to carol in deploy/dev/oauth.json
CRAWLED = 60.0  # seconds for the stand-ins to start, the seed to run and three crawls to end
STOPPED = 30.0  # seconds for honcho to stop everything after SIGTERM
POLL = 0.2  # seconds between looks at the embedded MongoDB, which the crawls use too


def free_ports(count: int) -> list[int]:
    """`count` distinct ports that were free a moment ago."""
    with ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]


def corpus_sha256s(filename: str = "*") -> list[str]:
    """The sha256 of every corpus attachment whose name matches the glob (case-insensitive)."""
    return sorted(
        attachment["sha256"]
        for sidecar in CORPUS.glob("*.json")
        for attachment in json.loads(sidecar.read_text("utf-8"))["attachments"]
        if fnmatch((attachment.get("filename") or "").lower(), filename)
    )


class DevSystem:
    """A running `honcho -f Procfile.dev start`, its output, and the database it fills."""

    def __init__(self, prefix: str, tmp: Path, redis_url: str | None) -> None:
        """`redis_url`: the real Redis of DEV_REDIS_URL; None, the embedded one."""
        require((BIN / "honcho").exists(), "honcho (pip install -e '.[dev]')")
        mongo, gmail, oauth, embedded_redis = free_ports(4)
        self.blobs = tmp / "blobs"
        self.log = tmp / "honcho.log"
        hermetic = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("CRAWLER_", "AIRBRAKE_", "DEV_", "HONCHO_"))
        }
        self.env = {
            **hermetic,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "DEV_MONGO_PORT": str(mongo),
            "DEV_GMAIL_PORT": str(gmail),
            "DEV_OAUTH_PORT": str(oauth),
            "DEV_REDIS_PORT": str(embedded_redis),
            "DEV_REDIS_PREFIX": prefix,
            "DEV_BLOB_DIR": str(self.blobs),
        }
        if redis_url is not None:
            self.env["DEV_REDIS_URL"] = redis_url
        self.redis_url = redis_url or f"redis://127.0.0.1:{embedded_redis}/0"
        self.client: MongoClient[Any] = MongoClient(
            f"mongodb://127.0.0.1:{mongo}/crawler_dev", serverSelectionTimeoutMS=500
        )
        self.db: Any = self.client.get_default_database()
        with self.log.open("wb") as output:
            self.honcho = subprocess.Popen(
                [str(BIN / "honcho"), "-f", "Procfile.dev", "start", "--no-colour"],
                cwd=REPO,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def pids(self) -> dict[str, int]:
        """The processes honcho started, by name; each leads a process group of its own."""
        return {name: int(pid) for name, pid in STARTED.findall(self.output())}

    def running(self) -> None:
        """Fail at once, with honcho's output, if honcho has stopped."""
        if self.honcho.poll() is not None:
            pytest.fail(f"honcho exited ({self.honcho.returncode}):\n{self.output()[-5000:]}")

    def sha256s(self, user_uuid: str) -> list[str]:
        found = self.db.attachments.find({"user_uuid": user_uuid})
        return sorted(str(document.get("sha256")) for document in found)

    def state(self, user_uuid: str) -> str | None:
        status = self.db.crawl_status.find_one({"user_uuid": user_uuid}) or {}
        return status.get("state")

    def crawled(self, expected: dict[str, list[str]], states: dict[str, str]) -> bool:
        """Whether every account has exactly the attachments and the state expected."""
        self.running()
        time.sleep(POLL)
        try:
            return all(self.sha256s(user) == sha256s for user, sha256s in expected.items()) and all(
                self.state(user) == state for user, state in states.items()
            )
        except PyMongoError:  # the embedded MongoDB is not listening yet
            return False

    def operator(self, command: str, stdin: str) -> subprocess.CompletedProcess[str]:
        """An operator command with the development system's settings."""
        return subprocess.run(
            ["sh", "-c", f". deploy/dev/env.sh && exec {command}"],
            cwd=REPO,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def stop(self) -> int:
        """SIGTERM to honcho, as a developer's process manager sends it; honcho's exit code."""
        self.honcho.send_signal(signal.SIGTERM)
        return self.honcho.wait(timeout=STOPPED)

    def kill_leftovers(self) -> None:
        """SIGKILL honcho and the process groups it started, if honcho is still running.

        Once honcho has exited, so have they: honcho waits for every process it started.
        """
        if self.honcho.poll() is None:
            for pid in [*self.pids().values(), self.honcho.pid]:
                with suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
            self.honcho.wait()
        self.client.close()


def group_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(params=["embedded Redis", "DEV_REDIS_URL"])
def dev_system(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DevSystem]:
    if request.param == "DEV_REDIS_URL":  # the real Redis: its keys under the test's prefix
        prefix, redis_url = str(request.getfixturevalue("redis_prefix")), REDIS_URL
    else:  # nothing but Python; the embedded Redis goes with honcho
        prefix, redis_url = f"test:{uuid.uuid4().hex}:", None
    system = DevSystem(prefix, tmp_path, redis_url)
    try:
        yield system
    finally:
        system.kill_leftovers()


def test_procfile_dev_runs_the_whole_system_and_stops_on_sigterm(dev_system: DevSystem) -> None:
    every, pdfs = corpus_sha256s(), corpus_sha256s("*.pdf")
    assert pdfs and len(pdfs) < len(every)

    # The seed's rules: alice keeps every attachment, bob PDFs only; carol's grant is revoked.
    eventually(
        lambda: dev_system.crawled(
            {"alice": every, "bob": pdfs, "carol": []},
            {"alice": "idle", "bob": "idle", "carol": "auth_failed"},
        ),
        timeout=CRAWLED,
    )
    assert any(path.is_file() for path in dev_system.blobs.rglob("*"))
    assert set(dev_system.pids()) == PROCESSES
    if "DEV_REDIS_URL" in dev_system.env:
        assert "no embedded Redis: the processes use the Redis that DEV_REDIS_URL names" in (
            dev_system.output()
        )
    else:  # the embedded Redis announced its URL, the one env.sh gave the others
        assert re.search(
            rf"redis\.1 +\| {re.escape(dev_system.redis_url)}$", dev_system.output(), re.M
        )
    prefix = dev_system.env["DEV_REDIS_PREFIX"]
    with redis.Redis.from_url(dev_system.redis_url, socket_timeout=5) as used:
        assert used.zcard(f"{prefix}workers") == 1  # the worker, under our prefix, in that Redis

    # Re-authorizing carol, as README says, brings her back: crawled at once.
    renewed = dev_system.operator(
        "crawler accounts authorize carol --refresh-token-stdin", RENEWED_TOKEN
    )
    assert renewed.returncode == 0, renewed.stderr
    assert "it was auth_failed and is due now" in renewed.stdout
    eventually(lambda: dev_system.crawled({"carol": every}, {"carol": "idle"}), timeout=CRAWLED)

    assert dev_system.stop() == 128 + signal.SIGTERM  # honcho stopped because it was told to
    output = dev_system.output()
    stopped = set(re.findall(r"\| (\S+) stopped \(rc=-?\d+\)", output))
    assert stopped == PROCESSES, output[-5000:]
    assert not [name for name, pid in dev_system.pids().items() if group_alive(pid)]
