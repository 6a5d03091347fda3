"""How long an account waits after Gmail throttles it, or after a crawl fails.

Exponential per consecutive occurrence, capped, with jitter taken off the top so that accounts
throttled together do not all come back at the same second.
"""

from __future__ import annotations

import random

from config import Settings
from crawler.errors import OverQuota, Throttled, TooManyConnections

_RANDOM = random.Random()  # noqa: S311  # jitter needs spread, not secrecy


def _exponential(first: float, cap: float, count: int, jitter: float, rng: random.Random) -> float:
    delay = min(cap, first * 2.0 ** max(count - 1, 0))
    return delay * (1 - jitter * rng.random())


def throttle_delay(
    error: Throttled, consecutive: int, settings: Settings, rng: random.Random = _RANDOM
) -> float:
    """Seconds to wait after the `consecutive`-th throttle in a row (1 for the first)."""
    if isinstance(error, OverQuota):
        first = settings.overquota_backoff
    elif isinstance(error, TooManyConnections):
        first = settings.connections_backoff
    else:
        first = settings.throttle_backoff
    return _exponential(
        first, settings.throttle_backoff_max, consecutive, settings.backoff_jitter, rng
    )


def error_delay(consecutive: int, settings: Settings, rng: random.Random = _RANDOM) -> float:
    """Seconds to wait before retrying an account whose crawl failed `consecutive` times."""
    return _exponential(
        settings.error_backoff,
        settings.error_backoff_max,
        consecutive,
        settings.backoff_jitter,
        rng,
    )
