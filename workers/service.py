"""What the worker and monitor processes share: riding out store outages, reporting crashes.

A pass (or a monitor check) that fails because MongoDB or Redis cannot be reached is tried
again, with growing sleeps, for up to CRAWLER_RETRY_MAX_TIME; each retry is logged. An error
that is left over, and any other error that escapes a pass, is logged with its traceback and
sent to Airbrake with the process's context before the process exits non-zero, so that its
process manager restarts it and the monitor recovers what it held.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import redis
from pymongo.errors import ConnectionFailure
from redis.exceptions import ClusterDownError, TryAgainError

from config import Settings
from crawler import airbrake
from crawler.retry import GroundhogDay, RetryDetails

log = logging.getLogger(__name__)

T = TypeVar("T")

STORE_OUTAGES: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    ClusterDownError,  # a Redis Cluster node is down or restarting (MasterDownError too)
    TryAgainError,  # a cluster slot is moving
    ConnectionFailure,
)
OUTAGE_FIRST_SLEEP = 1.0
OUTAGE_MAX_SLEEP = 30.0


def through_outages(settings: Settings, context: Mapping[str, Any]) -> GroundhogDay:
    """A retry policy for one pass while a store is unreachable, bounded in time."""

    def logged(retry: RetryDetails) -> None:
        log.warning(
            "store unreachable, retrying in %.1fs: %s",
            retry.sleep,
            retry.error,
            extra={**context, "attempt": retry.attempt},
        )

    return GroundhogDay(
        # Time bounds this policy; every sleep is long enough that attempts never run out first.
        maximum_retries=int(settings.retry_max_time / OUTAGE_FIRST_SLEEP) + 2,
        sleep_time=OUTAGE_FIRST_SLEEP,
        max_sleep=OUTAGE_MAX_SLEEP,
        max_time=settings.retry_max_time,
        retry_on=STORE_OUTAGES,
        on_retry=(logged,),
    )


def guarded(step: Callable[[], T], policy: GroundhogDay, context: Mapping[str, Any]) -> T:
    """`step()` under `policy`; an error left over is logged, reported, and raised."""
    try:
        return policy.call(step)
    except Exception as error:
        log.exception("%s stopped by %s", context.get("component"), type(error).__name__)
        airbrake.report(error, context)
        raise
