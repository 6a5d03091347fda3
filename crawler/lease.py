"""The account lease: at most one crawl per account across the fleet.

The lease is one Redis key holding the worker id, set with `SET NX PX` and renewed as the
crawl goes (after each batch, and every third of its TTL while downloading).
Every change to it is a compare-and-act Lua script, so a worker whose lease expired and was taken
over can neither renew nor release the new holder's lease. The queue's scripts are fenced by the
same comparison (`HELD_BY_US`), with the lease as KEYS[1] and the worker id as ARGV[1].
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from redis import Redis

from crawler.errors import CrawlerError
from crawler.keys import Keys

# A Lua condition, true when the lease (KEYS[1]) holds our worker id (ARGV[1]). Every script that
# acts on an account's behalf starts from it, so the check and the act are one atomic step.
HELD_BY_US = "redis.call('GET', KEYS[1]) == ARGV[1]"

# Taking a lease that is already ours extends it: a worker restarted under the same id resumes.
_ACQUIRE = f"""
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if {HELD_BY_US} then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RENEW = f"if {HELD_BY_US} then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
_RELEASE = f"if {HELD_BY_US} then return redis.call('DEL', KEYS[1]) end return 0"


class LeaseLost(CrawlerError):
    """This worker no longer holds the account's lease: another worker (or none) owns the crawl.

    Never retried: the crawl stops at once and leaves the account, its status and its queue to
    the holder (or, when none took it, to the monitor)."""


class Lease:
    """At most one crawl per account across the fleet: `SET key worker NX PX ttl`.

    `worker_id` must be unique per crawl loop: two loops sharing an id would share the lease.
    """

    def __init__(
        self, redis: Redis, keys: Keys, user_uuid: str, worker_id: str, ttl: float
    ) -> None:
        if not worker_id:
            raise ValueError("a lease needs a non-empty worker id")
        if not ttl > 0:
            raise ValueError(f"lease ttl must be positive, got {ttl!r}")
        self.redis = redis
        self.user_uuid = user_uuid
        self.key = keys.lease(user_uuid)
        self.worker_id = worker_id
        # PX takes whole milliseconds; a sub-millisecond ttl still has to expire, not be refused.
        self.ttl_ms = max(1, round(ttl * 1000))
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    def acquire(self) -> bool:
        """Take the lease for `ttl`; True if taken or already ours (then extended)."""
        return bool(self._acquire(keys=[self.key], args=[self.worker_id, self.ttl_ms]))

    def renew(self) -> bool:
        """Extend the lease by `ttl` if it is still ours; False if it was lost."""
        return bool(self._renew(keys=[self.key], args=[self.worker_id, self.ttl_ms]))

    def release(self) -> bool:
        """Give the lease up if it is still ours; False if it had already gone to another."""
        return bool(self._release(keys=[self.key], args=[self.worker_id]))

    def holder(self) -> str | None:
        """The worker id holding the lease now, or None."""
        holder = self.redis.get(self.key)
        if isinstance(holder, bytes):
            return holder.decode()
        return None if holder is None else str(holder)


CUT_AT = 0.75  # of the TTL: a session unrenewed this long is cut, before the lease can lapse
CHECKS_PER_CUT = 10  # how often the watch looks, per CUT_AT of the TTL


class LeaseWatch:
    """Cuts the crawl's IMAP session before its lease can lapse unrenewed.

    A worker stuck elsewhere (a Redis or MongoDB call that waits out its timeouts, a failover)
    renews nothing; once its lease lapses another worker may take the account, and the stuck
    one's session would still be open beside the new one's. The watch, a thread of its own, cuts
    the session when the last renewal is `CUT_AT` of the TTL old: the crawl then fails on its
    next command, and its next renewal finds the lease gone or renews it to no avail."""

    def __init__(self, renewed: Callable[[], float], ttl: float, cut: Callable[[], None]) -> None:
        self.renewed = renewed
        self.limit = ttl * CUT_AT
        self.cut = cut
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="lease-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(self.limit / CHECKS_PER_CUT):
            if time.monotonic() - self.renewed() > self.limit:
                self.cut()
                return
