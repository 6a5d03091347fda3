"""The fake Gmail speaks Gmail's IMAP: to IMAPClient, to imaplib and on a raw socket."""

import base64
import imaplib
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from imapclient import IMAPClient, imap_utf7
from imapclient.exceptions import LoginError

from standins import tokens
from standins.fakegmail import (
    Account,
    ConfigError,
    FakeGmail,
    FaultKind,
    GmailConfig,
    StoredMessage,
    load_config,
)
from tests.conftest import require
from tests.plugins.fakes import RawImap, build_message, eventually

pytestmark = pytest.mark.integration

EMAIL = "alice@example.com"
PASSWORD = "app-password"
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40
CAPABILITIES_AFTER_AUTH = (
    b"* CAPABILITY IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID XLIST CHILDREN X-GM-EXT-1 UIDPLUS "
    b"COMPRESS=DEFLATE ENABLE MOVE CONDSTORE ESEARCH UTF8=ACCEPT LIST-EXTENDED LIST-STATUS "
    b"LITERAL- SPECIAL-USE APPENDLIMIT=35651584\r\n"
)
CHALLENGE = (
    b"+ eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xl"
    b"LmNvbS8ifQ==\r\n"
)


def token(
    email: str = EMAIL, *, lifetime: float = 3600, secret: str = tokens.DEFAULT_SECRET
) -> str:
    return tokens.issue(email, time.time() + lifetime, secret)


def xoauth2(email: str, access_token: str) -> bytes:
    return base64.b64encode(f"user={email}\x01auth=Bearer {access_token}\x01\x01".encode())


@pytest.fixture
def account(fake_gmail: FakeGmail) -> Account:
    return fake_gmail.add_account(EMAIL, password=PASSWORD)


@pytest.fixture
def messages(account: Account) -> list[StoredMessage]:
    invoice = account.add_message(
        build_message("Invoice", attachments={"invoice.pdf": PDF}),
        labels=["\\Inbox", "Work"],
        internaldate=datetime(2024, 5, 6, 10, 0, 1, tzinfo=UTC),
    )
    note = account.add_message(
        build_message("Lunch?", body="Noon?\n"),
        labels=["\\Inbox", "\\Important"],
        internaldate=datetime(2024, 5, 7, 9, 30, tzinfo=UTC),
    )
    reply = account.add_message(
        build_message("Re: Invoice", attachments={"receipt.pdf": b"%PDF-1.4 paid"}),
        labels=["Work/Q1"],
        thread_of=invoice,
    )
    return [invoice, note, reply]


@pytest.fixture
def client(fake_gmail: FakeGmail, messages: list[StoredMessage]) -> Iterator[IMAPClient]:
    imap = IMAPClient("127.0.0.1", fake_gmail.port, ssl=False, timeout=10)
    imap.oauth2_login(EMAIL, token())
    yield imap
    imap.logout()


def raw_login(raw: RawImap) -> bytes:
    """Greeting and a SASL-IR login; returns the session id."""
    greeting = raw.greeting()
    raw.send(b"a0 AUTHENTICATE XOAUTH2 " + xoauth2(EMAIL, token()) + b"\r\n")
    raw.until_tagged(b"a0")
    return greeting.split()[-1]


# -- session start and login ------------------------------------------------------------


def test_greeting_and_capability(fake_gmail: FakeGmail) -> None:
    with RawImap(fake_gmail.port) as raw:
        greeting = raw.greeting()
        match = re.fullmatch(
            rb"\* OK Gimap ready for requests from 127\.0\.0\.1 (\w+)\r\n", greeting
        )
        assert match
        raw.send(b"a1 CAPABILITY\r\n")
        assert raw.until_tagged(b"a1") == [
            b"* CAPABILITY IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID XLIST CHILDREN X-GM-EXT-1 "
            b"XYZZY SASL-IR AUTH=XOAUTH2 AUTH=PLAIN AUTH=PLAIN-CLIENTTOKEN AUTH=OAUTHBEARER "
            b"AUTH=XOAUTH\r\n",
            b"a1 OK Thats all she wrote! " + match.group(1) + b"\r\n",
        ]


def test_xoauth2_with_sasl_ir(fake_gmail: FakeGmail, account: Account) -> None:
    with RawImap(fake_gmail.port) as raw:
        raw.greeting()
        raw.send(b"a1 AUTHENTICATE XOAUTH2 " + xoauth2(EMAIL, token()) + b"\r\n")
        assert raw.until_tagged(b"a1") == [
            CAPABILITIES_AFTER_AUTH,
            b"a1 OK alice@example.com authenticated (Success)\r\n",
        ]
        raw.send(b"a2 CAPABILITY\r\n")
        assert raw.until_tagged(b"a2")[0] == CAPABILITIES_AFTER_AUTH


def test_xoauth2_after_a_continuation(fake_gmail: FakeGmail, account: Account) -> None:
    with RawImap(fake_gmail.port) as raw:
        raw.greeting()
        raw.send(b"a1 AUTHENTICATE XOAUTH2\r\n")
        assert raw.line() == b"+ \r\n"
        raw.send(b"*\r\n")
        assert raw.line() == b"a1 BAD Could not parse command\r\n"
        raw.send(b"a2 AUTHENTICATE XOAUTH2\r\n")
        assert raw.line() == b"+ \r\n"
        raw.send(xoauth2("ALICE@example.com", token()) + b"\r\n")
        assert raw.until_tagged(b"a2")[-1] == b"a2 OK alice@example.com authenticated (Success)\r\n"


def test_xoauth2_with_imapclient_and_imaplib(fake_gmail: FakeGmail, account: Account) -> None:
    client = IMAPClient("127.0.0.1", fake_gmail.port, ssl=False, timeout=10)
    assert client.oauth2_login(EMAIL, token()) == [b"alice@example.com authenticated (Success)"]
    assert client.has_capability("X-GM-EXT-1")
    client.logout()
    imap = imaplib.IMAP4("127.0.0.1", fake_gmail.port, timeout=10)
    auth_string = f"user={EMAIL}\x01auth=Bearer {token()}\x01\x01"
    assert imap.authenticate("XOAUTH2", lambda _: auth_string.encode())[0] == "OK"
    assert imap.state == "AUTH"
    imap.logout()


@pytest.mark.parametrize(
    ("user", "access_token"),
    [
        pytest.param(EMAIL, token(lifetime=-1), id="expired"),
        pytest.param(EMAIL, token(secret="another secret"), id="forged"),
        pytest.param(EMAIL, token("bob@example.com"), id="another user's"),
        pytest.param(EMAIL, "ya29.garbage", id="garbage"),
        pytest.param("nobody@example.com", token("nobody@example.com"), id="no such account"),
    ],
)
def test_bad_token_gets_the_400_challenge(
    fake_gmail: FakeGmail, account: Account, user: str, access_token: str
) -> None:
    with RawImap(fake_gmail.port) as raw:
        raw.greeting()
        raw.send(b"a1 AUTHENTICATE XOAUTH2 " + xoauth2(user, access_token) + b"\r\n")
        assert raw.line() == CHALLENGE
        raw.send(b"\r\n")
        assert raw.line() == b"a1 NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n"
        raw.send(b"a2 AUTHENTICATE XOAUTH2 " + xoauth2(EMAIL, token()) + b"\r\n")
        assert raw.until_tagged(b"a2")[-1].startswith(b"a2 OK ")


def test_bad_token_with_imaplib_that_resends_it(fake_gmail: FakeGmail, account: Account) -> None:
    imap = imaplib.IMAP4("127.0.0.1", fake_gmail.port, timeout=10)
    auth_string = f"user={EMAIL}\x01auth=Bearer {token(lifetime=-1)}\x01\x01".encode()
    with pytest.raises(imaplib.IMAP4.error, match=r"\[AUTHENTICATIONFAILED\] Invalid credentials"):
        imap.authenticate("XOAUTH2", lambda _: auth_string)
    client = IMAPClient("127.0.0.1", fake_gmail.port, ssl=False, timeout=10)
    with pytest.raises(LoginError, match="AUTHENTICATIONFAILED"):
        client.oauth2_login(EMAIL, "ya29.garbage")
    imap.shutdown()
    client.shutdown()


def test_login_with_an_app_password(fake_gmail: FakeGmail, account: Account) -> None:
    imap = imaplib.IMAP4("127.0.0.1", fake_gmail.port, timeout=10)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        imap.login(EMAIL, "wrong")
    assert imap.login(EMAIL, PASSWORD) == ("OK", [b"alice@example.com authenticated (Success)"])
    imap.logout()
    with RawImap(fake_gmail.port) as raw:
        raw.greeting()
        raw.send(b"a1 LOGIN {17}\r\n")
        assert raw.line() == b"+ go ahead\r\n"
        raw.send(EMAIL.encode() + b' "app-password"\r\n')
        assert raw.until_tagged(b"a1") == [
            CAPABILITIES_AFTER_AUTH,
            b"a1 OK alice@example.com authenticated (Success)\r\n",
        ]


def test_xoauth2_only_account_refuses_login(fake_gmail: FakeGmail) -> None:
    fake_gmail.add_account("bob@example.com")
    imap = imaplib.IMAP4("127.0.0.1", fake_gmail.port, timeout=10)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        imap.login("bob@example.com", "")
    imap.shutdown()


# -- folders ------------------------------------------------------------------------------


def test_list_and_xlist_exact_lines(fake_gmail: FakeGmail, messages: list[StoredMessage]) -> None:
    with RawImap(fake_gmail.port) as raw:
        raw_login(raw)
        raw.send(b'a1 LIST "" "*"\r\n')
        assert raw.until_tagged(b"a1") == [
            b'* LIST (\\HasNoChildren) "/" "INBOX"\r\n',
            b'* LIST (\\HasChildren) "/" "Work"\r\n',
            b'* LIST (\\HasNoChildren) "/" "Work/Q1"\r\n',
            b'* LIST (\\HasChildren \\Noselect) "/" "[Gmail]"\r\n',
            b'* LIST (\\All \\HasNoChildren) "/" "[Gmail]/All Mail"\r\n',
            b'* LIST (\\Drafts \\HasNoChildren) "/" "[Gmail]/Drafts"\r\n',
            b'* LIST (\\HasNoChildren \\Important) "/" "[Gmail]/Important"\r\n',
            b'* LIST (\\HasNoChildren \\Sent) "/" "[Gmail]/Sent Mail"\r\n',
            b'* LIST (\\HasNoChildren \\Junk) "/" "[Gmail]/Spam"\r\n',
            b'* LIST (\\Flagged \\HasNoChildren) "/" "[Gmail]/Starred"\r\n',
            b'* LIST (\\HasNoChildren \\Trash) "/" "[Gmail]/Trash"\r\n',
            b"a1 OK Success\r\n",
        ]
        raw.send(b'a2 XLIST "" "[Gmail]/%"\r\n')
        assert raw.until_tagged(b"a2")[:2] == [
            b'* XLIST (\\AllMail \\HasNoChildren) "/" "[Gmail]/All Mail"\r\n',
            b'* XLIST (\\Drafts \\HasNoChildren) "/" "[Gmail]/Drafts"\r\n',
        ]
        raw.send(b'a3 XLIST "" INBOX\r\n')
        assert raw.until_tagged(b"a3")[0] == b'* XLIST (\\HasNoChildren \\Inbox) "/" "Inbox"\r\n'
        raw.send(b'a4 LIST "" ""\r\n')
        assert raw.until_tagged(b"a4")[0] == b'* LIST (\\Noselect) "/" ""\r\n'
        raw.send(b'a5 LIST (SPECIAL-USE) "" "*" RETURN (SPECIAL-USE)\r\n')
        assert len(raw.until_tagged(b"a5")) == 8


@pytest.mark.parametrize(
    "all_mail_name",
    ["[Gmail]/All Mail", "[Google Mail]/Alle Nachrichten", "[Gmail]/Tous les messages"],
)
def test_all_mail_is_found_by_its_flag(fake_gmail: FakeGmail, all_mail_name: str) -> None:
    account = fake_gmail.add_account(EMAIL, all_mail_name=all_mail_name)
    account.add_message(build_message(), labels=["\\Inbox"])
    with IMAPClient("127.0.0.1", fake_gmail.port, ssl=False, timeout=10) as client:
        client.oauth2_login(EMAIL, token())
        listed = {name: flags for flags, _, name in client.list_folders()}
        assert listed[all_mail_name] == (b"\\All", b"\\HasNoChildren")
        assert b"\\Sent" in listed[all_mail_name.rpartition("/")[0] + "/Sent Mail"]
        xlisted = {name: flags for flags, _, name in client.xlist_folders()}
        assert b"\\AllMail" in xlisted[all_mail_name]
        assert client.select_folder(all_mail_name, readonly=True)[b"EXISTS"] == 1


def test_hidden_all_mail(fake_gmail: FakeGmail) -> None:
    fake_gmail.add_account(EMAIL, hide_all_mail=True)
    with IMAPClient("127.0.0.1", fake_gmail.port, ssl=False, timeout=10) as client:
        client.oauth2_login(EMAIL, token())
        assert not [flags for flags, _, _ in client.list_folders() if b"\\All" in flags]
        with pytest.raises(IMAPClient.Error, match=r"NONEXISTENT\] Unknown Mailbox"):
            client.select_folder("[Gmail]/All Mail", readonly=True)


def test_non_ascii_labels(fake_gmail: FakeGmail, account: Account) -> None:
    stored = account.add_message(build_message(), labels=["Entwürfe", "\\Inbox"])
    with IMAPClient("127.0.0.1", fake_gmail.port, ssl=False, timeout=10) as client:
        client.oauth2_login(EMAIL, token())
        assert "Entwürfe" in [name for _, _, name in client.list_folders()]
        assert client.select_folder("Entwürfe", readonly=True)[b"EXISTS"] == 1
        labels = client.get_gmail_labels([stored.uid])[stored.uid]
        assert labels == ["\\Inbox", "Entwürfe"]


def test_examine_exact_lines(fake_gmail: FakeGmail, messages: list[StoredMessage]) -> None:
    with RawImap(fake_gmail.port) as raw:
        raw_login(raw)
        raw.send(b'a1 EXAMINE "[Gmail]/All Mail"\r\n')
        assert raw.until_tagged(b"a1") == [
            b"* FLAGS (\\Answered \\Flagged \\Draft \\Deleted \\Seen $NotPhishing $Phishing)\r\n",
            b"* OK [PERMANENTFLAGS ()] Flags permitted.\r\n",
            b"* OK [UIDVALIDITY 1] UIDs valid.\r\n",
            b"* 3 EXISTS\r\n",
            b"* 0 RECENT\r\n",
            b"* OK [UIDNEXT 4] Predicted next UID.\r\n",
            b"* OK [HIGHESTMODSEQ 4]\r\n",
            b"a1 OK [READ-ONLY] [Gmail]/All Mail selected. (Success)\r\n",
        ]
        raw.send(b"a2 SELECT inbox\r\n")
        lines = raw.until_tagged(b"a2")
        assert lines[1] == (
            b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Draft \\Deleted \\Seen "
            b"$NotPhishing $Phishing \\*)] Flags permitted.\r\n"
        )
        assert lines[3] == b"* 2 EXISTS\r\n"
        assert lines[-1] == b"a2 OK [READ-WRITE] inbox selected. (Success)\r\n"
        raw.send(b'a3 STATUS "Work" (MESSAGES UIDNEXT UNSEEN)\r\n')
        assert raw.until_tagged(b"a3") == [
            b'* STATUS "Work" (MESSAGES 1 UIDNEXT 4 UNSEEN 1)\r\n',
            b"a3 OK Success\r\n",
        ]
        raw.send(b"a4 EXAMINE [Gmail]\r\na5 UNSELECT\r\n")
        assert raw.until_tagged(b"a4") == [
            b"a4 NO [NONEXISTENT] Unknown Mailbox: [Gmail] (Failure)\r\n"
        ]
        assert raw.until_tagged(b"a5") == [b"a5 BAD Command received in Invalid state.\r\n"]


# -- search -------------------------------------------------------------------------------


def test_gmail_search(client: IMAPClient, messages: list[StoredMessage]) -> None:
    invoice, note, reply = (stored.uid for stored in messages)
    client.select_folder("[Gmail]/All Mail", readonly=True)
    assert client.gmail_search("has:attachment") == [invoice, reply]
    assert client.gmail_search("subject:lunch") == [note]
    assert client.search(["X-GM-RAW", "label:work -subject:re"]) == [invoice]
    assert client.search(["UID", "2:*"]) == [note, reply]
    assert client.search(["UID", "9:*"]) == [reply]
    assert client.search(["OR", "UID", "1", "X-GM-RAW", "is:important"]) == [invoice, note]
    assert client.search(["NOT", "X-GM-LABELS", "\\Inbox"]) == [reply]
    assert client.search(["X-GM-THRID", str(messages[0].gm_thrid)]) == [invoice, reply]
    assert client.search(["UNSEEN", "X-GM-MSGID", str(messages[1].gm_msgid)]) == [note]
    assert client.search("ALL", charset="UTF-8") == [invoice, note, reply]


def test_search_wire_texts(fake_gmail: FakeGmail, messages: list[StoredMessage]) -> None:
    with RawImap(fake_gmail.port) as raw:
        raw_login(raw)
        raw.send(b"a1 EXAMINE INBOX\r\n")
        raw.until_tagged(b"a1")
        raw.send(b'a2 UID SEARCH CHARSET UTF-8 X-GM-RAW "has:attachment newer_than:3650d"\r\n')
        assert raw.until_tagged(b"a2") == [
            b"* SEARCH 1\r\n",
            b"a2 OK SEARCH completed (Success)\r\n",
        ]
        raw.send(b"a3 SEARCH X-GM-RAW {6+}\r\nLunch? (UID 2:*)\r\n")
        assert raw.until_tagged(b"a3") == [
            b"* SEARCH 2\r\n",
            b"a3 OK SEARCH completed (Success)\r\n",
        ]
        raw.send(b"a4 UID SEARCH X-GM-RAW nothing-matches-this\r\n")
        assert raw.until_tagged(b"a4")[0] == b"* SEARCH\r\n"
        for tag, criteria in [
            (b"b1", b"UID"),
            (b"b2", b"FROB 1"),
            (b"b3", b"OR ALL"),
            (b"b4", b"CHARSET KOI8-R ALL"),
            (b"b5", b'X-GM-RAW "(unbalanced"'),
            (b"b6", b"(UID 1"),
            (b"b7", b""),
        ]:
            raw.send(tag + b" UID SEARCH " + criteria + b"\r\n")
            assert raw.until_tagged(tag) == [tag + b" BAD Could not parse command\r\n"]


def test_id_is_answered_as_gmail_does(fake_gmail: FakeGmail, account: Account) -> None:
    answer = (
        b'* ID ("name" "GImap" "vendor" "Google, Inc." "support-url" '
        b'"https://support.google.com/mail" "version" "gmail_imap_200428.12_p0" '
        b'"remote-host" "127.0.0.1")\r\n'
    )
    with RawImap(fake_gmail.port) as raw:
        raw_login(raw)
        raw.send(b'a1 ID ("name" "gmail-attachment-crawler" "contact" "ops@example.com")\r\n')
        assert raw.until_tagged(b"a1") == [answer, b"a1 OK Success\r\n"]
    imap = IMAPClient("127.0.0.1", fake_gmail.port, ssl=False, timeout=10)
    try:
        imap.oauth2_login(EMAIL, token())
        [fields] = imap.id_({"name": "x"})
        assert dict(zip(fields[::2], fields[1::2], strict=True))[b"name"] == b"GImap"
    finally:
        imap.logout()


def test_non_ascii_search_needs_charset_utf8_and_a_literal(
    fake_gmail: FakeGmail, account: Account
) -> None:
    account.add_message(build_message("Rechnung März", attachments={"r.pdf": PDF}))
    account.add_message(build_message("Other"))
    marz = "März".encode()
    with RawImap(fake_gmail.port) as raw:
        raw_login(raw)
        raw.send(b'a1 EXAMINE "[Gmail]/All Mail"\r\n')
        raw.until_tagged(b"a1")
        # 8-bit bytes in a quoted string: with or without CHARSET, not IMAP (RFC 3501 QUOTED-CHAR)
        for tag, charset in [(b"b1", b""), (b"b2", b"CHARSET UTF-8 ")]:
            raw.send(tag + b" UID SEARCH " + charset + b'X-GM-RAW "subject:' + marz + b'"\r\n')
            assert raw.until_tagged(tag) == [tag + b" BAD Could not parse command\r\n"]
        # a literal holding 8-bit bytes, in a command that said no charset or US-ASCII
        query = b"subject:" + marz
        literal = b"{%d+}\r\n" % len(query) + query
        for tag, charset in [(b"b3", b""), (b"b4", b"CHARSET US-ASCII ")]:
            raw.send(tag + b" UID SEARCH " + charset + b"X-GM-RAW " + literal + b"\r\n")
            assert raw.until_tagged(tag) == [tag + b" BAD Could not parse command\r\n"]
        raw.send(b"b5 UID SEARCH (X-GM-RAW " + literal + b")\r\n")  # nested too
        assert raw.until_tagged(b"b5") == [b"b5 BAD Could not parse command\r\n"]
        # what works: CHARSET UTF-8 and a literal (synchronising or not)
        raw.send(b"a2 UID SEARCH CHARSET UTF-8 X-GM-RAW " + literal + b"\r\n")
        assert raw.until_tagged(b"a2") == [
            b"* SEARCH 1\r\n",
            b"a2 OK SEARCH completed (Success)\r\n",
        ]
        raw.send(b"a3 UID SEARCH CHARSET UTF-8 X-GM-RAW {%d}\r\n" % len(query))
        assert raw.line() == b"+ go ahead\r\n"
        raw.send(query + b"\r\n")
        assert raw.until_tagged(b"a3")[0] == b"* SEARCH 1\r\n"
        raw.send(b"a4 UID SEARCH X-GM-RAW {6+}\r\nOther \r\n")  # an ASCII literal needs none
        assert raw.until_tagged(b"a4")[0] == b"* SEARCH 2\r\n"


# -- fetch --------------------------------------------------------------------------------


def test_fetch_gmail_items(client: IMAPClient, messages: list[StoredMessage]) -> None:
    client.select_folder("[Gmail]/All Mail", readonly=True)
    uids = [stored.uid for stored in messages]
    fetched = client.fetch(uids, ["X-GM-MSGID", "X-GM-THRID", "X-GM-LABELS", "INTERNALDATE"])
    invoice, note, reply = messages
    assert {uid: data[b"X-GM-MSGID"] for uid, data in fetched.items()} == {
        stored.uid: stored.gm_msgid for stored in messages
    }
    assert fetched[reply.uid][b"X-GM-THRID"] == invoice.gm_msgid != note.gm_msgid
    assert fetched[note.uid][b"X-GM-LABELS"] == (b"\\Important", b"\\Inbox")
    assert fetched[invoice.uid][b"X-GM-LABELS"] == (b"\\Inbox", b"Work")
    assert fetched[note.uid][b"INTERNALDATE"] == datetime(2024, 5, 7, 9, 30)
    assert all(0 < data[b"X-GM-MSGID"] < 2**64 for data in fetched.values())


def test_fetch_bodystructure_and_sections(
    client: IMAPClient, messages: list[StoredMessage]
) -> None:
    invoice = messages[0]
    client.select_folder("[Gmail]/All Mail", readonly=True)
    data = client.fetch([invoice.uid], ["BODYSTRUCTURE", "RFC822.SIZE", "ENVELOPE"])[invoice.uid]
    _, pdf_part = data[b"BODYSTRUCTURE"][0]
    assert (pdf_part[0], pdf_part[1], pdf_part[5]) == (b"APPLICATION", b"OCTET-STREAM", b"BASE64")
    assert pdf_part[8] == (b"ATTACHMENT", (b"FILENAME", b"invoice.pdf"))
    assert data[b"RFC822.SIZE"] == invoice.message.size
    assert data[b"ENVELOPE"].subject == b"Invoice"
    parts = client.fetch([invoice.uid], ["BODY.PEEK[2]", "BODY.PEEK[2]<0.100>", "BODY.PEEK[9]"])
    whole = parts[invoice.uid][b"BODY[2]"]
    assert base64.b64decode(whole) == PDF
    assert parts[invoice.uid][b"BODY[2]<0>"] == whole[:100]
    assert parts[invoice.uid][b"BODY[9]"] is None
    header = client.fetch([invoice.uid], ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])[invoice.uid]
    assert header[b"BODY[HEADER.FIELDS (SUBJECT)]"] == b"Subject: Invoice\r\n\r\n"
    macro = client.fetch([invoice.uid], ["FULL"])[invoice.uid]
    assert macro[b"BODY"][0][1][:7] == pdf_part[:7]
    assert set(macro) == {
        b"SEQ",
        b"FLAGS",
        b"INTERNALDATE",
        b"RFC822.SIZE",
        b"ENVELOPE",
        b"BODY",
    }


def test_partial_fetch_on_the_wire(fake_gmail: FakeGmail, messages: list[StoredMessage]) -> None:
    part = messages[0].message.section("2") or b""
    with RawImap(fake_gmail.port) as raw:
        raw_login(raw)
        raw.send(b"a1 EXAMINE INBOX\r\n")
        raw.until_tagged(b"a1")
        raw.send(b"a2 UID FETCH 1 (BODY.PEEK[2]<0.1048576>)\r\n")
        expected = b"* 1 FETCH (UID 1 BODY[2]<0> {%d}\r\n%s)\r\na2 OK Success\r\n" % (
            len(part),
            part,
        )
        assert b"".join(raw.until_tagged(b"a2")) == expected
        raw.send(b"a3 UID FETCH 1 (BODY.PEEK[2]<10.5> X-GM-MSGID)\r\n")
        assert b"".join(raw.until_tagged(b"a3")) == (
            b"* 1 FETCH (UID 1 BODY[2]<10> {5}\r\n%s X-GM-MSGID %d)\r\na3 OK Success\r\n"
            % (part[10:15], messages[0].gm_msgid)
        )


def test_body_sets_seen_only_in_a_selected_folder(
    fake_gmail: FakeGmail, account: Account, messages: list[StoredMessage]
) -> None:
    invoice, note, _ = messages
    with RawImap(fake_gmail.port) as raw:
        raw_login(raw)
        raw.send(b"a1 EXAMINE INBOX\r\na2 FETCH 1 (BODY[1])\r\n")
        raw.until_tagged(b"a1")
        assert b"FLAGS" not in b"".join(raw.until_tagged(b"a2"))
        assert invoice.flags == frozenset()
        raw.send(b"a3 SELECT INBOX\r\na4 FETCH 2 (BODY.PEEK[1])\r\n")
        raw.until_tagged(b"a3")
        assert b"FLAGS" not in b"".join(raw.until_tagged(b"a4"))
        raw.send(b"a5 FETCH 1:2 (BODY[1])\r\n")
        fetched = b"".join(raw.until_tagged(b"a5"))
        assert fetched.count(b" FLAGS (\\Seen))\r\n") == 2
        assert invoice.flags == note.flags == {"\\Seen"}
        raw.send(b"a6 FETCH 1 (FLAGS BODY[1])\r\n")
        assert b"".join(raw.until_tagged(b"a6")).count(b"FLAGS") == 1
        raw.send(b"a7 UID SEARCH SEEN\r\n")
        assert raw.until_tagged(b"a7")[0] == b"* SEARCH 1 2\r\n"


# -- session behaviour --------------------------------------------------------------------


def test_pipelined_commands(fake_gmail: FakeGmail, messages: list[StoredMessage]) -> None:
    with RawImap(fake_gmail.port) as raw:
        raw_login(raw)
        raw.send(
            b"p1 EXAMINE INBOX\r\np2 UID SEARCH ALL\r\np3 NOOP\r\n"
            b"p4 UID FETCH 1:* (UID)\r\np5 FROB\r\np6 CHECK\r\n"
        )
        answered = [line for line in raw.until_tagged(b"p6") if not line.startswith(b"* ")]
        assert answered == [
            b"p1 OK [READ-ONLY] INBOX selected. (Success)\r\n",
            b"p2 OK SEARCH completed (Success)\r\n",
            b"p3 OK Success\r\n",
            b"p4 OK Success\r\n",
            b"p5 BAD Could not parse command\r\n",
            b"p6 OK Success\r\n",
        ]


def test_wrong_state_and_bad_commands(fake_gmail: FakeGmail, account: Account) -> None:
    with RawImap(fake_gmail.port) as raw:
        session_id = raw.greeting().split()[-1]
        raw.send(b"a1 SELECT INBOX\r\nhello\r\na2 FROB\r\na3 LOGIN\r\n")
        assert raw.line() == b"a1 BAD Command received in Invalid state.\r\n"
        assert raw.line() == b"* BAD invalid tag " + session_id + b"\r\n"
        assert raw.line() == b"a2 BAD Could not parse command\r\n"
        assert raw.line() == b"a3 BAD Could not parse command\r\n"
        raw.send(b"a4 AUTHENTICATE XOAUTH2 " + xoauth2(EMAIL, token()) + b"\r\n")
        raw.until_tagged(b"a4")
        raw.send(b"a5 FETCH 1 UID\r\na6 LOGIN a b\r\na7 ID NIL\r\na8 NAMESPACE\r\n")
        assert raw.until_tagged(b"a5") == [b"a5 BAD Command received in Invalid state.\r\n"]
        assert raw.until_tagged(b"a6") == [b"a6 BAD Command received in Invalid state.\r\n"]
        assert raw.until_tagged(b"a7") == [
            b'* ID ("name" "GImap" "vendor" "Google, Inc." "support-url" '
            b'"https://support.google.com/mail" "version" "gmail_imap_200428.12_p0" '
            b'"remote-host" "127.0.0.1")\r\n',
            b"a7 OK Success\r\n",
        ]
        assert raw.until_tagged(b"a8") == [
            b'* NAMESPACE (("" "/")) NIL NIL\r\n',
            b"a8 OK Success\r\n",
        ]


def test_logout(fake_gmail: FakeGmail, account: Account) -> None:
    with RawImap(fake_gmail.port) as raw:
        raw_login(raw)
        raw.send(b"z9 LOGOUT\r\n")
        assert raw.rest() == b"* BYE LOGOUT Requested\r\nz9 OK 73 good day (Success)\r\n"


def test_new_mail_shows_mid_session(client: IMAPClient, account: Account) -> None:
    client.select_folder("INBOX", readonly=True)
    assert client.search("ALL") == [1, 2]
    arrived = account.add_message(build_message("New"), labels=["\\Inbox"])
    account.add_message(build_message("Archived"))
    assert client.noop()[1] == [(3, b"EXISTS")]
    assert client.search("ALL") == [1, 2, arrived.uid]
    assert client.noop()[1] == []


def test_uidvalidity_changes_between_sessions(
    fake_gmail: FakeGmail, account: Account, messages: list[StoredMessage]
) -> None:
    def examine() -> tuple[int, dict[int, int]]:
        with IMAPClient("127.0.0.1", fake_gmail.port, ssl=False, timeout=10) as client:
            client.oauth2_login(EMAIL, token())
            uidvalidity = client.select_folder("[Gmail]/All Mail", readonly=True)[b"UIDVALIDITY"]
            fetched = client.fetch(client.search("ALL"), ["X-GM-MSGID"])
            return uidvalidity, {uid: data[b"X-GM-MSGID"] for uid, data in fetched.items()}

    account.add_message(build_message("Fourth"))
    first_validity, first = examine()
    account.set_uidvalidity(7)
    account.add_message(build_message("Fifth"))
    second_validity, second = examine()
    assert (first_validity, second_validity) == (1, 7)
    assert sorted(first) == [1, 2, 3, 4]
    assert sorted(second) == [1, 2, 3, 4, 5]
    assert [second[uid] for uid in sorted(first)] == [first[uid] for uid in sorted(first)]


# -- configuration ------------------------------------------------------------------------


def write_config(directory: Path) -> Path:
    mail = directory / "mail"
    mail.mkdir()
    (mail / "a.eml").write_bytes(build_message("From sidecar", attachments={"a.pdf": b"%PDF"}))
    (mail / "a.json").write_text(json.dumps({"labels": ["\\Inbox", "Receipts"]}))
    (mail / "b.eml").write_bytes(build_message("No sidecar"))
    config = {
        "token_secret": "config secret",
        "accounts": [
            {
                "email": EMAIL,
                "password": PASSWORD,
                "all_mail_name": "[Google Mail]/Alle Nachrichten",
                "uidvalidity": 42,
                "latency": 0.0,
                "messages": [
                    {"path": "mail/*.eml"},
                    {"path": "mail/b.eml", "labels": ["Later"], "flags": ["\\Seen"]},
                ],
                "faults": [{"kind": "throttled", "commands": ["noop"], "times": 1}],
            }
        ],
    }
    path = directory / "gmail.json"
    path.write_text(json.dumps(config))
    return path


def test_config_file(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    config = GmailConfig.model_validate_json(path.read_text())
    with FakeGmail(token_secret=config.token_secret) as gmail:
        config.populate(gmail, tmp_path)
        account = gmail.account(EMAIL)
        assert [sorted(m.labels) for m in account.messages()] == [
            ["Receipts", "\\Inbox"],
            [],
            ["Later"],
        ]
        assert account.messages()[2].flags == {"\\Seen"}
        assert account.messages()[0].internaldate == datetime(2024, 5, 6, 10, 0, tzinfo=UTC)
        assert [fault.kind for fault in account.faults.active()] == [FaultKind.THROTTLED]
        with IMAPClient("127.0.0.1", gmail.port, ssl=False, timeout=10) as client:
            client.oauth2_login(EMAIL, token(secret="config secret"))
            status = client.select_folder("[Google Mail]/Alle Nachrichten", readonly=True)
            assert (status[b"UIDVALIDITY"], status[b"EXISTS"]) == (42, 3)
            assert client.gmail_search("has:attachment") == [1]
        assert not gmail.errors


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"accounts": [{"email": EMAIL, "pasword": "x"}]}, "pasword"),
        ({"accounts": [{"email": EMAIL, "faults": [{"kind": "meteor"}]}]}, "meteor"),
        ({"accounts": [{"email": EMAIL, "faults": [{"kind": "throttled", "tmes": 1}]}]}, "tmes"),
        ({"accounts": [{"email": EMAIL, "messages": [{"path": "none/*.eml"}]}]}, "matches no file"),
    ],
)
def test_config_file_errors(tmp_path: Path, change: dict[str, object], message: str) -> None:
    path = tmp_path / "gmail.json"
    path.write_text(json.dumps(change))
    with pytest.raises(ConfigError, match=message), FakeGmail() as gmail:
        load_config(path).populate(gmail, tmp_path)


def test_serve_runs_from_a_config_file(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    script = "import sys; from pathlib import Path; from standins.fakegmail import serve; "
    script += "serve(Path(sys.argv[1]), host='127.0.0.1', port=0)"
    command = [sys.executable, "-c", script, str(path)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            listening = re.fullmatch(
                r"fake Gmail IMAP listening on 127\.0\.0\.1:(\d+)\n", process.stdout.readline()
            )
            assert listening
            imap = imaplib.IMAP4("127.0.0.1", int(listening[1]), timeout=10)
            assert imap.login(EMAIL, PASSWORD)[0] == "OK"
            imap.logout()
            # Its ledger: a line of JSON when the session connects, and one when it ends.
            connected = json.loads(process.stdout.readline())
            ended = json.loads(process.stdout.readline())
        finally:
            process.terminate()
        assert process.wait(timeout=10) == 0
    assert connected["session"] == ended["session"]
    assert (connected["ended"], connected["user"], connected["commands"]) == (False, None, {})
    assert (ended["ended"], ended["user"]) == (True, EMAIL)
    assert ended["commands"] == {"CAPABILITY": 1, "LOGIN": 1, "LOGOUT": 1}
    assert 0 < ended["longest_line_out"] < ended["bytes_out"]
    assert ended["last_words"] is None


def test_ledger_sees_the_session_end(fake_gmail: FakeGmail, account: Account) -> None:
    client = IMAPClient("127.0.0.1", fake_gmail.port, ssl=False, timeout=10)
    client.oauth2_login(EMAIL, token())
    assert account.ledger.connected == 1
    client.shutdown()
    eventually(lambda: account.ledger.connected == 0)


CORPUS = Path(__file__).parents[2] / "fixtures" / "messages"


def test_the_fixture_corpus_is_served(tmp_path: Path) -> None:
    emails = sorted(CORPUS.glob("*.eml"))
    require(bool(emails), "the fixture corpus (python fixtures/build_corpus.py)")
    config_path = tmp_path / "corpus.json"
    config_path.write_text(
        json.dumps({"accounts": [{"email": EMAIL, "messages": [{"path": f"{CORPUS}/*.eml"}]}]})
    )
    with FakeGmail() as gmail:
        load_config(config_path).populate(gmail, tmp_path)
        account = gmail.account(EMAIL)
        stored = account.messages()
        assert len(stored) == len(emails)
        with IMAPClient("127.0.0.1", gmail.port, ssl=False, timeout=10) as client:
            client.oauth2_login(EMAIL, token())
            client.select_folder("[Gmail]/All Mail", readonly=True)
            uids = [message.uid for message in stored]
            fetched = client.fetch(uids, ["BODYSTRUCTURE", "BODY", "ENVELOPE", "X-GM-LABELS"])
            headers = client.fetch(uids, ["BODY.PEEK[HEADER]"])
        for message in stored:
            assert fetched[message.uid][b"BODYSTRUCTURE"]
            assert headers[message.uid][b"BODY[HEADER]"] == message.message.section("HEADER")
            labels = {imap_utf7.decode(label) for label in fetched[message.uid][b"X-GM-LABELS"]}
            assert labels == message.labels
        assert not gmail.errors
