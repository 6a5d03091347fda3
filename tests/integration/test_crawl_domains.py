"""Workspace domains crawled through domain-wide delegation (`g_apps_oauth`): the fake token
endpoint checks each JWT-bearer assertion against the service account's registered key, the
domain's grant and its users, and answers as Google does; the crawler mints each user's token
from the domain's stored key, and no account has a refresh token."""

from __future__ import annotations

import json
from typing import Any

import pytest

from crawler.delegation import DIRECTORY_SCOPE, JWT_BEARER, ServiceAccountKey
from crawler.oauth import IMAP_SCOPE
from crawler.store.domains import DomainBook
from tests.plugins.crawling import World
from tests.plugins.fakes import build_message

pytestmark = pytest.mark.integration

DOMAIN = "corp.example"
PDF = b"%PDF-1.4 minutes\n" * 50


class Corp:
    """A Workspace domain on the fake: its service account, its grant and its users."""

    def __init__(self, world: World, domain: str = DOMAIN) -> None:
        self.world, self.domain = world, domain
        world.oauth.clock = lambda: world.now  # Google checks an assertion's times on our clock
        self.key_file = world.oauth.new_service_account()
        self.client_id = self.key_file["client_id"]
        self.book = DomainBook(world.db)
        self.book.ensure_indexes()
        self.store_key(self.key_file)

    def store_key(self, key_file: dict[str, str]) -> None:
        key = ServiceAccountKey.parse(json.dumps(key_file).encode())
        document = key.document(self.domain, f"admin@{self.domain}", self.world.cipher)
        self.book.saved(self.domain, document, 0)

    def grant(self) -> None:
        self.world.oauth.delegate(self.domain, self.client_id, [IMAP_SCOPE, DIRECTORY_SCOPE])

    def add_user(self, name: str) -> str:
        """A user of the domain with a mailbox holding one PDF, as a g_apps_oauth account
        with a rule and no token at all; its user_uuid."""
        email = f"{name}@{self.domain}"
        self.world.oauth.add_domain_user(email)
        mailbox = self.world.gmail.add_account(email)
        mailbox.add_message(build_message(f"{name}'s minutes", attachments={"m.pdf": PDF}))
        account = {"user_uuid": name, "email": email, "provider": "g_apps_oauth"}
        account["domain"] = self.domain
        self.world.db.accounts.insert_one(account)
        self.world.db.rules.insert_one({"user_uuid": name})
        return name

    def assertions(self) -> list[Any]:
        return [r for r in self.world.oauth.requests if r.grant_type == JWT_BEARER]


@pytest.fixture
def corp(world: World) -> Corp:
    return Corp(world)


def state(world: World, user_uuid: str) -> Any:
    return world.db.crawl_status.find_one({"user_uuid": user_uuid})


def stored(world: World) -> list[str]:
    return sorted(doc["user_uuid"] for doc in world.db.attachments.find())


def test_a_domain_s_users_are_crawled_without_a_refresh_token(world: World, corp: Corp) -> None:
    corp.grant()
    users = [corp.add_user(name) for name in ("ann", "bob", "cy")]

    assert world.iterate().outcomes == dict.fromkeys(users, "idle")

    assert stored(world) == users
    assert {(r.issuer, r.subject, r.status) for r in corp.assertions()} == {
        (corp.key_file["client_email"], f"{user}@{DOMAIN}", 200) for user in users
    }
    account = world.db.accounts.find_one({"user_uuid": "ann"})
    assert "refresh_token" not in account["oauth"]
    assert world.cipher.decrypt(account["oauth"]["access_token"], "access_token")
    world.make_due("ann")
    world.iterate()
    assert len(corp.assertions()) == 3  # the cached token serves the next crawl


def test_a_missing_delegation_makes_the_domain_wait_not_its_accounts_fail(
    world: World, corp: Corp
) -> None:
    users = [corp.add_user(name) for name in ("ann", "bob")]

    assert world.iterate().outcomes == dict.fromkeys(users, "deferred")

    assert len(corp.assertions()) == 1  # the domain's refusal spares its other accounts a try
    refused = corp.book.of(DOMAIN)["refused"]
    assert f"add client ID {corp.client_id}" in refused["message"]
    assert "unauthorized_client" in refused["message"]
    assert refused["until"] == world.now + world.settings.domain_refused_backoff
    for user in users:
        status = state(world, user)
        assert (status["state"], status["next_crawl_at"]) == ("idle", refused["until"])
    assert stored(world) == []

    corp.grant()  # the administrator grants it; the wait goes on until it ends
    assert world.iterate().outcomes == {}
    world.now = refused["until"]
    assert world.iterate().outcomes == dict.fromkeys(users, "idle")
    assert stored(world) == users
    assert corp.book.of(DOMAIN)["refused"] is None


def test_a_user_deleted_from_the_domain_is_auth_failed_alone(world: World, corp: Corp) -> None:
    corp.grant()
    ann, bob = corp.add_user("ann"), corp.add_user("bob")
    world.oauth.remove_domain_user(f"{bob}@{DOMAIN}")

    assert world.iterate().outcomes == {ann: "idle", bob: "auth_failed"}

    status = state(world, bob)
    assert status["auth_revoked"] is True
    assert f"{bob}@{DOMAIN} is not a user of {DOMAIN}" in status["last_error"]["message"]
    assert corp.book.of(DOMAIN)["refused"] is None


def test_a_deleted_key_makes_the_domain_wait_until_a_new_one_is_stored(
    world: World, corp: Corp
) -> None:
    corp.grant()
    ann = corp.add_user("ann")
    old = corp.key_file
    world.oauth.workspace.delete_key(old["client_email"], old["private_key_id"])

    assert world.iterate().outcomes == {ann: "deferred"}
    refused = corp.book.of(DOMAIN)["refused"]
    assert "Invalid JWT Signature" in refused["message"]
    assert old["private_key_id"] in refused["message"]

    # The key is rotated: a new one of the same service account, stored over the old.
    rotated = world.oauth.new_service_account(old["client_email"], client_id=corp.client_id)
    corp.store_key(rotated)
    assert corp.book.of(DOMAIN)["refused"] is None
    world.db.crawl_status.update_one({"user_uuid": ann}, {"$set": {"next_crawl_at": world.now}})
    assert world.iterate().outcomes == {ann: "idle"}
    assert stored(world) == [ann]


def test_an_account_of_a_domain_without_a_key_fails_alone_with_the_command_to_run(
    world: World, corp: Corp
) -> None:
    corp.grant()
    ann = corp.add_user("ann")
    world.oauth.add_domain_user("dan@other.example")
    world.gmail.add_account("dan@other.example")
    world.db.accounts.insert_one(
        {"user_uuid": "dan", "email": "dan@other.example", "provider": "g_apps_oauth"}
    )
    world.db.rules.insert_one({"user_uuid": "dan"})

    assert world.iterate().outcomes == {ann: "idle", "dan": "error"}
    message = state(world, "dan")["last_error"]["message"]
    assert "crawler domains add other.example" in message


def test_a_stored_key_that_cannot_be_used_makes_the_domain_wait(world: World, corp: Corp) -> None:
    corp.grant()
    ann = corp.add_user("ann")
    broken = {**corp.key_file, "private_key": "-----BEGIN PRIVATE KEY-----\nnot a key\n"}
    corp.book.collection.update_one(
        {"domain": DOMAIN}, {"$set": {"key": world.cipher.encrypt(json.dumps(broken))}}
    )

    assert world.iterate().outcomes == {ann: "deferred"}
    assert "its stored key cannot be used" in corp.book.of(DOMAIN)["refused"]["message"]
    assert corp.assertions() == []
