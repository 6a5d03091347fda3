"""The nasty corpus crawled end to end: no bad message stops a mailbox or costs another attachment.

Each message of fixtures/nasty/ is crawled through the fake Gmail and through Dovecot with the
`imap_password` provider, alone and all together; the attachments stored must be exactly those
its sidecar lists, suspect ones with a warning, and no UID may fail. Before that, the fake and
Dovecot must serve every nasty message alike, and the bytes they serve must decode to what the
sidecars say: so a failure in the crawl tests is the crawler's.
"""

from __future__ import annotations

import email.message
import hashlib
import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_fidelity import assert_served_alike, served_by_both
from tests.plugins.crawling import World
from tests.plugins.dovecot import Dovecot

pytestmark = pytest.mark.integration

NASTY = sorted((Path(__file__).parents[2] / "fixtures" / "nasty").glob("*.eml"))
SERVERS = ["gmail", "dovecot"]
Row = tuple[int, str, str | None, str, int, str]
Answers = dict[int, dict[str, Any]]


def sidecar(path: Path) -> dict[str, Any]:
    truth: dict[str, Any] = json.loads(path.with_suffix(".json").read_text())
    return truth


def require_corpus() -> None:
    if len(NASTY) < 25:
        pytest.fail("the nasty corpus is missing: run python -m fixtures.build_nasty")


# ---------------------------------------------------------------------------------------------
# Mailboxes on either server, and what a crawl stored.


def stored_rows(world: World, user_uuid: str) -> list[Row]:
    """(uid, part, filename, content_type, size, sha256) of every attachment document."""
    return sorted(
        (d["uid"], d["part"], d["filename"], d["content_type"], d["size"], d["sha256"])
        for d in world.db.attachments.find({"user_uuid": user_uuid})
    )


def expected_rows(paths: Sequence[Path]) -> list[Row]:
    """What a crawl of these messages (UIDs 1, 2 ... in order) must store."""
    return sorted(
        (uid, a["part"], a["filename"], a["content_type"], a["size"], a["sha256"])
        for uid, path in enumerate(paths, start=1)
        for a in sidecar(path)["attachments"]
    )


def failed_uids(world: World, user_uuid: str) -> set[int]:
    return {entry["uid"] for entry in world.status(user_uuid).get("failed_uids") or []}


def explain(paths: Sequence[Path], stored: list[Row], expected: list[Row]) -> str:
    """Which message lost or gained which attachment."""
    missing = [("missing", row) for row in sorted(set(expected) - set(stored))]
    unexpected = [("unexpected", row) for row in sorted(set(stored) - set(expected))]
    return "\n".join(
        f"{label}: {paths[row[0] - 1].stem} {row[1:]}" for label, row in missing + unexpected
    )


def check_crawl(world: World, user_uuid: str, paths: Sequence[Path]) -> None:
    """The account ended idle with exactly the sidecars' attachments, warnings and failures."""
    outcome = world.iterate().outcomes
    assert outcome == {user_uuid: "idle"}, world.status(user_uuid).get("last_error")
    stored, expected = stored_rows(world, user_uuid), expected_rows(paths)
    assert stored == expected, explain(paths, stored, expected)
    suspect = {
        (uid, a["part"])
        for uid, path in enumerate(paths, start=1)
        for a in sidecar(path)["attachments"]
        if a["warning"]
    }
    for document in world.db.attachments.find({"user_uuid": user_uuid}):
        key = (document["uid"], document["part"])
        warnings = document.get("warnings") or []
        where = f"{paths[key[0] - 1].stem} part {key[1]}"
        assert isinstance(warnings, list), where
        assert all(isinstance(warning, str) and warning for warning in warnings), where
        assert warnings or key not in suspect, (
            f"{where}: a suspect part is stored without a warning"
        )
    must_fail = {uid for uid, path in enumerate(paths, start=1) if sidecar(path)["failed_parts"]}
    assert failed_uids(world, user_uuid) == must_fail


def cases() -> list[list[Path]]:
    """Each message alone, except that messages sharing a Message-ID go together."""
    groups: dict[str, list[Path]] = defaultdict(list)
    for path in NASTY:
        groups[sidecar(path)["message_id"] or path.name].append(path)
    return list(groups.values())


# ---------------------------------------------------------------------------------------------
# The servers serve the nasty corpus alike, and as the sidecars expect.


@pytest.fixture(scope="module")
def answers(dovecot: Dovecot) -> tuple[Answers, Answers]:
    """Everything the fake and Dovecot say of each nasty message (UIDs 1, 2 ...)."""
    require_corpus()
    return served_by_both(dovecot, [path.read_bytes() for path in NASTY])


def decoded(body: bytes, encoding: str) -> bytes:
    """A part's served bytes decoded as Python's email package decodes them (compat32)."""
    part = email.message.Message()
    part["Content-Transfer-Encoding"] = encoding
    part.set_payload(body.decode("ascii", "surrogateescape"))
    data = part.get_payload(decode=True)
    assert isinstance(data, bytes)
    return data


@pytest.mark.parametrize("index", range(len(NASTY)), ids=[path.stem for path in NASTY])
def test_the_fake_and_dovecot_serve_each_nasty_message_alike(
    answers: tuple[Answers, Answers], index: int
) -> None:
    from_fake, from_dovecot = answers
    assert_served_alike(from_fake[index + 1], from_dovecot[index + 1])


@pytest.mark.parametrize("index", range(len(NASTY)), ids=[path.stem for path in NASTY])
def test_the_served_parts_decode_to_the_sidecars_bytes(
    answers: tuple[Answers, Answers], index: int
) -> None:
    _, from_dovecot = answers
    served = from_dovecot[index + 1]
    for attachment in sidecar(NASTY[index])["attachments"]:
        body = served.get(attachment["part"])
        assert isinstance(body, bytes), f"Dovecot lists no part {attachment['part']}"
        data = decoded(body, attachment["encoding"])
        assert (len(data), hashlib.sha256(data).hexdigest()) == (
            attachment["size"],
            attachment["sha256"],
        ), attachment["part"]


# ---------------------------------------------------------------------------------------------
# The crawls.


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("paths", cases(), ids=lambda paths: "+".join(p.stem for p in paths))
def test_each_nasty_message_yields_exactly_its_attachments(
    world: World, server: str, paths: list[Path], request: pytest.FixtureRequest
) -> None:
    user_uuid = world.add_mailbox(server, [path.read_bytes() for path in paths], request)
    check_crawl(world, user_uuid, paths)


@pytest.mark.parametrize("server", SERVERS)
def test_the_whole_nasty_corpus_in_one_mailbox(
    world: World, server: str, request: pytest.FixtureRequest
) -> None:
    require_corpus()
    user_uuid = world.add_mailbox(server, [path.read_bytes() for path in NASTY], request)
    check_crawl(world, user_uuid, NASTY)


@pytest.mark.parametrize("server", SERVERS)
def test_a_second_pass_stores_nothing_new_and_fails_nothing(
    world: World, server: str, request: pytest.FixtureRequest
) -> None:
    require_corpus()
    user_uuid = world.add_mailbox(server, [path.read_bytes() for path in NASTY], request)
    world.iterate()
    first = stored_rows(world, user_uuid)
    failed_before = world.status(user_uuid).get("failed_uids") or []

    world.make_due(user_uuid)
    assert world.iterate().outcomes == {user_uuid: "idle"}, world.status(user_uuid)["last_error"]

    assert stored_rows(world, user_uuid) == first
    assert (world.status(user_uuid).get("failed_uids") or []) == failed_before
