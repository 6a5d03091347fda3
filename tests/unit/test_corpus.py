"""The MIME fixture corpus: complete, reproducible, and its sidecars true to the raw bytes."""

from __future__ import annotations

import email
import email.policy
import hashlib
import json
import re
from collections.abc import Callable
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from fixtures.build_corpus import (
    CATALOGUE,
    DEFAULT_OUT,
    ground_truth,
    header_param,
    huge_content,
    huge_message,
    imap_leaves,
    leaf_role,
    main,
    parsed_summary,
    render,
    written_summary,
)

pytestmark = pytest.mark.unit

EMLS = sorted(DEFAULT_OUT.glob("*.eml"))
SIDECAR_KEYS = [
    "message",
    "description",
    "shapes",
    "message_id",
    "attachments",
    "inline_images",
    "labels",
]
PART_KEYS = {"part", "filename", "content_type", "size", "sha256", "encoding", "content_id"}
REQUIRED_SHAPES = [
    "no-attachments",
    "gmail-style",
    "content-id-on-attachment",
    "multiple-attachments",
    "rfc2231-name",
    "rfc2231-continuation",
    "rfc2231-continuation-out-of-order",
    "rfc2047-b-name",
    "rfc2047-q-name",
    "rfc2047-split-name",
    "raw-8bit-name",
    "raw-8bit-latin1-name",
    "name-only-on-content-type",
    "missing-disposition",
    "invalid-disposition",
    "bare-disposition",
    "param-name-case-mixture",
    "inline-image-with-filename",
    "inline-image-without-filename",
    "forwarded-rfc822",
    "forwarded-single-part",
    "forwarded-nested",
    "tnef",
    "calendar-alternative",
    "calendar-attachment",
    "path-traversal-name",
    "absolute-path-name",
    "windows-path-name",
    "nul-in-name",
    "long-name",
    "large-attachment",
    "encoding-quoted-printable",
    "encoding-7bit",
    "encoding-8bit",
    "encoding-base64",
    "single-part-attachment",
    "deep-nesting",
    "attachment-charset",
    "empty-attachment",
    "duplicate-filenames",
    "image-attachment",
    "encoded-subject",
    "sent",
]

Sidecar = dict[str, Any]


def sidecar_of(path: Path) -> Sidecar:
    document: Sidecar = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    return document


def names(sidecar: Sidecar) -> list[str]:
    return [entry["filename"] or "" for entry in sidecar["attachments"]]


def any_attachment(test: Callable[[dict[str, Any]], bool]) -> Callable[[Sidecar, bytes], bool]:
    return lambda sidecar, _raw: any(test(entry) for entry in sidecar["attachments"])


def in_raw(pattern: bytes) -> Callable[[Sidecar, bytes], bool]:
    return lambda _sidecar, raw: re.search(pattern, raw, re.IGNORECASE | re.MULTILINE) is not None


def any_attached_leaf(test: Callable[[Message], bool]) -> Callable[[Sidecar, bytes], bool]:
    return lambda _sidecar, raw: any(
        leaf_role(leaf) == "attachment" and test(leaf)
        for _number, leaf in imap_leaves(email.message_from_bytes(raw))
    )


def encoded(encoding: str) -> Callable[[Sidecar, bytes], bool]:
    return any_attachment(lambda entry: entry["encoding"] == encoding)


# What each shape tag promises, checked on the sidecar or the raw bytes of every message
# that carries the tag: a tag cannot drift away from what its message really holds.
CLAIMS: dict[str, Callable[[Sidecar, bytes], bool]] = {
    "no-attachments": lambda sidecar, _raw: sidecar["attachments"] == [],
    "multiple-attachments": lambda sidecar, _raw: len(sidecar["attachments"]) >= 2,
    "gmail-style": any_attachment(lambda entry: (entry["content_id"] or "").startswith("<f_")),
    "content-id-on-attachment": any_attachment(lambda entry: entry["content_id"] is not None),
    "rfc2231-name": in_raw(rb"name\*(0\*)?=[\w-]*'"),
    "rfc2231-continuation": in_raw(rb"name\*1\*?="),
    "rfc2231-continuation-out-of-order": in_raw(rb"name\*1\*?=.*\r\n.*name\*0\*?="),
    "rfc2047-b-name": in_raw(rb'name="=\?[^?]+\?B\?'),
    "rfc2047-q-name": in_raw(rb'name="=\?[^?]+\?Q\?'),
    "rfc2047-split-name": in_raw(rb'name="=\?[^"]*\?=\s+=\?'),
    "raw-8bit-name": in_raw(rb"^Content-Type: [^\r]*name=\"[^\"]*[\x80-\xff]"),
    "invalid-disposition": in_raw(rb"^Content-Disposition: (attachmnt|;|inline attachment)"),
    "bare-disposition": in_raw(rb"^Content-Disposition: ;"),
    "param-name-case-mixture": in_raw(rb"FileName"),
    "inline-image-with-filename": lambda sidecar, _raw: any(
        entry["filename"] for entry in sidecar["inline_images"]
    ),
    "inline-image-without-filename": lambda sidecar, _raw: any(
        entry["filename"] is None for entry in sidecar["inline_images"]
    ),
    "forwarded-rfc822": any_attachment(lambda entry: "." in entry["part"]),
    "forwarded-single-part": any_attachment(lambda entry: entry["part"] == "2.1"),
    "forwarded-nested": any_attachment(lambda entry: entry["part"].count(".") >= 2),
    "deep-nesting": lambda sidecar, _raw: any(
        entry["part"].count(".") >= 2 for entry in sidecar["inline_images"]
    ),
    "single-part-attachment": lambda sidecar, _raw: (
        [entry["part"] for entry in sidecar["attachments"]] == ["1"]
    ),
    "tnef": any_attachment(lambda entry: entry["content_type"] == "application/ms-tnef"),
    "calendar-alternative": in_raw(rb"^Content-Type: text/calendar; [^\r]*method="),
    "calendar-attachment": any_attachment(lambda entry: entry["filename"] == "invite.ics"),
    "path-traversal-name": any_attachment(lambda entry: "../" in (entry["filename"] or "")),
    "absolute-path-name": any_attachment(lambda entry: (entry["filename"] or "").startswith("/")),
    "windows-path-name": any_attachment(lambda entry: "\\" in (entry["filename"] or "")),
    "nul-in-name": any_attachment(lambda entry: "\x00" in (entry["filename"] or "")),
    "long-name": any_attachment(lambda entry: len(entry["filename"] or "") >= 300),
    "large-attachment": any_attachment(lambda entry: entry["size"] >= 500 * 1024),
    "empty-attachment": any_attachment(lambda entry: entry["size"] == 0),
    "duplicate-filenames": lambda sidecar, _raw: len(set(names(sidecar))) < len(names(sidecar)),
    "image-attachment": any_attachment(lambda entry: entry["content_type"].startswith("image/")),
    "attachment-without-filename": any_attachment(lambda entry: entry["filename"] is None),
    "attachment-charset": any_attached_leaf(lambda leaf: leaf.get_param("charset") is not None),
    "missing-disposition": any_attached_leaf(lambda leaf: "Content-Disposition" not in leaf),
    "name-only-on-content-type": any_attached_leaf(
        lambda leaf: "Content-Disposition" not in leaf and leaf.get_param("name") is not None
    ),
    "inline-disposition-without-content-id": any_attached_leaf(
        lambda leaf: leaf.get_content_disposition() == "inline" and "Content-ID" not in leaf
    ),
    "rfc822-with-disposition": in_raw(rb"^Content-Type: message/rfc822; name="),
    "html-only": lambda _sidecar, raw: (
        email.message_from_bytes(raw).get_content_type() == "text/html"
    ),
    "encoding-base64": encoded("base64"),
    "encoding-quoted-printable": encoded("quoted-printable"),
    "encoding-7bit": encoded("7bit"),
    "encoding-8bit": encoded("8bit"),
    "encoded-subject": in_raw(rb"^Subject: =\?"),
    "encoded-from": in_raw(rb"^From: =\?"),
    "sent": lambda sidecar, _raw: sidecar["labels"] == ["\\Sent"],
}


def test_the_corpus_is_large_enough() -> None:
    sidecars = [sidecar_of(path) for path in EMLS]
    assert len(EMLS) >= 44
    assert sum(1 for sidecar in sidecars if not sidecar["attachments"]) >= 5
    assert sum(len(sidecar["attachments"]) for sidecar in sidecars) >= 60


@pytest.mark.parametrize("path", EMLS, ids=[path.stem for path in EMLS])
def test_sidecar_is_the_ground_truth_of_its_message(path: Path) -> None:
    sidecar = sidecar_of(path)
    truth = ground_truth(path.read_bytes())
    assert list(sidecar) == SIDECAR_KEYS
    assert sidecar["message"] == path.name
    assert {key: sidecar[key] for key in truth} == truth


@pytest.mark.parametrize("path", EMLS, ids=[path.stem for path in EMLS])
def test_sidecar_fields_have_their_schema(path: Path) -> None:
    sidecar = sidecar_of(path)
    assert sidecar["description"]
    assert sidecar["shapes"]
    assert re.fullmatch(r"<[^<>\s]+@[^<>\s]+>", sidecar["message_id"])
    assert all(isinstance(label, str) and label for label in sidecar["labels"])
    system = [label for label in sidecar["labels"] if label.startswith("\\")]
    assert sidecar["labels"] == sorted(system) + sorted(set(sidecar["labels"]) - set(system))
    for entry in sidecar["attachments"] + sidecar["inline_images"]:
        assert set(entry) == PART_KEYS
        assert re.fullmatch(r"[1-9]\d*(\.[1-9]\d*)*", entry["part"])
        assert re.fullmatch(r"[a-z0-9.+-]+/[a-z0-9.+-]+", entry["content_type"])
        assert re.fullmatch(r"[0-9a-f]{64}", entry["sha256"])
        assert entry["encoding"] in {"base64", "quoted-printable", "7bit", "8bit"}
    for entry in sidecar["inline_images"]:
        assert entry["content_type"].startswith("image/")
        assert entry["content_id"]


@pytest.mark.parametrize("entry", CATALOGUE, ids=[entry.name for entry in CATALOGUE])
def test_each_message_parses_as_it_was_written(entry: Any) -> None:
    # The builder's own tree and numbering against the email package's reading of the bytes.
    message = entry.message()
    assert written_summary(message) == parsed_summary(ground_truth(render(message)))


def test_regenerating_reproduces_every_file(tmp_path: Path) -> None:
    assert_regenerates(main, DEFAULT_OUT, tmp_path)


def assert_regenerates(main: Callable[[list[str]], int], out: Path, tmp_path: Path) -> None:
    """A builder's `main` writes exactly the committed files into a fresh folder, removes the
    .eml and .json files it no longer writes, and leaves others alone."""
    (tmp_path / "00-stale.eml").write_bytes(b"Subject: removed by the script\r\n\r\n")
    (tmp_path / "00-stale.json").write_text("{}")
    (tmp_path / "unrelated.txt").write_text("kept")
    assert main(["--out", str(tmp_path)]) == 0
    committed = {path.name for path in out.iterdir()}
    generated = {path.name for path in tmp_path.iterdir()} - {"unrelated.txt"}
    assert generated == committed
    for name in sorted(committed):
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes(), name


def test_every_required_shape_is_covered() -> None:
    shapes = {shape for path in EMLS for shape in sidecar_of(path)["shapes"]}
    assert not set(REQUIRED_SHAPES) - shapes


@pytest.mark.parametrize("path", EMLS, ids=[path.stem for path in EMLS])
def test_shape_tags_hold_for_their_message(path: Path) -> None:
    sidecar, raw = sidecar_of(path), path.read_bytes()
    broken = [
        shape for shape in sidecar["shapes"] if shape in CLAIMS and not CLAIMS[shape](sidecar, raw)
    ]
    assert broken == []


def test_messages_are_crlf_only_and_small() -> None:
    total = 0
    for path in EMLS:
        raw = path.read_bytes()
        total += len(raw)
        assert b"\n" not in raw.replace(b"\r\n", b""), f"{path.name}: bare LF"
        assert b"\r" not in raw.replace(b"\r\n", b""), f"{path.name}: bare CR"
        assert raw.endswith(b"\r\n")
        assert len(raw) < 1_000_000, path.name
        assert len(path.with_suffix(".json").read_bytes()) < 1_000_000
    assert total < 3_000_000


def test_headers_vary_for_a_searchable_mailbox() -> None:
    messages = [
        email.message_from_bytes(path.read_bytes(), policy=email.policy.default) for path in EMLS
    ]
    years = {message["Date"].datetime.year for message in messages}
    assert years == {2024, 2025, 2026}
    assert len({message["From"].addresses[0].addr_spec for message in messages}) >= 10
    assert len({message["Message-ID"] for message in messages}) == len(messages)
    labels = {tuple(sidecar_of(path)["labels"]) for path in EMLS}
    assert {("\\Inbox",), ("\\Sent",), ()} <= labels
    assert len(labels) >= 8


def part(headers: str, body: str = "x") -> Message:
    raw = headers.replace("\n", "\r\n").encode("latin-1") + b"\r\n\r\n" + body.encode()
    return email.message_from_bytes(raw, policy=email.policy.compat32)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("attachment; filename=plain.pdf", "plain.pdf"),
        ('attachment; filename="C:\\\\x\\\\y.pdf"', "C:\\x\\y.pdf"),
        ("attachment; filename*=utf-8''%E2%82%AC.pdf", "€.pdf"),
        ("attachment; filename*=''%E2%82%AC.pdf", "€.pdf"),  # no charset: UTF-8
        ("attachment; filename*=x-unknown''%E2%82%AC.pdf", "€.pdf"),  # unknown: UTF-8
        ("attachment; filename*=iso-8859-1'fr'R%E9sum%E9.pdf", "Résumé.pdf"),
        ("attachment; filename*=utf-8''a%00b", "a\x00b"),
        # Sections out of order, one UTF-8 character cut between two of them.
        ("attachment; filename*1*=%AC.pdf; filename*0*=utf-8''%E2%82", "€.pdf"),
        # Parameter names in any case; policy.default reads only the first section here.
        ("Attachment; FILENAME*0*=UTF-8''%C3%89t%C3%A9; FileName*1*=%202024.csv", "Été 2024.csv"),
        # A plain section stays as written, percent signs and all.
        ("attachment; filename*0*=utf-8''%E2%82%AC; filename*1=\"%20x\"", "€%20x"),
        ('attachment; filename="=?UTF-8?B?4oKsLnBkZg==?="', "€.pdf"),
        ('attachment; filename="=?iso-8859-1?Q?R=E9sum=E9.pdf?="', "Résumé.pdf"),
        ('attachment; filename="=?UTF-8?B?4oI=?=\n =?UTF-8?B?rC5wZGY=?="', "€.pdf"),
        ('attachment; filename="=?UTF-8?B?not base64?="', "=?UTF-8?B?not base64?="),
        ("attachmnt; filename=x.pdf", "x.pdf"),
        (';filename="x"', "x"),
    ],
)
def test_filename_decoding_rules(header: str, expected: str) -> None:
    leaf = part(f"Content-Type: application/pdf\nContent-Disposition: {header}")
    assert header_param(leaf, "content-disposition", "filename") == expected


def test_raw_8bit_names_read_as_utf8_else_latin1() -> None:
    utf8 = email.message_from_bytes(
        'Content-Type: application/pdf; name="Überweisung.pdf"\r\n\r\nx'.encode(),
        policy=email.policy.compat32,
    )
    latin1 = part('Content-Type: application/pdf; name="Reçu n°42.pdf"')
    assert header_param(utf8, "content-type", "name") == "Überweisung.pdf"
    assert header_param(latin1, "content-type", "name") == "Reçu n°42.pdf"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ('Content-Type: text/plain; charset="UTF-8"', None),
        ("Content-Type: text/plain\nContent-Disposition: inline", None),
        ('Content-Type: text/calendar; method=REQUEST; charset="UTF-8"', None),
        ("Content-Type: text/plain\nContent-Disposition: attachment", "attachment"),
        ('Content-Type: application/pdf; name="a.pdf"', "attachment"),
        ("Content-Type: application/pdf\nContent-Disposition: attachmnt; filename=a", "attachment"),
        ("Content-Type: image/png\nContent-ID: <logo>", "inline_image"),
        ("Content-Type: image/png\nContent-ID: <a>\nContent-Disposition: inline", "inline_image"),
        ("Content-Type: image/png\nContent-ID: <a>\nContent-Disposition: attachment", "attachment"),
        ('Content-Type: image/png; name="a.png"', "attachment"),  # no Content-ID
        (
            'Content-Type: application/pdf; name="a.pdf"\nContent-ID: <f_1>\n'
            'Content-Disposition: attachment; filename="a.pdf"',
            "attachment",
        ),
    ],
)
def test_leaf_roles(headers: str, expected: str | None) -> None:
    assert leaf_role(part(headers)) == expected


FORWARD_OF_SINGLE = (
    "Content-Type: multipart/mixed; boundary=o\n\n--o\nContent-Type: text/plain\n\nhi\n--o\n"
    "Content-Type: message/rfc822\n\nSubject: inner\nContent-Type: message/rfc822\n\n"
    "Subject: innermost\nContent-Type: application/pdf\n\n%PDF\n--o--\n"
)
FORWARD_OF_MULTIPART = (
    "Content-Type: multipart/mixed; boundary=o\n\n--o\nContent-Type: text/plain\n\nhi\n--o\n"
    "Content-Type: message/rfc822\n\nSubject: inner\nContent-Type: multipart/mixed; boundary=i\n\n"
    "--i\nContent-Type: text/plain\n\nx\n--i\nContent-Type: image/png\n\npng\n--i--\n--o--\n"
)


@pytest.mark.parametrize(
    ("message", "numbers"),
    [
        ("Content-Type: application/pdf\n\n%PDF\n", ["1"]),
        ("Content-Type: message/rfc822\n\nContent-Type: application/pdf\n\n%PDF\n", ["1.1"]),
        (FORWARD_OF_SINGLE, ["1", "2.1.1"]),
        (FORWARD_OF_MULTIPART, ["1", "2.1", "2.2"]),
    ],
)
def test_imap_part_numbers(message: str, numbers: list[str]) -> None:
    parsed = email.message_from_bytes(message.replace("\n", "\r\n").encode())
    assert [number for number, _leaf in imap_leaves(parsed)] == numbers


def test_huge_message_holds_exactly_the_size_asked() -> None:
    size = 25 * 2**20
    raw = huge_message(size)
    (attachment,) = ground_truth(raw)["attachments"]
    assert attachment["part"] == "2"
    assert attachment["size"] == size
    assert attachment["sha256"] == hashlib.sha256(huge_content(size)).hexdigest()
    assert huge_message(size) == raw


@pytest.mark.parametrize("encoding", ["base64", "quoted-printable", "7bit", "8bit"])
@pytest.mark.parametrize("size", [0, 1, 76, 77, 78, 79, 10_000])
def test_huge_message_in_every_encoding(encoding: str, size: int) -> None:
    raw = huge_message(size, seed=7, encoding=encoding)
    (attachment,) = ground_truth(raw)["attachments"]
    assert (attachment["size"], attachment["encoding"]) == (size, encoding)
    assert b"\n" not in raw.replace(b"\r\n", b"") and b"\r" not in raw.replace(b"\r\n", b"")


def test_huge_message_depends_on_its_seed() -> None:
    assert huge_message(4096, seed=1) == huge_message(4096, seed=1)
    assert huge_content(4096, seed=1) != huge_content(4096, seed=2)
    with pytest.raises(ValueError, match="encoding"):
        huge_message(10, encoding="uuencode")
