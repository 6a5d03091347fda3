"""The fixture corpus crawled end to end: exactly the attachments its sidecars list."""

import json
import math
from pathlib import Path
from typing import Any

import pytest

from standins.fakegmail import FakeMessage
from tests.plugins.crawling import World
from tests.plugins.dovecot import Dovecot

pytestmark = pytest.mark.integration

CORPUS = sorted((Path(__file__).parents[2] / "fixtures" / "messages").glob("*.eml"))
Row = tuple[int, str, str | None, str, int, str]


def sidecar(path: Path) -> dict[str, Any]:
    truth: dict[str, Any] = json.loads(path.with_suffix(".json").read_text())
    return truth


def expected(*, images: bool) -> set[Row]:
    rows = set()
    for uid, path in enumerate(CORPUS, start=1):
        truth = sidecar(path)
        parts = truth["attachments"] + (truth["inline_images"] if images else [])
        for part in parts:
            row = (
                uid,
                part["part"],
                part["filename"],
                part["content_type"],
                part["size"],
                part["sha256"],
            )
            rows.add(row)
    return rows


def stored(world: World, user_uuid: str) -> set[Row]:
    return {
        (d["uid"], d["part"], d["filename"], d["content_type"], d["size"], d["sha256"])
        for d in world.stored(user_uuid).values()
    }


@pytest.fixture
def corpus(world: World) -> World:
    if len(CORPUS) < 40:
        pytest.fail("the fixture corpus is missing: run python fixtures/build_corpus.py")
    account = world.add_account("corpus@example.com", "c1")
    for path in CORPUS:
        account.add_message(path.read_bytes(), labels=sidecar(path)["labels"])
    return world


def test_the_corpus_yields_exactly_its_attachments(corpus: World) -> None:
    assert corpus.iterate().outcomes == {"c1": "idle"}, corpus.status("c1")["last_error"]

    assert stored(corpus, "c1") == expected(images=False)
    lines = corpus.gmail.ledger.lines
    metadata = [line for line in lines if b"BODYSTRUCTURE" in line]
    assert len(metadata) == math.ceil(len(CORPUS) / corpus.settings.fetch_batch)
    for document in corpus.stored("c1").values():
        assert document["labels"] == sidecar(CORPUS[document["uid"] - 1])["labels"]


def test_wire_bytes_stay_close_to_the_wanted_parts(corpus: World) -> None:
    corpus.iterate()

    messages = [FakeMessage(path.read_bytes()) for path in CORPUS]
    encoded = sum(
        len(message.section(part["part"]) or b"")
        for message, path in zip(messages, CORPUS, strict=True)
        for part in sidecar(path)["attachments"]
    )
    # What a metadata FETCH carries per message, and the session's own chatter.
    metadata = sum(len(m.bodystructure()) + len(m.envelope()) + 300 for m in messages) + 4096
    assert corpus.gmail.ledger.bytes_out <= 1.05 * encoded + metadata


def test_a_rule_for_images_takes_inline_images_too(world: World) -> None:
    if len(CORPUS) < 40:
        pytest.fail("the fixture corpus is missing")
    account = world.add_account("corpus@example.com", "c1", content_types=["image/*"])
    for path in CORPUS:
        account.add_message(path.read_bytes())

    world.iterate()

    images = {row for row in expected(images=True) if row[3].startswith("image/")}
    assert stored(world, "c1") == images


def test_the_corpus_on_dovecot_with_the_imap_password_provider(
    world: World, dovecot: Dovecot
) -> None:
    world.add_dovecot_account(dovecot, "d1", [path.read_bytes() for path in CORPUS])

    assert world.iterate().outcomes == {"d1": "idle"}, world.status("d1")["last_error"]
    assert stored(world, "d1") == expected(images=False)
