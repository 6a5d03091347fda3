"""The parts of an .eml as `crawler rules test` sees them: the same as the corpus sidecars say."""

import json
from pathlib import Path
from typing import Any

import pytest

from workers.admin_message import eml_parts

pytestmark = pytest.mark.unit

CORPUS = sorted((Path(__file__).parents[2] / "fixtures" / "messages").glob("*.eml"))
Row = tuple[str, str | None, str, int, bool]


def sidecar_rows(path: Path) -> list[Row]:
    truth: dict[str, Any] = json.loads(path.with_suffix(".json").read_text())
    rows = [
        (p["part"], p["filename"], p["content_type"], p["size"], False)
        for p in truth["attachments"]
    ]
    rows += [
        (p["part"], p["filename"], p["content_type"], p["size"], True)
        for p in truth["inline_images"]
    ]
    return sorted(rows)


def test_the_corpus_is_there() -> None:
    assert len(CORPUS) >= 40, "the fixture corpus is missing: run python fixtures/build_corpus.py"


@pytest.mark.parametrize("path", CORPUS, ids=lambda path: path.stem)
def test_parts_match_the_sidecar(path: Path) -> None:
    parts = [part for part in eml_parts(path.read_bytes()) if not part.container]
    got = sorted((p.part, p.filename, p.content_type, p.size, p.inline) for p in parts)
    assert got == sidecar_rows(path)


def test_an_attached_email_is_a_container_named_by_its_subject() -> None:
    forwarded = next(path for path in CORPUS if "forwarded-with-attachments" in path.name)
    [container] = [part for part in eml_parts(forwarded.read_bytes()) if part.container]
    assert (container.content_type, container.filename) == ("message/rfc822", container.filename)
    assert container.filename is not None and container.filename.endswith(".eml")
    assert container.filename != "message.eml"  # named by the attached email's subject


def test_sizes_are_exact_not_estimated() -> None:
    invoice = next(path for path in CORPUS if path.name.startswith("02-gmail-invoice"))
    (part,) = eml_parts(invoice.read_bytes())  # one base64 PDF
    assert part.decoded_size == part.size and part.encoding == "base64"
    assert part.encoded_size > part.size


@pytest.mark.parametrize(
    "raw", [b"", b"not a message at all", b"Content-Type: multipart/mixed\r\n\r\nx"]
)
def test_odd_input_has_no_attachments(raw: bytes) -> None:
    assert eml_parts(raw) == []
