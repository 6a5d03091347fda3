"""The crawler against Gmail's behaviour in docs/gmail-facts.md: IMAP turned off, ID after login,
and non-ASCII X-GM-RAW queries, each through a real crawl of the fake Gmail."""

from __future__ import annotations

import re

import pytest

from standins.airbrake_receiver import AirbrakeReceiver
from standins.fakegmail import Fault, FaultKind
from tests.integration.test_service_reporting import receiver
from tests.plugins.crawling import World
from tests.plugins.fakes import build_message

pytestmark = pytest.mark.integration
__all__ = ["receiver"]  # the fixture

EMAIL = "alice@example.com"
SIX_HOURS = 6 * 3600


def command_names(world: World) -> list[str]:
    names = []
    for line in world.gmail.ledger.lines:
        match = re.match(rb"\S+ (UID \S+|\S+)", line)
        if match:
            names.append(match.group(1).decode().upper())
    return names


# -- IMAP turned off ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "by", "says"),
    [
        (FaultKind.IMAP_DISABLED, "user", "IMAP is disabled by the user"),
        (FaultKind.IMAP_DISABLED_DOMAIN, "domain", "IMAP is disabled for the account's Google"),
    ],
)
def test_imap_turned_off_is_an_error_retried_in_six_hours_and_not_reported(
    world: World, receiver: AirbrakeReceiver, kind: FaultKind, by: str, says: str
) -> None:
    world.add_account(EMAIL, "u1")
    world.add_account("bob@example.com", "u2")
    world.gmail.account(EMAIL).faults.add(Fault(kind))
    world.gmail.account("bob@example.com").add_message(build_message(attachments={"a.pdf": b"%"}))

    assert world.iterate().outcomes == {"u1": "error", "u2": "idle"}

    status = world.status("u1")
    error = status["last_error"]
    assert error["type"] == "ImapDisabled"
    assert error["message"].startswith(says), error
    assert ("Enable IMAP" in error["message"]) == (by == "user")
    assert ("administrator" in error["message"]) == (by == "domain")
    assert "(Failure)" in error["message"]  # Gmail's own words follow the advice
    assert status["next_crawl_at"] == world.now + SIX_HOURS
    assert world.gmail.ledger.commands["AUTHENTICATE"] == 2  # once each: not retried at once
    assert receiver.notices == []

    world.now += SIX_HOURS - 1
    assert "u1" not in world.iterate().outcomes  # not due before six hours
    world.now += 1
    assert world.iterate().outcomes["u1"] == "error"
    assert world.status("u1")["next_crawl_at"] == world.now + SIX_HOURS
    assert receiver.notices == []


def test_the_imap_disabled_backoff_is_a_setting_and_the_error_backoff_may_exceed_it(
    world: World,
) -> None:
    world.add_account(EMAIL, "u1")
    world.gmail.account(EMAIL).faults.add(Fault(FaultKind.IMAP_DISABLED))
    settings = world.settings.model_copy(
        update={"imap_disabled_backoff": 3600.0, "error_backoff": 7200.0}
    )

    assert world.iterate(settings=settings).outcomes == {"u1": "error"}
    assert world.status("u1")["next_crawl_at"] == world.now + 7200


# -- ID -----------------------------------------------------------------------------------


def test_id_is_sent_once_right_after_authentication(world: World) -> None:
    world.settings = world.settings.model_copy(update={"imap_id_contact": "ops@example.com"})
    world.add_account(EMAIL, "u1")
    world.gmail.account(EMAIL).add_message(build_message(attachments={"a.pdf": b"%PDF"}))

    assert world.iterate().outcomes == {"u1": "idle"}

    names = command_names(world)
    assert names.count("ID") == 1
    assert names[names.index("AUTHENTICATE") + 1] == "ID"
    [line] = [line for line in world.gmail.ledger.lines if re.match(rb"\S+ ID ", line)]
    assert re.fullmatch(
        rb'\S+ ID \("name" "gmail-attachment-crawler" "version" "[^"]+" '
        rb'"contact" "ops@example.com"\)\r\n',
        line,
    ), line


def test_a_throttled_id_answer_throttles_the_crawl(world: World) -> None:
    world.add_account(EMAIL, "u1")
    world.gmail.account(EMAIL).add_message(build_message(attachments={"a.pdf": b"%PDF"}))
    world.gmail.account(EMAIL).faults.add(Fault(FaultKind.THROTTLED, commands={"ID"}, times=1))

    assert world.iterate().outcomes == {"u1": "throttled"}


def test_id_refused_by_the_server_costs_nothing_more(world: World) -> None:
    world.add_account(EMAIL, "u1")
    world.gmail.account(EMAIL).add_message(build_message(attachments={"a.pdf": b"%PDF"}))
    world.gmail.account(EMAIL).faults.add(Fault(FaultKind.SYSTEM_ERROR, commands={"ID"}))

    assert world.iterate().outcomes == {"u1": "idle"}, world.status("u1")["last_error"]
    assert [d["filename"] for d in world.stored("u1").values()] == ["a.pdf"]
    assert world.gmail.ledger.sessions_opened == 1


def test_a_session_dropped_at_id_is_retried(world: World) -> None:
    world.add_account(EMAIL, "u1")
    world.gmail.account(EMAIL).add_message(build_message(attachments={"a.pdf": b"%PDF"}))
    world.gmail.account(EMAIL).faults.add(
        Fault(FaultKind.BYE_SYSTEM_ERROR, commands={"ID"}, times=1)
    )

    assert world.iterate().outcomes == {"u1": "idle"}, world.status("u1")["last_error"]
    assert world.gmail.ledger.sessions_opened == 2  # reconnected, as after any dropped session


# -- non-ASCII X-GM-RAW ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "subject"),
    [
        ("subject:Rechnung-März", "Rechnung-März"),  # one word: an atom, were it ASCII
        ("subject:(Rechnung März)", "Rechnung März"),  # a space: a quoted string, were it ASCII
        ('subject:"facture été"', "facture été"),
    ],
)
def test_a_non_ascii_query_goes_as_a_utf8_literal_and_finds_its_mail(
    world: World, query: str, subject: str
) -> None:
    """Gmail refuses 8-bit bytes in a quoted string, and a literal without CHARSET UTF-8."""
    world.add_account(EMAIL, "u1", query=query)
    account = world.gmail.account(EMAIL)
    account.add_message(build_message(subject, attachments={"wanted.pdf": b"%PDF wanted"}))
    account.add_message(build_message("Other", attachments={"other.pdf": b"%PDF other"}))

    assert world.iterate().outcomes == {"u1": "idle"}, world.status("u1")["last_error"]

    assert [d["filename"] for d in world.stored("u1").values()] == ["wanted.pdf"]
    searches = [line for line in world.gmail.ledger.lines if b"X-GM-RAW" in line]
    assert searches
    for line in searches:
        assert b" SEARCH CHARSET UTF-8 " in line
        head, _, literal = line.partition(b"}\r\n")
        assert head.isascii() and re.search(rb"X-GM-RAW \{\d+\+?$", head), line
        assert not literal.isascii()
