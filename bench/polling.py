"""How many accounts one worker re-crawls per minute when nothing is new, by concurrency.

Each account on the fake Gmail (50 ms per command) holds a couple of messages, crawled once
before the clock starts. A timed pass then re-crawls `per_thread` accounts per thread of
concurrency: connect, authenticate, find All Mail, EXAMINE (whose UIDNEXT says nothing is new),
log out. The worker runs in a process of its own (`python -m bench.polling`), as in production,
with the embedded MongoDB in another; the fake Gmail runs in the benchmark's process. Google
asks pollers to wait 15 minutes between polls, so a worker keeps `rate * 15` accounts on that
cadence.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.child import peak_rss_kb
from bench.mailbox import Mail
from bench.worker import fake_gmail_worker
from crawler.iterate import CrawlIterator
from standins.fakegmail import Account, FakeGmail

CADENCE_MINUTES = 15
DOMAIN = "poll.bench.example"


@dataclass(frozen=True)
class Polling:
    """Re-crawls with no new mail at one concurrency."""

    concurrency: int
    accounts: int
    seconds: float
    cpu_seconds: float = 0.0  # the worker process's CPU time over the pass
    peak_rss_mb: float = 0.0  # the worker process's peak RSS by the end of the pass

    @property
    def cores(self) -> float:
        """How many of the machine's cores the worker kept busy."""
        return self.cpu_seconds / self.seconds

    @property
    def per_minute(self) -> float:
        """Accounts re-crawled per minute."""
        return self.accounts / self.seconds * 60

    @property
    def kept_on_cadence(self) -> float:
        """Accounts one worker keeps on a 15-minute polling cadence."""
        return self.per_minute * CADENCE_MINUTES


@dataclass(frozen=True)
class QuietSession:
    """What the last re-crawl of each account sent after authenticating."""

    commands_after_auth: int  # the most over all accounts
    body_fetches: int  # FETCHes of message bodies or parts, over all accounts
    bytes_per_session: int  # median bytes both ways of one quiet re-crawl, greeting included
    verbs: str = ""  # the commands after authentication of the longest such session

    @property
    def before_logout(self) -> int:
        """Commands after authentication that do the work: LOGOUT aside."""
        return self.commands_after_auth - int(self.verbs.endswith("LOGOUT"))


def measure(
    gmail: FakeGmail,
    mails: Sequence[Mail],
    concurrencies: Sequence[int],
    per_thread: int,
    latency: float,
) -> tuple[list[Polling], QuietSession]:
    """Fill accounts, run the worker process, read what the re-crawls cost on the wire."""
    count = max(concurrencies) * per_thread
    accounts = [
        gmail.add_account(f"poll-{uuid.uuid4().hex[:8]}-{number}@{DOMAIN}")
        for number in range(count)
    ]
    for account in accounts:
        for mail in mails:
            account.add_message(mail.raw, labels=["\\Inbox"], internaldate=mail.date)
        account.faults.latency = latency
    command = [
        sys.executable,
        "-m",
        "bench.polling",
        str(gmail.port),
        ",".join(map(str, concurrencies)),
        str(per_thread),
        *(account.email for account in accounts),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    rates = [Polling(**json.loads(line)) for line in done.stdout.splitlines() if line]
    return rates, _quiet(accounts)


def _quiet(accounts: Sequence[Account]) -> QuietSession:
    sessions, bodies, sizes = [], 0, []
    for account in accounts:
        last = account.ledger.sessions[-1]
        auth = next(i for i, line in enumerate(last.lines) if b" AUTHENTICATE " in line.upper())
        after = last.lines[auth + 1 :]
        sessions.append([line.split()[1].decode().upper() for line in after])
        bodies += sum(b"BODY" in line.upper() for line in after)
        sizes.append(last.bytes_in + last.bytes_out)
    longest = max(sessions, key=len)
    return QuietSession(len(longest), bodies, int(statistics.median(sizes)), " ".join(longest))


def _worker(
    port: int, emails: Sequence[str], concurrencies: Sequence[int], per_thread: int
) -> None:
    """The worker's side: one database of the accounts, a warm-up pass, then timed passes."""
    users = [f"poll-{number}" for number in range(len(emails))]
    with fake_gmail_worker(port) as worker:
        worker.db.accounts.insert_many(
            worker.gmail_account(user, email) for user, email in zip(users, emails, strict=True)
        )
        worker.db.rules.insert_many({"user_uuid": user} for user in users)
        _timed_passes(worker.db, worker.iterator(), users, concurrencies, per_thread)


def _timed_passes(
    db: Any,
    iterator: CrawlIterator,
    users: Sequence[str],
    concurrencies: Sequence[int],
    per_thread: int,
) -> None:
    """The accounts' first crawl, then a timed pass of quiet re-crawls per concurrency."""
    iterator.iterate(concurrency=max(concurrencies))  # the first crawl of each account
    for concurrency in concurrencies:
        due = users[: concurrency * per_thread]
        db.crawl_status.update_many({"user_uuid": {"$in": due}}, {"$set": {"next_crawl_at": 0}})
        started, cpu = time.perf_counter(), time.process_time()
        outcomes = iterator.iterate(concurrency=concurrency).outcomes
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        if set(outcomes.values()) != {"idle"}:
            raise RuntimeError(f"re-crawls did not all end idle: {set(outcomes.values())}")
        peak = peak_rss_kb(external=False) / 1024
        rate = Polling(concurrency, len(due), seconds, cpu, peak)
        print(json.dumps(dataclasses.asdict(rate)))


def main() -> None:
    """The worker process: port, concurrencies, accounts per thread, then the emails."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("port", type=int)
    parser.add_argument("concurrencies")
    parser.add_argument("per_thread", type=int)
    parser.add_argument("emails", nargs="+")
    options = parser.parse_args()
    concurrencies = [int(value) for value in options.concurrencies.split(",")]
    _worker(options.port, options.emails, concurrencies, options.per_thread)


if __name__ == "__main__":
    main()
