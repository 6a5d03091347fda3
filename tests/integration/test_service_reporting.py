"""What a running service tells its operators: a log line per crawl, Airbrake reports of the
errors that are not the account's data, and a worker that rides out or reports a store outage."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from typing import Any

import mongomock
import pytest
import redis
from pydantic import SecretStr
from redis.exceptions import ClusterDownError, TryAgainError

from config import Settings
from crawler import airbrake, retry
from crawler.gmail_crawler import GmailCrawler
from standins.airbrake_receiver import AirbrakeReceiver
from tests.plugins.crawling import World
from tests.plugins.fakes import build_message
from workers.worker import Worker

pytestmark = pytest.mark.integration

PDF = b"%PDF-1.4 statement\n" * 100


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.fixture
def receiver() -> Iterator[AirbrakeReceiver]:
    with AirbrakeReceiver(project_id=7) as receiver:
        airbrake.configure(
            Settings(
                airbrake_project_id=receiver.project_id,
                airbrake_project_key=SecretStr(receiver.project_key),
                airbrake_host=receiver.url,
            )
        )
        yield receiver
    airbrake.configure(Settings(airbrake_project_id=None, airbrake_project_key=SecretStr("")))


def test_one_line_per_crawl_and_never_a_token(world: World, log_lines: io.StringIO) -> None:
    account = world.add_account("alice@example.com", "alice", token_ttl=-60)  # refreshed first
    account.add_message(build_message(attachments={"statement.pdf": PDF}))

    assert world.iterate().outcomes == {"alice": "idle"}

    outcome = [r for r in records(log_lines) if r["event"] == "crawl idle"]
    assert len(outcome) == 1
    line = outcome[0]
    assert (line["user_uuid"], line["state"], line["level"]) == ("alice", "idle", "info")
    assert (line["messages"], line["attachments"], line["bytes"]) == (1, 1, len(PDF))
    assert line["commands"] == sum(account.ledger.commands.values())
    assert line["bytes_in"] >= len(PDF) and line["duration"] >= 0
    text = log_lines.getvalue()
    assert "AUTHENTICATE" in text  # IMAP's debug lines are there, with the secrets filtered
    for secret in world.secrets("alice"):
        assert secret not in text


def test_a_crawl_that_breaks_is_reported_once_per_window(
    world: World, receiver: AirbrakeReceiver
) -> None:
    class Broken(GmailCrawler):
        def crawl(self) -> Any:
            raise RuntimeError(f"bug near token {self.tokens and world.secrets('alice')[0]}")

    world.add_account("alice@example.com", "alice")
    world.add_account("bob@example.com", "bob", max_size="not a size")  # bad input: not reported
    crawlers = {"gmail_oauth": Broken}

    assert world.iterate(crawler_map=crawlers).outcomes == {"alice": "error", "bob": "error"}
    world.make_due("alice")
    assert world.iterate(crawler_map=crawlers).outcomes == {"alice": "error"}

    [notice] = receiver.notices
    [error] = notice["errors"]
    assert error["type"] == "RuntimeError"
    assert world.secrets("alice")[0] not in json.dumps(notice)
    context = notice["context"]
    assert (context["user_uuid"], context["component"], context["shard"]) == (
        "alice",
        "worker",
        "0/1",
    )


@pytest.fixture
def no_sleeping() -> Iterator[None]:
    retry.set_testing(True)
    yield
    retry.set_testing(False)


def worker(redis_client: redis.Redis, prefix: str, **settings: Any) -> Worker:
    fields = {"redis_prefix": prefix, "worker_id": "w1", "retry_max_time": 2.0, **settings}
    return Worker(Settings(**fields), mongomock.MongoClient().db, redis_client)


@pytest.mark.parametrize(
    "outage",
    [
        redis.ConnectionError("Connection refused"),
        ClusterDownError("The cluster is down"),  # a cluster node restarting
        TryAgainError("Multiple keys request during rehashing of slot"),
    ],
    ids=type,
)
def test_a_worker_rides_out_a_short_store_outage(
    redis_server: redis.Redis,
    redis_prefix: str,
    log_lines: io.StringIO,
    no_sleeping: None,
    outage: Exception,
) -> None:
    process = worker(redis_server, redis_prefix)
    real_pass, failures = process.run_pass, [outage] * 2

    def flaky_pass() -> Any:
        if failures:
            raise failures.pop()
        return real_pass()

    process.run_pass = flaky_pass  # type: ignore[method-assign]

    assert process.run(once=True) == 0
    retried = [r for r in records(log_lines) if r["event"].startswith("store unreachable")]
    assert [r["attempt"] for r in retried] == [1, 2]
    assert redis_server.zscore(f"{redis_prefix}workers", "w1") is None  # left cleanly


def test_a_worker_whose_store_stays_down_exits_and_reports(
    redis_prefix: str, receiver: AirbrakeReceiver, no_sleeping: None
) -> None:
    unreachable = redis.Redis(port=1, socket_connect_timeout=0.2)
    process = worker(unreachable, redis_prefix)

    assert process.run(once=True) == 1

    [notice] = receiver.notices
    assert notice["errors"][0]["type"] == "ConnectionError"
    assert notice["context"]["component"] == "worker"
    assert notice["context"]["worker"] == "w1"


def test_a_pass_longer_than_the_heartbeat_ttl_keeps_the_worker_alive(
    redis_server: redis.Redis, redis_prefix: str
) -> None:
    process = worker(redis_server, redis_prefix, heartbeat_ttl=1.0)
    real_pass, seen_alive = process.run_pass, []

    def long_pass() -> Any:
        result = real_pass()  # heartbeats at its start
        for _ in range(6):  # then runs for 3 TTLs
            time.sleep(0.5)
            seen_alive.append("w1" in process.membership.live(time.time()))
        return result

    process.run_pass = long_pass  # type: ignore[method-assign]

    assert process.run(once=True) == 0
    assert seen_alive == [True] * 6
