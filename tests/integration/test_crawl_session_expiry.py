"""A Gmail session lives as long as the access token it logged in with: a crawl that outlives it
logs in again with a fresh token and goes on from the queue, in the same pass, with no error."""

import time

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError

from standins import tokens
from standins.fakegmail import FakeGmail
from tests.plugins.crawling import World
from tests.plugins.fakes import build_message

pytestmark = pytest.mark.integration

FILES = {f"{n}.pdf": b"%PDF-" + bytes([n]) * 100 for n in range(8)}


def test_a_crawl_that_outlives_its_token_logs_in_again_and_completes(world: World) -> None:
    account = world.add_account("alice@example.com", "u1", token_ttl=1)
    for name, data in FILES.items():
        account.add_message(build_message(name, attachments={name: data}))
    account.faults.latency = 0.25  # each command after login: the crawl lasts past a token
    world.oauth.expires_in = 3  # the tokens the endpoint issues live 3 s
    # No retry could carry the crawl past its first seconds: only logging in again does.
    world.settings = world.settings.model_copy(update={"fetch_batch": 1, "retry_max_time": 0.5})

    assert world.iterate().outcomes == {"u1": "idle"}, world.status("u1")["last_error"]

    status = world.status("u1")
    assert (status["last_error"], status.get("consecutive_errors", 0)) == (None, 0)
    assert sorted(doc["filename"] for doc in world.stored("u1").values()) == sorted(FILES)
    sessions = account.ledger.sessions
    assert len(sessions) >= 2  # Gmail ended a session with its token; the crawl logged in again
    assert len(world.oauth.requests) >= 2  # a fresh token for each session


def test_the_fake_ends_a_session_when_its_token_expires(fake_gmail: FakeGmail) -> None:
    fake_gmail.add_account("bob@example.com")
    with IMAPClient("127.0.0.1", port=fake_gmail.port, ssl=False, timeout=5) as client:
        client.oauth2_login("bob@example.com", tokens.issue("bob@example.com", time.time() + 1))
        client.noop()
        time.sleep(1.2)
        with pytest.raises(IMAPClientAbortError):
            client.noop()
        assert client._imap.untagged_responses["BYE"] == [b"Session expired, please login again."]
