"""Searches go in UID windows: no answer line grows with the mailbox.

Gmail answers a search with one `* SEARCH` line holding every hit, and imaplib refuses a line over
1,000,000 bytes: a big account's search of every message (an image rule) or of `has:attachment`
failed every crawl. The session searches `UID low:high` windows from the cursor to UIDNEXT - 1.
"""

import re
import time
from collections.abc import Iterator

import pytest

import crawler.gmail.session as session_module
from crawler.gmail.session import SEARCH_WINDOW, ImapSession
from standins import tokens
from standins.fakegmail import Account, FakeGmail
from tests.plugins.crawling import World
from tests.plugins.fakes import build_message

pytestmark = pytest.mark.integration

EMAIL, PASSWORD = "sparse@example.com", "app-password"
ALL_MAIL = "[Gmail]/All Mail"
WINDOW = 10


def searches(gmail: FakeGmail) -> list[bytes]:
    """The criteria of each UID SEARCH sent, in order."""
    found = []
    for line in gmail.ledger.lines:
        match = re.match(rb"\S+ UID SEARCH (.*)\r\n", line)
        if match:
            found.append(match.group(1))
    return found


@pytest.fixture
def sparse(fake_gmail: FakeGmail) -> Account:
    """UIDs 1-3, 10 (the last of the first window of 10), 11 (the first of the second), then
    nothing until 41 (two empty windows), 41-47: 12 messages, more than a window."""
    account = fake_gmail.add_account(EMAIL, password=PASSWORD)
    for n in range(3):
        account.add_message(build_message(f"n{n}"))
    account.skip_uids(6)
    account.add_message(build_message("edge", attachments={"edge.pdf": b"%PDF-edge"}))
    account.add_message(build_message("next", attachments={"next.pdf": b"%PDF-next"}))
    account.skip_uids(29)
    for n in range(7):
        account.add_message(build_message(f"late{n}"))
    return account


@pytest.fixture
def session(
    fake_gmail: FakeGmail, sparse: Account, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ImapSession]:
    monkeypatch.setattr(session_module, "SEARCH_WINDOW", WINDOW)
    imap = ImapSession("127.0.0.1", fake_gmail.port, tls=False, timeout=10, max_literal=2**20)
    imap.login(EMAIL, PASSWORD)
    try:
        yield imap
    finally:
        imap.logout()


def uids(account: Account) -> list[int]:
    return [stored.uid for stored in account.messages()]


def test_windows_cover_sparse_uids_from_the_cursor_to_uidnext(
    fake_gmail: FakeGmail, sparse: Account, session: ImapSession
) -> None:
    mailbox = session.examine(ALL_MAIL)
    assert uids(sparse) == [1, 2, 3, 10, 11, *range(41, 48)] and mailbox.uidnext == 48
    fake_gmail.ledger.reset()

    assert session.search(None, 0, mailbox.uidnext) == uids(sparse)
    assert session.search("has:attachment", 0, mailbox.uidnext) == [10, 11]
    assert session.search("has:attachment", 10, mailbox.uidnext) == [11]  # cursor on a hit

    windows = [b"UID 1:10", b"UID 11:20", b"UID 21:30", b"UID 31:40", b"UID 41:47"]
    above_10 = windows[1:]
    assert searches(fake_gmail) == [
        *windows,
        *(b"CHARSET UTF-8 " + w + b" X-GM-RAW has:attachment" for w in windows),
        *(b"CHARSET UTF-8 " + w + b" X-GM-RAW has:attachment" for w in above_10),
    ]


def test_no_window_reaches_past_uidnext(
    fake_gmail: FakeGmail, sparse: Account, session: ImapSession
) -> None:
    mailbox = session.examine(ALL_MAIL)
    arrived = sparse.add_message(build_message("arrived after EXAMINE"))
    fake_gmail.ledger.reset()

    found = session.search(None, 40, mailbox.uidnext)

    assert found == list(range(41, 48)) and arrived.uid == 48
    assert searches(fake_gmail) == [b"UID 41:47"]  # never `n:*`, which names UID 48 too


def test_uidnext_at_or_below_the_cursor_searches_nothing(
    fake_gmail: FakeGmail, session: ImapSession
) -> None:
    mailbox = session.examine(ALL_MAIL)
    fake_gmail.ledger.reset()

    assert session.search(None, 100, mailbox.uidnext) == []
    assert session.search(None, 47, mailbox.uidnext) == []
    assert searches(fake_gmail) == []


def test_without_uidnext_the_highest_uid_ends_the_windows(
    fake_gmail: FakeGmail, sparse: Account, session: ImapSession
) -> None:
    session.examine(ALL_MAIL)
    fake_gmail.ledger.reset()

    assert session.search(None, 25, 0) == list(range(41, 48))
    assert searches(fake_gmail) == [b"UID *", b"UID 26:35", b"UID 36:45", b"UID 46:47"]


def test_a_folder_no_bigger_than_a_window_is_searched_at_once(
    fake_gmail: FakeGmail, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = fake_gmail.add_account("small@example.com", password=PASSWORD)
    account.skip_uids(5_000_000)
    for n in range(3):
        account.add_message(build_message(f"m{n}"))
        account.skip_uids(1_000_000)
    imap = ImapSession("127.0.0.1", fake_gmail.port, tls=False, timeout=10, max_literal=2**20)
    imap.login("small@example.com", PASSWORD)
    mailbox = imap.examine(ALL_MAIL)
    fake_gmail.ledger.reset()

    assert imap.search(None, 0, mailbox.uidnext) == [5_000_001, 6_000_002, 7_000_003]
    imap.logout()

    # 3 messages: at most 3 hits, however far apart their UIDs
    assert searches(fake_gmail) == [b"UID 1:8000003"]


def add_generated(world: World, email: str, user_uuid: str, count: int, **rule: object) -> None:
    world.gmail.add_generated_account(email, count=count, attachment_every=2000)
    world.oauth.add_grant(f"refresh-{user_uuid}", email)
    expires_at = time.time() + 86400
    world.db.accounts.insert_one(
        tokens.gmail_account(world.cipher, user_uuid, email, f"refresh-{user_uuid}", expires_at)
    )
    world.db.rules.insert_one({"user_uuid": user_uuid, **rule})


def test_a_search_whose_answer_would_pass_a_megabyte_is_windowed(world: World) -> None:
    # An image rule searches every message: 200,000 UIDs of up to 6 digits, 1.3 MB in one line.
    add_generated(world, "big@example.com", "big", 200_000, content_types=["image/*"])
    settings = world.settings.model_copy(update={"max_crawl_time": 0.1})

    result = world.iterate(settings=settings)  # stops after its first batch; resumes later

    status = world.status("big")
    assert result.outcomes["big"] != "error", status.get("last_error")
    assert "got more than" not in str(status.get("last_error"))
    assert status["pending_uid"] == 200_000
    criteria = searches(world.gmail)
    assert criteria == [
        f"UID {low}:{min(low + SEARCH_WINDOW - 1, 200_000)}".encode()
        for low in range(1, 200_001, SEARCH_WINDOW)
    ]
    assert world.gmail.account("big@example.com").ledger.longest_line_out < 2**20 // 2
