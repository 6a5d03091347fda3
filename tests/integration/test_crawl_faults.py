"""Gmail's failures, injected by the fake, and what each leaves in crawl_status and the stores."""

import hashlib

import pytest

from standins.fakegmail import Fault, FaultKind
from tests.plugins.crawling import World
from tests.plugins.fakes import build_message

pytestmark = pytest.mark.integration

EMAIL = "alice@example.com"
# Big enough that a batch's download is several KB, so faults can land inside a literal.
ATTACHMENTS = [{f"scan-{n}.bin": bytes([n]) * 3000 + b"end"} for n in range(6)]
EXPECTED = {
    (name, hashlib.sha256(data).hexdigest())
    for named in ATTACHMENTS
    for name, data in named.items()
}


@pytest.fixture
def mailbox(world: World) -> World:
    world.add_account(EMAIL, "u1")
    for n, named in enumerate(ATTACHMENTS):
        world.gmail.account(EMAIL).add_message(build_message(f"Scan {n}", attachments=named))
    return world


def saved(world: World) -> set[tuple[str, str]]:
    return {(doc["filename"], doc["sha256"]) for doc in world.stored("u1").values()}


def resume_after_backoff(world: World) -> None:
    world.now = world.status("u1")["next_crawl_at"] + 1
    assert world.iterate().outcomes == {"u1": "idle"}, world.status("u1")["last_error"]


def test_overquota_in_the_middle_of_a_literal(mailbox: World) -> None:
    account = mailbox.gmail.account(EMAIL)
    account.faults.add(
        Fault(FaultKind.OVERQUOTA, commands={"UID FETCH"}, after_bytes=9000, times=1)
    )

    assert mailbox.iterate().outcomes == {"u1": "throttled"}
    status = mailbox.status("u1")
    assert status["throttle_reason"] == "over_quota"
    assert status["throttle_backoff_timestamp"] == mailbox.now + 3600
    assert status["last_error"]["type"] == "OverQuota"
    assert "[OVERQUOTA]" in status["last_error"]["message"]
    assert saved(mailbox) < EXPECTED  # what was stored is right; the rest waits in the queue

    resume_after_backoff(mailbox)
    assert saved(mailbox) == EXPECTED
    assert len(mailbox.stored("u1")) == len(EXPECTED)


def test_too_many_connections(mailbox: World) -> None:
    mailbox.gmail.account(EMAIL).faults.add(Fault(FaultKind.TOO_MANY_CONNECTIONS, times=1))

    assert mailbox.iterate().outcomes == {"u1": "throttled"}
    status = mailbox.status("u1")
    assert status["throttle_reason"] == "too_many_connections"
    assert status["throttle_backoff_timestamp"] == mailbox.now + 60
    resume_after_backoff(mailbox)
    assert saved(mailbox) == EXPECTED


def test_the_connection_cap_is_never_exceeded(mailbox: World) -> None:
    account = mailbox.gmail.account(EMAIL)
    mailbox.iterate()
    assert mailbox.gmail.ledger.peak_connected == 1
    assert account.ledger.peak_connected == 1


@pytest.mark.parametrize(
    "fault",
    [
        Fault(FaultKind.BYE_SYSTEM_ERROR, commands={"UID FETCH"}, after_commands=1, times=1),
        Fault(FaultKind.DISCONNECT, commands={"UID FETCH"}, after_bytes=7000, times=1),
        Fault(FaultKind.SYSTEM_ERROR, commands={"EXAMINE"}, times=1),
        Fault(FaultKind.SESSION_EXPIRED, commands={"UID SEARCH"}, times=1),
    ],
    ids=["bye-system-error", "close-mid-literal", "no-system-error", "session-expired"],
)
def test_transient_failures_reconnect_and_finish(mailbox: World, fault: Fault) -> None:
    mailbox.gmail.account(EMAIL).faults.add(fault)

    assert mailbox.iterate().outcomes == {"u1": "idle"}

    assert saved(mailbox) == EXPECTED
    assert len(mailbox.stored("u1")) == len(EXPECTED)
    assert mailbox.gmail.ledger.sessions_opened == 2
    assert mailbox.status("u1")["last_uid"] == 6


def test_transient_failures_are_bounded(mailbox: World) -> None:
    mailbox.gmail.account(EMAIL).faults.add(Fault(FaultKind.BYE_SYSTEM_ERROR, commands={"EXAMINE"}))

    assert mailbox.iterate().outcomes == {"u1": "error"}

    status = mailbox.status("u1")
    assert mailbox.gmail.ledger.sessions_opened == mailbox.settings.retry_attempts
    assert status["last_error"]["type"] == "Transient"
    assert status["next_crawl_at"] == mailbox.now + mailbox.settings.error_backoff
    assert status["consecutive_errors"] == 1


def test_some_messages_could_not_be_fetched_once(mailbox: World) -> None:
    fault = Fault(FaultKind.PARTIAL_FETCH, commands={"UID FETCH"}, uids={3}, times=1)
    mailbox.gmail.account(EMAIL).faults.add(fault)

    assert mailbox.iterate().outcomes == {"u1": "idle"}

    assert saved(mailbox) == EXPECTED
    assert not mailbox.status("u1").get("failed_uids")


def test_a_message_gmail_never_fetches_is_recorded(mailbox: World) -> None:
    fault = Fault(FaultKind.PARTIAL_FETCH, commands={"UID FETCH"}, uids={3})
    mailbox.gmail.account(EMAIL).faults.add(fault)

    assert mailbox.iterate().outcomes == {"u1": "idle"}

    missing = {(name, digest) for name, digest in EXPECTED if name == "scan-2.bin"}
    assert saved(mailbox) == EXPECTED - missing
    [failed] = mailbox.status("u1")["failed_uids"]
    assert (failed["uid"], failed["error"]) == (3, "PartialFetch")


@pytest.mark.parametrize("times", [1, None], ids=["once", "always"])
@pytest.mark.parametrize("stream_size", [2**20, 1024], ids=["whole-parts", "streamed"])
def test_a_download_gmail_cannot_fetch_for_one_message_spares_the_others(
    mailbox: World, times: int | None, stream_size: int
) -> None:
    """Gmail's `Some messages could not be FETCHed` on a download narrows down to that UID: the
    batch's other parts are stored, and a UID Gmail never serves is recorded, not retried."""
    after_metadata = Fault(
        FaultKind.PARTIAL_FETCH, commands={"UID FETCH"}, uids={3}, after_commands=1, times=times
    )
    mailbox.gmail.account(EMAIL).faults.add(after_metadata)
    settings = mailbox.settings.model_copy(update={"stream_size": stream_size})

    outcomes = mailbox.iterate(settings=settings).outcomes

    assert outcomes == {"u1": "idle"}, mailbox.status("u1")["last_error"]

    if times == 1:  # fetched alone, the message came
        assert saved(mailbox) == EXPECTED
        assert not mailbox.status("u1").get("failed_uids")
    else:
        assert saved(mailbox) == {(n, d) for n, d in EXPECTED if n != "scan-2.bin"}
        [failed] = mailbox.status("u1")["failed_uids"]
        assert (failed["uid"], failed["error"]) == (3, "PartialFetch")
    assert mailbox.gmail.ledger.sessions_opened == 1  # no reconnect, no retry of the crawl


def test_hidden_all_mail_is_a_clear_error_for_that_account(world: World) -> None:
    world.add_account(EMAIL, "u1")
    world.add_account("bob@example.com", "u2", hide_all_mail=True)

    assert world.iterate().outcomes == {"u1": "idle", "u2": "error"}
    assert "All Mail is hidden" in world.status("u2")["last_error"]["message"]


@pytest.mark.parametrize(
    ("kind", "state", "error"),
    [
        (FaultKind.WEB_LOGIN, "auth_failed", "WebLoginRequired"),
        (FaultKind.LOOKUP_FAILED, "error", "AccountUnavailable"),
        (FaultKind.LOGIN_OVERQUOTA, "throttled", "OverQuota"),
    ],
)
def test_login_refusals(mailbox: World, kind: FaultKind, state: str, error: str) -> None:
    mailbox.gmail.account(EMAIL).faults.add(Fault(kind, times=1))

    assert mailbox.iterate().outcomes == {"u1": state}
    assert mailbox.status("u1")["last_error"]["type"] == error
    assert mailbox.gmail.ledger.sessions_opened == 1  # none of these is retried at once


def test_a_crawl_past_its_time_limit_yields_and_resumes(mailbox: World) -> None:
    mailbox.gmail.account(EMAIL).faults.latency = 0.1
    settings = mailbox.settings.model_copy(update={"fetch_batch": 1, "max_crawl_time": 0.3})

    first = mailbox.iterate(settings=settings).outcomes
    status = mailbox.status("u1")

    assert first == {"u1": "interrupted"}
    assert (status["state"], status["next_crawl_at"]) == ("idle", mailbox.now)  # due at once
    assert 0 < len(saved(mailbox)) < len(EXPECTED)
    while mailbox.iterate(settings=settings).outcomes == {"u1": "interrupted"}:
        pass
    assert saved(mailbox) == EXPECTED
    assert mailbox.status("u1")["state"] == "idle"
