"""The private Dovecot: logins, mailboxes filled in order, BODYSTRUCTURE and parts, teardown."""

from __future__ import annotations

import datetime
import shutil
import socket
import uuid
from collections.abc import Iterator
from email.message import EmailMessage

import imapclient
import pytest
from imapclient.exceptions import IMAPClientAbortError, LoginError

from tests.plugins.dovecot import Dovecot, DovecotError, require_dovecot

pytestmark = pytest.mark.integration

PDF = b"%PDF-1.4 an invoice\n" * 40
TEXT = "Please find the invoice attached.\n"


def unique_user() -> str:
    return f"user-{uuid.uuid4().hex[:12]}"


def invoice() -> bytes:
    message = EmailMessage()
    message["From"] = "billing@example.com"
    message["To"] = "alice@example.com"
    message["Subject"] = "Invoice"
    message["Date"] = "Tue, 02 Jan 2024 09:30:00 +0000"
    message.set_content(TEXT)
    message.add_attachment(PDF, maintype="application", subtype="pdf", filename="invoice.pdf")
    return message.as_bytes()


def note(subject: str) -> bytes:
    return f"From: a@example.com\r\nSubject: {subject}\r\n\r\nA note.\r\n".encode()


@pytest.fixture
def client(dovecot: Dovecot) -> Iterator[imapclient.IMAPClient]:
    """An IMAP client of the session's Dovecot, logged out afterwards."""
    client = imapclient.IMAPClient(dovecot.host, dovecot.port, ssl=False, timeout=10)
    yield client
    client.logout()


def subjects_by_uid(client: imapclient.IMAPClient) -> dict[int, bytes]:
    fetched = client.fetch(client.search("ALL"), ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
    return {
        uid: data[b"BODY[HEADER.FIELDS (SUBJECT)]"].strip().removeprefix(b"Subject: ")
        for uid, data in fetched.items()
    }


def test_login_examine_and_fetch_parts(dovecot: Dovecot, client: imapclient.IMAPClient) -> None:
    name = unique_user()
    dovecot.add_user(name, "s3cret", [note("first"), invoice()])
    client.login(name, "s3cret")

    examined = client.select_folder("INBOX", readonly=True)
    assert examined[b"EXISTS"] == 2
    assert examined[b"READ-ONLY"] == [b""]

    fetched = client.fetch([2], ["BODYSTRUCTURE", "BODY.PEEK[1]", "INTERNALDATE", "FLAGS"])[2]
    structure = fetched[b"BODYSTRUCTURE"]
    assert structure.is_multipart
    text_part, pdf_part = structure[0]
    assert (text_part[0], text_part[1]) == (b"text", b"plain")
    assert (pdf_part[0], pdf_part[1], pdf_part[5]) == (b"application", b"pdf", b"base64")
    assert pdf_part[8] == (b"attachment", (b"filename", b"invoice.pdf"))
    assert fetched[b"BODY[1]"] == TEXT.replace("\n", "\r\n").encode()
    # INTERNALDATE is the Date header (as local time), and PEEK left the message unseen.
    sent = datetime.datetime(2024, 1, 2, 9, 30, tzinfo=datetime.UTC)
    assert fetched[b"INTERNALDATE"] == sent.astimezone().replace(tzinfo=None)
    assert b"\\Seen" not in fetched[b"FLAGS"]


def test_fifty_messages_get_uids_in_the_order_given(
    dovecot: Dovecot, client: imapclient.IMAPClient
) -> None:
    name = unique_user()
    order = [f"message {n}".encode() for n in (*range(49, 24, -1), *range(25))]
    dovecot.add_user(name, "pw", [note(subject.decode()) for subject in order])
    client.login(name, "pw")
    client.select_folder("INBOX", readonly=True)

    assert subjects_by_uid(client) == dict(enumerate(order, start=1))


def test_users_see_only_their_own_mail(dovecot: Dovecot) -> None:
    alice, bob = unique_user(), unique_user()
    dovecot.add_user(alice, "a-pw", [note("for alice")])
    dovecot.add_user(bob, "b-pw", [note("for bob 1"), note("for bob 2")])

    for name, password, expected in [(alice, "a-pw", 1), (bob, "b-pw", 2)]:
        with imapclient.IMAPClient(dovecot.host, dovecot.port, ssl=False, timeout=10) as client:
            client.login(name, password)
            assert client.select_folder("INBOX", readonly=True)[b"EXISTS"] == expected


def test_a_wrong_password_is_refused(dovecot: Dovecot, client: imapclient.IMAPClient) -> None:
    name = unique_user()
    dovecot.add_user(name, "right", [])
    with pytest.raises(LoginError):
        client.login(name, "wrong")


@pytest.mark.parametrize(
    ("name", "password"),
    [
        ("../escape", "pw"),
        ("..", "pw"),
        ("a:b", "pw"),
        ("", "pw"),
        ("ok", "has space"),
        ("ok", "a:b"),
    ],
)
def test_names_and_passwords_that_break_the_passwd_file_are_refused(
    dovecot: Dovecot, name: str, password: str
) -> None:
    with pytest.raises(ValueError, match="passwd-file"):
        dovecot.add_user(name, password, [])


def test_a_user_name_is_taken_once(dovecot: Dovecot) -> None:
    name = unique_user()
    dovecot.add_user(name, "pw", [])
    with pytest.raises(ValueError, match="exists already"):
        dovecot.add_user(name, "other", [])


def test_teardown_leaves_no_process_and_no_files() -> None:
    require_dovecot()
    with Dovecot() as server:
        server.add_user("carol", "pw", [note("hello")])
        client = imapclient.IMAPClient(server.host, server.port, ssl=False, timeout=10)
        client.login("carol", "pw")  # an IMAP process of its own, still logged in at the end
        client.select_folder("INBOX", readonly=True)
        running = server.live_processes()
        log_path = server.log_path

    assert len(running) >= 3  # at least the master, the login and the IMAP process
    assert server.live_processes() == []
    assert not log_path.parent.exists()
    with pytest.raises(IMAPClientAbortError):
        client.noop()  # the server side of the session is gone too
    client.shutdown()


def test_a_failed_start_says_why_and_where_the_log_is() -> None:
    require_dovecot()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        server = Dovecot(port=squatter.getsockname()[1])
        with pytest.raises(DovecotError, match="Address already in use") as failure, server:
            pass

    assert str(server.log_path) in str(failure.value)
    assert server.live_processes() == []
    shutil.rmtree(server.log_path.parent)  # kept after a failed start, for its log
