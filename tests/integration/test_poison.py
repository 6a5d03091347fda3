"""One poison message in a mailbox of ordinary ones never costs an ordinary attachment.

For each seed, a mailbox of ordinary messages from fixtures/messages/ (a seeded choice) gets one
poison message at a random place: a message of the nasty corpus (every third seed, each in
turn), or an ordinary message mutated at random (garbage in a header line of an attachment part,
a random transfer encoding, a body cut short). Crawled through the fake Gmail and through
Dovecot, the account must end `idle` with every attachment of every ordinary message stored
exactly once, whatever the poison did.

`POISON_SEEDS` picks the seeds: a number N means seeds 0 to N-1 (default 3), a comma-separated
list means those seeds (`POISON_SEEDS=50`, `POISON_SEEDS=7,19`).
"""

from __future__ import annotations

import json
import os
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_crawl_nasty import SERVERS, stored_rows
from tests.plugins.crawling import World

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parents[2] / "fixtures"
ORDINARY = sorted((FIXTURES / "messages").glob("*.eml"))
NASTY = sorted((FIXTURES / "nasty").glob("*.eml"))
MAILBOX_SIZE = 12  # ordinary messages; the poison makes one more
NASTY_EVERY = 3  # seeds 0, 3, 6 ... take the nasty corpus's messages in turn; others mutate
GARBAGE = (
    b"\xff", b"\x00", b'"', b"=?", b"*0*=", b"{5}", b"\xff*", b"; \xff*", b";", b"\\", b"(", b"=",
    b"=?utf-8?b?A?=", b"%FF",
)  # fmt: skip
ENCODINGS = (
    "base9000", "x-uuencode", "uuencode", "x-uue", "  BASE64 ", "Quoted-Printable", "7bit",
    "8bit", "binary", "x-gzip64", "", "base64; x=1", "\xffbase64",
)  # fmt: skip
Row = tuple[int, str, str | None, str, int, str]


def seeds() -> list[int]:
    """The seeds `POISON_SEEDS` asks for: N means 0 .. N-1, a list means those."""
    value = os.environ.get("POISON_SEEDS", "3").strip()
    if "," in value:
        return [int(seed) for seed in value.split(",") if seed.strip()]
    return list(range(int(value)))


def sidecar(path: Path) -> dict[str, Any]:
    truth: dict[str, Any] = json.loads(path.with_suffix(".json").read_text())
    return truth


# ---------------------------------------------------------------------------------------------
# Poison.


def attachment_headers(raw: bytes) -> list[tuple[int, int]]:
    """(start, end) of each part header that follows a delimiter line and names an attachment."""
    blocks = []
    for delimiter in re.finditer(rb"(?m)^--[^\r\n]*\r\n", raw):
        start = delimiter.end()
        end = raw.find(b"\r\n\r\n", start)
        block = raw[start : end + 2]
        if end > 0 and re.search(rb"(?i)attachment|name\*?=|name\*\d", block):
            blocks.append((start, end + 2))
    return blocks


def garble_header(rng: random.Random, raw: bytes, start: int, end: int) -> tuple[bytes, str]:
    """Garbage inserted somewhere in one line of the part header at start:end."""
    lines = raw[start:end].split(b"\r\n")[:-1]
    # Mostly a Content-* line (or its continuation), the lines a reader parses.
    parsed = [i for i, line in enumerate(lines) if line.lower().startswith(b"content-")]
    index = rng.choice(parsed) if parsed and rng.random() < 0.75 else rng.randrange(len(lines))
    line = lines[index]
    at = len(line) if rng.random() < 0.3 else rng.randrange(len(line) + 1)
    junk = b"".join(rng.choice(GARBAGE) for _ in range(rng.randint(1, 3)))
    lines[index] = line[:at] + junk + line[at:]
    header = b"".join(line + b"\r\n" for line in lines)
    return raw[:start] + header + raw[end:], f"{junk!r} inserted into {line[:60]!r}"


def recode(rng: random.Random, raw: bytes, start: int, end: int) -> tuple[bytes, str]:
    """The part header at start:end with a random Content-Transfer-Encoding."""
    name = rng.choice(ENCODINGS).encode("latin-1")
    line = b"Content-Transfer-Encoding: " + name + b"\r\n"
    header = re.sub(rb"(?im)^content-transfer-encoding:[^\r\n]*\r\n", b"", raw[start:end])
    return raw[:start] + header + line + raw[end:], f"Content-Transfer-Encoding {name!r}"


def truncate(rng: random.Random, raw: bytes, start: int, end: int) -> tuple[bytes, str]:
    """The message cut off somewhere in the body of the part whose header is at start:end."""
    body = end + 2
    following = raw.find(b"\r\n--", body)
    stop = len(raw) if following < 0 else following
    cut = rng.randrange(body, max(stop, body + 1))
    return raw[:cut], f"cut off {cut - body} bytes into a body, {len(raw) - cut} bytes dropped"


MUTATIONS = (garble_header, recode, truncate)


def mutated(rng: random.Random, path: Path) -> tuple[bytes, str]:
    """An ordinary message with one or two random mutations of its attachment parts."""
    raw, story = path.read_bytes(), [path.stem]
    for mutation in rng.sample(MUTATIONS, rng.randint(1, 2)):
        blocks = attachment_headers(raw)
        if not blocks:
            break
        raw, what = mutation(rng, raw, *rng.choice(blocks))
        story.append(what)
    return raw, "; ".join(story)


@dataclass(frozen=True)
class Mailbox:
    """Messages in UID order (1, 2 ...): ordinary ones by UID, and the poison's UID and story."""

    messages: list[bytes]
    ordinary: dict[int, Path]
    poison_uid: int
    story: str


def poisoned_mailbox(seed: int) -> Mailbox:
    """The mailbox of a seed: always the same messages, poison and place."""
    rng = random.Random(f"poison/{seed}")
    chosen = rng.sample(ORDINARY, MAILBOX_SIZE)
    if seed % NASTY_EVERY == 0:
        source = NASTY[seed // NASTY_EVERY % len(NASTY)]
        poison, story = source.read_bytes(), f"nasty {source.stem}"
    else:
        # Never one of the mailbox's own messages: the two would share a Message-ID.
        mutable = [p for p in ORDINARY if p not in chosen and attachment_headers(p.read_bytes())]
        poison, story = mutated(rng, rng.choice(mutable))
    at = rng.randrange(MAILBOX_SIZE + 1)
    paths: list[Path | None] = [*chosen[:at], None, *chosen[at:]]
    messages = [poison if path is None else path.read_bytes() for path in paths]
    ordinary = {uid: path for uid, path in enumerate(paths, start=1) if path is not None}
    return Mailbox(messages, ordinary, at + 1, story)


# ---------------------------------------------------------------------------------------------
# The property.


def ordinary_rows(box: Mailbox) -> list[Row]:
    """What a crawl must store for the ordinary messages."""
    return sorted(
        (uid, a["part"], a["filename"], a["content_type"], a["size"], a["sha256"])
        for uid, path in box.ordinary.items()
        for a in sidecar(path)["attachments"]
    )


def test_mailboxes_are_the_same_for_a_seed_and_poisoned_once() -> None:
    first, again, other = poisoned_mailbox(0), poisoned_mailbox(0), poisoned_mailbox(1)
    assert first == again
    assert first.messages != other.messages
    assert len(first.messages) == MAILBOX_SIZE + 1
    assert first.poison_uid not in first.ordinary
    assert first.messages[first.poison_uid - 1] not in [p.read_bytes() for p in ORDINARY]


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("seed", seeds())
def test_a_poison_message_costs_no_ordinary_attachment(
    world: World, server: str, seed: int, request: pytest.FixtureRequest
) -> None:
    if len(ORDINARY) < 40 or len(NASTY) < 25:
        pytest.fail("a corpus is missing: run fixtures/build_corpus.py and -m fixtures.build_nasty")
    box = poisoned_mailbox(seed)
    poison = f"seed {seed}: poison at UID {box.poison_uid}: {box.story}"
    user_uuid = world.add_mailbox(server, box.messages, request)

    outcome = world.iterate().outcomes
    assert outcome == {user_uuid: "idle"}, f"{poison}\n{world.status(user_uuid).get('last_error')}"

    stored = [row for row in stored_rows(world, user_uuid) if row[0] != box.poison_uid]
    assert stored == ordinary_rows(box), poison
    documents = world.db.attachments.find({"user_uuid": user_uuid})
    copies = Counter((d["uid"], d["part"]) for d in documents if d["uid"] != box.poison_uid)
    assert all(count == 1 for count in copies.values()), poison
    failed = {entry["uid"] for entry in world.status(user_uuid).get("failed_uids") or []}
    assert failed <= {box.poison_uid}, poison
