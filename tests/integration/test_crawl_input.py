"""Hostile and malformed input: rule strings, filenames, a UIDVALIDITY change."""

import re
from email.message import EmailMessage
from pathlib import Path

import pytest

from standins.fakegmail import FakeGmail
from tests.plugins.crawling import World
from tests.plugins.fakes import build_message

pytestmark = pytest.mark.integration

EMAIL = "alice@example.com"
COMMANDS = {b"CAPABILITY", b"AUTHENTICATE", b"ID", b"LIST", b"EXAMINE", b"UID", b"LOGOUT"}


def command_names(gmail: FakeGmail) -> list[bytes]:
    return [line.rstrip(b"\r\n").split(b" ")[1] for line in gmail.ledger.lines]


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("x\r\nA1 LOGOUT", "control character"),
        ("x\nA1 LOGOUT", "control character"),
        ("nul\x00byte", "control character"),
        ("q" * 10_000, "at most 2048"),
        ('subject:"open', "unbalanced double quote"),
    ],
)
def test_an_invalid_rule_fails_alone(world: World, query: str, reason: str) -> None:
    world.add_account(EMAIL, "u1")
    world.db.rules.insert_one({"_id": "bad", "user_uuid": "u1", "query": query})
    world.gmail.account(EMAIL).add_message(build_message(attachments={"a.txt": b"a"}))

    assert world.iterate().outcomes == {"u1": "idle"}

    assert reason in world.status("u1")["rule_errors"]["bad"]
    assert [doc["filename"] for doc in world.stored("u1").values()] == ["a.txt"]
    assert set(command_names(world.gmail)) <= COMMANDS


def test_an_account_whose_only_rule_is_invalid_is_an_error(world: World) -> None:
    world.add_account(EMAIL, "u1", query="bad\r\nquery")

    assert world.iterate().outcomes == {"u1": "error"}
    assert "no usable rule" in world.status("u1")["last_error"]["message"]
    assert world.gmail.ledger.sessions_opened == 0


def test_an_account_whose_rules_are_all_disabled_rests_without_an_error(world: World) -> None:
    world.add_account(EMAIL, "u1")
    world.iterate()  # crawled while its rule was on
    world.db.rules.update_many({"user_uuid": "u1"}, {"$set": {"enabled": False}})
    world.gmail.ledger.reset()
    world.make_due("u1")

    assert world.iterate().outcomes == {"u1": "idle"}

    status = world.status("u1")
    assert status["last_error"] is None and status["consecutive_errors"] == 0
    assert status["next_crawl_at"] == world.now + world.settings.crawl_interval
    assert world.gmail.ledger.sessions_opened == 0  # nothing to look for: no session


@pytest.mark.parametrize(
    "query",
    [
        'subject:"A1 LOGOUT" OR "x) A2 DELETE INBOX"',
        "from:m\u00fcller \u0444\u0430\u0439\u043b",
        "{a b} \\\\ ( c )",
        "x" * 2000,
    ],
    ids=["quotes", "utf-8", "backslashes", "long"],
)
def test_rule_strings_never_add_a_command(world: World, query: str) -> None:
    world.add_account(EMAIL, "u1", query=query)
    world.gmail.account(EMAIL).add_message(build_message(attachments={"a.txt": b"a"}))

    assert world.iterate().outcomes == {"u1": "idle"}, world.status("u1")["last_error"]

    names = command_names(world.gmail)
    assert set(names) <= COMMANDS
    assert names.count(b"LOGOUT") == 1 and names[-1] == b"LOGOUT"
    [search] = [line for line in world.gmail.ledger.lines if b"SEARCH" in line]
    assert query.encode() in search.replace(b'\\"', b'"').replace(b"\\\\", b"\\")


HOSTILE_NAMES = [
    "../../x",
    "/etc/passwd",
    "C:\\x\\y.pdf",
    "a\x00b.pdf",
    "n" * 1000 + ".pdf",
    "..",
    "\u202egpj.exe",
]


def test_hostile_filenames_are_kept_for_display_and_never_become_paths(world: World) -> None:
    world.add_account(EMAIL, "u1")
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "x@example.com", EMAIL, "names"
    message.set_content("files")
    for n, name in enumerate(HOSTILE_NAMES):
        message.add_attachment(bytes([n]) * 10, "application", "octet-stream", filename=name)
    world.gmail.account(EMAIL).add_message(message.as_bytes())

    assert world.iterate().outcomes == {"u1": "idle"}, world.status("u1")["last_error"]

    # A NUL in a header reaches IMAP clients as U+FFFD (Dovecot does so, and the fake with it).
    names = sorted(name.replace("\x00", "\ufffd") for name in HOSTILE_NAMES)
    assert sorted(doc["filename"] for doc in world.stored("u1").values()) == names
    blob_files = [path for path in Path(world.settings.blob_dir).rglob("*") if path.is_file()]
    assert len(blob_files) == len(HOSTILE_NAMES)
    relative = [path.relative_to(world.settings.blob_dir).as_posix() for path in blob_files]
    assert all(re.fullmatch(r"[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{64}", rel) for rel in relative)


def test_a_uidvalidity_change_restarts_without_duplicates(world: World) -> None:
    account = world.add_account(EMAIL, "u1")
    account.add_message(build_message("one", attachments={"one.txt": b"1"}))
    account.add_message(build_message("two", attachments={"two.txt": b"2"}))
    world.iterate()
    account.set_uidvalidity(77)
    account.add_message(build_message("three", attachments={"three.txt": b"3"}))

    world.make_due("u1")
    assert world.iterate().outcomes == {"u1": "idle"}

    stored = world.stored("u1")
    assert sorted(doc["filename"] for doc in stored.values()) == ["one.txt", "three.txt", "two.txt"]
    status = world.status("u1")
    assert (status["uidvalidity"], status["last_uid"]) == (77, 3)
    assert status["totals"]["attachments"] == 3


def test_rules_past_the_cap_are_refused_by_name_and_the_first_ones_used(world: World) -> None:
    world.add_account(EMAIL, "u1", _id="r0")
    world.db.rules.insert_many([{"_id": f"r{n}", "user_uuid": "u1"} for n in range(1, 5)])
    world.db.rules.insert_one({"_id": "a,b", "user_uuid": "u1"})  # an id that cannot travel
    world.gmail.account(EMAIL).add_message(build_message(attachments={"a.pdf": b"%PDF-1"}))
    world.settings = world.settings.model_copy(update={"max_rules": 3})

    assert world.iterate().outcomes == {"u1": "idle"}

    errors = world.status("u1")["rule_errors"]
    assert sorted(errors) == ["a,b", "r3", "r4"]
    assert "CRAWLER_MAX_RULES" in errors["r3"] and "comma" in errors["a,b"]
    [document] = world.stored("u1").values()
    assert sorted(document["rule_ids"]) == ["r0", "r1", "r2"]
