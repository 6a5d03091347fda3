"""The fake Gmail's generated mailbox: sparse UIDs in the millions, made as they are read."""

import imaplib
import itertools
import json
from pathlib import Path

import pytest

from standins.fakegmail import ConfigError, FakeGmail, GeneratedAccount, load_config

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


def test_a_generated_account_is_described_in_the_config_file(
    fake_gmail: FakeGmail, tmp_path: Path
) -> None:
    generated = {"count": 3000, "seed": 7, "first_uid": 500, "spacing": 3, "attachment_every": 40}
    path = tmp_path / "gmail.json"
    entry = {"email": "gen@example.com", "password": "pw", "uidvalidity": 9, "daily_limit": 10**6}
    path.write_text(json.dumps({"accounts": [{**entry, "generated": generated}]}))

    load_config(path).populate(fake_gmail, tmp_path)

    account = fake_gmail.account("gen@example.com")
    assert isinstance(account, GeneratedAccount)
    assert account.quota.limit == 10**6
    same = GeneratedAccount("gen@example.com", **generated)
    assert account.uidnext == same.uidnext
    assert account.attachment_uids() == same.attachment_uids()
    client = imaplib.IMAP4("127.0.0.1", fake_gmail.port)
    client.login("gen@example.com", "pw")
    assert client.select('"[Gmail]/All Mail"', readonly=True) == ("OK", [b"3000"])
    assert client.response("UIDVALIDITY") == ("UIDVALIDITY", [b"9"])
    client.logout()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"generated": {"count": 10}, "messages": [{"path": "*.eml"}]}, "no `messages`"),
        ({"generated": {"count": 10}, "hide_all_mail": True}, "cannot hide All Mail"),
        ({"generated": {"attachment_every": 10}}, "count"),
        ({"generated": {"count": 10, "spacing": 0}}, "spacing"),
        ({"generated": {"count": 10, "first_uid": 2**32}}, "32-bit"),
    ],
)
def test_generated_account_config_errors(
    fake_gmail: FakeGmail, tmp_path: Path, change: dict[str, object], message: str
) -> None:
    path = tmp_path / "gmail.json"
    path.write_text(json.dumps({"accounts": [{"email": "gen@example.com", **change}]}))
    with pytest.raises(ConfigError, match=message):
        load_config(path).populate(fake_gmail, tmp_path)
