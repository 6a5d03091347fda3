"""Reports to Airbrake: scrubbed, once per window, off when unconfigured, only ever to loopback."""

from __future__ import annotations

import base64
import functools
import ipaddress
import json
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from config import Settings
from crawler import airbrake
from crawler.airbrake import Reporter, RetryWithAirbrake
from crawler.errors import AuthRevoked, Transient
from crawler.scrub import FILTERED
from standins import tokens
from standins.airbrake_receiver import AirbrakeReceiver

pytestmark = pytest.mark.integration

EMAIL = "alice@example.com"
USER_UUID = "3f1c2a9e-user-alice"
ACCESS_TOKEN = tokens.issue(EMAIL, 2_000_000_000)
REFRESH_TOKEN = "1//0gAliceRefreshToken-abc_DEF"
XOAUTH2 = f"user={EMAIL}\x01auth=Bearer {ACCESS_TOKEN}\x01\x01"
XOAUTH2_BASE64 = base64.b64encode(XOAUTH2.encode()).decode()
FERNET_TOKEN = Fernet(Fernet.generate_key()).encrypt(REFRESH_TOKEN.encode()).decode()
CLIENT_SECRET = "fake-client-secret-for-airbrake"
IMAP_PASSWORD = "hunter2-imap-password"
WINDOW = 3600.0


# -- the reporter against the local receiver ----------------------------------------------------


class FakeClock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class NetworkAudit:
    """Every outgoing connection and name lookup in this process, from any thread."""

    def __init__(self) -> None:
        self.recording = False
        self.events: list[tuple[str, Any]] = []

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.recording:
            return
        if event == "socket.connect":
            self.events.append((event, args[1]))
        elif event == "socket.getaddrinfo":
            self.events.append((event, args[0]))

    def non_loopback(self) -> list[tuple[str, Any]]:
        return [(event, target) for event, target in self.events if not _loopback(target)]


def _loopback(target: object) -> bool:
    host = target[0] if isinstance(target, tuple) else target
    name = host.decode() if isinstance(host, bytes) else str(host)
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return name == "localhost"


_AUDIT = NetworkAudit()


@functools.cache
def _install_audit() -> None:
    sys.addaudithook(_AUDIT.hook)  # hooks cannot be removed: it records only while a test asks


@pytest.fixture
def network() -> Iterator[NetworkAudit]:
    """The network use of the test; it fails if anything went to a host other than loopback."""
    _install_audit()
    _AUDIT.events.clear()
    _AUDIT.recording = True
    try:
        yield _AUDIT
    finally:
        _AUDIT.recording = False
    assert _AUDIT.non_loopback() == []


@pytest.fixture
def receiver(network: NetworkAudit) -> Iterator[AirbrakeReceiver]:
    """A running receiver; the test fails if it was asked for anything but notices."""
    before = set(threading.enumerate())
    with AirbrakeReceiver(project_id=42) as receiver:
        yield receiver
    assert receiver.unexpected == []
    assert set(threading.enumerate()) - before == set(), "a thread was left running"


@pytest.fixture
def process_reporter() -> Iterator[None]:
    """Reporting set up by the test is off again afterwards."""
    yield
    airbrake.configure(Settings(airbrake_project_id=None, airbrake_project_key=SecretStr("")))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _settings(receiver: AirbrakeReceiver, **overrides: Any) -> Settings:
    fields: dict[str, Any] = {
        "airbrake_project_id": receiver.project_id,
        "airbrake_project_key": receiver.project_key,
        "airbrake_host": receiver.url,
        "airbrake_environment": "test",
        "oauth_client_secret": CLIENT_SECRET,
        **overrides,
    }
    return Settings(**fields)


@pytest.fixture
def reporter(receiver: AirbrakeReceiver, clock: FakeClock) -> Iterator[Reporter]:
    reporter = Reporter.from_settings(_settings(receiver), window=WINDOW, clock=clock)
    yield reporter
    reporter.close()


def _crawl(access_token: str) -> None:
    refresh_token = "1//0gLocalRefreshTokenInSource"
    raise Transient(f"IMAP refused {access_token} ({refresh_token}, {CLIENT_SECRET})")


def _report_crawl_failure(reporter: Reporter, context: dict[str, Any]) -> str | None:
    try:
        _crawl(ACCESS_TOKEN)
    except Transient as error:
        return reporter.report(error, context)
    raise AssertionError("the crawl did not fail")


def test_a_notice_arrives_with_its_context_and_without_secrets(
    receiver: AirbrakeReceiver, reporter: Reporter
) -> None:
    context = {
        "user_uuid": USER_UUID,
        "shard": "0/2",
        "worker": "host:123",
        "component": "worker",
        "password": IMAP_PASSWORD,
        "session": {"xoauth2": XOAUTH2_BASE64, "cipher": FERNET_TOKEN, "raw": XOAUTH2},
        "oauth": {"access_token": ACCESS_TOKEN, "refresh_token": REFRESH_TOKEN},
    }
    notice_id = _report_crawl_failure(reporter, context)

    [notice] = receiver.notices
    assert notice_id is not None
    sent = receiver.requests[0]
    assert (sent.path, sent.authorized, sent.status) == ("/api/v3/projects/42/notices", True, 201)
    [error] = notice["errors"]
    assert error["type"] == "Transient"
    assert error["message"] == f"IMAP refused {FILTERED} ({FILTERED}, {FILTERED})"
    crash_frame = error["backtrace"][0]
    assert crash_frame["function"] == "_crawl"
    # The source around the crash shows the local variable's token, filtered.
    assert any(f'refresh_token = "{FILTERED}"' in line for line in crash_frame["code"].values())
    expected_context = {
        "user_uuid": USER_UUID,
        "shard": "0/2",
        "worker": "host:123",
        "component": "worker",
        "user": {"id": USER_UUID},
        "environment": "test",
        "severity": "error",
        "password": FILTERED,
    }
    assert notice["context"].items() >= expected_context.items()
    assert notice["context"]["notifier"]["name"] == "pybrake"
    body = b"".join(request.body for request in receiver.requests).decode()
    secrets = [
        ACCESS_TOKEN,
        REFRESH_TOKEN,
        "1//0gLocalRefreshTokenInSource",
        XOAUTH2,
        XOAUTH2_BASE64,
        json.dumps(XOAUTH2)[1:-1],
        FERNET_TOKEN,
        CLIENT_SECRET,
        IMAP_PASSWORD,
        receiver.project_key,
        EMAIL,  # it stands only inside the XOAUTH2 strings and the token here
    ]
    assert [secret for secret in secrets if secret in body] == []


def test_the_same_error_of_an_account_is_reported_once_per_window(
    receiver: AirbrakeReceiver, reporter: Reporter, clock: FakeClock
) -> None:
    def fail(uid: int, user_uuid: str = USER_UUID) -> str | None:
        try:
            raise Transient(f"UID {uid} could not be fetched")
        except Transient as error:
            return reporter.report(error, {"user_uuid": user_uuid})

    assert fail(101) is not None
    assert fail(101) is None  # a retry
    assert fail(102) is None  # the same error, another UID
    clock.now += WINDOW - 1
    assert fail(103) is None
    assert fail(103, "another-user") is not None
    try:
        raise ValueError("UID 104 could not be fetched")
    except ValueError as other_type:
        assert reporter.report(other_type, {"user_uuid": USER_UUID}) is not None
    clock.now += 1
    assert fail(105) is not None
    users = [notice["context"].get("user_uuid") for notice in receiver.notices]
    assert users == [USER_UUID, "another-user", USER_UUID, USER_UUID]


def test_the_window_is_configurable(receiver: AirbrakeReceiver, clock: FakeClock) -> None:
    reporter = Reporter.from_settings(_settings(receiver), window=10, clock=clock)
    error = Transient("System Error")
    assert reporter.report(error, {}) is not None
    clock.now += 9.5
    assert reporter.report(error, {}) is None
    clock.now += 0.5
    assert reporter.report(error, {}) is not None
    assert len(receiver.notices) == 2


def test_unconfigured_reporting_is_off(network: NetworkAudit, process_reporter: None) -> None:
    with AirbrakeReceiver() as receiver:
        threads = set(threading.enumerate())
        for unset in ({"airbrake_project_id": None}, {"airbrake_project_key": ""}):
            reporter = airbrake.configure(_settings(receiver, **unset))
            assert not reporter.enabled
            assert airbrake.current() is reporter
            assert airbrake.report(Transient(f"refused {ACCESS_TOKEN}"), {"user_uuid": "u"}) is None
        assert set(threading.enumerate()) == threads
    assert receiver.requests == []
    assert network.events == []  # not even a name lookup


def test_configure_sets_up_the_process_wide_reporter(
    receiver: AirbrakeReceiver, process_reporter: None
) -> None:
    reporter = airbrake.configure(_settings(receiver))

    assert reporter.enabled
    assert airbrake.current() is reporter
    assert airbrake.report(Transient("System Error"), {"user_uuid": USER_UUID}) is not None
    [notice] = receiver.notices
    assert notice["context"]["user"] == {"id": USER_UUID}


def test_a_wrong_key_is_refused_without_raising(
    receiver: AirbrakeReceiver, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(receiver, airbrake_project_key="not-the-project-key")
    reporter = Reporter.from_settings(settings, clock=clock)

    assert reporter.report(Transient("System Error"), {}) is None

    assert [(request.authorized, request.status) for request in receiver.requests] == [(False, 401)]
    assert receiver.notices == []
    assert "did not take the report of Transient" in caplog.text


def test_a_rate_limit_is_kept_without_raising(
    receiver: AirbrakeReceiver, reporter: Reporter
) -> None:
    receiver.rate_limit_next(1, delay=600)

    assert reporter.report(Transient("System Error"), {}) is None
    assert reporter.report(ValueError("another error"), {}) is None  # held back, not sent

    assert [request.status for request in receiver.requests] == [429]
    assert receiver.notices == []


# -- RetryWithAirbrake ----------------------------------------------------------------------------


def test_retry_with_airbrake_retries_then_reports_once(
    receiver: AirbrakeReceiver, clock: FakeClock
) -> None:
    calls: list[str] = []

    @RetryWithAirbrake(
        name="Python-Crawling-Stack",
        version="1.0.0",
        url="https://crawler.example.com",
        environment_name="staging",
        api_key=receiver.project_key,
        project_id=receiver.project_id,
        host=receiver.url,
        clock=clock,
        maximum_retries=3,
        environment="test",
    )
    def fetch(uid: int) -> str:
        calls.append(f"fetch {uid}")
        raise Transient(f"UID {uid}: System Error, token {ACCESS_TOKEN}")

    with pytest.raises(Transient):
        fetch(7)

    assert calls == ["fetch 7"] * 3
    [notice] = receiver.notices
    assert notice["errors"][0]["message"] == f"UID 7: System Error, token {FILTERED}"
    context = notice["context"]
    assert context["notifier"]["name"] == "Python-Crawling-Stack"
    assert (context["version"], context["url"]) == ("1.0.0", "https://crawler.example.com")
    assert context["environment"] == "staging"
    assert context["action"].endswith("fetch")


def test_retry_with_airbrake_reports_nothing_when_a_retry_succeeds(
    receiver: AirbrakeReceiver,
) -> None:
    outcomes: list[Exception | str] = [Transient("System Error"), "stored"]

    @RetryWithAirbrake(
        name="crawler",
        version="1",
        api_key=receiver.project_key,
        project_id=receiver.project_id,
        host=receiver.url,
        maximum_retries=3,
        environment="test",
    )
    def store() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert store() == "stored"
    assert receiver.requests == []


def test_retry_with_airbrake_reports_through_the_configured_reporter(
    receiver: AirbrakeReceiver, process_reporter: None
) -> None:
    @RetryWithAirbrake(name="monitor", version="2", maximum_retries=2, environment="test")
    def check() -> None:
        raise Transient("Redis went away")

    airbrake.configure(_settings(receiver))  # after decorating, as a process starting up does
    with pytest.raises(Transient):
        check()

    [notice] = receiver.notices
    assert notice["context"]["notifier"]["name"] == "monitor"
    assert notice["context"]["environment"] == "test"


def test_retry_with_airbrake_does_not_retry_what_retrying_cannot_fix(
    receiver: AirbrakeReceiver, process_reporter: None
) -> None:
    calls: list[int] = []

    @RetryWithAirbrake(name="crawler", version="1", maximum_retries=3, environment="test")
    def login() -> None:
        calls.append(1)
        raise AuthRevoked("Token has been expired or revoked.")

    airbrake.configure(_settings(receiver))
    with pytest.raises(AuthRevoked):
        login()
    assert calls == [1]
    assert receiver.requests == []  # the caller's to handle, and to report


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"api_key": "key-without-project"}, "api_key and project_id"),
        ({"project_id": 42}, "api_key and project_id"),
        ({"maximum_retry_callback": print}, "takes no other"),
        ({"maximum_retries": 0}, "at least 1"),
        ({"retries": 3}, "unexpected keyword"),
    ],
)
def test_retry_with_airbrake_refuses_bad_arguments_when_decorating(
    arguments: dict[str, Any], problem: str
) -> None:
    with pytest.raises((ValueError, TypeError), match=problem):
        RetryWithAirbrake(name="crawler", version="1", **arguments)
