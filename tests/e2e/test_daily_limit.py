"""The daily download limit with `crawler worker --once` processes: a backfill bigger than
CRAWLER_DAILY_DOWNLOAD_LIMIT stops under it, and later passes resume it until every attachment
is stored once, Gmail never locking the account.

The worker processes run on the system clock, which a test cannot move: a day passing is
played by moving the fake Gmail's clock a day on, and by clearing the account's rolling count
(`StatusBook.download_forgotten`) and making it due, as the day would have."""

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crawler import daily
from crawler.store.status import StatusBook
from standins import tokens
from standins.embedded_mongo import EmbeddedMongo
from standins.fakegmail import FakeGmail
from tests.e2e.test_service import Service
from tests.plugins.fakes import build_message

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

MESSAGES = 12
CRAWLER_LIMIT = 150_000
GMAIL_LIMIT = 200_000
USER, EMAIL = "user-0", "user0@example.com"


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(clock: Clock, redis_prefix: str, tmp_path: Path) -> Iterator[Service]:
    with EmbeddedMongo() as mongo, FakeGmail(clock=clock) as gmail:
        deployment = Service(mongo, gmail, redis_prefix, tmp_path)
        deployment.env["CRAWLER_DAILY_DOWNLOAD_LIMIT"] = str(CRAWLER_LIMIT)
        deployment.env["CRAWLER_DOWNLOAD_BUDGET"] = "4096"
        try:
            yield deployment
        finally:
            for process in deployment.processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
            deployment.client.close()
        assert not gmail.errors


def add_backfill(service: Service) -> None:
    account = service.gmail.add_account(EMAIL)
    account.quota.limit = GMAIL_LIMIT
    for number in range(MESSAGES):
        data = f"{USER} attachment {number}\n".encode() * 1000  # about 24 KB
        account.add_message(build_message(f"m{number}", attachments={f"f{number}.txt": data}))
        service.expected.add((USER, hashlib.sha256(data).hexdigest()))
    # The access token outlives the day the fake Gmail's clock moves on.
    document = tokens.gmail_account(service.cipher, USER, EMAIL, "r", time.time() + 3 * 86400)
    service.db.accounts.insert_one(document)
    service.db.rules.insert_one({"user_uuid": USER})


def one_pass(service: Service) -> dict[str, object]:
    worker = service.start("worker", "--once", "--client-id", "0", "--client-count", "1")
    assert worker.wait(timeout=60) == 0, service.output()
    status: dict[str, object] = service.db.crawl_status.find_one({"user_uuid": USER})
    return status


def test_a_backfill_stops_under_the_daily_limit_and_later_passes_resume_it(
    service: Service, clock: Clock
) -> None:
    add_backfill(service)
    account = service.gmail.account(EMAIL)

    started = time.time()
    status = one_pass(service)
    assert status["state"] == "throttled", service.output()
    assert status["throttle_reason"] == "daily_limit"
    assert status["consecutive_throttles"] == 0
    window = status["downloaded"]
    assert isinstance(window, dict)
    assert account.quota.used() <= sum(window.values()) <= CRAWLER_LIMIT
    next_crawl_at = status["next_crawl_at"]
    assert isinstance(next_crawl_at, float | int)
    earliest = daily.hour_of(started) + 3600 + 86400
    assert earliest <= next_crawl_at <= daily.hour_of(time.time()) + 3600 + 86400
    assert 0 < len(service.stored()) < MESSAGES
    assert account.quota.exceeded == 0

    assert one_pass(service)["state"] == "throttled"  # not due: nothing more is fetched
    assert len(service.stored()) < MESSAGES

    statuses = StatusBook(service.db)
    for _ in range(5):  # a day passes, for Gmail and for the crawler
        clock.offset += 86400 + 3600
        statuses.download_forgotten(USER)
        service.db.crawl_status.update_one(
            {"user_uuid": USER}, {"$set": {"next_crawl_at": time.time()}}
        )
        status = one_pass(service)
        assert account.quota.used() <= CRAWLER_LIMIT
        if status["state"] != "throttled":
            break
        assert status["throttle_reason"] == "daily_limit"

    assert status["state"] == "idle", service.output()
    assert account.quota.exceeded == 0
    stored = service.stored()
    assert len(stored) == len(set(stored)) == MESSAGES
    assert set(stored) == service.expected
