"""A backfill of a big Gmail account: how fast one crawl reads it, and the memory it takes.

The fake Gmail (in the benchmark's process) makes the account's messages as they are read
(standins/fakegmail/generated.py); one in 2,000 carries a PNG. The rule wants images, which
`X-GM-RAW` cannot narrow, so the crawler reads the structure of every message: the CPU per
message at its plainest. The crawl runs in a process of its own (`python -m bench.backfill`),
with the embedded MongoDB in another and the real Redis, and reports its own peak RSS.

    python -m bench.backfill <fake Gmail port> <email> <messages>
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.child import peak_rss_kb
from bench.worker import fake_gmail_worker
from standins.fakegmail import FakeGmail

ATTACHMENT_EVERY = 2_000
USER = "backfill"
RULE = {"content_types": ["image/*"]}


@dataclass(frozen=True)
class Backfill:
    """One crawl of a whole account."""

    messages: int
    attachments: int
    seconds: float
    peak_rss_mb: float

    @property
    def per_second(self) -> float:
        """Messages read per second."""
        return self.messages / self.seconds


def measure(gmail: FakeGmail, messages: int) -> Backfill:
    """Add the account to the fake Gmail and crawl it from a process of its own."""
    email = f"backfill-{uuid.uuid4().hex[:8]}@bench.example"
    gmail.add_generated_account(email, count=messages, attachment_every=ATTACHMENT_EVERY)
    command = [sys.executable, "-m", "bench.backfill", str(gmail.port), email, str(messages)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return Backfill(**json.loads(done.stdout.splitlines()[-1]))


def _crawl(port: int, email: str, messages: int) -> Backfill:
    with (
        tempfile.TemporaryDirectory() as out,
        fake_gmail_worker(port, blob_dir=Path(out)) as worker,
    ):
        worker.db.accounts.insert_one(worker.gmail_account(USER, email))
        worker.db.rules.insert_one({"user_uuid": USER, **RULE})
        started = time.perf_counter()
        outcomes = worker.iterator().iterate().outcomes
        seconds = time.perf_counter() - started
        status = worker.db.crawl_status.find_one({"user_uuid": USER})
        if outcomes != {USER: "idle"} or status["last_uid"] != messages:
            raise RuntimeError(f"the backfill ended {outcomes}: {status.get('last_error')}")
        attachments = worker.db.attachments.count_documents({"user_uuid": USER})
    return Backfill(messages, attachments, seconds, peak_rss_kb(external=False) / 1024)


def main() -> None:
    """The crawling process: print its Backfill as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("port", type=int)
    parser.add_argument("email")
    parser.add_argument("messages", type=int)
    options = parser.parse_args()
    print(json.dumps(asdict(_crawl(options.port, options.email, options.messages))))


if __name__ == "__main__":
    main()
