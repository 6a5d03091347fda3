"""`crawler worker`: pass after pass over this worker's shard, until told to stop.

Each pass heartbeats, works out the shard (static, or this worker's rank among the live ones,
recomputed every pass), and crawls the due accounts `concurrency` at a time. Between passes it
sleeps until the next account is due, or the next heartbeat; a thread heartbeats every third of
CRAWLER_HEARTBEAT_TTL meanwhile, so a long pass does not look like a dead worker. The first
SIGTERM or SIGINT stops claiming work: crawls stop after their current batch, leases are
released, exit 0. A second signal exits at once; the monitor then recovers what was in flight.
At start it refuses to run when CRAWLER_SECRET_KEY opens none of a sample of the stored tokens
(`check_secret_key`).
The loop's progress (a pass starting or ending, a crawl starting, a batch ending) is what its
`/healthz` reports (workers.health).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from types import FrameType

import redis
from pymongo.database import Database

from config import Settings
from crawler import metrics
from crawler.errors import BadAccount, ConfigError
from crawler.iterate import CrawlIterator, PassResult
from crawler.keys import Keys
from crawler.oauth import TokenCipher
from crawler.store import Document, Store
from workers.health import Liveness, worker_limit
from workers.membership import Membership, static_shard
from workers.service import guarded, through_outages

log = logging.getLogger(__name__)

EXIT_FAILED = 1
SECRET_KEY_SAMPLE = 20  # stored ciphertexts that CRAWLER_SECRET_KEY is tried on at start


class Worker:
    """A crawl worker process's loop."""

    def __init__(
        self,
        settings: Settings,
        database: Database[Document],
        redis_client: redis.Redis,
        *,
        clock: Callable[[], float] = time.time,
        liveness: Liveness | None = None,
    ) -> None:
        self.settings = settings
        self.database = database
        self.redis = redis_client
        self.clock = clock
        self.worker_id = settings.worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self.static = static_shard(settings)
        self.membership = Membership(
            redis_client, Keys(settings.redis_prefix), self.worker_id, settings.heartbeat_ttl
        )
        self.stopping = threading.Event()
        # What `/healthz` reads: the loop's progress (workers.health says what counts).
        self.liveness = liveness or Liveness("worker", worker_limit(settings))

    def run(self, *, once: bool = False, burst: bool = False) -> int:
        """Loop until stopped (`once`: one pass; `burst`: until nothing is due). Exit code:
        1 after a pass with a failed crawl (`once` only) or an error that stopped the loop."""
        context = {"component": "worker", "worker": self.worker_id}
        policy = through_outages(self.settings, context)
        policy.call(self.check_secret_key)
        failed = False
        done = threading.Event()
        beating = threading.Thread(target=self._heartbeats, args=(done,), daemon=True)
        beating.start()
        try:
            while not self.stopping.is_set():
                result = guarded(self.run_pass, policy, context)
                failed = failed or bool(result.failed)
                if once or (burst and not result.outcomes):
                    break
                self.stopping.wait(self.pause())
        except Exception:  # logged and reported by `guarded`; the process manager restarts us
            return EXIT_FAILED
        finally:
            self.liveness.end()
            done.set()
            beating.join()
            with suppress(redis.RedisError):
                self.membership.leave()
        return EXIT_FAILED if once and failed else 0

    def check_secret_key(self) -> None:
        """ConfigError when CRAWLER_SECRET_KEY opens none of a sample of the stored ciphertexts:
        with another key than theirs, every account would fail and back off, crawl after crawl.
        A few that do not open among others that do are their accounts' errors, as ever."""
        key = self.settings.secret_key.get_secret_value()
        if not key:
            return  # the crawls that need one say so
        cipher = TokenCipher(key)
        sample = Store(self.database).encrypted_sample(SECRET_KEY_SAMPLE)
        if sample and not any(_opens(cipher, value) for value in sample):
            raise ConfigError(
                f"CRAWLER_SECRET_KEY opens none of the {len(sample)} stored tokens sampled: "
                "it is not the key they were encrypted with"
            )

    def _heartbeats(self, done: threading.Event) -> None:
        """Heartbeat every third of the TTL, so a long pass does not look like a dead worker."""
        while not done.wait(self.settings.heartbeat_ttl / 3):
            with suppress(redis.RedisError):  # an outage is the pass's to ride out
                self._heartbeat(self.clock())

    def _heartbeat(self, now: float) -> None:
        """Heartbeat, and count the live workers for this process's own metrics."""
        self.membership.heartbeat(now)
        metrics.WORKERS.set(len(self.membership.live(now)))

    def _should_stop(self) -> bool:
        """Asked as the pass starts a crawl and as a crawl ends a batch: progress."""
        self.liveness.tick("crawl started or batch ended")
        return self.stopping.is_set()

    def run_pass(self) -> PassResult:
        """One pass over the shard as it is now."""
        self.liveness.tick("pass started")
        now = self.clock()
        self._heartbeat(now)
        client_id, client_count = self.static or self.membership.shard(now)
        iterator = CrawlIterator(
            self.database,
            client_id=client_id,
            client_count=client_count,
            settings=self.settings,
            redis_client=self.redis,
            worker_id=self.worker_id,
            clock=self.clock,
            should_stop=self._should_stop,
        )
        result = iterator.iterate(concurrency=self.settings.concurrency)
        self.liveness.tick("pass ended")
        log.info(
            "pass",
            extra={
                "worker": self.worker_id,
                "shard": f"{client_id}/{client_count}",
                "crawled": len(result.outcomes),
                "failed": len(result.failed),
            },
        )
        return result

    def pause(self) -> float:
        """Seconds until the next account is due, at most a third of the heartbeat TTL."""
        now = self.clock()
        longest = self.settings.heartbeat_ttl / 3
        next_due = Store(self.database).statuses.next_due_at(now)
        return max(0.0, min(longest, next_due - now)) if next_due is not None else longest

    def install_signal_handlers(self) -> None:
        """First SIGTERM/SIGINT: stop gracefully within the deadline; second: exit at once."""

        def handle(signum: int, frame: FrameType | None) -> None:
            if self.stopping.is_set():
                os._exit(128 + signum)
            log.info("worker %s stopping (signal %d)", self.worker_id, signum)
            self.stopping.set()
            deadline = threading.Timer(self.settings.shutdown_deadline, os._exit, (1,))
            deadline.daemon = True
            deadline.start()

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, handle)


def _opens(cipher: TokenCipher, ciphertext: str) -> bool:
    try:
        cipher.decrypt(ciphertext, "sample")
    except BadAccount:
        return False
    return True
