"""A tiny benchmark end to end: contenders in their own processes, checked, counted, reported."""

import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from bench import report
from bench.backfill import measure as measure_backfill
from bench.mailbox import BIG_AT, Mail, mailbox
from bench.polling import measure as measure_polling
from bench.runner import CRAWLER, CRAWLER_PDF, CRAWLER_S3, FLOOR, MBSYNC, NAIVE, Runner
from bench.servers import DovecotServer, FakeGmailServer
from standins.fakegmail import FakeGmail
from tests.plugins.dovecot import Dovecot

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def mails() -> list[Mail]:
    # Small messages only (the 25 MB one takes seconds), half of them with attachments.
    return mailbox(20, start=BIG_AT + 1, share=0.5)


@pytest.fixture
def runner(tmp_path: Path, redis_server: object) -> Iterator[Runner]:
    runner = Runner(tmp_path / "work", progress=lambda line: None)
    yield runner
    runner.close()


def new_mail(mails: list[Mail]) -> list[Mail]:
    return mailbox(1, start=mails[-1].index + 1, share=0.5)


def test_contenders_on_the_fake_gmail_are_checked_and_counted(
    fake_gmail: FakeGmail, runner: Runner, mails: list[Mail]
) -> None:
    server = FakeGmailServer(fake_gmail, 0.0)
    for number, contender in enumerate((CRAWLER, CRAWLER_S3, CRAWLER_PDF, NAIVE, FLOOR)):
        runner.run(server, contender, mails, new_mail(mails), f"t{number}")
    crawler, on_s3, pdfs, naive, floor = runner.runs

    for run in (crawler, on_s3, pdfs, floor):
        assert run.first and run.first.verdict.ok, run
        assert run.again and run.again.verdict.ok, run
    assert naive.first and naive.first.verdict.missing == 0
    assert naive.first.verdict.extra == naive.first.verdict.inline  # only signature logos
    assert crawler.first and pdfs.first and floor.first
    assert pdfs.first.wire.total < crawler.first.wire.total
    assert floor.first.wire.commands < crawler.first.wire.commands
    # CAPABILITY, LOGIN, EXAMINE, SEARCH, LOGOUT and a FETCH per message with attachments.
    assert naive.first.wire.commands == 5 + sum(1 for mail in mails if mail.attachments)
    assert crawler.again and crawler.again.wire.commands < crawler.first.wire.commands
    assert 0 < crawler.peak_rss_kb < 300 * 1024
    assert on_s3.first and on_s3.first.wire.commands == crawler.first.wire.commands

    results = report.Results(runs=runner.runs)
    assert report.Results.from_json(results.to_json()) == results
    text = report.document(results, CONTEXT, [])
    assert "| fake Gmail 0 ms (20 msgs) | crawler | ok |" in text
    assert "| fake Gmail 0 ms (20 msgs) | crawler on S3 | ok |" in text
    assert "| fake Gmail 0 ms | naive design |" in text  # the ratio table


def test_the_crawler_and_the_floor_on_dovecot_behind_the_counting_proxy(
    dovecot: Dovecot, runner: Runner, mails: list[Mail]
) -> None:
    with ExitStack() as stack:
        server = DovecotServer(dovecot, stack)
        for number, contender in enumerate((CRAWLER, FLOOR)):
            runner.run(server, contender, mails, new_mail(mails), f"bench-{number}")
    crawler, floor = runner.runs

    assert crawler.first and crawler.first.verdict.ok and crawler.again
    assert crawler.again.verdict.ok
    assert floor.first and floor.first.verdict.ok
    # LOGIN, EXAMINE, a FETCH per set of part numbers, LOGOUT: counted by the proxy.
    assert 4 <= floor.first.wire.commands < crawler.first.wire.commands


@pytest.mark.skipif(shutil.which("mbsync") is None, reason="isync is not installed")
def test_mbsync_and_munpack_run_and_their_differences_are_named(
    fake_gmail: FakeGmail, runner: Runner, mails: list[Mail]
) -> None:
    run = runner.run(FakeGmailServer(fake_gmail, 0.0), MBSYNC, mails, new_mail(mails), "mb")

    assert run.first, run.error
    assert run.first.verdict.missing == 0  # text files it rewrites count as altered, not missing


def test_a_quiet_re_crawl_sends_few_commands_and_no_body(
    fake_gmail: FakeGmail, mails: list[Mail], redis_server: object
) -> None:
    rates, quiet = measure_polling(fake_gmail, mails[:2], [1, 2], 2, 0.0)

    assert [(rate.concurrency, rate.accounts) for rate in rates] == [(1, 2), (2, 4)]
    assert quiet.verbs == "ID EXAMINE LOGOUT"  # All Mail's name is known from the first crawl
    assert quiet.before_logout == 2
    assert quiet.body_fetches == 0


def test_a_backfill_crawls_the_whole_account_and_reports_its_rate_and_memory(
    fake_gmail: FakeGmail, redis_server: object
) -> None:
    backfill = measure_backfill(fake_gmail, 4_001)

    assert backfill.messages == 4_001
    assert backfill.attachments == 3  # one in 2,000: UIDs 1, 2001 and 4001 carry a PNG
    assert backfill.per_second > 0
    assert 0 < backfill.peak_rss_mb < 200
    results = report.Results(backfill=backfill)
    assert report.Results.from_json(results.to_json()) == results
    assert "4,001 messages" in report.document(results, CONTEXT, [])


CONTEXT = {
    "command": "python -m bench",
    "when": "today",
    "minutes": "1",
    "machine": "test",
    "tools": "-",
    "mailbox": "20 messages",
    "repeats": "1",
    "latency_messages": "20",
}


@pytest.fixture(autouse=True)
def _no_leftovers(tmp_path: Path) -> Iterator[None]:
    yield
    assert not list((tmp_path / "work").glob("*/out")), "runs clean up their files"
