"""One bad part costs only itself: what Gmail garbles, attached emails, message identity elsewhere.

Gmail describes some messages with a BODYSTRUCTURE that no parser reads whole (a multipart
without parts, an attached message without its envelope and body: jstedfast/MailKit#371, #59);
the fake Gmail sends such a structure for a message when a test names it. The raw messages
themselves are the corpus's, so BODY[n] is what Gmail would serve.
"""

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from standins.fakegmail import FakeMessage
from tests.plugins.crawling import World
from tests.plugins.dovecot import Dovecot
from tests.plugins.fakes import build_message

pytestmark = pytest.mark.integration

MESSAGES = Path(__file__).parents[2] / "fixtures" / "messages"
FORWARDED = MESSAGES / "24-forwarded-with-attachments.eml"  # parts 1, 2 (message/rfc822), 3
EMAIL = "alice@example.com"


def sidecar(path: Path) -> dict[str, Any]:
    truth: dict[str, Any] = json.loads(path.with_suffix(".json").read_text())
    return truth


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def rows(world: World, user_uuid: str) -> set[tuple[str, str | None, str, str]]:
    return {
        (doc["part"], doc["filename"], doc["content_type"], doc["sha256"])
        for doc in world.stored(user_uuid).values()
    }


def garbled(raw: bytes, part: int, replacement: bytes) -> bytes:
    """The message's BODYSTRUCTURE with top-level part `part` written as `replacement`."""
    structure = FakeMessage(raw).bodystructure()
    children, depth, start = [], 0, 0
    for index, byte in enumerate(structure[1:], start=1):  # the outer multipart's children
        if byte == ord("(") and depth == 0:
            start = index
        depth += {ord("("): 1, ord(")"): -1}.get(byte, 0)
        if byte == ord(")") and depth == 0:
            children.append((start, index + 1))
        if depth < 0:
            break
    begin, end = children[part - 1]
    return structure[:begin] + replacement + structure[end:]


def test_a_multipart_gmail_writes_without_parts_costs_only_that_part(world: World) -> None:
    raw = FORWARDED.read_bytes()
    account = world.add_account(EMAIL, "u1")
    account.add_message(
        raw, described_as=garbled(raw, 2, b'("RELATED" NIL ("ATTACHMENT" NIL) NIL)')
    )
    account.add_message(build_message(attachments={"after.pdf": b"%PDF-after"}))

    assert world.iterate().outcomes == {"u1": "idle"}, world.status("u1")["last_error"]

    [third] = [p for p in sidecar(FORWARDED)["attachments"] if p["part"] == "3"]
    assert {(part, name) for part, name, _, _ in rows(world, "u1")} == {
        ("3", third["filename"]),
        ("2", "after.pdf"),
    }
    [failed] = world.status("u1")["failed_uids"]
    assert (failed["uid"], failed["part"], failed["error"]) == (1, "2", "BadInput")
    assert "malformed BODYSTRUCTURE" in failed["message"]


def test_an_attached_email_gmail_cuts_short_is_kept_whole(world: World) -> None:
    raw = FORWARDED.read_bytes()
    cut_short = (
        b'("MESSAGE" "RFC822" ("NAME" "fwd.eml") NIL NIL "7BIT" 23379 NIL '
        b'("ATTACHMENT" ("FILENAME" "fwd.eml")) NIL)'
    )
    world.add_account(EMAIL, "u1").add_message(raw, described_as=garbled(raw, 2, cut_short))

    assert world.iterate().outcomes == {"u1": "idle"}, world.status("u1")["last_error"]

    inner = FakeMessage(raw).section("2")
    assert inner is not None and b"acme-invoice" in inner  # the parts it holds are in it
    stored = rows(world, "u1")
    assert ("2", "fwd.eml", "message/rfc822", sha256(inner)) in stored
    assert {part for part, _, _, _ in stored} == {"2", "3"}
    assert not world.status("u1").get("failed_uids")


@pytest.mark.parametrize("server", ["gmail", "dovecot"])
def test_a_rule_for_message_rfc822_saves_attached_emails_as_eml(
    world: World, server: str, request: pytest.FixtureRequest
) -> None:
    raw = FORWARDED.read_bytes()
    user_uuid = world.add_mailbox(server, [raw], request, content_types=["message/rfc822"])

    assert world.iterate().outcomes == {user_uuid: "idle"}, world.status(user_uuid)["last_error"]

    inner = FakeMessage(raw).section("2")
    assert inner is not None
    [(part, name, kind, digest)] = rows(world, user_uuid)
    assert (part, kind, digest) == ("2", "message/rfc822", sha256(inner))
    subject = next(
        line for line in inner.split(b"\r\n") if line.lower().startswith(b"subject:")
    ).split(b":", 1)[1]
    assert name == f"{subject.decode().strip()}.eml"


def test_messages_sharing_a_message_id_are_told_apart_and_known_again_after_uidvalidity(
    world: World, dovecot: Dovecot, request: pytest.FixtureRequest
) -> None:
    first = build_message("first", attachments={"a.pdf": b"%PDF-first"})
    second = build_message("second", attachments={"b.pdf": b"%PDF-second, longer"})
    message_id = first.split(b"Message-ID: ", 1)[1].split(b"\n", 1)[0]
    second = second.replace(second.split(b"Message-ID: ", 1)[1].split(b"\n", 1)[0], message_id)
    user_uuid = world.add_mailbox("dovecot", [first, second], request)

    assert world.iterate().outcomes == {user_uuid: "idle"}
    stored = world.stored(user_uuid)
    assert sorted(doc["filename"] for doc in stored.values()) == ["a.pdf", "b.pdf"]
    assert len({msgid for msgid, _ in stored}) == 2
    assert all(msgid.startswith(message_id.decode().strip()) for msgid, _ in stored)

    # New UIDs for everything: the messages are crawled again and known by their identity.
    world.db.crawl_status.update_one({"user_uuid": user_uuid}, {"$set": {"uidvalidity": 1}})
    world.make_due(user_uuid)
    assert world.iterate().outcomes == {user_uuid: "idle"}
    assert world.stored(user_uuid).keys() == stored.keys()
