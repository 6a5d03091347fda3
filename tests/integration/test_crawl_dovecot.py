"""The crawler against a real IMAP server: the `imap_password` provider on Dovecot."""

import hashlib
import imaplib
from collections.abc import Collection

import pytest

from crawler.rules import AttachmentFacts, RuleTester
from tests.plugins.crawling import World
from tests.plugins.dovecot import Dovecot
from tests.plugins.fakes import build_message

pytestmark = pytest.mark.integration

FILES = [{f"doc-{n}.txt": f"document {n}\n".encode() * (n + 1)} for n in range(4)]


def test_an_imap_password_account_on_dovecot(world: World, dovecot: Dovecot) -> None:
    messages = [build_message(f"m{n}", attachments=named) for n, named in enumerate(FILES)]
    world.add_dovecot_account(dovecot, "d1", [*messages, build_message("plain")])

    assert world.iterate().outcomes == {"d1": "idle"}, world.status("d1")["last_error"]

    stored = world.stored("d1")
    assert {(doc["filename"], doc["sha256"]) for doc in stored.values()} == {
        (name, hashlib.sha256(data).hexdigest()) for named in FILES for name, data in named.items()
    }
    # identity: the Message-ID, and a digest that tells apart messages sharing it
    assert all(str(msgid).startswith("<") for msgid, _ in stored)
    assert world.status("d1")["last_uid"] == 5

    world.make_due("d1")
    assert world.iterate().outcomes == {"d1": "idle"}
    assert len(world.stored("d1")) == len(FILES)


def test_a_gmail_account_refuses_a_server_without_x_gm_ext_1(
    world: World, dovecot: Dovecot
) -> None:
    world.add_account("alice@example.com", "u1")
    world.settings = world.settings.model_copy(
        update={"imap_host": dovecot.host, "imap_port": dovecot.port}
    )

    assert world.iterate().outcomes == {"u1": "error"}
    assert "X-GM-EXT-1" in world.status("u1")["last_error"]["message"]


def test_a_message_deleted_while_its_batch_is_crawled(world: World, dovecot: Dovecot) -> None:
    """Another client expunges a message after the crawler read its structure: Dovecot then
    answers the download with `BODY[2] NIL` for it (alone: nothing at all). The rest of the
    batch is stored, the deleted message is no failure, and the crawl ends idle."""
    messages = [build_message(f"m{n}", attachments=named) for n, named in enumerate(FILES)]
    user = world.add_dovecot_account(dovecot, "d1", messages)

    class DeletingTester(RuleTester):
        """Expunges UID 2 from another session once the crawler has the batch's structures."""

        deleted = False

        def may_want(self, part: AttachmentFacts, found_by: Collection[str]) -> bool:
            if not DeletingTester.deleted:
                DeletingTester.deleted = True
                with imaplib.IMAP4(dovecot.host, dovecot.port) as other:
                    other.login(user, "app-password")
                    other.select("INBOX")
                    other.uid("STORE", "2", "+FLAGS", "(\\Deleted)")
                    other.expunge()
            return super().may_want(part, found_by)

    outcomes = world.iterate(rule_tester=DeletingTester).outcomes

    assert outcomes == {"d1": "idle"}, world.status("d1")["last_error"]
    assert DeletingTester.deleted
    assert sorted(doc["filename"] for doc in world.stored("d1").values()) == [
        "doc-0.txt",
        "doc-2.txt",
        "doc-3.txt",
    ]
    assert not world.status("d1").get("failed_uids")
    assert world.status("d1")["last_uid"] == 4
