"""The nasty corpus: reproducible, small, its sidecars complete, its truth its builder's own.

What the servers make of each message, and what a crawl stores, is tested in
tests/integration/test_crawl_nasty.py.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

from fixtures.build_nasty import CATALOGUE, DEFAULT_OUT, main
from tests.unit.test_corpus import assert_regenerates

pytestmark = pytest.mark.unit

EMLS = sorted(DEFAULT_OUT.glob("*.eml"))
SIDECAR_KEYS = ["message", "description", "shapes", "message_id", "attachments", "failed_parts"]
ATTACHMENT_KEYS = ["part", "filename", "content_type", "size", "sha256", "encoding", "warning"]
REQUIRED_SHAPES = [
    "encoding-x-uuencode",
    "encoding-uuencode",
    "encoding-x-uue",
    "encoding-uue",
    "encoding-uuencode-without-begin",
    "encoding-unknown",
    "encoding-odd-case",
    "junk-parameter",
    "undecodable-encoded-word",
    "invalid-charset-bytes-in-name",
    "shared-message-id",
    "delivery-status-attachment",
    "delivery-status-inline",
    "disposition-notification-attachment",
    "content-type-without-subtype",
    "junk-content-type",
    "missing-content-type",
    "missing-close-delimiter",
    "boundary-matches-nothing",
    "truncated-base64",
    "unfolded-header",
    "bare-lf",
    "nul-in-header",
    "long-header-line",
    "empty-attachment",
]


def sidecar_of(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.with_suffix(".json").read_text())
    return document


def test_regenerating_reproduces_every_file(tmp_path: Path) -> None:
    assert_regenerates(main, DEFAULT_OUT, tmp_path)


def test_every_required_shape_is_covered() -> None:
    assert len(EMLS) == len(CATALOGUE)
    shapes = {shape for path in EMLS for shape in sidecar_of(path)["shapes"]}
    assert not set(REQUIRED_SHAPES) - shapes


@pytest.mark.parametrize("path", EMLS, ids=[path.stem for path in EMLS])
def test_sidecar_fields_have_their_schema(path: Path) -> None:
    sidecar = sidecar_of(path)
    assert list(sidecar) == SIDECAR_KEYS
    assert sidecar["message"] == path.name
    assert sidecar["shapes"]
    assert sidecar["failed_parts"] == []
    numbers = [[int(n) for n in a["part"].split(".")] for a in sidecar["attachments"]]
    assert numbers == sorted(numbers)
    for attachment in sidecar["attachments"]:
        assert list(attachment) == ATTACHMENT_KEYS
        assert attachment["content_type"] == attachment["content_type"].lower()
        assert "/" in attachment["content_type"].strip("/")
        assert attachment["encoding"] == attachment["encoding"].strip().lower()
        assert isinstance(attachment["warning"], bool)
    assert any(a["warning"] for a in sidecar["attachments"]) == ("warning" in sidecar["shapes"])


def test_a_good_attachment_stands_beside_each_bad_part() -> None:
    for path in EMLS:
        sidecar = sidecar_of(path)
        if "good-attachment-beside" in sidecar["shapes"]:
            pdfs = [
                a
                for a in sidecar["attachments"]
                if a["content_type"] == "application/pdf" and a["filename"] and not a["warning"]
            ]
            assert pdfs, path.name


def test_messages_are_crlf_and_small() -> None:
    for path in EMLS:
        raw = path.read_bytes()
        assert len(raw) < 1_000_000, path.name
        if "bare-lf" in sidecar_of(path)["shapes"]:
            assert b"\r" not in raw, path.name
        else:
            assert b"\n" not in raw.replace(b"\r\n", b""), f"{path.name}: bare LF"


def test_the_truth_comes_from_intent_not_from_the_crawler() -> None:
    source = (Path(__file__).parents[2] / "fixtures" / "build_nasty.py").read_text()
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not {name for name in imported if name and name.split(".")[0] == "crawler"}
    assert "email" not in {name.split(".")[0] for name in imported if name}
