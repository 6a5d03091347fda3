"""Malformed accounts, rules and messages: each fails alone, with a clear error where operators
look (`crawl_status` and `crawler status`), and the rest of the shard crawls on.

The documents are written straight into MongoDB, as another tool (or a hand) might: the CLI
refuses most of them, the crawler must survive all of them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pymongo
import pytest
import typer
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from tests.conftest import REDIS_URL
from tests.plugins.crawling import World
from tests.plugins.fakes import build_message
from workers.admin import register

pytestmark = pytest.mark.integration

HEALTHY = "healthy"
CLI = typer.Typer(pretty_exceptions_enable=False)
register(CLI)


@pytest.fixture
def shared_world(
    world: World,
    embedded_mongo_client: pymongo.MongoClient[dict[str, Any]],
) -> Iterator[World]:
    """The world on the embedded MongoDB stand-in, so that `crawler status` reads it too; with
    one healthy account that must be crawled whatever its neighbours hold."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    world.db = embedded_mongo_client[name]
    world.add_account("healthy@example.com", HEALTHY)
    world.gmail.account("healthy@example.com").add_message(
        build_message(attachments={"ok.pdf": b"%PDF-ok"})
    )
    yield world
    embedded_mongo_client.drop_database(name)


def crawler_status(world: World) -> tuple[dict[str, Any], str]:
    """`crawler status` as JSON and as the table an operator reads."""
    host, port = world.db.client.address
    env = {
        "CRAWLER_MONGODB_URL": f"mongodb://{host}:{port}/{world.db.name}",
        "CRAWLER_REDIS_URL": REDIS_URL,
        "CRAWLER_REDIS_PREFIX": world.settings.redis_prefix,
        "COLUMNS": "250",
    }
    runner = CliRunner()
    as_json = runner.invoke(CLI, ["status", "--json"], env=env, catch_exceptions=False)
    table = runner.invoke(CLI, ["status"], env=env, catch_exceptions=False)
    assert as_json.exit_code == 0 and table.exit_code == 0, as_json.output + table.output
    return json.loads(as_json.stdout), table.stdout


def gmail_account(world: World, user_uuid: str, **fields: Any) -> dict[str, Any]:
    """A Gmail account document with working tokens, then `fields` over it (None deletes)."""
    email = f"{user_uuid}@example.com"
    world.add_account(email, user_uuid)
    document: dict[str, Any] = world.db.accounts.find_one({"user_uuid": user_uuid})
    for key, value in fields.items():
        if value is None:
            document.pop(key, None)
        else:
            document[key] = value
    world.db.accounts.replace_one({"user_uuid": user_uuid}, document)
    return document


def imap_account(world: World, user_uuid: str, **fields: Any) -> None:
    """A generic IMAP account document pointing at the fake, then `fields` over it."""
    world.gmail.add_account(f"{user_uuid}@example.com", password="app-password")
    document: dict[str, Any] = {
        "user_uuid": user_uuid,
        "email": f"{user_uuid}@example.com",
        "provider": "imap_password",
        "password": world.cipher.encrypt("app-password"),
        "imap": {"host": "127.0.0.1", "port": world.gmail.port, "tls": False},
    }
    for key, value in fields.items():
        if value is None:
            document.pop(key, None)
        else:
            document[key] = value
    world.db.accounts.insert_one(document)
    world.db.rules.insert_one({"user_uuid": user_uuid})


OTHER_KEY = Fernet(Fernet.generate_key())
BAD_ACCOUNTS = {
    "no-accounts-document": (
        lambda w: w.db.rules.insert_one({"user_uuid": "bad"}),
        "email is missing",
    ),
    "email-not-a-string": (lambda w: gmail_account(w, "bad", email=42), "email is missing"),
    "no-oauth": (lambda w: gmail_account(w, "bad", oauth=None), "oauth is missing"),
    "oauth-not-a-document": (
        lambda w: gmail_account(w, "bad", oauth="ya29.plain-token"),
        "oauth is missing",
    ),
    "tokens-stored-in-plain": (
        lambda w: gmail_account(
            w,
            "bad",
            oauth={"access_token": "ya29.plain", "refresh_token": "1//plain", "expires_at": 4e9},
        ),
        "cannot be decrypted",
    ),
    "tokens-of-another-key": (
        lambda w: gmail_account(
            w,
            "bad",
            oauth={
                "access_token": OTHER_KEY.encrypt(b"ya29.x").decode(),
                "refresh_token": OTHER_KEY.encrypt(b"1//x").decode(),
                "expires_at": 4e9,
            },
        ),
        "cannot be decrypted",
    ),
    "unknown-provider": (
        lambda w: gmail_account(w, "bad", provider="yahoo_oauth"),
        "provider 'yahoo_oauth' has no crawler",
    ),
    "imap-without-a-server": (lambda w: imap_account(w, "bad", imap=None), "imap.host is missing"),
    "imap-without-a-password": (
        lambda w: imap_account(w, "bad", password=None),
        "password is missing",  # TokenCipher words it "oauth.password is missing"
    ),
    "folder-not-a-string": (
        lambda w: imap_account(w, "bad", folder=["INBOX"]),
        "folder must be a string",
    ),
    "unusable-user-uuid": (
        lambda w: w.db.rules.insert_one({"user_uuid": "bad}{"}),
        "user_uuid 'bad}{' is not a usable id",
    ),
}


@pytest.mark.parametrize(("make", "says"), BAD_ACCOUNTS.values(), ids=BAD_ACCOUNTS.keys())
def test_a_malformed_account_fails_alone_with_a_clear_error_in_status_and_the_cli(
    shared_world: World, make: Any, says: str
) -> None:
    make(shared_world)
    user_uuid = "bad}{" if "bad}{" in says else "bad"

    outcomes = shared_world.iterate().outcomes

    assert outcomes == {HEALTHY: "idle", user_uuid: "error"}, outcomes
    assert [doc["filename"] for doc in shared_world.stored(HEALTHY).values()] == ["ok.pdf"]
    last_error = shared_world.status(user_uuid)["last_error"]
    assert last_error["type"] == "BadAccount" and says in last_error["message"], last_error
    report, table = crawler_status(shared_world)
    [failing] = report["failing"]
    assert (failing["user_uuid"], failing["last_error"]["type"]) == (user_uuid, "BadAccount")
    assert f"BadAccount: {last_error['message']}" in table


@pytest.mark.parametrize(
    "fields",
    [
        {"provider": ["gmail_oauth"]},  # a list where a name belongs
        {"provider": "imap_password", "imap": {"host": "127.0.0.1", "port": "imap"}},
    ],
    ids=["provider-not-a-string", "port-not-a-number"],
)
def test_fields_of_the_wrong_type_are_a_bad_account(
    shared_world: World, fields: dict[str, Any]
) -> None:
    gmail_account(shared_world, "bad", **fields)

    outcomes = shared_world.iterate().outcomes

    assert outcomes == {HEALTHY: "idle", "bad": "error"}
    assert shared_world.status("bad")["last_error"]["type"] == "BadAccount"


def test_a_huge_user_uuid_fails_alone_in_a_short_message(shared_world: World) -> None:
    huge = "u" * 5_000_000
    shared_world.db.rules.insert_one({"user_uuid": huge})

    outcomes = shared_world.iterate().outcomes

    assert outcomes == {HEALTHY: "idle", huge: "error"}
    last_error = shared_world.status(huge)["last_error"]
    assert last_error["type"] == "BadAccount"
    assert "is 5,000,000 characters long (at most 128)" in last_error["message"]
    assert len(last_error["message"]) < 200


def test_a_wrong_type_where_a_default_works_is_tolerated(shared_world: World) -> None:
    gmail_account(shared_world, "odd", provider=None)  # no provider: gmail_oauth
    shared_world.db.accounts.update_one(
        {"user_uuid": "odd"},
        {"$set": {"oauth.expires_at": "tomorrow"}},  # refreshed instead
    )
    shared_world.gmail.account("odd@example.com").add_message(
        build_message(attachments={"a": b"1"})
    )

    assert shared_world.iterate().outcomes == {HEALTHY: "idle", "odd": "idle"}
    assert len(shared_world.stored("odd")) == 1


BAD_RULES = [
    ({"query": 42}, "query must be a non-empty string"),
    ({"query": "a\r\nA1 DELETE INBOX"}, "control character"),
    ({"filename": {"$regex": ".*"}}, "filename must be a non-empty string"),
    ({"content_types": "application/pdf"}, "list of strings"),
    ({"min_size": "1 MB"}, "non-negative integer"),
    ({"max_size": -1}, "non-negative integer"),
    ({"enabled": "yes"}, "true or false"),
    ({"fliename": "*.pdf"}, "unknown field"),
]


def test_malformed_rules_fail_alone_and_the_account_crawls_on(shared_world: World) -> None:
    shared_world.add_account("mixed@example.com", "mixed", filename="*.pdf")
    shared_world.gmail.account("mixed@example.com").add_message(
        build_message(attachments={"keep.pdf": b"%PDF", "skip.doc": b"doc"})
    )
    ids = [
        shared_world.db.rules.insert_one({"user_uuid": "mixed", **fields}).inserted_id
        for fields, _ in BAD_RULES
    ]

    assert shared_world.iterate().outcomes == {HEALTHY: "idle", "mixed": "idle"}

    errors = shared_world.status("mixed")["rule_errors"]
    for rule_id, (_, says) in zip(ids, BAD_RULES, strict=True):
        assert errors[str(rule_id)].startswith(f"rule {rule_id}: ") and says in errors[str(rule_id)]
    assert [doc["filename"] for doc in shared_world.stored("mixed").values()] == ["keep.pdf"]


def test_crawler_status_names_the_malformed_rules_of_a_healthy_account(
    shared_world: World,
) -> None:
    rule_id = shared_world.db.rules.insert_one({"user_uuid": HEALTHY, "query": 42}).inserted_id
    shared_world.iterate()

    _, table = crawler_status(shared_world)

    assert str(rule_id) in table


# -- a message nested past the limit, through the real fake -------------------------------------


def nested(levels: int) -> bytes:
    """A message whose attachment sits `levels` multiparts deep."""
    body = (
        b'Content-Type: application/pdf; name="deep.pdf"\r\n'
        b'Content-Disposition: attachment; filename="deep.pdf"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERg==\r\n"
    )
    for level in range(levels):
        boundary = b"b%d" % level
        body = (
            b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n'
            b"--" + boundary + b"\r\n" + body + b"--" + boundary + b"--\r\n"
        )
    return b"From: a@example.com\r\nTo: healthy@example.com\r\nSubject: deep\r\n" + body


def test_a_message_nested_past_the_limit_fails_alone_and_is_recorded(shared_world: World) -> None:
    account = shared_world.gmail.account("healthy@example.com")
    deep = account.add_message(nested(100))  # the fake (like Dovecot) stops nesting at 100
    account.add_message(build_message(attachments={"after.pdf": b"%PDF-after"}))

    assert shared_world.iterate().outcomes == {HEALTHY: "idle"}

    names = sorted(doc["filename"] for doc in shared_world.stored(HEALTHY).values())
    assert names == ["after.pdf", "ok.pdf"]
    [failed] = shared_world.status(HEALTHY)["failed_uids"]
    assert (failed["uid"], failed["error"]) == (deep.uid, "BadInput")
    assert failed["part"].startswith("1.1.1") and "nested deeper" in failed["message"]
    assert "nested deeper than 64 levels" in failed["message"]
