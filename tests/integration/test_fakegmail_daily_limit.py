"""The fake Gmail's daily download limit: bytes sent per account in a rolling day, across
sessions; past the limit `* BYE [OVERQUOTA]` mid-response, then `NO [ALERT]` at login for a day."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from standins.fakegmail import Account, FakeGmail
from standins.fakegmail.config import load_config
from tests.plugins.fakes import RawImap, build_message

pytestmark = pytest.mark.integration

EMAIL = "alice@example.com"
PASSWORD = "app-password"
BYE_OVERQUOTA = b"* BYE [OVERQUOTA] Account exceeded command or bandwidth limits.\r\n"
LOGIN_REFUSED = b"l1 NO [ALERT] Account exceeded command or bandwidth limits. (Failure)\r\n"
ATTACHMENT = bytes(range(256)) * 40  # 10 KiB, about 14 KB in base64


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def gmail(clock: Clock) -> Iterator[FakeGmail]:
    with FakeGmail(clock=clock) as server:
        yield server
    assert not server.errors


@pytest.fixture
def account(gmail: FakeGmail) -> Account:
    account = gmail.add_account(EMAIL, password=PASSWORD)
    for number in range(3):
        account.add_message(build_message(f"m{number}", attachments={"a.bin": ATTACHMENT}))
    return account


def session(port: int) -> RawImap:
    raw = RawImap(port)
    raw.greeting()
    raw.send(f'l1 LOGIN "{EMAIL}" "{PASSWORD}"\r\n'.encode())
    return raw


def fetch_all(port: int) -> bytes:
    """One session that fetches every attachment: what came back, to the end."""
    with session(port) as raw:
        assert raw.until_tagged(b"l1")[-1].startswith(b"l1 OK")
        raw.send(b'e1 EXAMINE "[Gmail]/All Mail"\r\nf1 UID FETCH 1:* (BODY.PEEK[2])\r\n')
        raw.send(b"z1 LOGOUT\r\n")
        return raw.rest()


def test_bytes_count_across_sessions_and_past_the_limit_gmail_says_overquota(
    gmail: FakeGmail, account: Account, clock: Clock
) -> None:
    fetch_all(gmail.port)
    one_session = account.quota.used()
    assert one_session > 3 * len(ATTACHMENT)
    account.quota.limit = int(one_session * 1.5)

    answer = fetch_all(gmail.port)  # the day's second session crosses the limit mid-FETCH
    assert answer.endswith(BYE_OVERQUOTA)
    assert b"f1 OK" not in answer
    assert account.quota.used() == account.quota.limit
    assert account.quota.exceeded == 1

    with session(gmail.port) as raw:  # locked: the user's own mail apps too
        assert raw.until_tagged(b"l1")[-1] == LOGIN_REFUSED

    clock.now += 86400 - 1
    with session(gmail.port) as raw:
        assert raw.until_tagged(b"l1")[-1] == LOGIN_REFUSED

    clock.now += 1  # a day after it went past the limit: unlocked, the count aged out
    assert account.quota.used() == 0
    assert fetch_all(gmail.port).endswith(b"z1 OK 73 good day (Success)\r\n")


def test_a_session_locked_meanwhile_gets_bye_at_its_next_command(
    gmail: FakeGmail, account: Account
) -> None:
    with session(gmail.port) as raw:
        assert raw.until_tagged(b"l1")[-1].startswith(b"l1 OK")
        account.quota.limit = account.quota.used() + 10  # another session spends the rest
        account.quota.exceed()
        raw.send(b"n1 NOOP\r\n")
        assert raw.rest() == BYE_OVERQUOTA


def test_a_shorter_day_ages_the_count_and_ends_the_lock_sooner(
    gmail: FakeGmail, account: Account, clock: Clock
) -> None:
    account.quota.window = 60.0
    fetch_all(gmail.port)
    account.quota.limit = int(account.quota.used() * 1.5)
    assert fetch_all(gmail.port).endswith(BYE_OVERQUOTA)

    clock.now += 59
    with session(gmail.port) as raw:
        assert raw.until_tagged(b"l1")[-1] == LOGIN_REFUSED

    clock.now += 1  # the day of 60 s passed: unlocked, the count aged out
    assert account.quota.used() == 0
    assert fetch_all(gmail.port).endswith(b"z1 OK 73 good day (Success)\r\n")


def test_the_limit_and_the_day_are_set_in_the_config_file(tmp_path: Path, gmail: FakeGmail) -> None:
    path = tmp_path / "gmail.json"
    path.write_text(
        '{"accounts": [{"email": "bob@example.com", "daily_limit": 1000, "daily_window": 5},'
        ' {"email": "carol@example.com"}]}'
    )
    load_config(path).populate(gmail, tmp_path)
    bob, carol = gmail.account("bob@example.com").quota, gmail.account("carol@example.com").quota
    assert (bob.limit, bob.window) == (1000, 5)
    assert (carol.limit, carol.window) == (None, 86400)
