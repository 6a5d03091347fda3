"""The crawler against a real IMAP server: the `imap_password` provider on Dovecot."""

import hashlib
import uuid

import pytest

from tests.plugins.crawling import World
from tests.plugins.dovecot import Dovecot
from tests.plugins.fakes import build_message

pytestmark = pytest.mark.integration

FILES = [{f"doc-{n}.txt": f"document {n}\n".encode() * (n + 1)} for n in range(4)]


def add_imap_account(world: World, dovecot: Dovecot, user: str, **imap: object) -> None:
    world.db.accounts.insert_one(
        {
            "user_uuid": "d1",
            "email": f"{user}@example.com",
            "username": user,
            "provider": "imap_password",
            "password": world.cipher.encrypt("app-password"),
            "imap": {"host": dovecot.host, "port": dovecot.port, "tls": False, **imap},
        }
    )
    world.db.rules.insert_one({"user_uuid": "d1"})


def test_an_imap_password_account_on_dovecot(world: World, dovecot: Dovecot) -> None:
    user = f"u{uuid.uuid4().hex[:10]}"
    messages = [build_message(f"m{n}", attachments=named) for n, named in enumerate(FILES)]
    dovecot.add_user(user, "app-password", [*messages, build_message("plain")])
    add_imap_account(world, dovecot, user)

    assert world.iterate().outcomes == {"d1": "idle"}, world.status("d1")["last_error"]

    stored = world.stored("d1")
    assert {(doc["filename"], doc["sha256"]) for doc in stored.values()} == {
        (name, hashlib.sha256(data).hexdigest()) for named in FILES for name, data in named.items()
    }
    assert all(str(msgid).startswith("<") for msgid, _ in stored)  # identity: the Message-ID
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
