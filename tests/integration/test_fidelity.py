"""The fake Gmail against a real IMAP server: for every fixture message, what Dovecot and the
fake return for BODYSTRUCTURE, ENVELOPE, RFC822.SIZE and every body section must agree, up to
the upper-casing that Gmail does (a deliberate trait, normalised here)."""

import itertools
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from imapclient import IMAPClient

from standins import tokens
from standins.fakegmail import FakeGmail
from tests.plugins.dovecot import Dovecot

pytestmark = pytest.mark.integration

CORPUS = sorted((Path(__file__).parents[2] / "fixtures" / "messages").glob("*.eml"))
ITEMS = [b"BODYSTRUCTURE", b"ENVELOPE", b"RFC822.SIZE"]


def section_numbers(node: Any, number: str = "") -> Iterator[str]:
    """Every part number in a parsed BODYSTRUCTURE, containers included."""
    if isinstance(node[0], list | tuple):
        children = _children(node)
        for index, child in enumerate(children, start=1):
            here = f"{number}.{index}" if number else str(index)
            yield here
            yield from section_numbers(child, here)
        return
    if not number:
        yield "1"
    if node[0].lower() == b"message" and node[1].lower() == b"rfc822" and len(node) > 8:
        inner = node[8]
        here = number or "1"
        if isinstance(inner[0], list | tuple):
            yield from section_numbers(inner, here)
        else:
            yield f"{here}.1"


def normalised(node: Any) -> Any:
    """Gmail upper-cases types, subtypes, encodings and parameter and disposition names."""
    if isinstance(node, list):
        return [normalised(child) for child in node]
    if not isinstance(node, tuple):
        return node
    if node and isinstance(node[0], list | tuple):  # multipart: children, subtype, params, ...
        children = _children(node)
        rest = node[1:] if isinstance(node[0], list) else node[len(children) :]
        return (
            [normalised(c) for c in children],
            _lower(rest[0]),
            _params(rest[1]),
            *map(_disposition_any, rest[2:]),
        )
    kind = (_lower(node[0]), _lower(node[1]))
    fields = [*kind, _params(node[2]), node[3], node[4], _lower(node[5]), *node[6:]]
    if kind == (b"message", b"rfc822") and len(fields) > 8:
        fields[8] = normalised(fields[8])
    # Disposition after the line count of text, after envelope, body and lines of message/rfc822.
    extension = 9 if kind[0] == b"text" else 11 if kind == (b"message", b"rfc822") else 8
    if len(fields) > extension:
        fields[extension] = _disposition_any(fields[extension])
    return tuple(fields)


def _children(node: Any) -> list[Any]:
    """A multipart's parts: IMAPClient wraps them in a list at the top, not inside a message."""
    if isinstance(node[0], list):
        return list(node[0])
    return list(itertools.takewhile(lambda child: isinstance(child, tuple), node))


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, bytes) else value


def _params(value: Any) -> Any:
    if not isinstance(value, tuple):
        return value
    return tuple(_lower(item) if index % 2 == 0 else item for index, item in enumerate(value))


def _disposition_any(value: Any) -> Any:
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], bytes):
        return (_lower(value[0]), _params(value[1]))
    return value


def fetch_everything(client: IMAPClient, folder: str) -> dict[int, dict[str, Any]]:
    client.select_folder(folder, readonly=True)
    uids = client.search(["ALL"])
    answers: dict[int, dict[str, Any]] = {}
    for uid, data in client.fetch(uids, ITEMS).items():
        answers[uid] = {key.decode(): value for key, value in data.items() if key != b"SEQ"}
        sections = ["HEADER", "TEXT", *section_numbers(data[b"BODYSTRUCTURE"])]
        sections += [f"{n}.MIME" for n in sections[3:]]
        bodies = client.fetch([uid], [f"BODY.PEEK[{s}]" for s in sections])[uid]
        for section in sections:
            answers[uid][section] = bodies.get(f"BODY[{section}]".encode())
    return answers


def served_by_both(
    dovecot: Dovecot, raw: list[bytes]
) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]]]:
    """Everything the fake and Dovecot say of each of `raw` (UIDs 1, 2 ...)."""
    user = f"fidelity{uuid.uuid4().hex[:8]}"
    dovecot.add_user(user, "secret", raw)
    with FakeGmail() as gmail:
        account = gmail.add_account("fidelity@example.com")
        for message in raw:
            account.add_message(message)
        with IMAPClient("127.0.0.1", port=gmail.port, ssl=False, timeout=10) as fake:
            fake.oauth2_login(
                "fidelity@example.com", tokens.issue("fidelity@example.com", time.time() + 60)
            )
            from_fake = fetch_everything(fake, "[Gmail]/All Mail")
    with IMAPClient(dovecot.host, port=dovecot.port, ssl=False, timeout=10) as real:
        real.login(user, "secret")
        from_dovecot = fetch_everything(real, "INBOX")
    return from_fake, from_dovecot


@pytest.fixture(scope="module")
def answers(dovecot: Dovecot) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]]]:
    if len(CORPUS) < 40:
        pytest.fail("the fixture corpus is missing: run python fixtures/build_corpus.py")
    return served_by_both(dovecot, [path.read_bytes() for path in CORPUS])


@pytest.mark.parametrize("index", range(len(CORPUS)), ids=[path.stem for path in CORPUS])
def test_the_fake_serves_each_message_as_dovecot_does(
    answers: tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]]], index: int
) -> None:
    from_fake, from_dovecot = answers
    assert_served_alike(from_fake[index + 1], from_dovecot[index + 1])


def assert_served_alike(fake: dict[str, Any], real: dict[str, Any]) -> None:
    """The fake's answers about one message are Dovecot's (but for Gmail's upper case)."""
    assert set(fake) == set(real)
    assert normalised(fake["BODYSTRUCTURE"]) == normalised(real["BODYSTRUCTURE"])
    assert fake["ENVELOPE"] == real["ENVELOPE"]
    assert fake["RFC822.SIZE"] == real["RFC822.SIZE"]
    for section in sorted(set(fake) - {"BODYSTRUCTURE", "ENVELOPE", "RFC822.SIZE"}):
        assert fake[section] == real[section], f"BODY[{section}] differs"
