"""A crawl that loses its lease stops at once and leaves the account to the new holder."""

import time
from collections.abc import Collection

import pytest

from crawler.keys import Keys
from crawler.lease import Lease
from crawler.rules import AttachmentFacts, RuleTester
from tests.plugins.crawling import World
from tests.plugins.fakes import build_message

pytestmark = pytest.mark.integration


def test_a_crawl_whose_lease_is_taken_stops_at_once_and_writes_no_state(world: World) -> None:
    account = world.add_account("alice@example.com", "u1")
    for n in range(3):
        account.add_message(build_message(f"m{n}", attachments={f"{n}.pdf": b"%PDF-1"}))
    world.settings = world.settings.model_copy(update={"fetch_batch": 1})
    lease_key = Keys(world.settings.redis_prefix).lease("u1")

    class Usurped(RuleTester):
        """Another worker takes the lease while the first batch is looked at."""

        def may_want(self, part: AttachmentFacts, found_by: Collection[str]) -> bool:
            world.redis.set(lease_key, "other-worker")
            return super().may_want(part, found_by)

    outcomes = world.iterate(rule_tester=Usurped).outcomes

    assert outcomes == {"u1": "lease_lost"}
    status = world.status("u1")
    assert status["state"] == "crawling"  # the holder's to write; nothing was retried
    assert not status.get("last_error")
    metadata = [line for line in account.ledger.lines if b"BODYSTRUCTURE" in line]
    assert len(metadata) == 1  # no batch after the lease was lost
    assert world.redis.get(lease_key) == b"other-worker"  # never released by the loser


def test_a_session_ends_before_its_lease_can_lapse_while_the_worker_is_stuck(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A renewal that hangs past the TTL (a Redis failover, say): the session is cut at 3/4 of
    the TTL, so it is gone before another worker could take the lease and log in."""
    account = world.add_account("alice@example.com", "u1")
    for n in range(3):
        account.add_message(build_message(f"m{n}", attachments={f"{n}.pdf": b"%PDF-1"}))
    world.settings = world.settings.model_copy(update={"fetch_batch": 1, "lease_ttl": 1.0})
    renewals: list[float] = []
    renew = Lease.renew

    def stuck_once(lease: Lease) -> bool:
        if len(renewals) == 1:  # after the first batch
            time.sleep(2.0)
        renewals.append(time.monotonic())
        return renew(lease)

    monkeypatch.setattr(Lease, "renew", stuck_once)

    outcomes = world.iterate().outcomes

    assert outcomes == {"u1": "lease_lost"}  # the lease lapsed while it hung
    [session] = account.ledger.sessions
    assert session.ended_at is not None
    assert session.ended_at < renewals[1] - 1.0  # cut ~0.75 s into the 2 s hang
