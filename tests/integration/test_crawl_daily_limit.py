"""Gmail's daily download limit: a backfill that would pass it stops under
CRAWLER_DAILY_DOWNLOAD_LIMIT, records `daily_limit` with when it may go on, and resumes then,
storing every attachment once, without Gmail ever locking the account."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from crawler import daily
from standins.fakegmail import FakeGmail
from standins.fakeoauth import FakeTokenEndpoint
from tests.plugins.crawling import World
from tests.plugins.fakes import build_message

pytestmark = pytest.mark.integration

MESSAGES = 12
CRAWLER_LIMIT = 150_000  # about 5 of the 12 batches
GMAIL_LIMIT = 200_000  # Gmail's own, above ours as in production


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def gmail_clock() -> Clock:
    return Clock()


@pytest.fixture
def limited(
    gmail_clock: Clock, redis_server: redis.Redis, redis_prefix: str, tmp_path: Path
) -> Iterator[World]:
    """A world whose fake Gmail runs on a clock of the test's."""
    with FakeGmail(clock=gmail_clock) as gmail, FakeTokenEndpoint() as oauth:
        world = World(gmail, oauth, redis_server, redis_prefix, tmp_path / "blobs")
        world.settings = world.settings.model_copy(
            update={
                "fetch_batch": 1,
                "download_budget": 4096,
                "daily_download_limit": CRAWLER_LIMIT,
            }
        )
        yield world
    assert not gmail.errors


def backfill(world: World) -> set[bytes]:
    account = world.add_account("alice@example.com", "u1")
    account.quota.limit = GMAIL_LIMIT
    files = set()
    for number in range(MESSAGES):
        data = f"attachment {number}\n".encode() * 1500  # 20 KB or so, base64 on the wire
        account.add_message(build_message(f"m{number}", attachments={f"f{number}.txt": data}))
        files.add(data)
    return files


def test_a_backfill_stops_under_the_daily_limit_and_resumes_a_day_later(
    limited: World, gmail_clock: Clock
) -> None:
    world, files = limited, backfill(limited)
    account = world.gmail.account("alice@example.com")

    assert world.iterate().outcomes == {"u1": "throttled"}
    status = world.status("u1")
    assert status["throttle_reason"] == "daily_limit", status.get("last_error")
    assert account.quota.exceeded == 0  # Gmail never locked the account
    assert account.quota.used() <= CRAWLER_LIMIT
    window = status["downloaded"]
    assert list(window) == [str(daily.hour_of(world.now))]
    assert account.quota.used() <= window[str(daily.hour_of(world.now))] <= CRAWLER_LIMIT
    resume = daily.hour_of(world.now) + 3600 + 86400  # a full day after the hour it counted
    assert status["next_crawl_at"] == status["throttle_backoff_timestamp"] == resume
    assert status["consecutive_throttles"] == 0  # our own limit grows no backoff
    first = len(world.stored("u1"))
    assert 0 < first < MESSAGES

    assert world.iterate().outcomes == {}  # not due before then

    passes = 1
    while world.status("u1")["state"] == "throttled":
        assert world.status("u1")["throttle_reason"] == "daily_limit"
        passes += 1
        assert passes <= 5
        step = world.status("u1")["next_crawl_at"] - world.now
        world.now += step
        gmail_clock.now += step
        world.iterate()
        assert account.quota.used() <= CRAWLER_LIMIT

    assert passes >= 3  # 12 batches of about 30 KB, under 150 KB a day
    status = world.status("u1")
    assert status["state"] == "idle"
    assert status["consecutive_throttles"] == 0
    assert account.quota.exceeded == 0
    stored = world.stored("u1")
    assert len(stored) == MESSAGES
    assert {world.blob(doc["sha256"]) for doc in stored.values()} == files
    assert world.db.attachments.count_documents({"user_uuid": "u1"}) == MESSAGES
    assert status["last_uid"] == MESSAGES
    # The window holds only the hours of the last day.
    assert all(int(hour) + 3600 + 86400 > world.now for hour in status["downloaded"])


def test_a_crawler_limit_above_gmails_meets_overquota_and_a_locked_account(
    limited: World,
) -> None:
    """What a crawl without a limit of its own does: Gmail cuts it off, and locks the user out
    of IMAP, their own mail apps included."""
    world = limited
    world.settings = world.settings.model_copy(update={"daily_download_limit": 10**9})
    backfill(world)
    account = world.gmail.account("alice@example.com")

    assert world.iterate().outcomes == {"u1": "throttled"}
    assert world.status("u1")["throttle_reason"] == "over_quota"
    assert account.quota.exceeded == 1 and account.quota.locked()
