"""The token endpoint as a peer that lies, stalls or floods: a redirect is never followed, an
answer is capped in bytes and a request in total time, and only a refusal about the account
itself parks the account in auth_failed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from config import Settings
from crawler.backoff import error_delay
from crawler.errors import AuthFailed, Transient
from crawler.keys import Keys
from crawler.oauth import MAX_ANSWER, Consent, TokenCipher, TokenSource
from standins.fakeoauth import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, FakeTokenEndpoint
from standins.hostile_oauth import (
    GIB,
    Drip,
    Huge,
    Misbehaviour,
    Page,
    PostRecorder,
    Redirect,
    Refuse,
)
from tests.plugins.crawling import World
from tests.plugins.fakes import build_message

pytestmark = pytest.mark.integration

EMAIL = "alice@example.com"
REFRESH_TOKEN = "1//alice-refresh-token"
KEY = Fernet.generate_key().decode()
RSS_GROWTH_LIMIT_KIB = 20 * 1024
DEADLINE = 1.0  # CRAWLER_OAUTH_TIMEOUT of the drip tests, seconds
MARGIN = 0.5


def settings(url: str, timeout: float = 5.0) -> Settings:
    return Settings(
        oauth_token_url=url,
        oauth_client_id=DEFAULT_CLIENT_ID,
        oauth_client_secret=SecretStr(DEFAULT_CLIENT_SECRET),
        oauth_timeout=timeout,
        secret_key=SecretStr(KEY),
    )


def stored_oauth() -> dict[str, Any]:
    """An account's `oauth` with an expired access token: the next crawl refreshes it."""
    return {
        "refresh_token": TokenCipher(KEY).encrypt(REFRESH_TOKEN),
        "access_token": "",
        "expires_at": 0,
    }


def refresh(url: str, timeout: float = 5.0) -> None:
    TokenSource(settings(url, timeout), TokenCipher(KEY)).refresh(stored_oauth())


def assert_secret_free(text: str) -> None:
    assert REFRESH_TOKEN not in text and DEFAULT_CLIENT_SECRET not in text


@pytest.fixture
def endpoint() -> Iterator[FakeTokenEndpoint]:
    with FakeTokenEndpoint() as endpoint:
        endpoint.add_grant(REFRESH_TOKEN, EMAIL)
        yield endpoint


@pytest.fixture
def recorder() -> Iterator[PostRecorder]:
    with PostRecorder() as recorder:
        yield recorder


# -- redirects ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [307, 308, 302])
def test_a_redirect_is_not_followed_and_nothing_reaches_its_target(
    endpoint: FakeTokenEndpoint, recorder: PostRecorder, status: int
) -> None:
    endpoint.misbehave(Redirect(recorder.url, status))

    with pytest.raises(Transient, match=f"HTTP {status}, a redirect: not followed") as raised:
        refresh(endpoint.url)

    assert recorder.requests == []
    assert endpoint.refresh_count(REFRESH_TOKEN) == 1
    assert_secret_free(str(raised.value))


def test_the_code_exchange_does_not_follow_a_redirect_either(
    endpoint: FakeTokenEndpoint, recorder: PostRecorder
) -> None:
    endpoint.misbehave(Redirect(recorder.url, 307))
    flow = Consent(settings(endpoint.url), "http://127.0.0.1:8765/cb", login_hint=EMAIL)

    with pytest.raises(Transient, match="HTTP 307"):
        flow.refresh_token({"state": flow.state, "code": "a-code"})

    assert recorder.requests == []


# -- floods -------------------------------------------------------------------------------

PEAK_SCRIPT = """
import json, resource, sys
from pydantic import SecretStr
from config import Settings
from crawler.oauth import TokenCipher, TokenSource

key, refresh_token, client_id, client_secret, warm_url, huge_url = sys.argv[1:7]
cipher = TokenCipher(key)
oauth = {"refresh_token": cipher.encrypt(refresh_token), "access_token": "", "expires_at": 0}

def source(url):
    settings = Settings(
        oauth_token_url=url,
        oauth_client_id=client_id,
        oauth_client_secret=SecretStr(client_secret),
        oauth_timeout=60,
        secret_key=SecretStr(key),
    )
    return TokenSource(settings, cipher)

def peak_kib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

source(warm_url).refresh(oauth)  # whatever a refresh loads and allocates, loaded first
before = peak_kib()
try:
    source(huge_url).refresh(oauth)
    outcome = "granted"
except Exception as error:
    outcome = f"{type(error).__name__}: {error}"
print(json.dumps({"before": before, "after": peak_kib(), "outcome": outcome}))
"""


def test_a_huge_answer_is_refused_and_the_peak_rss_hardly_moves(
    endpoint: FakeTokenEndpoint, tmp_path: Path
) -> None:
    """1 GiB of answer, without a Content-Length, made as it is sent: the refresh reads at most
    MAX_ANSWER + 1 bytes of it. Measured in a process of its own, whose peak RSS (VmHWM) the
    test's own allocations cannot hide."""
    with FakeTokenEndpoint() as huge:
        huge.misbehave(Huge(GIB))
        started = time.monotonic()
        arguments = [KEY, REFRESH_TOKEN, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET]
        run = subprocess.run(
            [sys.executable, "-c", PEAK_SCRIPT, *arguments, endpoint.url, huge.url],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=120,
            check=False,
        )
        elapsed = time.monotonic() - started

    assert run.returncode == 0, run.stderr
    measured = json.loads(run.stdout)
    growth = measured["after"] - measured["before"]
    print(f"peak RSS growth during the refresh: {growth} KiB; {elapsed:.2f} s in all")
    assert measured["outcome"] == f"Transient: token endpoint answered more than {MAX_ANSWER} bytes"
    assert growth < RSS_GROWTH_LIMIT_KIB, measured


def test_a_declared_huge_answer_is_refused_before_its_body_is_read(
    endpoint: FakeTokenEndpoint,
) -> None:
    endpoint.misbehave(Huge(GIB, declare_length=True))

    with pytest.raises(Transient, match=f"more than {MAX_ANSWER} bytes"):
        refresh(endpoint.url)


def test_an_answer_of_exactly_the_cap_is_read(endpoint: FakeTokenEndpoint) -> None:
    """The cap refuses what is over it, not a long answer that fits (here padded JSON)."""
    endpoint.misbehave(Drip(every=0, size=MAX_ANSWER))

    token = TokenSource(settings(endpoint.url), TokenCipher(KEY)).refresh(stored_oauth())

    assert token.token == "ya29.drip"


# -- drips --------------------------------------------------------------------------------


@pytest.mark.parametrize("head_too", [False, True], ids=["body", "head-and-body"])
def test_a_drip_ends_at_the_deadline(endpoint: FakeTokenEndpoint, head_too: bool) -> None:
    """A byte every 0.2 s never lets a 1 s socket timeout fire; the total deadline stops it.
    The whole answer would take 20 s (30 s with its head dripped too)."""
    endpoint.misbehave(Drip(every=0.2, size=100, head_too=head_too))
    started = time.monotonic()

    with pytest.raises(Transient, match=r"CRAWLER_OAUTH_TIMEOUT \(1 s\)"):
        refresh(endpoint.url, timeout=DEADLINE)

    elapsed = time.monotonic() - started
    print(f"drip ({'head and body' if head_too else 'body'}) ended after {elapsed:.3f} s")
    assert DEADLINE * 0.9 <= elapsed < DEADLINE + MARGIN


def test_a_slow_but_complete_answer_within_the_deadline_is_used(
    endpoint: FakeTokenEndpoint,
) -> None:
    endpoint.misbehave(Drip(every=0.005, size=100))

    token = TokenSource(settings(endpoint.url, timeout=5), TokenCipher(KEY)).refresh(stored_oauth())

    assert token.token == "ya29.drip"


# -- through a crawl: what the account ends as --------------------------------------------


@pytest.fixture
def mailbox(world: World) -> World:
    world.add_account(EMAIL, "u1", token_ttl=-10)  # the stored access token has expired
    world.gmail.account(EMAIL).add_message(build_message(attachments={"a.pdf": b"%PDF"}))
    return world


def assert_error_with_backoff(world: World, error_type: str) -> dict[str, Any]:
    status = world.status("u1")
    assert status["state"] == "error", status
    assert status["last_error"]["type"] == error_type
    assert status["next_crawl_at"] == world.now + error_delay(1, world.settings)
    assert not status.get("auth_revoked")
    assert_secret_free(str(status))
    assert "refresh-u1" not in str(status)
    return status


@pytest.mark.parametrize(
    ("mode", "says"),
    [
        (Page(200), "answered text/html, not a JSON object"),
        (Page(404), "HTTP 404"),
        (Page(403), "HTTP 403"),
        (Refuse(400, "invalid_request"), "HTTP 400 (invalid_request)"),
        (Refuse(400, "unsupported_grant_type"), "HTTP 400 (unsupported_grant_type)"),
        (Refuse(403, "invalid_grant"), "HTTP 403 (invalid_grant)"),  # not where Google says it
        (Huge(4 * MAX_ANSWER), f"more than {MAX_ANSWER} bytes"),
        (Refuse(200, None), "without a usable access_token"),
    ],
    ids=lambda value: value if isinstance(value, str) else type(value).__name__,
)
def test_an_answer_that_is_not_a_refusal_of_the_account_ends_error_not_auth_failed(
    mailbox: World, mode: Misbehaviour, says: str
) -> None:
    mailbox.oauth.misbehave(mode)

    assert mailbox.iterate().outcomes == {"u1": "error"}

    status = assert_error_with_backoff(mailbox, "Transient")
    assert says in status["last_error"]["message"]
    # retried within the crawl, as a dropped session is
    assert mailbox.oauth.refresh_count("refresh-u1") == mailbox.settings.retry_attempts
    assert mailbox.gmail.ledger.commands["AUTHENTICATE"] == 0


def test_a_redirect_in_a_crawl_ends_error_and_reaches_nobody(
    mailbox: World, recorder: PostRecorder
) -> None:
    mailbox.oauth.misbehave(Redirect(recorder.url, 308))

    assert mailbox.iterate().outcomes == {"u1": "error"}

    status = assert_error_with_backoff(mailbox, "Transient")
    assert "HTTP 308, a redirect: not followed" in status["last_error"]["message"]
    assert recorder.requests == []


def test_a_wrong_client_secret_is_a_config_error_and_the_account_ends_error(
    mailbox: World,
) -> None:
    """The fake answers a wrong secret as Google does: 401 invalid_client."""
    wrong = mailbox.settings.model_copy(update={"oauth_client_secret": SecretStr("not-it")})

    # Our client is at fault, not the account: the fleet waits, the account is left idle.
    assert mailbox.iterate(settings=wrong).outcomes == {"u1": "deferred"}

    status = mailbox.status("u1")
    assert (status["state"], status["last_error"]) == ("idle", None)
    assert status["next_crawl_at"] == pytest.approx(mailbox.now + 300, abs=2)
    message = mailbox.redis.get(Keys(mailbox.settings.redis_prefix).oauth_refused).decode()
    assert "invalid_client" in message
    assert "CRAWLER_OAUTH_CLIENT_ID" in message and "CRAWLER_OAUTH_CLIENT_SECRET" in message
    assert "not-it" not in message
    assert mailbox.oauth.requests[-1].error == "invalid_client"
    assert mailbox.oauth.refresh_count("refresh-u1") == 1  # not retried within the crawl

    mailbox.redis.delete(Keys(mailbox.settings.redis_prefix).oauth_refused)  # the wait is over
    mailbox.now = status["next_crawl_at"]
    assert mailbox.iterate().outcomes == {"u1": "idle"}  # the client fixed: the account comes back


@pytest.mark.parametrize(
    "code", ["invalid_client", "unauthorized_client", "deleted_client", "invalid_scope"]
)
def test_a_misconfigured_client_is_a_config_error_naming_the_client_settings(
    mailbox: World, code: str
) -> None:
    mailbox.oauth.misbehave(Refuse(401 if code == "invalid_client" else 400, code))

    assert mailbox.iterate().outcomes == {"u1": "deferred"}

    message = mailbox.redis.get(Keys(mailbox.settings.redis_prefix).oauth_refused).decode()
    assert code in message and "CRAWLER_OAUTH_CLIENT_ID" in message
    assert mailbox.status("u1")["state"] == "idle"
    assert mailbox.oauth.refresh_count("refresh-u1") == 1


def test_invalid_grant_still_ends_auth_failed_and_revoked(mailbox: World) -> None:
    mailbox.oauth.revoke("refresh-u1")

    assert mailbox.iterate().outcomes == {"u1": "auth_failed"}

    status = mailbox.status("u1")
    assert (status["auth_revoked"], status["last_error"]["type"]) == (True, "AuthRevoked")
    assert status["next_crawl_at"] is None
    assert mailbox.oauth.refresh_count("refresh-u1") == 1


def test_a_workspace_policy_refusal_parks_the_account_without_revoking(mailbox: World) -> None:
    mailbox.oauth.misbehave(Refuse(400, "admin_policy_enforced"))

    assert mailbox.iterate().outcomes == {"u1": "auth_failed"}

    status = mailbox.status("u1")
    assert (status["auth_revoked"], status["last_error"]["type"]) == (False, "AuthFailed")
    assert "admin_policy_enforced" in status["last_error"]["message"]


def test_an_honest_endpoint_after_misbehaving_grants_again(endpoint: FakeTokenEndpoint) -> None:
    endpoint.misbehave(Page(404), times=1)

    with pytest.raises(Transient):
        refresh(endpoint.url)
    TokenSource(settings(endpoint.url), TokenCipher(KEY)).refresh(stored_oauth())

    assert [request.status for request in endpoint.requests] == [404, 200]


def test_a_refused_code_is_auth_failed(endpoint: FakeTokenEndpoint) -> None:
    flow = Consent(settings(endpoint.url), "http://127.0.0.1:8765/cb", login_hint=EMAIL)

    with pytest.raises(AuthFailed, match="refused the code: invalid_grant"):
        flow.refresh_token({"state": flow.state, "code": "never-given"})
