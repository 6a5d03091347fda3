"""Each fault of the fake Gmail, read on a raw socket and compared byte for byte with Gmail's."""

import base64
import time

import pytest

from standins import tokens
from standins.fakegmail import Account, FakeGmail, Fault, FaultKind
from tests.plugins.fakes import RawImap, build_message, eventually

pytestmark = pytest.mark.integration

EMAIL = "alice@example.com"
PASSWORD = "app-password"
CHALLENGE = (
    b"+ eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xl"
    b"LmNvbS8ifQ==\r\n"
)
BYE_OVERQUOTA = b"* BYE [OVERQUOTA] Account exceeded command or bandwidth limits.\r\n"
FETCH_BODY = b"f1 UID FETCH 1:* (BODY.PEEK[2])\r\n"


@pytest.fixture
def account(fake_gmail: FakeGmail) -> Account:
    account = fake_gmail.add_account(EMAIL, password=PASSWORD)
    for number in range(1, 4):
        attachment = bytes(range(256)) * 20 * number
        account.add_message(
            build_message(f"Report {number}", attachments={f"r{number}.bin": attachment}),
            labels=["\\Inbox"],
        )
    return account


def xoauth2() -> bytes:
    access_token = tokens.issue(EMAIL, time.time() + 3600)
    return base64.b64encode(f"user={EMAIL}\x01auth=Bearer {access_token}\x01\x01".encode())


def authenticate(raw: RawImap, tag: bytes = b"a1") -> None:
    raw.send(tag + b" AUTHENTICATE XOAUTH2 " + xoauth2() + b"\r\n")


def logged_in(port: int, *, examine: bool = True) -> RawImap:
    """A raw session past the greeting, logged in and (unless not wanted) in All Mail."""
    raw = RawImap(port)
    raw.greeting()
    authenticate(raw)
    assert raw.until_tagged(b"a1")[-1].startswith(b"a1 OK ")
    if examine:
        raw.send(b'a2 EXAMINE "[Gmail]/All Mail"\r\n')
        raw.until_tagged(b"a2")
    return raw


def full_fetch_response(port: int) -> bytes:
    """What FETCH_BODY gets without faults."""
    with logged_in(port) as raw:
        raw.send(FETCH_BODY)
        return b"".join(raw.until_tagged(b"f1"))


# -- throttling ---------------------------------------------------------------------------


def test_throttled_after_some_commands(fake_gmail: FakeGmail, account: Account) -> None:
    account.faults.add(Fault(FaultKind.THROTTLED, after_commands=2))
    with logged_in(fake_gmail.port) as raw:  # EXAMINE is the first command watched
        raw.send(b"a3 NOOP\r\na4 NOOP\r\na5 EXAMINE INBOX\r\na6 NOOP\r\n")
        assert raw.until_tagged(b"a3") == [b"a3 OK Success\r\n"]
        assert raw.until_tagged(b"a4") == [b"a4 OK Success [THROTTLED]\r\n"]
        assert raw.until_tagged(b"a5")[-1] == (
            b"a5 OK [READ-ONLY] INBOX selected. (Success) [THROTTLED]\r\n"
        )
        assert raw.until_tagged(b"a6") == [b"a6 OK Success [THROTTLED]\r\n"]


def test_throttled_on_named_commands_with_a_slowdown(
    fake_gmail: FakeGmail, account: Account
) -> None:
    account.faults.add(Fault(FaultKind.THROTTLED, commands={"uid  fetch"}, slowdown=0.3, times=1))
    with logged_in(fake_gmail.port) as raw:
        raw.send(b"a3 NOOP\r\n")
        assert raw.until_tagged(b"a3") == [b"a3 OK Success\r\n"]
        started = time.monotonic()
        raw.send(b"a4 UID FETCH 1 (UID)\r\n")
        assert raw.until_tagged(b"a4")[-1] == b"a4 OK Success [THROTTLED]\r\n"
        assert time.monotonic() - started >= 0.3
        raw.send(b"a5 UID FETCH 1 (UID)\r\n")
        assert raw.until_tagged(b"a5")[-1] == b"a5 OK Success\r\n"
    assert account.faults.fired(FaultKind.THROTTLED) == 1


def test_no_suffix_on_a_failure(fake_gmail: FakeGmail, account: Account) -> None:
    account.faults.add(Fault(FaultKind.THROTTLED))
    with logged_in(fake_gmail.port) as raw:
        raw.send(b"a3 EXAMINE Nowhere\r\na4 FROB\r\n")
        assert raw.until_tagged(b"a3") == [
            b"a3 NO [NONEXISTENT] Unknown Mailbox: Nowhere (Failure)\r\n"
        ]
        assert raw.until_tagged(b"a4") == [b"a4 BAD Could not parse command\r\n"]


# -- the session ends ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "last_words"),
    [
        (FaultKind.OVERQUOTA, BYE_OVERQUOTA),
        (FaultKind.BYE_SYSTEM_ERROR, b"* BYE System Error\r\n"),
        (FaultKind.SESSION_EXPIRED, b"* BYE Session expired, please login again.\r\n"),
        (FaultKind.DISCONNECT, b""),
    ],
)
def test_closing_faults_after_some_commands(
    fake_gmail: FakeGmail, account: Account, kind: FaultKind, last_words: bytes
) -> None:
    account.faults.add(Fault(kind, after_commands=2, times=1))
    with logged_in(fake_gmail.port) as raw:
        raw.send(b"a3 NOOP\r\n")
        assert raw.until_tagged(b"a3") == [b"a3 OK Success\r\n"]
        raw.send(b"a4 NOOP\r\n")
        assert raw.rest() == last_words
    eventually(lambda: account.ledger.connected == 0)
    with logged_in(fake_gmail.port) as raw:  # the client recovers on reconnect
        raw.send(b"a3 NOOP\r\na4 NOOP\r\n")
        assert raw.until_tagged(b"a4")[-1] == b"a4 OK Success\r\n"
    assert account.faults.fired(kind) == 1


@pytest.mark.parametrize("cut_at", [1, 100, 2000, 7000])
def test_overquota_in_the_middle_of_a_fetch_literal(
    fake_gmail: FakeGmail, account: Account, cut_at: int
) -> None:
    full = full_fetch_response(fake_gmail.port)
    account.faults.add(Fault(FaultKind.OVERQUOTA, commands={"UID FETCH"}, after_bytes=cut_at))
    with logged_in(fake_gmail.port) as raw:
        raw.send(b"a3 NOOP\r\n")
        assert raw.until_tagged(b"a3") == [b"a3 OK Success\r\n"]
        raw.send(FETCH_BODY)
        assert raw.rest() == full[:cut_at] + b"\r\n" + BYE_OVERQUOTA


def test_overquota_after_bytes_of_several_responses(
    fake_gmail: FakeGmail, account: Account
) -> None:
    account.faults.add(Fault(FaultKind.OVERQUOTA, after_bytes=60))
    with logged_in(fake_gmail.port, examine=False) as raw:
        raw.send(b"a3 NOOP\r\na4 NOOP\r\na5 NOOP\r\na6 NOOP\r\na7 NOOP\r\n")
        received = raw.rest()
    assert received == b"a3 OK Success\r\na4 OK Success\r\na5 OK Success\r\na6 OK Success\r\n" + (
        BYE_OVERQUOTA
    )


@pytest.mark.parametrize("cut_at", [1, 5000])
def test_abrupt_close_in_the_middle_of_a_fetch_literal(
    fake_gmail: FakeGmail, account: Account, cut_at: int
) -> None:
    full = full_fetch_response(fake_gmail.port)
    account.faults.add(Fault(FaultKind.DISCONNECT, commands={"UID FETCH"}, after_bytes=cut_at))
    with logged_in(fake_gmail.port) as raw:
        raw.send(FETCH_BODY)
        assert raw.rest() == full[:cut_at]


def test_session_expires_after_some_seconds(fake_gmail: FakeGmail, account: Account) -> None:
    account.faults.add(Fault(FaultKind.SESSION_EXPIRED, after_seconds=1.0))
    started = time.monotonic()
    with logged_in(fake_gmail.port) as raw:
        raw.send(b"a3 NOOP\r\n")
        assert raw.until_tagged(b"a3") == [b"a3 OK Success\r\n"]
        answers: list[bytes] = []
        while not answers or answers[-1] != b"* BYE Session expired, please login again.\r\n":
            raw.send(b"a4 NOOP\r\n")
            answers.append(raw.line())
        assert time.monotonic() - started >= 1.0
        assert raw.rest() == b""


# -- failed commands ----------------------------------------------------------------------


def test_partial_fetch(fake_gmail: FakeGmail, account: Account) -> None:
    account.faults.add(Fault(FaultKind.PARTIAL_FETCH, uids={2}, times=1))
    with logged_in(fake_gmail.port) as raw:
        raw.send(b"a3 UID FETCH 1 (UID)\r\n")
        assert raw.until_tagged(b"a3") == [b"* 1 FETCH (UID 1)\r\n", b"a3 OK Success\r\n"]
        raw.send(b"a4 UID FETCH 1:3 (UID RFC822.SIZE)\r\n")
        sizes = [stored.message.size for stored in account.messages()]
        assert raw.until_tagged(b"a4") == [
            b"* 1 FETCH (UID 1 RFC822.SIZE %d)\r\n" % sizes[0],
            b"* 3 FETCH (UID 3 RFC822.SIZE %d)\r\n" % sizes[2],
            b"a4 NO Some messages could not be FETCHed (Failure)\r\n",
        ]
        raw.send(b"a5 UID FETCH 2 (UID)\r\n")
        assert raw.until_tagged(b"a5") == [b"* 2 FETCH (UID 2)\r\n", b"a5 OK Success\r\n"]


@pytest.mark.parametrize(
    ("name", "command"),
    [
        ("EXAMINE", b"b1 EXAMINE INBOX\r\n"),
        ("SELECT", b"b1 SELECT INBOX\r\n"),
        ("UID FETCH", b"b1 UID FETCH 1 (UID)\r\n"),
        ("FETCH", b"b1 FETCH 1 (UID)\r\n"),
    ],
)
def test_system_error(fake_gmail: FakeGmail, account: Account, name: str, command: bytes) -> None:
    with logged_in(fake_gmail.port) as raw:
        account.faults.add(Fault(FaultKind.SYSTEM_ERROR, commands={name}, times=1))
        raw.send(command)
        assert raw.until_tagged(b"b1") == [b"b1 NO System Error (Failure)\r\n"]
        raw.send(command)
        assert raw.until_tagged(b"b1")[-1].startswith(b"b1 OK ")


# -- login --------------------------------------------------------------------------------


def test_login_refused_over_quota(fake_gmail: FakeGmail, account: Account) -> None:
    account.faults.add(Fault(FaultKind.LOGIN_OVERQUOTA, times=1))
    with RawImap(fake_gmail.port) as raw:
        raw.greeting()
        authenticate(raw)
        assert raw.line() == (
            b"a1 NO [ALERT] Account exceeded command or bandwidth limits. (Failure)\r\n"
        )
        authenticate(raw, b"a2")
        assert raw.until_tagged(b"a2")[-1] == b"a2 OK alice@example.com authenticated (Success)\r\n"


def test_too_many_simultaneous_connections(fake_gmail: FakeGmail) -> None:
    account = fake_gmail.add_account(EMAIL, password=PASSWORD, max_connections=2)
    first, second = logged_in(fake_gmail.port), logged_in(fake_gmail.port)
    with RawImap(fake_gmail.port) as third:
        third.greeting()
        authenticate(third)
        assert third.line() == CHALLENGE
        third.send(b"\r\n")
        assert third.line() == b"a1 NO [ALERT] Too many simultaneous connections. (Failure)\r\n"
        third.send(b'a2 LOGIN alice@example.com "app-password"\r\n')
        assert third.line() == b"a2 NO [ALERT] Too many simultaneous connections. (Failure)\r\n"
        first.send(b"z1 LOGOUT\r\n")
        first.rest()
        authenticate(third, b"a3")
        assert third.until_tagged(b"a3")[-1].startswith(b"a3 OK ")
    first.sock.close()
    second.sock.close()
    eventually(lambda: account.ledger.connected == 0)
    assert account.ledger.peak_connected == 2


def test_too_many_connections_fault(fake_gmail: FakeGmail, account: Account) -> None:
    account.faults.add(Fault(FaultKind.TOO_MANY_CONNECTIONS, times=1, challenge=False))
    with RawImap(fake_gmail.port) as raw:
        raw.greeting()
        authenticate(raw)
        assert raw.line() == b"a1 NO [ALERT] Too many simultaneous connections. (Failure)\r\n"


def test_invalid_token_fault(fake_gmail: FakeGmail, account: Account) -> None:
    account.faults.add(Fault(FaultKind.INVALID_TOKEN, times=1))
    account.faults.add(Fault(FaultKind.INVALID_TOKEN, times=1, challenge=False))
    with RawImap(fake_gmail.port) as raw:
        raw.greeting()
        authenticate(raw)
        assert raw.line() == CHALLENGE
        raw.send(xoauth2() + b"\r\n")  # imaplib sends its token again, not an empty line
        assert raw.line() == b"a1 NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n"
        authenticate(raw, b"a2")
        assert raw.line() == b"a2 NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n"
        authenticate(raw, b"a3")
        assert raw.until_tagged(b"a3")[-1].startswith(b"a3 OK ")


def test_lookup_failed(fake_gmail: FakeGmail, account: Account) -> None:
    account.faults.add(Fault(FaultKind.LOOKUP_FAILED))
    with RawImap(fake_gmail.port) as raw:
        session_id = raw.greeting().split()[-1]
        raw.send(b'a1 LOGIN alice@example.com "app-password"\r\n')
        assert raw.line() == b"a1 NO Lookup failed " + session_id + b"\r\n"


@pytest.mark.parametrize(
    ("kind", "refusal"),
    [
        (
            FaultKind.IMAP_DISABLED,
            b"NO [ALERT] Your account is not enabled for IMAP use. Please visit your Gmail "
            b"settings page and enable your account for IMAP access. (Failure)",
        ),
        (
            FaultKind.IMAP_DISABLED_DOMAIN,
            b"NO [ALERT] IMAP access is disabled for your domain. Please contact your domain "
            b"administrator for questions about this feature. (Failure)",
        ),
    ],
)
def test_imap_turned_off(
    fake_gmail: FakeGmail, account: Account, kind: FaultKind, refusal: bytes
) -> None:
    account.faults.add(Fault(kind))
    with RawImap(fake_gmail.port) as raw:
        raw.greeting()
        authenticate(raw)  # refused at once: no 400 challenge, whatever the token
        assert raw.until_tagged(b"a1") == [b"a1 " + refusal + b"\r\n"]
        raw.send(b'a2 LOGIN alice@example.com "app-password"\r\n')
        assert raw.until_tagged(b"a2") == [b"a2 " + refusal + b"\r\n"]
        raw.send(b"a3 NOOP\r\n")  # still not logged in
        assert raw.until_tagged(b"a3") == [b"a3 OK Success\r\n"]
    assert account.faults.fired(kind) == 2


def test_web_login_required(fake_gmail: FakeGmail, account: Account) -> None:
    url = "https://accounts.google.com/signin/continue?sarp=1&scc=1&plt=AKgnsbtest"
    account.faults.add(Fault(FaultKind.WEB_LOGIN, url=url))
    with RawImap(fake_gmail.port) as raw:
        raw.greeting()
        authenticate(raw)
        assert raw.until_tagged(b"a1") == [
            b"* NO [WEBALERT " + url.encode() + b"] Web login required.\r\n",
            b"a1 NO [ALERT] Please log in via your web browser: "
            + url.encode()
            + b" (Failure)\r\n",
        ]


def test_login_faults_spare_wrong_credentials(fake_gmail: FakeGmail, account: Account) -> None:
    fault = account.faults.add(Fault(FaultKind.LOOKUP_FAILED, times=1))
    with RawImap(fake_gmail.port) as raw:
        raw.greeting()
        raw.send(b'a1 LOGIN alice@example.com "wrong"\r\n')
        assert raw.line() == b"a1 NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n"
    assert account.faults.active() == [fault]
    account.faults.remove(fault)
    assert account.faults.active() == []


# -- pace ---------------------------------------------------------------------------------


def test_latency_per_command(fake_gmail: FakeGmail, account: Account) -> None:
    account.faults.latency = 0.1
    with logged_in(fake_gmail.port) as raw:
        started = time.monotonic()
        raw.send(b"a3 NOOP\r\na4 NOOP\r\na5 NOOP\r\n")
        raw.until_tagged(b"a5")
        assert time.monotonic() - started >= 0.3


def test_bandwidth_cap(fake_gmail: FakeGmail, account: Account) -> None:
    full = full_fetch_response(fake_gmail.port)
    account.faults.bandwidth = 40_000
    with logged_in(fake_gmail.port) as raw:
        started = time.monotonic()
        raw.send(FETCH_BODY)
        assert b"".join(raw.until_tagged(b"f1")) == full
        assert time.monotonic() - started >= len(full) / 40_000 * 0.9
    faults = account.faults
    faults.clear()
    assert (faults.bandwidth, faults.latency) == (None, 0.0)


def test_fault_validation() -> None:
    with pytest.raises(ValueError, match="after_bytes"):
        Fault(FaultKind.THROTTLED, after_bytes=10)
    with pytest.raises(ValueError, match="uids"):
        Fault(FaultKind.PARTIAL_FETCH)
    with pytest.raises(ValueError, match="uids"):
        Fault(FaultKind.SYSTEM_ERROR, uids={1})
