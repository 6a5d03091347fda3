import random

import pytest

from config import Settings
from crawler.backoff import error_delay, throttle_delay
from crawler.errors import OverQuota, Throttled, TooManyConnections

pytestmark = pytest.mark.unit

NO_JITTER = Settings(backoff_jitter=0)


@pytest.mark.parametrize(
    ("error", "consecutive", "expected"),
    [
        (Throttled(), 1, 300),
        (Throttled(), 2, 600),
        (Throttled(), 3, 1200),
        (Throttled(), 9, 76800),
        (Throttled(), 10, 86400),
        (Throttled(), 500, 86400),
        (OverQuota(), 1, 3600),
        (OverQuota(), 2, 7200),
        (OverQuota(), 6, 86400),
        (TooManyConnections(), 1, 60),
        (TooManyConnections(), 3, 240),
    ],
)
def test_throttle_delay_doubles_to_the_cap(
    error: Throttled, consecutive: int, expected: float
) -> None:
    assert throttle_delay(error, consecutive, NO_JITTER) == expected


def test_jitter_takes_at_most_its_share_off() -> None:
    settings = Settings(backoff_jitter=0.2)
    rng = random.Random(7)
    delays = [throttle_delay(Throttled(), 1, settings, rng) for _ in range(500)]
    assert all(240 <= delay <= 300 for delay in delays)
    assert max(delays) - min(delays) > 40  # spread out, not one value


def test_error_delay() -> None:
    assert [error_delay(n, NO_JITTER) for n in (1, 2, 7, 8)] == [300, 600, 19200, 21600]
