"""The scenario of the original design, written as it was: a crawler class that is throttled."""

import time
from typing import Any

import mongomock
import pytest

from crawler import CrawlIterator, GmailCrawler, RuleTester
from crawler.errors import Throttled

pytestmark = pytest.mark.integration


class ThrottledCrawler:
    def __init__(self, **kwargs: Any) -> None:
        self.account = kwargs["account"]
        self.rules = kwargs["rules"]
        self.settings = kwargs["settings"]

    def crawl(self) -> None:
        raise Throttled("Gmail says slow down")


def test_a_throttled_crawler_leaves_a_backoff_timestamp(
    redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRAWLER_REDIS_PREFIX", redis_prefix)
    db = mongomock.MongoClient().db
    db.rules.insert_one({"user_uuid": "aaabbb"})
    before = time.time()

    CrawlIterator(
        database=db,
        rule_tester=RuleTester,
        crawler_map={"gmail_oauth": ThrottledCrawler, "g_apps_oauth": ThrottledCrawler},
        client_id=0,
        client_count=1,
    ).iterate()

    status = db.crawl_status.find_one({"user_uuid": "aaabbb"})
    assert status["throttle_backoff_timestamp"] > before
    assert status["state"] == "throttled"
    assert GmailCrawler is not ThrottledCrawler  # the real class is importable from `crawler`


def test_only_this_shards_accounts_are_crawled(
    redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRAWLER_REDIS_PREFIX", redis_prefix)
    db = mongomock.MongoClient().db
    users = [f"user-{n}" for n in range(40)]
    db.rules.insert_many([{"user_uuid": user} for user in users])
    crawled: list[list[str]] = []
    for client_id in range(3):
        seen: list[str] = []

        class Recording(ThrottledCrawler):
            def crawl(self, seen: list[str] = seen) -> None:
                seen.append(self.account["user_uuid"])

        CrawlIterator(db, RuleTester, {"gmail_oauth": Recording}, client_id, 3).iterate()
        crawled.append(seen)

    assert sorted(user for shard in crawled for user in shard) == sorted(users)
    assert all(len(shard) > 5 for shard in crawled)  # a stable hash spreads them
