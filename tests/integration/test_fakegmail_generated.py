"""The fake Gmail's generated mailbox: sparse UIDs in the millions, made as they are read."""

import imaplib
import itertools

import pytest

from standins.fakegmail import FakeGmail

pytestmark = pytest.mark.integration


def test_a_generated_mailbox_answers_search_and_fetch_and_counts_its_longest_line(
    fake_gmail: FakeGmail,
) -> None:
    account = fake_gmail.add_generated_account(
        "gen@example.com",
        count=5000,
        first_uid=3_000_000,
        spacing=7,
        attachment_every=50,
        password="pw",
    )
    uids = [account.uid_of(i) for i in range(account.count)]
    assert uids[0] >= 3_000_000 and all(b - a >= 1 for a, b in itertools.pairwise(uids))
    assert any(b - a > 1 for a, b in itertools.pairwise(uids))  # gaps
    assert account.uidnext == uids[-1] + 1
    assert account.index_of(uids[10]) == 10 and account.index_of(uids[10] + 1) in {None, 11}
    photos = account.attachment_uids()
    assert 0 < len(photos) < account.count // 10

    client = imaplib.IMAP4("127.0.0.1", fake_gmail.port)
    client.login("gen@example.com", "pw")
    assert client.select('"[Gmail]/All Mail"', readonly=True) == ("OK", [b"5000"])
    _, [found] = client.uid("SEARCH", "CHARSET", "UTF-8", "X-GM-RAW", "has:attachment")
    assert [int(uid) for uid in found.split()] == photos
    _, [every] = client.uid("SEARCH", "UID", f"1:{account.uidnext - 1}")
    assert [int(uid) for uid in every.split()] == uids
    _, data = client.uid("FETCH", str(photos[0]), "(BODYSTRUCTURE BODY.PEEK[2])")
    head, part = data[0]
    assert b'"IMAGE" "PNG"' in head and part.startswith(b"iVBORw0KGg")  # the PNG magic in base64
    client.logout()

    assert account.ledger.longest_line_out == len(b"* SEARCH") + 8 * len(uids) + 2
