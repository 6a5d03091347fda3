"""The fake Gmail's ledger counts exactly what crossed the wire, per account and per session."""

import base64
import itertools
import time
from collections import Counter

import pytest
from imapclient import IMAPClient

from standins import tokens
from standins.fakegmail import Account, FakeGmail
from tests.plugins.fakes import RawImap, build_message, eventually

pytestmark = pytest.mark.integration

EMAIL = "alice@example.com"


def xoauth2() -> bytes:
    access_token = tokens.issue(EMAIL, time.time() + 3600)
    return base64.b64encode(f"user={EMAIL}\x01auth=Bearer {access_token}\x01\x01".encode())


@pytest.fixture
def account(fake_gmail: FakeGmail) -> Account:
    account = fake_gmail.add_account(EMAIL, password="app-password")
    account.add_message(build_message("One", attachments={"a.bin": b"\x00" * 5000}))
    account.add_message(build_message("Two"))
    return account


def connect(gmail: FakeGmail) -> IMAPClient:
    client = IMAPClient("127.0.0.1", gmail.port, ssl=False, timeout=10)
    client.oauth2_login(EMAIL, tokens.issue(EMAIL, time.time() + 3600))
    return client


def test_a_known_session_is_counted_exactly(fake_gmail: FakeGmail, account: Account) -> None:
    sent = [
        b"a1 CAPABILITY\r\n",
        b"a2 AUTHENTICATE XOAUTH2 " + xoauth2() + b"\r\n",
        b'a3 EXAMINE "[Gmail]/All Mail"\r\n',
        b"a4 UID SEARCH X-GM-RAW {14+}\r\nhas:attachment\r\n",
        b"a5 UID FETCH 1:2 (X-GM-MSGID BODYSTRUCTURE)\r\n",
        b"a6 UID FETCH 1 (BODY.PEEK[2])\r\n",
        b"a7 NOOP\r\n",
        b"a8 LOGOUT\r\n",
    ]
    with RawImap(fake_gmail.port) as raw:
        received = raw.greeting()
        raw.send(b"".join(sent))
        received += raw.rest()
    assert received.endswith(b"a8 OK 73 good day (Success)\r\n")
    expected_commands = Counter(
        {
            "CAPABILITY": 1,
            "AUTHENTICATE": 1,
            "EXAMINE": 1,
            "UID SEARCH": 1,
            "UID FETCH": 2,
            "NOOP": 1,
            "LOGOUT": 1,
        }
    )
    eventually(lambda: account.ledger.connected == 0)
    for ledger in (account.ledger, fake_gmail.ledger):
        assert ledger.commands == expected_commands
        assert ledger.lines == sent
        assert ledger.bytes_in == sum(map(len, sent))
        assert ledger.bytes_out == len(received)
        assert ledger.sessions_opened == 1
        assert ledger.peak_connected == 1
    [session] = account.ledger.sessions
    assert session.user == EMAIL
    assert session.commands == expected_commands
    assert session.ended_at is not None and session.authenticated_at is not None
    assert session.started_at <= session.authenticated_at <= session.ended_at


def test_lines_keep_literals_and_unparsed_commands(fake_gmail: FakeGmail, account: Account) -> None:
    injected = b"foo\r\nz9 STORE 1 +FLAGS (\\Deleted)"
    sent = [
        b"a1 LOGIN {17}\r\nalice@example.com {12}\r\napp-password\r\n",
        b"a2 SELECT INBOX\r\n",
        b"a3 UID SEARCH X-GM-RAW {%d+}\r\n%s\r\n" % (len(injected), injected),
        b"garbage\r\n",
        b"a4 FROB\r\n",
    ]
    with RawImap(fake_gmail.port) as raw:
        raw.greeting()
        raw.send(sent[0][:16])
        assert raw.line() == b"+ go ahead\r\n"
        raw.send(sent[0][16:40])
        assert raw.line() == b"+ go ahead\r\n"
        raw.send(sent[0][40:] + b"".join(sent[1:]))
        raw.until_tagged(b"a4")
    assert account.ledger.lines == sent
    assert account.ledger.commands == Counter({"LOGIN": 1, "SELECT": 1, "UID SEARCH": 1, "FROB": 1})
    assert account.ledger.commands["STORE"] == 0


def test_concurrent_sessions_and_their_peak(fake_gmail: FakeGmail, account: Account) -> None:
    clients = [connect(fake_gmail) for _ in range(3)]
    assert (account.ledger.connected, account.ledger.peak_connected) == (3, 3)
    for client in clients:
        client.logout()
    assert account.ledger.connected == 0
    account.ledger.reset()
    assert (account.ledger.sessions_opened, account.ledger.peak_connected) == (0, 0)
    for _ in range(3):
        client = connect(fake_gmail)
        client.select_folder("INBOX", readonly=True)
        client.logout()
    assert account.ledger.peak_connected == 1
    assert account.ledger.commands["EXAMINE"] == 3
    spans = sorted((s.authenticated_at or 0, s.ended_at or 0) for s in account.ledger.sessions)
    assert len(spans) == 3
    assert all(end <= next_start for (_, end), (next_start, _) in itertools.pairwise(spans))
    assert fake_gmail.ledger.peak_connected == 3


def test_account_and_server_ledgers(fake_gmail: FakeGmail, account: Account) -> None:
    other = fake_gmail.add_account("bob@example.com", password="bobs")
    with RawImap(fake_gmail.port) as anonymous:
        anonymous.greeting()
        anonymous.send(b"a1 CAPABILITY\r\na2 LOGOUT\r\n")
        anonymous.rest()
    with RawImap(fake_gmail.port) as failing:
        failing.greeting()
        failing.send(b"a1 NOOP\r\na2 LOGIN alice@example.com wrong\r\na3 LOGOUT\r\n")
        failing.rest()
    eventually(lambda: fake_gmail.ledger.sessions[-1].ended_at is not None)
    assert fake_gmail.ledger.sessions_opened == 2
    assert fake_gmail.ledger.commands == Counter(
        {"CAPABILITY": 1, "NOOP": 1, "LOGIN": 1, "LOGOUT": 2}
    )
    [attempt] = account.ledger.sessions
    assert attempt.authenticated_at is None
    assert attempt.commands == Counter({"NOOP": 1, "LOGIN": 1, "LOGOUT": 1})
    assert account.ledger.peak_connected == 0
    assert other.ledger.sessions_opened == 0
    assert other.ledger.bytes_in == other.ledger.bytes_out == 0


def test_reset_keeps_open_sessions(fake_gmail: FakeGmail, account: Account) -> None:
    client = connect(fake_gmail)
    client.noop()
    account.ledger.reset()
    assert account.ledger.commands == Counter()
    assert (account.ledger.bytes_in, account.ledger.bytes_out, account.ledger.lines) == (0, 0, [])
    assert (account.ledger.connected, account.ledger.peak_connected) == (1, 1)
    client.noop()
    client.logout()
    assert account.ledger.commands == Counter({"NOOP": 1, "LOGOUT": 1})
    assert account.ledger.lines[0].endswith(b" NOOP\r\n")
    [session] = account.ledger.sessions
    assert session.commands["NOOP"] == 2
    assert account.ledger.connected == 0
