"""`python -m bench` (or `make bench`): every benchmark, one results file, charts, the table.

    python -m bench                          # the defaults: about a quarter of an hour, 2 cores
    python -m bench --messages 200 --latency-messages 100 --repeats 1 --accounts ""

Servers: the fake Gmail at 0 ms per command with `--messages` messages, the fake Gmail at 50 ms
with the first `--latency-messages` of them (at 50 ms a design that sends a command per message
needs minutes for thousands: the per-message figures compare), and Dovecot with `--messages`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from bench import report
from bench.backfill import measure as measure_backfill
from bench.charts import write_charts
from bench.mailbox import DEFAULT_SEED, DEFAULT_SHARE, Mail, mailbox
from bench.polling import measure as measure_polling
from bench.runner import CONTENDERS, CRAWLER_PDF, REPO, Contender, Runner
from bench.scheduling import STORES, Schedule
from bench.servers import DovecotServer, FakeGmailServer, Server
from standins.fakegmail import FakeGmail
from tests.plugins.dovecot import DOVECOT_BINARY, Dovecot

SERVERS = ("fake0", "fake50", "dovecot")
LATENCY = 0.05
POLLING_MESSAGES = 2
PACKAGES = ("isync", "dovecot-imapd", "mpack")
T = TypeVar("T")


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--messages", type=int, default=5_000, help="mailbox size (default 5000)")
    add("--latency-messages", type=int, default=300, help="mailbox size at 50 ms (default 300)")
    add("--share", type=float, default=DEFAULT_SHARE, help="share of messages with attachments")
    add("--seed", type=int, default=DEFAULT_SEED, help="the mailbox generator's seed")
    add("--repeats", type=int, default=3, help="runs of each contender on each server")
    add("--servers", default=",".join(SERVERS), help=f"some of {','.join(SERVERS)}")
    names = ",".join(contender.name for contender in CONTENDERS)
    add("--contenders", default=names, help=f"some of: {names}")
    add("--accounts", default="10000,100000", help="scheduling: account counts ('' to skip)")
    add("--sample", type=int, default=50, help="scheduling: due accounts per sampled pass")
    add("--concurrency", default="1,4,16,32", help="polling: concurrencies ('' to skip)")
    add("--backfill", type=int, default=200_000, help="backfill: messages (0 to skip)")
    add("--per-thread", type=int, default=8, help="polling: accounts per unit of concurrency")
    add("--out", type=Path, default=REPO / "bench" / "results", help="where results go")
    add("--work", type=Path, default=REPO / "bench" / "work", help="scratch space")
    add("--render", type=Path, help="write the results file again from its saved .json")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run what the options select; write and print the results."""
    options = parse(argv)
    if options.render:
        saved = json.loads(options.render.read_text())
        results = report.Results.from_json(json.dumps(saved["results"]))
        _publish(results, saved["context"], options.render.parent, options.render.stem)
        return 0
    started = time.monotonic()
    servers = [name for name in options.servers.split(",") if name]
    chosen = [c for c in CONTENDERS if c.name in options.contenders.split(",")]
    mails = _progress(
        "mailbox", lambda: mailbox(options.messages, seed=options.seed, share=options.share)
    )
    results = report.Results()
    with ExitStack() as stack:
        gmail = stack.enter_context(FakeGmail())
        plans = _plans(options, servers, mails, gmail, stack)
        runner = Runner(options.work)
        stack.callback(runner.close)
        for repeat in range(options.repeats):
            print(f"repeat {repeat + 1} of {options.repeats}", flush=True)
            for server, held, new in plans:
                for contender in chosen:
                    runner.run(server, contender, held, new, _label(repeat, server, contender))
        results.runs = runner.runs
        if options.concurrency:
            small = [m for m in mails if m.attachments and len(m.raw) < 300_000]
            concurrencies = [int(value) for value in options.concurrency.split(",")]
            results.polling, results.quiet = _progress(
                "polling",
                lambda: measure_polling(
                    gmail, small[:POLLING_MESSAGES], concurrencies, options.per_thread, LATENCY
                ),
            )
        if options.backfill:
            results.backfill = _progress(
                "backfill", lambda: measure_backfill(gmail, options.backfill)
            )
    if options.accounts:
        sizes = [int(value) for value in options.accounts.split(",")]
        for store in STORES:
            for size in sizes:
                results.schedules.append(_schedule(store, size, options))
    _write(results, options, mails, time.monotonic() - started, argv)
    return 0


def _plans(
    options: argparse.Namespace,
    servers: Sequence[str],
    mails: list[Mail],
    gmail: FakeGmail,
    stack: ExitStack,
) -> list[tuple[Server, list[Mail], list[Mail]]]:
    """Each server with the mail it holds and the 1 % that arrives before the re-crawl."""
    prepared: dict[int, object] = {}
    plans: list[tuple[Server, list[Mail], list[Mail]]] = []
    for name in servers:
        size = options.latency_messages if name == "fake50" else options.messages
        held = mails[:size]
        new = mailbox(max(1, size // 100), start=size, seed=options.seed, share=options.share)
        if name == "dovecot":
            if not os.access(DOVECOT_BINARY, os.X_OK):
                print("Dovecot is not installed: its runs are skipped", flush=True)
                continue
            server: Server = DovecotServer(stack.enter_context(Dovecot()), stack)
        else:
            latency = LATENCY if name == "fake50" else 0.0
            server = FakeGmailServer(gmail, latency, prepared)  # type: ignore[arg-type]
        plans.append((server, held, new))
    return plans


def _label(repeat: int, server: Server, contender: Contender) -> str:
    return re.sub(r"[^a-z0-9]+", "-", f"r{repeat}-{server.name}-{contender.name}".lower())


def _schedule(store: str, accounts: int, options: argparse.Namespace) -> Schedule:
    command = [sys.executable, "-m", "bench.scheduling", store, str(accounts)]
    command += ["--sample", str(options.sample)]

    def run() -> Schedule:
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
        return Schedule(**json.loads(done.stdout))

    return _progress(f"scheduling {store} {accounts:,}", run)


def _progress(what: str, work: Callable[[], T]) -> T:
    print(f"{what} ...", flush=True)
    started = time.monotonic()
    value = work()
    print(f"{what}: {time.monotonic() - started:.1f} s", flush=True)
    return value


def _write(
    results: report.Results,
    options: argparse.Namespace,
    mails: Sequence[Mail],
    seconds: float,
    argv: Sequence[str] | None,
) -> None:
    options.out.mkdir(parents=True, exist_ok=True)
    stem = datetime.now(UTC).strftime("%Y-%m-%d")
    command = " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])])
    context = _context(options, mails, seconds, command)
    saved = {"context": context, "results": json.loads(results.to_json())}
    (options.out / f"{stem}.json").write_text(json.dumps(saved, indent=1) + "\n")
    _publish(results, context, options.out, stem)


def _publish(results: report.Results, context: dict[str, str], out: Path, stem: str) -> None:
    """The results file and its charts, printed too."""
    charts = write_charts(results, out, stem)
    text = report.document(results, context, charts)
    path = out / f"{stem}.md"
    path.write_text(text)
    print(text)
    print(f"wrote {path} and {len(charts)} charts", flush=True)


def _context(
    options: argparse.Namespace, mails: Sequence[Mail], seconds: float, command: str
) -> dict[str, str]:
    attachments = [a for m in mails for a in m.attachments]
    pdf_share = sum(a.size for a in attachments if CRAWLER_PDF.wants(a)) / max(
        sum(a.size for a in attachments), 1
    )
    return {
        "command": command,
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "minutes": f"{seconds / 60:.1f}",
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, "
        f"Python {platform.python_version()}",
        "tools": _versions(),
        "mailbox": (
            f"{len(mails):,} messages ({sum(len(m.raw) for m in mails) / 1e6:,.0f} MB), "
            f"{sum(1 for m in mails if m.attachments):,} with attachments, {len(attachments):,} "
            f"attachments of {sum(a.size for a in attachments) / 1e6:,.0f} MB decoded "
            f"(median {sorted(a.size for a in attachments)[len(attachments) // 2] / 1e3:,.0f} KB, "
            f"largest {max(a.size for a in attachments) / 2**20:.0f} MiB, PDFs {pdf_share:.0%} of "
            f"the bytes); seed {options.seed}"
        ),
        "repeats": str(options.repeats),
        "latency_messages": str(options.latency_messages),
    }


def _versions() -> str:
    query = ["dpkg-query", "-W", "-f", "${Package} ${Version}, ", *PACKAGES]
    try:
        done = subprocess.run(query, capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return "(no dpkg-query)"
    return done.stdout.strip(" ,") or "(not installed)"


if __name__ == "__main__":
    raise SystemExit(main())
