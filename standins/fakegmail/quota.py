"""Gmail's daily download limit: the bytes an account was sent in the last day, and the lock.

Google documents 2,500 MB a day of IMAP download per Workspace account (consumer accounts have a
lower, unpublished one: support.google.com/a/answer/2751577). Past it Gmail suspends IMAP for
that user for up to a day, their own mail apps included: `* BYE [OVERQUOTA] Account exceeded
command or bandwidth limits.` mid-session, `NO [ALERT] Account exceeded command or bandwidth
limits. (Failure)` at login. Whether Gmail counts a calendar day or a rolling one is not
published: the fake counts what it sent after login in a rolling 24 h of the account's clock,
and an account that goes past its `limit` is locked for a day from then. A test whose processes
run on the system clock shortens that day instead (`window`, the config's `daily_window`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

DAY = 86400.0


class DailyQuota:
    """One account's download count and lock; `limit` None: no limit; `window`: the length of
    the rolling day in seconds. Thread-safe."""

    def __init__(
        self, clock: Callable[[], float], limit: int | None = None, window: float = DAY
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.limit = limit
        self.window = window
        """Seconds a byte counts for, and a lock lasts: a day, unless a test shortens it."""
        self.locked_until: float | None = None
        self.exceeded = 0
        """How many times the account went past its limit (and was locked)."""
        self._sent: dict[int, int] = {}  # second of the clock -> bytes sent in it

    def used(self) -> int:
        """Bytes sent in the last `window` seconds (24 h)."""
        with self._lock:
            return self._used(self._clock())

    def left(self) -> int | None:
        """Bytes that may still be sent now (0 while locked); None without a limit."""
        if self.limit is None:
            return None
        with self._lock:
            now = self._clock()
            if self._locked(now):
                return 0
            return max(self.limit - self._used(now), 0)

    def locked(self) -> bool:
        """Whether the account is locked out of IMAP now."""
        with self._lock:
            return self._locked(self._clock())

    def spend(self, size: int) -> None:
        """`size` bytes went out."""
        with self._lock:
            second = int(self._clock())
            self._sent[second] = self._sent.get(second, 0) + size

    def exceed(self) -> None:
        """The account went past its limit: locked for a day (`window`)."""
        with self._lock:
            self.locked_until = self._clock() + self.window
            self.exceeded += 1

    def _locked(self, now: float) -> bool:
        return self.locked_until is not None and now < self.locked_until

    def _used(self, now: float) -> int:
        start = now - self.window
        for second in [second for second in self._sent if second <= start]:
            del self._sent[second]
        return sum(self._sent.values())
