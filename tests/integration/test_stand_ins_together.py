"""The stand-ins together, as the crawler uses them: an access token from the fake Google token
endpoint logs IMAPClient and Python's imaplib into the fake Gmail, which find All Mail by `\\All`,
EXAMINE it, search with X-GM-RAW and fetch Gmail's items, BODYSTRUCTURE and a part."""

import base64
import imaplib
import re

import pytest
import requests
from imapclient import IMAPClient

from standins.fakegmail import Account, FakeGmail
from standins.fakeoauth import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, FakeTokenEndpoint
from tests.plugins.fakes import build_message

pytestmark = pytest.mark.integration

EMAIL = "alice@example.com"
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 8


@pytest.fixture
def account(fake_gmail: FakeGmail) -> Account:
    account = fake_gmail.add_account(EMAIL, all_mail_name="[Gmail]/Tous les messages")
    account.add_message(build_message("Lunch?", body="Noon?\n"), labels=["\\Inbox"])
    account.add_message(
        build_message("Invoice", attachments={"invoice.pdf": PDF}), labels=["\\Inbox", "Work"]
    )
    return account


@pytest.fixture
def access_token() -> str:
    with FakeTokenEndpoint() as endpoint:
        endpoint.add_grant("refresh-1", EMAIL)
        answer = requests.post(
            endpoint.url,
            data={
                "grant_type": "refresh_token",
                "refresh_token": "refresh-1",
                "client_id": DEFAULT_CLIENT_ID,
                "client_secret": DEFAULT_CLIENT_SECRET,
            },
            timeout=10,
        )
        assert endpoint.refresh_count("refresh-1") == 1
    answer.raise_for_status()
    token = answer.json()
    assert token["token_type"] == "Bearer" and token["expires_in"] > 0
    return str(token["access_token"])


def test_imapclient_walks_the_crawl_path(
    fake_gmail: FakeGmail, account: Account, access_token: str
) -> None:
    with IMAPClient("127.0.0.1", fake_gmail.port, ssl=False, timeout=10) as client:
        client.oauth2_login(EMAIL, access_token)
        all_mail = next(name for flags, _, name in client.list_folders() if b"\\All" in flags)
        assert all_mail == "[Gmail]/Tous les messages"
        assert client.select_folder(all_mail, readonly=True)[b"UIDVALIDITY"] == 1
        uids = client.gmail_search("has:attachment filename:pdf")
        assert uids == [2]
        items = ["X-GM-MSGID", "X-GM-THRID", "X-GM-LABELS", "BODYSTRUCTURE", "BODY.PEEK[2]"]
        data = client.fetch(uids, items)[2]
    assert data[b"X-GM-LABELS"] == (b"\\Inbox", b"Work")
    assert isinstance(data[b"X-GM-MSGID"], int) and isinstance(data[b"X-GM-THRID"], int)
    pdf = data[b"BODYSTRUCTURE"][0][1]
    assert (pdf[0], pdf[1], pdf[5]) == (b"APPLICATION", b"OCTET-STREAM", b"BASE64")
    assert base64.b64decode(data[b"BODY[2]"]) == PDF
    assert account.ledger.sessions[-1].ended_at is not None


def test_imaplib_walks_the_crawl_path(
    fake_gmail: FakeGmail, account: Account, access_token: str
) -> None:
    imap = imaplib.IMAP4("127.0.0.1", fake_gmail.port, timeout=10)
    auth = f"user={EMAIL}\x01auth=Bearer {access_token}\x01\x01".encode()
    assert imap.authenticate("XOAUTH2", lambda _: auth)[0] == "OK"
    _, listing = imap.list()
    all_mail = next(
        re.search(rb'"([^"]+)"$', line).group(1)  # type: ignore[union-attr]
        for line in listing
        if isinstance(line, bytes) and b"\\All" in line
    )
    assert imap.select(f'"{all_mail.decode()}"', readonly=True) == ("OK", [b"2"])
    status, found = imap.uid("SEARCH", "X-GM-RAW", '"has:attachment from:bob"')
    assert (status, found) == ("OK", [b"2"])
    status, fetched = imap.uid("FETCH", "2", "(X-GM-LABELS BODY.PEEK[2])")
    assert status == "OK"
    head, body = fetched[0]  # type: ignore[misc]
    assert b"X-GM-LABELS (\\Inbox Work)" in head
    assert base64.b64decode(body) == PDF
    imap.logout()
