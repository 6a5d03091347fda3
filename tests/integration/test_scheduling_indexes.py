"""A scheduling pass asks MongoDB only what an index answers, so it costs in proportion to the
due accounts. Every query of a pass is explained (MongoDB's `explain`, which the embedded
stand-in answers from the plan it reads the query with): none may scan its collection. The
`real` backend runs where `MONGODB_URL` points at a MongoDB."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

import pymongo
import pytest
import redis
from pymongo import monitoring

from config import Settings
from crawler.iterate import CrawlIterator
from crawler.store import Store
from crawler.store.status import new_status
from standins.embedded_mongo import EmbeddedMongo
from tests.plugins.mongo import REAL_MONGODB_URL

pytestmark = pytest.mark.integration

ACCOUNTS, DUE = 40, 6
EXPLAINED = {"find", "count", "distinct", "findAndModify"}
STATEMENTS = {"update": "updates", "delete": "deletes"}
EXPLAINED_FIELDS = {"filter", "query", "sort", "key", "update", "remove", "new"}


class Queries(monitoring.CommandListener):
    """Every query pymongo sends while `recording`, as a command `explain` takes (a write
    command once per statement)."""

    def __init__(self) -> None:
        self.recording = False
        self.seen: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if not self.recording:
            return
        command, name = event.command, event.command_name
        if name in EXPLAINED:
            fields = {key: command[key] for key in EXPLAINED_FIELDS if key in command}
            self.seen.append({name: command[name], **fields})
        elif name in STATEMENTS:
            field = STATEMENTS[name]
            self.seen += [{name: command[name], field: [each]} for each in command.get(field, [])]
        elif name == "aggregate":
            raise AssertionError(f"a pass aggregates {command[name]}: {command['pipeline']}")

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


class Idle:
    """A crawler that crawls nothing: the pass is its scheduling alone."""

    def __init__(self, **_: Any) -> None:
        pass

    def crawl(self) -> None:
        pass


@pytest.fixture(params=["embedded", "real"])
def mongo_url(request: pytest.FixtureRequest) -> str:
    if request.param == "embedded":
        embedded: EmbeddedMongo = request.getfixturevalue("embedded_mongo")
        return embedded.uri
    if not REAL_MONGODB_URL:
        pytest.skip("MONGODB_URL is not set: no real MongoDB to run the check against")
    return REAL_MONGODB_URL


def scans(plan: Mapping[str, Any]) -> bool:
    """Whether a winning plan (a tree of stages) reads a whole collection."""
    if plan.get("stage") == "COLLSCAN":
        return True
    children = [plan.get("inputStage"), *plan.get("inputStages", [])]
    return any(scans(child) for child in children if child)


def test_every_query_of_a_pass_is_served_by_an_index(
    mongo_url: str, redis_server: redis.Redis, redis_prefix: str
) -> None:
    queries = Queries()
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        mongo_url, event_listeners=[queries], serverSelectionTimeoutMS=5000
    )
    name = f"test_{uuid.uuid4().hex[:16]}"
    try:
        database = client[name]
        users = [f"user-{n:03d}" for n in range(ACCOUNTS)]
        database.rules.insert_many([{"user_uuid": user} for user in users])
        database.accounts.insert_many([{"user_uuid": user, "email": f"{user}@x"} for user in users])
        now = time.time()
        later = now + 3600
        database.crawl_status.insert_many(
            [new_status(user, now if n < DUE else later) for n, user in enumerate(users)]
        )
        store = Store(database)
        store.ensure_indexes()
        store.discover_accounts(now)  # what the rules above add is known from here on
        store.resync_due(now, Settings().resync_interval)  # the periodic full scan: done
        iterator = CrawlIterator(
            database,
            crawler_map={"gmail_oauth": Idle},
            settings=Settings(redis_prefix=redis_prefix),
            redis_client=redis_server,
        )

        queries.recording = True
        outcomes = iterator.iterate().outcomes
        queries.recording = False

        assert sorted(outcomes) == users[:DUE]
        assert set(outcomes.values()) == {"idle"}
        unserved = [
            command
            for command in queries.seen
            if scans(database.command("explain", command)["queryPlanner"]["winningPlan"])
        ]
        assert queries.seen and not unserved, unserved
    finally:
        client.drop_database(name)
        client.close()
