"""Access tokens: refreshed before expiry, once on AUTHENTICATIONFAILED, never on invalid_grant."""

import pytest

from standins.fakegmail import Fault, FaultKind
from tests.plugins.crawling import World
from tests.plugins.fakes import build_message

pytestmark = pytest.mark.integration

EMAIL = "alice@example.com"


@pytest.fixture
def mailbox(world: World) -> World:
    world.add_account(EMAIL, "u1", token_ttl=-10)  # the stored access token has expired
    world.gmail.account(EMAIL).add_message(build_message(attachments={"a.pdf": b"%PDF"}))
    return world


def test_an_expired_token_is_refreshed_stored_encrypted_and_reused(mailbox: World) -> None:
    assert mailbox.iterate().outcomes == {"u1": "idle"}, mailbox.status("u1")["last_error"]

    assert mailbox.oauth.refresh_count("refresh-u1") == 1
    oauth = mailbox.db.accounts.find_one({"user_uuid": "u1"})["oauth"]
    assert oauth["expires_at"] > mailbox.now + 3000
    assert "ya29" not in str(oauth)  # encrypted at rest
    assert mailbox.cipher.decrypt(oauth["access_token"], "access_token").startswith("ya29.")

    mailbox.make_due("u1")
    assert mailbox.iterate().outcomes == {"u1": "idle"}
    assert mailbox.oauth.refresh_count("refresh-u1") == 1  # the cached token served again


def test_a_refused_token_is_refreshed_once_and_the_login_retried(world: World) -> None:
    world.add_account(EMAIL, "u1")  # a token that looks valid, but Gmail refuses it once
    world.gmail.account(EMAIL).faults.add(Fault(FaultKind.INVALID_TOKEN, times=1))

    assert world.iterate().outcomes == {"u1": "idle"}, world.status("u1")["last_error"]

    assert world.oauth.refresh_count("refresh-u1") == 1
    assert world.gmail.ledger.commands["AUTHENTICATE"] == 2
    assert world.gmail.ledger.sessions_opened == 1


def test_a_token_refused_twice_in_three_crawls_is_auth_failed(world: World) -> None:
    world.add_account(EMAIL, "u1")
    world.gmail.account(EMAIL).faults.add(Fault(FaultKind.INVALID_TOKEN))

    # The cached token, then a fresh one, refused: not proof of revocation until it lasts.
    assert world.iterate().outcomes == {"u1": "error"}
    assert world.status("u1")["last_error"]["type"] == "FreshTokenRefused"
    for _ in range(2):
        world.make_due("u1")
        outcomes = world.iterate().outcomes
    assert outcomes == {"u1": "auth_failed"}

    status = world.status("u1")
    assert status["last_error"]["type"] == "AuthFailed"
    assert "AUTHENTICATIONFAILED" in status["last_error"]["message"]
    assert status["next_crawl_at"] is None
    assert world.gmail.ledger.commands["AUTHENTICATE"] == 6  # each crawl: cached, then fresh


def test_a_revoked_grant_is_auth_failed_with_no_retries(mailbox: World) -> None:
    mailbox.oauth.revoke("refresh-u1")

    assert mailbox.iterate().outcomes == {"u1": "auth_failed"}

    status = mailbox.status("u1")
    assert status["auth_revoked"] is True
    assert status["last_error"]["type"] == "AuthRevoked"
    assert mailbox.oauth.refresh_count("refresh-u1") == 1
    assert mailbox.gmail.ledger.sessions_opened == 1  # connected, never authenticated
    assert mailbox.gmail.ledger.commands["AUTHENTICATE"] == 0
    mailbox.now += 10 * 86400
    assert mailbox.iterate().outcomes == {}  # not due again until re-authorized


def test_the_token_endpoint_failing_is_transient(mailbox: World) -> None:
    mailbox.oauth.fail_next(1, status=503)

    assert mailbox.iterate().outcomes == {"u1": "idle"}  # retried within the crawl
    assert mailbox.oauth.refresh_count("refresh-u1") == 2


def test_no_token_appears_in_crawl_status(mailbox: World) -> None:
    mailbox.oauth.revoke("refresh-u1")
    mailbox.iterate()
    assert "ya29" not in str(mailbox.status("u1"))
    assert "refresh-u1" not in str(mailbox.status("u1"))
