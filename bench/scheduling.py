"""What one `iterate()` pass costs in scheduling alone, by how many accounts there are.

The accounts' crawler does nothing, so a pass is only the iterator's own work: find the due
accounts, then per due account take the lease, read the account and its rules, and write its
status twice. Measured in a process of its own per size, against the embedded MongoDB in a
process of its own (pymongo over a socket, as to a MongoDB server):

    python -m bench.scheduling embedded 100000 --due 0.01 --sample 8

The pass runs over the first `sample` due accounts and over twice as many, which gives the cost
per due account and the fixed cost (the due query among them); the full pass is reckoned from
those two. The stand-in answers from its indexes, as MongoDB does, so the cost per due account
should not grow with the accounts there are.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import redis
from pymongo import MongoClient, monitoring

from config import Settings
from crawler.iterate import CrawlIterator
from crawler.store import Store
from crawler.store.status import new_status
from standins.embedded_mongo import embedded_mongo_process

STORES = ("embedded",)
FAR_FUTURE = 10**10


@dataclass(frozen=True)
class Schedule:
    """The cost of one scheduling pass."""

    store: str
    accounts: int
    due: int
    sample: int
    sample_seconds: float  # a pass over `sample` due accounts
    double_seconds: float  # a pass over twice as many
    sample_commands: int = 0  # MongoDB commands of each pass (the embedded stand-in only)
    double_commands: int = 0

    @property
    def commands_per_account(self) -> float:
        """MongoDB commands per due account: the crawler's own share of the work."""
        return (self.double_commands - self.sample_commands) / self.sample

    @property
    def per_account(self) -> float:
        """Seconds per due account."""
        return max(self.double_seconds - self.sample_seconds, 0.0) / self.sample

    @property
    def fixed(self) -> float:
        """Seconds a pass costs whatever is due (the due query among them)."""
        return max(self.sample_seconds - self.sample * self.per_account, 0.0)

    @property
    def pass_seconds(self) -> float:
        """The whole pass over every due account, reckoned from the two samples."""
        return self.fixed + self.due * self.per_account


class Idle:
    """A crawler class that crawls nothing: the pass costs only its scheduling."""

    crawled = 0  # crawls since the pass began; the pass stops between rounds past its sample

    def __init__(self, **_: Any) -> None:
        pass

    def crawl(self) -> None:
        """Nothing to do but count."""
        Idle.crawled += 1


def measure(store: str, accounts: int, due_share: float, sample: int) -> Schedule:
    """Two sampled passes over a database of `accounts`, `due_share` of them due."""
    due = max(1, round(accounts * due_share))
    prefix = f"bench:{uuid.uuid4().hex}:"
    server = redis.Redis()
    try:
        with _database(store) as (database, counter):
            _fill(database, accounts, due)
            passes = []
            for count in (sample, 2 * sample):
                counter.commands = 0
                passes.append((_timed_pass(database, server, prefix, count, due), counter.commands))
    finally:
        keys = list(server.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            server.delete(*keys)
    (first, first_commands), (second, second_commands) = passes
    return Schedule(store, accounts, due, sample, first, second, first_commands, second_commands)


class CommandCounter(monitoring.CommandListener):
    """Counts the commands pymongo sends."""

    commands = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.commands += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@contextmanager
def _database(store: str) -> Iterator[tuple[Any, CommandCounter]]:
    counter = CommandCounter()
    with embedded_mongo_process() as uri:
        client: MongoClient[Any] = MongoClient(uri, event_listeners=[counter])
        try:
            yield client["bench"], counter
        finally:
            client.close()


def _fill(database: Any, accounts: int, due: int) -> None:
    """Rules, accounts and statuses, written before the indexes exist (so each index is built
    once, not grown a document at a time)."""
    users = [_user(number) for number in range(accounts)]
    # String rule ids: discovery reads rules by ObjectId watermark and leaves these to the
    # resync, which is claimed below, so the measured pass does neither full scan.
    database.rules.insert_many([{"_id": f"rule-{user}", "user_uuid": user} for user in users])
    database.accounts.insert_many([{"user_uuid": user, "email": f"{user}@x"} for user in users])
    database.crawl_status.insert_many(
        [new_status(user, 0 if number < due else FAR_FUTURE) for number, user in enumerate(users)]
    )
    store = Store(database)
    store.ensure_indexes()
    store.resync_due(time.time(), Settings().resync_interval)


def _timed_pass(database: Any, server: redis.Redis, prefix: str, count: int, due: int) -> float:
    """One pass that stops after `count` due accounts; they are due again afterwards."""
    Idle.crawled = 0
    iterator = CrawlIterator(
        database,
        crawler_map={"gmail_oauth": Idle},
        settings=Settings(redis_prefix=prefix),
        redis_client=server,
        should_stop=lambda: Idle.crawled >= count,
    )
    started = time.perf_counter()
    iterator.iterate()
    seconds = time.perf_counter() - started
    database.crawl_status.update_many(
        {"user_uuid": {"$lt": _user(due)}}, {"$set": {"next_crawl_at": 0}}
    )
    return seconds


def _user(number: int) -> str:
    return f"user-{number:06d}"


def main() -> None:
    """Measure one store and size; print the Schedule as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("store", choices=STORES)
    parser.add_argument("accounts", type=int)
    parser.add_argument("--due", type=float, default=0.01, help="share of accounts due")
    parser.add_argument("--sample", type=int, default=8, help="due accounts per sampled pass")
    options = parser.parse_args()
    schedule = measure(options.store, options.accounts, options.due, options.sample)
    print(json.dumps(asdict(schedule)))


if __name__ == "__main__":
    main()
