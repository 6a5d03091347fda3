"""A slow or lying IMAP server costs one crawl: never the worker, another account, or the lease.

A hostile front (`standins.imapfront`) stands between the crawler and the fake Gmail and
misbehaves for one account's sessions only: it drips every answer a byte at a time (each byte
well within the socket timeout), or floods an answer with what nobody asked for.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from standins.imapfront import ImapProxy
from tests.plugins.crawling import World
from tests.plugins.fakes import build_message

pytestmark = pytest.mark.integration

VICTIM = "victim@example.com"
BYSTANDERS = 30
DRIP = 0.05  # seconds between two bytes of the victim's answers: each far within the timeout
TIMEOUT = 1.0  # the socket timeout
MIN_RATE = 2**20  # bytes/s: a command with the default budget (4 MiB) may take 1 s + 4 s


@pytest.fixture
def front(world: World) -> Iterator[ImapProxy]:
    proxy = ImapProxy(world.gmail.port).start()
    world.settings = world.settings.model_copy(
        update={
            "imap_port": proxy.port,
            "imap_timeout": TIMEOUT,
            "imap_min_rate": MIN_RATE,
            "retry_attempts": 1,
            "lease_ttl": 2.0,
        }
    )
    yield proxy
    proxy.stop()


def add_bystanders(world: World, prefix: str) -> list[str]:
    users = []
    for n in range(BYSTANDERS):
        account = world.add_account(f"{prefix}{n}@example.com", f"{prefix}{n}")
        account.add_message(build_message(attachments={f"{n}.pdf": b"%PDF-" + bytes(n)}))
        users.append(f"{prefix}{n}")
    return users


def timed_pass(world: World) -> tuple[dict[str, str], dict[str, float]]:
    """One pass, 4 crawls at a time; when each account's crawl ended (seconds from the start)."""
    iterator = world.iterator()
    crawl_account, ended, started = iterator.crawl_account, {}, time.monotonic()

    def timed(status: Any) -> str:
        state = crawl_account(status)
        ended[str(status["user_uuid"])] = time.monotonic() - started
        return state

    iterator.crawl_account = timed  # type: ignore[method-assign]
    return iterator.iterate(concurrency=4).outcomes, ended


def test_a_dripping_server_costs_one_crawl_and_holds_up_no_other_account(
    world: World, front: ImapProxy
) -> None:
    alone = add_bystanders(world, "alone")
    _, before = timed_pass(world)
    baseline = max(before[user] for user in alone)

    others = add_bystanders(world, "other")
    world.add_account(VICTIM, "victim").add_message(build_message(attachments={"v.pdf": b"%v"}))
    front.drip(VICTIM, DRIP)
    second = world.iterator(worker_id="second-worker")
    contested: list[str] = []

    def contest() -> None:  # another worker wants the account while its answer drips
        time.sleep(2.5)  # past the lease TTL: only renewals during the answer keep it
        contested.append(second.crawl_account(world.status("victim")))

    rival = threading.Thread(target=contest)
    rival.start()
    outcomes, after = timed_pass(world)
    rival.join()

    assert outcomes["victim"] == "error"
    assert "deadline" in world.status("victim")["last_error"]["message"]
    assert all(outcomes[user] == "idle" for user in others)
    finished = max(after[user] for user in others)
    # The 30 others finish as if the victim were not there: 3 of 4 slots, not after it.
    assert finished < after["victim"]
    assert finished < 2 * baseline + 1.0, (finished, baseline)
    deadline = TIMEOUT + 4 * 2**20 / MIN_RATE  # the default budget at the minimum rate
    assert after["victim"] < 2 * deadline + 2.0  # two attempts (one retry), each to its deadline
    assert contested == ["skipped"]  # the lease was renewed while the answer dripped
    assert world.gmail.account(VICTIM).ledger.peak_connected == 1
    print(
        f"\nbystanders alone {baseline:.2f} s; beside the drip {finished:.2f} s; "
        f"the dripping account ended after {after['victim']:.2f} s"
    )
