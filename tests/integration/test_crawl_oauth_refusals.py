"""OAuth failures that are not the account's fault never park it.

Google refusing our OAuth client (`invalid_client` ...) is our configuration: the fleet waits,
reports it once, and leaves the accounts as they were. Gmail refusing a token the endpoint had
just issued, once, is not proof of revocation: tried again later, `auth_failed` only when it
keeps happening.
"""

import pytest

from crawler.keys import Keys
from standins.airbrake_receiver import AirbrakeReceiver
from standins.fakegmail import Fault, FaultKind
from standins.hostile_oauth import Refuse
from tests.integration.test_service_reporting import receiver
from tests.plugins.crawling import World
from tests.plugins.fakes import build_message

pytestmark = pytest.mark.integration
__all__ = ["receiver"]  # the fixture


def test_a_refused_oauth_client_makes_the_fleet_wait_and_is_reported_once(
    world: World, receiver: AirbrakeReceiver
) -> None:
    for n in range(3):  # each needs a fresh token
        account = world.add_account(f"user{n}@example.com", f"g{n}", token_ttl=-60)
        account.add_message(build_message(attachments={f"{n}.pdf": b"%PDF-1"}))
    password = world.gmail.add_account("imap@example.com", password="app-password")
    password.add_message(build_message(attachments={"i.pdf": b"%PDF-i"}))
    world.db.accounts.insert_one(
        {
            "user_uuid": "i1",
            "email": "imap@example.com",
            "provider": "imap_password",
            "password": world.cipher.encrypt("app-password"),
            "imap": {"host": "127.0.0.1", "port": world.gmail.port, "tls": False},
        }
    )
    world.db.rules.insert_one({"user_uuid": "i1"})
    world.oauth.misbehave(Refuse(401, "invalid_client"))

    outcomes = world.iterate().outcomes

    assert outcomes == {"g0": "deferred", "g1": "deferred", "g2": "deferred", "i1": "idle"}
    assert world.oauth.request_count == 1  # the first refusal; the others waited
    for user_uuid in ("g0", "g1", "g2"):
        status = world.status(user_uuid)
        assert (status["state"], status["last_error"]) == ("idle", None)  # left as they were
        assert status["next_crawl_at"] == pytest.approx(world.now + 300, abs=2)
    assert len(receiver.notices) == 1
    assert "invalid_client" in receiver.notices[0]["errors"][0]["message"]

    world.oauth.behave()
    world.redis.delete(Keys(world.settings.redis_prefix).oauth_refused)  # the wait is over
    for user_uuid in ("g0", "g1", "g2"):
        world.make_due(user_uuid)
    assert set(world.iterate().outcomes.values()) == {"idle"}
    assert len(receiver.notices) == 1


def test_a_fresh_token_refused_once_is_tried_again_and_auth_failed_only_when_it_lasts(
    world: World, receiver: AirbrakeReceiver
) -> None:
    account = world.add_account("alice@example.com", "u1", token_ttl=-60)  # refreshed first
    account.add_message(build_message(attachments={"a.pdf": b"%PDF-1"}))

    account.faults.add(Fault(FaultKind.INVALID_TOKEN, times=1))
    assert world.iterate().outcomes == {"u1": "error"}  # not proof of revocation: again later
    assert "refused a token just issued (1 of 3" in world.status("u1")["last_error"]["message"]
    world.make_due("u1")
    assert world.iterate().outcomes == {"u1": "idle"}  # it was a passing refusal
    assert world.status("u1")["auth_refusals"] == 0

    account.faults.add(Fault(FaultKind.INVALID_TOKEN, times=3))
    outcomes = []
    for _ in range(3):
        world.make_due("u1")
        world.db.accounts.update_one(  # make the next login use a fresh token again
            {"user_uuid": "u1"}, {"$set": {"oauth.expires_at": world.now - 60}}
        )
        outcomes.append(world.iterate().outcomes["u1"])
    assert outcomes == ["error", "error", "auth_failed"]
    assert receiver.notices == []  # a person re-authorizes; nothing for the developers
