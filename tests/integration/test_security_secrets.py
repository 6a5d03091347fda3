"""Secrets never leave: tokens, passwords and service account keys are encrypted at rest (read
back as raw BSON from the MongoDB stand-in), and absent from the logs, the crawler's exceptions
and the Airbrake notices, all captured in one pass whose accounts refresh, get refused, get
revoked, drop their sessions and break.
"""

from __future__ import annotations

import base64
import io
import logging
import traceback
import uuid
from collections.abc import Iterator
from typing import Any

import pymongo
import pytest
from bson.raw_bson import RawBSONDocument
from pydantic import SecretStr

from config import Settings
from crawler import airbrake, logs
from crawler.crawl import ImapCrawler
from crawler.gmail_crawler import GmailCrawler
from standins.airbrake_receiver import AirbrakeReceiver
from standins.fakegmail import Fault, FaultKind
from standins.fakeoauth import DEFAULT_CLIENT_SECRET
from tests.integration.test_crawl_domains import Corp
from tests.plugins.crawling import World
from tests.plugins.fakes import build_message

pytestmark = pytest.mark.integration

PASSWORD = "imap-app-password-SECRET"


@pytest.fixture
def stored_world(
    world: World,
    embedded_mongo_client: pymongo.MongoClient[dict[str, Any]],
) -> Iterator[World]:
    """The world on the embedded MongoDB stand-in, whose documents can be read as raw BSON."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    world.db = embedded_mongo_client[name]
    yield world
    embedded_mongo_client.drop_database(name)


@pytest.fixture
def log_text() -> Iterator[io.StringIO]:
    """Every record of the process, at DEBUG, in both formats the service writes."""
    stream = io.StringIO()
    handlers = []
    for log_format in ("json", "keyvalue"):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logs.formatter(log_format))
        handlers.append(handler)
    root = logging.getLogger()
    level = root.level
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    for handler in handlers:
        root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def receiver(stored_world: World) -> Iterator[AirbrakeReceiver]:
    with AirbrakeReceiver(project_id=7) as receiver:
        airbrake.configure(
            stored_world.settings.model_copy(
                update={
                    "airbrake_project_id": receiver.project_id,
                    "airbrake_project_key": SecretStr(receiver.project_key),
                    "airbrake_host": receiver.url,
                }
            )
        )
        yield receiver
    airbrake.configure(Settings(airbrake_project_id=None, airbrake_project_key=SecretStr("")))


def add_imap_account(world: World, user_uuid: str) -> None:
    email = f"{user_uuid}@example.com"
    world.gmail.add_account(email, password=PASSWORD)
    world.gmail.account(email).add_message(build_message(attachments={"a.pdf": b"%PDF"}))
    world.db.accounts.insert_one(
        {
            "user_uuid": user_uuid,
            "email": email,
            "provider": "imap_password",
            "password": world.cipher.encrypt(PASSWORD),
            "imap": {"host": "127.0.0.1", "port": world.gmail.port, "tls": False},
        }
    )
    world.db.rules.insert_one({"user_uuid": user_uuid})


def every_form(secret: str) -> list[str]:
    """A secret as it could leak: itself, and inside an XOAUTH2 string, raw or in base64."""
    forms = [secret]
    if secret.startswith("ya29."):
        for user in ("refreshed", "refused", "revoked", "dropped", "broken"):
            raw = f"user={user}@example.com\x01auth=Bearer {secret}\x01\x01"
            forms.append(base64.b64encode(raw.encode()).decode())
    return forms


class Scenario:
    """One pass over accounts that meet every path a token travels, with what it leaves."""

    def __init__(self, world: World, *, broken: bool = True) -> None:
        self.world = world
        self.exceptions: list[BaseException] = []
        self.accounts = ["refreshed", "refused", "revoked", "dropped"] + ["broken"] * broken
        for user in self.accounts:
            ttl = -60 if user in {"refreshed", "revoked"} else 7 * 86400  # expired: refresh
            world.add_account(f"{user}@example.com", user, token_ttl=ttl)
            world.gmail.account(f"{user}@example.com").add_message(
                build_message(attachments={"a.pdf": b"%PDF-1.4"})
            )
        add_imap_account(world, "password")
        world.gmail.account("refused@example.com").faults.add(Fault(FaultKind.INVALID_TOKEN))
        world.oauth.revoke("refresh-revoked")
        world.gmail.account("dropped@example.com").faults.add(
            Fault(FaultKind.BYE_SYSTEM_ERROR, commands={"UID FETCH"})
        )

    def run(self) -> dict[str, str]:
        exceptions = self.exceptions

        class Capturing(ImapCrawler):
            def crawl(self) -> Any:
                if self.user_uuid == "broken":  # a bug whose message and locals hold a token
                    access_token = self.tokens and self.tokens.cached(self.account["oauth"])
                    raise RuntimeError(f"bug near {access_token}")
                try:
                    return super().crawl()
                except Exception as error:
                    exceptions.append(error)
                    raise

        class CapturingGmail(Capturing, GmailCrawler):
            pass

        crawlers = {"gmail_oauth": CapturingGmail, "imap_password": Capturing}
        return self.world.iterate(crawler_map=crawlers).outcomes

    def secrets(self) -> list[str]:
        world = self.world
        tokens = [secret for user in self.accounts for secret in world.secrets(user)]
        key = world.settings.secret_key.get_secret_value()
        return [*tokens, PASSWORD, DEFAULT_CLIENT_SECRET, key]


def leaked(secrets: list[str], text: str) -> list[str]:
    return [form for secret in secrets for form in every_form(secret) if form in text]


def test_no_secret_in_logs_exceptions_or_airbrake_notices(
    stored_world: World, log_text: io.StringIO, receiver: AirbrakeReceiver
) -> None:
    scenario = Scenario(stored_world)

    outcomes = scenario.run()

    assert outcomes == {
        "refreshed": "idle",
        "refused": "error",  # a fresh token refused once: tried again later
        "revoked": "auth_failed",
        "dropped": "error",
        "broken": "error",
        "password": "idle",
    }
    secrets = scenario.secrets()
    assert len(set(secrets)) >= 14  # issued and refreshed tokens, password, client secret, key
    logged = log_text.getvalue()
    assert "AUTHENTICATE" in logged and "LOGIN" in logged  # IMAP's own debug lines are there
    assert leaked(secrets, logged) == []
    raised = "".join("".join(traceback.format_exception(error)) for error in scenario.exceptions)
    kinds = {type(error).__name__ for error in scenario.exceptions}
    assert kinds >= {"FreshTokenRefused", "Transient"}
    assert leaked(secrets, raised + repr(scenario.exceptions)) == []
    sent = b"".join(request.body for request in receiver.requests).decode()
    assert {notice["errors"][0]["type"] for notice in receiver.notices} == {
        "AuthRevoked",  # reported once: the account is not crawled again until re-authorized
        "RuntimeError",
        "Transient",
    }
    assert leaked(secrets, sent) == []


def raw_documents(world: World) -> bytes:
    """Every document of every collection, as the BSON bytes MongoDB holds."""
    database = world.db.with_options(
        codec_options=world.db.codec_options.with_options(document_class=RawBSONDocument)
    )
    return b"".join(
        document.raw
        for name in database.list_collection_names()
        for document in database[name].find()
    )


def test_no_secret_is_stored_in_plain(stored_world: World) -> None:
    scenario = Scenario(stored_world, broken=False)
    scenario.run()

    raw = raw_documents(stored_world)

    assert b"oauth" in raw and b"refresh_token" in raw and b"password" in raw
    assert b"last_error" in raw  # the refusals and the dropped session are recorded
    assert [form for form in leaked(scenario.secrets(), raw.decode("latin-1"))] == []


def test_an_exception_that_carries_a_token_leaves_no_token_in_crawl_status(
    stored_world: World, log_text: io.StringIO, receiver: AirbrakeReceiver
) -> None:
    scenario = Scenario(stored_world)
    scenario.run()

    status = stored_world.db.crawl_status.find_one({"user_uuid": "broken"})

    assert leaked(scenario.secrets(), str(status)) == []


def test_attachment_contents_never_reach_the_logs(world: World, log_text: io.StringIO) -> None:
    """At DEBUG the IMAP commands and response lines are logged, never a literal's contents:
    an attachment is the user's data, and formatting every literal would cost the crawl CPU."""
    payload = b"confidential quarterly figures " * 40
    world.add_account("private@example.com", "private")
    world.gmail.account("private@example.com").add_message(
        build_message(attachments={"figures.txt": payload})
    )

    assert world.iterate().outcomes == {"private": "idle"}

    logged = log_text.getvalue()
    assert "UID FETCH" in logged  # the wire is in the log
    assert len(world.stored("private")) == 1
    for form in (payload, base64.b64encode(payload), base64.encodebytes(payload)):
        assert form[:40].decode() not in logged


def test_a_domain_s_service_account_key_and_its_tokens_never_leave(
    stored_world: World, log_text: io.StringIO, receiver: AirbrakeReceiver
) -> None:
    """A domain whose users are crawled (one deleted from the domain: reported), and one whose
    delegation is missing (reported): the keys' private parts and every token minted from them
    are nowhere but encrypted in MongoDB."""
    world = stored_world
    corp, other = Corp(world), Corp(world, domain="other.example")
    corp.grant()
    ann, bob, cy = corp.add_user("ann"), corp.add_user("bob"), other.add_user("cy")
    world.oauth.remove_domain_user(f"{bob}@{corp.domain}")

    assert world.iterate().outcomes == {ann: "idle", bob: "auth_failed", cy: "deferred"}

    minted = world.db.accounts.find_one({"user_uuid": ann})["oauth"]["access_token"]
    secrets = [
        world.cipher.decrypt(minted, "access_token"),
        *(line for c in (corp, other) for line in c.key_file["private_key"].splitlines()[1:-1]),
        world.settings.secret_key.get_secret_value(),
    ]
    assert len(secrets) > 20
    assert leaked(secrets, raw_documents(world).decode("latin-1")) == []
    assert leaked(secrets, log_text.getvalue()) == []
    sent = b"".join(request.body for request in receiver.requests).decode()
    assert {notice["errors"][0]["type"] for notice in receiver.notices} == {
        "AuthRevoked",
        "DomainRefused",
    }
    assert leaked(secrets, sent) == []
