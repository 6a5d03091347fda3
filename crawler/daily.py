"""The rolling 24-hour count of what an account downloaded, against CRAWLER_DAILY_DOWNLOAD_LIMIT.

Gmail suspends IMAP for a user, their own mail apps included, for up to a day once the account
passes its daily download limit (2,500 MB for Workspace; lower, unpublished, for consumer
accounts). The crawler counts the bytes it receives per account in `crawl_status.downloaded`,
hourly buckets `{"<hour start, epoch seconds>": bytes}`, and stops before a batch could pass
its own limit. A bucket counts until a full day has passed since the end of its hour, so the
window read is never shorter than 24 h.
"""

from __future__ import annotations

from collections.abc import Mapping

HOUR = 3600
DAY = 86400


def hour_of(now: float) -> int:
    """The start of the hour bucket `now` falls in."""
    return int(now // HOUR * HOUR)


def _ends(hour: str) -> float:
    """When a bucket stops counting."""
    return int(hour) + HOUR + DAY


def live(downloaded: Mapping[str, int], now: float) -> dict[str, int]:
    """The buckets still in the window at `now`."""
    return {hour: size for hour, size in downloaded.items() if _ends(hour) > now}


def expired(downloaded: Mapping[str, int], now: float) -> list[str]:
    """The buckets out of the window at `now`."""
    return [hour for hour in downloaded if _ends(hour) <= now]


def used(downloaded: Mapping[str, int], now: float) -> int:
    """Bytes downloaded in the window at `now`."""
    return sum(live(downloaded, now).values())


def blocked(downloaded: Mapping[str, int], now: float, need: int, limit: int) -> bool:
    """Whether `need` more bytes could pass `limit` now (an empty window never blocks)."""
    total = used(downloaded, now)
    return total > 0 and total + need > limit


def resume_at(downloaded: Mapping[str, int], now: float, need: int, limit: int) -> float:
    """The first moment from `now` when `need` more bytes stay within `limit`."""
    buckets = sorted(live(downloaded, now).items(), key=lambda item: int(item[0]))
    total = sum(size for _, size in buckets)
    when = now
    for hour, size in buckets:
        if total + need <= limit:
            break
        total -= size
        when = _ends(hour)
    return when
