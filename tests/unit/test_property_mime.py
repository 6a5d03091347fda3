"""Properties of BODYSTRUCTURE to attachment parts, and of filename decoding.

Well-formed structures are generated as trees, written as the bytes of a FETCH response (quoted
strings, literals for 8-bit values) and parsed by IMAPClient as the session does; the expected
parts come from the tree and the rule in `crawler.mime`'s docstring, not from the code under test.
"""

from __future__ import annotations

import base64
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from imapclient.response_parser import parse_fetch_response

from crawler.errors import BadInput
from crawler.mime import MAX_DEPTH, attachment_parts, decode_filename, filename_from_mime_header

pytestmark = pytest.mark.unit

FAST = settings(max_examples=100, deadline=None)


@dataclass(frozen=True)
class Literal:
    """A value that travels as an IMAP literal (it has 8-bit bytes)."""

    data: bytes


Piece = bytes | Literal


def string(value: bytes) -> list[Piece]:
    """`value` as a quoted string when it is printable ASCII, else as a literal."""
    if all(0x20 <= byte < 0x7F for byte in value):
        return [b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"']
    return [Literal(value)]


def plist(pairs: list[tuple[bytes, bytes]]) -> list[Piece]:
    if not pairs:
        return [b"NIL"]
    pieces: list[Piece] = [b"("]
    for index, (key, value) in enumerate(pairs):
        pieces += [b" " if index else b"", *string(key), b" ", *string(value)]
    return [*pieces, b")"]


# -- the tree ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Name:
    """A filename as the sender wrote it, and how its parameters encode it."""

    text: str
    params: list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class Leaf:
    maintype: str
    subtype: str
    encoding: str
    size: int
    content_id: bytes | None
    disposition: str | None
    name_on_disposition: Name | None
    name_on_type: Name | None

    def render(self) -> list[Piece]:
        disposition: list[Piece] = [b"NIL"]
        if self.disposition is not None:
            params = self.name_on_disposition.params if self.name_on_disposition else []
            disposition = [b"(", *string(self.disposition.encode()), b" ", *plist(params), b")"]
        params = [(b"CHARSET", b"UTF-8")] if self.maintype == "TEXT" else []
        params += self.name_on_type.params if self.name_on_type else []
        cid = string(self.content_id) if self.content_id is not None else [b"NIL"]
        lines = b" 3" if self.maintype == "TEXT" else b""
        return [
            b"(",
            *string(self.maintype.encode()),
            b" ",
            *string(self.subtype.encode()),
            b" ",
            *plist(params),
            b" ",
            *cid,
            b' NIL "' + self.encoding.encode() + b'" ' + str(self.size).encode() + lines,
            b" NIL ",
            *disposition,
            b" NIL NIL)",
        ]

    def expected(self, number: str) -> list[tuple[str, str, str | None, bool]]:
        kind = f"{self.maintype}/{self.subtype}".lower()
        disposition = self.disposition.lower() if self.disposition else None
        on_disposition = self.name_on_disposition if self.disposition is not None else None
        named = on_disposition or self.name_on_type
        filename = named.text if named else None
        inline = (
            kind.startswith("image/")
            and self.content_id is not None
            and disposition != "attachment"
        )
        is_file = (
            disposition == "attachment" or filename is not None or not kind.startswith("text/")
        )
        return [(number or "1", kind, filename, inline)] if is_file or inline else []


@dataclass(frozen=True)
class Multipart:
    children: list[Any]
    subtype: str = "MIXED"

    def render(self) -> list[Piece]:
        pieces: list[Piece] = [b"("]
        for child in self.children:
            pieces += child.render()
        return [*pieces, b' "' + self.subtype.encode() + b'" ("BOUNDARY" "b") NIL NIL NIL)']

    def expected(self, number: str) -> list[tuple[str, str, str | None, bool]]:
        found = []
        for index, child in enumerate(self.children, start=1):
            found += child.expected(f"{number}.{index}" if number else str(index))
        return found


@dataclass(frozen=True)
class Message:
    """A forwarded message/rfc822 part; its parts are numbered under its own number."""

    inner: Any
    envelope: bytes = field(default=b'(NIL "fwd" NIL NIL NIL NIL NIL NIL NIL NIL)')

    def render(self) -> list[Piece]:
        head = b'("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 900 ' + self.envelope + b" "
        return [head, *self.inner.render(), b" 30 NIL NIL NIL NIL)"]

    def expected(self, number: str) -> list[tuple[str, str, str | None, bool]]:
        """The attached email itself (named by its subject), then its parts under its number."""
        here = number or "1"
        itself = (here, "message/rfc822", "fwd.eml", False)
        if isinstance(self.inner, Multipart):
            return [itself, *self.inner.expected(here)]
        return [itself, *self.inner.expected(f"{here}.1")]


def fetch_response(tree: Any) -> Any:
    """The BODYSTRUCTURE of `tree` as IMAPClient parses it from a FETCH response."""
    lines: list[Any] = []
    pending = b"1 (UID 7 BODYSTRUCTURE "
    for piece in tree.render():
        if isinstance(piece, Literal):
            lines.append((pending + b"{%d}" % len(piece.data), piece.data))
            pending = b""
        else:
            pending += piece
    lines.append(pending + b")")
    return parse_fetch_response(lines)[7][b"BODYSTRUCTURE"]


# -- strategies -------------------------------------------------------------------------------

# Names decode to themselves only if they hold no U+FFFD (which means "decoding failed").
name_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\ufffd"), min_size=1, max_size=24
)
printable_name = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=24
).filter(lambda text: "=?" not in text and text.strip() == text and text.strip())


def _percent(data: bytes) -> bytes:
    return urllib.parse.quote_from_bytes(data, safe="").encode()


@st.composite
def names(draw: st.DrawFn, key: bytes) -> Name:
    """A filename under parameter `key` (FILENAME or NAME) in one of the ways mail writes it."""
    style = draw(st.sampled_from(["plain", "utf8", "rfc2231", "sections", "latin1", "rfc2047"]))
    if style == "plain":
        text = draw(printable_name)
        return Name(text, [(key, text.encode())])
    text = draw(name_text)
    data = text.encode()
    if style == "utf8":  # raw 8-bit UTF-8, as some mailers send it
        text = draw(name_text.filter(lambda t: "=?" not in t and not t.isascii()))
        return Name(text, [(key, text.encode())])
    if style == "rfc2231":
        return Name(text, [(key + b"*", b"utf-8''" + _percent(data))])
    if style == "latin1":
        text = draw(st.text(st.characters(min_codepoint=0xA0, max_codepoint=0xFF), min_size=1))
        return Name(text, [(key + b"*", b"iso-8859-1'en'" + _percent(text.encode("latin-1")))])
    if style == "rfc2047":
        word = b"=?utf-8?B?" + base64.b64encode(data) + b"?="
        return Name(text, [(key, word)])
    # RFC 2231 continuations, cut anywhere, listed in any order.
    cuts = sorted(draw(st.sets(st.integers(1, max(len(data) - 1, 1)), max_size=4)))
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True) if data[a:b]]
    sections = [
        (key + b"*%d*" % index, (b"utf-8''" if index == 0 else b"") + _percent(chunk))
        for index, chunk in enumerate(chunks)
    ]
    return Name(text, draw(st.permutations(sections)))


leaves = st.builds(
    Leaf,
    maintype=st.sampled_from(["TEXT", "APPLICATION", "IMAGE", "AUDIO"]),
    subtype=st.sampled_from(["PLAIN", "HTML", "PDF", "PNG", "OCTET-STREAM", "CALENDAR"]),
    encoding=st.sampled_from(["BASE64", "QUOTED-PRINTABLE", "7BIT", "8BIT"]),
    size=st.integers(0, 2**31),
    content_id=st.one_of(st.none(), st.just(b"<logo@x>")),
    disposition=st.one_of(st.none(), st.sampled_from(["ATTACHMENT", "INLINE", "attachment"])),
    name_on_disposition=st.one_of(st.none(), names(b"FILENAME")),
    name_on_type=st.one_of(st.none(), names(b"NAME")),
)
trees = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.builds(Multipart, st.lists(inner, min_size=1, max_size=4)),
        st.builds(Message, inner),
    ),
    max_leaves=10,
)


# -- properties -------------------------------------------------------------------------------


@FAST
@given(tree=trees)
def test_well_formed_structures_give_exactly_the_attachment_parts(tree: Any) -> None:
    """Property: the parts found are the tree's attachment leaves, in order, each with its
    RFC 3501 part number, lowercase type and decoded filename; a part needs its MIME header
    exactly when the structure gave no name."""
    found = attachment_parts(fetch_response(tree)).parts

    assert [(p.part, p.content_type, p.filename, p.inline) for p in found] == tree.expected("")
    assert all(part.needs_header == (part.filename is None) for part in found)
    assert all(part.container == (part.content_type == "message/rfc822") for part in found)
    assert len({part.part for part in found}) == len(found)


# Any shape IMAPClient's parser could hand over, and worse.
junk = st.recursive(
    st.one_of(st.none(), st.integers(), st.binary(max_size=12), st.text(max_size=12)),
    lambda inner: st.one_of(st.lists(inner, max_size=12), st.lists(inner, max_size=12).map(tuple)),
    max_leaves=40,
)


@FAST
@given(structure=st.one_of(junk, trees.map(fetch_response)))
def test_any_structure_gives_parts_and_unreadable_parts_never_an_exception(structure: Any) -> None:
    """Property: whatever the nested tuples hold, every part is either found or listed as
    unreadable with its reason; nothing raises."""
    if not isinstance(structure, tuple | list):
        structure = (structure,)
    found = attachment_parts(structure)
    for part in found.parts:
        assert all(number.isdigit() for number in part.part.split("."))
        assert "/" in part.content_type and part.content_type == part.content_type.lower()
        assert part.size >= 0 or part.encoded_size < 0  # a negative size is the server's
    for unreadable in found.unreadable:
        assert all(number.isdigit() for number in unreadable.part.split("."))
        assert unreadable.reason.startswith("malformed BODYSTRUCTURE")


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1000, 50_000])
def test_nesting_beyond_the_limit_is_an_unreadable_part_not_a_recursion_error(depth: int) -> None:
    leaf: Any = (b"TEXT", b"PLAIN", None, None, None, b"7BIT", 1, 1)
    structure = leaf
    for _ in range(depth):
        structure = ([structure], b"MIXED")
    found = attachment_parts(structure)
    assert found.parts == []
    [unreadable] = found.unreadable
    assert "nested deeper" in unreadable.reason


# Pieces of names that mix encoded words with escapes, raw 8-bit and broken words.
PIECES = [b"=?utf-8?q?x?=", b" ", b"\\ud800", b"\\U0001f600", b"=?utf-8?B?/w==?=", b"\xe9", b"=?"]

params = st.dictionaries(
    st.one_of(
        st.sampled_from(["filename", "filename*", "name", "name*"]),
        st.from_regex(r"(file)?name\*[0-9]{1,3}\*?", fullmatch=True),
    ),
    st.one_of(
        st.binary(max_size=30),
        st.sampled_from(
            [b"utf-8''%E2%82%AC", b"x'", b"''", b"%", b"%zz", b"=?utf-8?B?=?=", b"=?utf-8?b?A?="]
        ),
        st.lists(st.sampled_from(PIECES), max_size=6).map(b"".join),
    ),
    max_size=6,
)


@FAST
@given(params=params, key=st.sampled_from(["filename", "name"]))
def test_decoding_any_parameters_gives_text_or_none(params: dict[str, bytes], key: str) -> None:
    """Property: any parameters decode to a non-empty str or None, never an exception, and
    the str is text a store takes (no lone surrogate)."""
    name = decode_filename(params, key)
    assert name is None or (isinstance(name, str) and name)
    assert name is None or name.encode("utf-8")


@FAST
@given(name=st.lists(st.sampled_from(PIECES), min_size=1, max_size=8).map(b"".join))
def test_a_name_of_encoded_words_and_escapes_is_text_a_store_takes(name: bytes) -> None:
    """Property: whatever mix of encoded words, escapes and 8-bit bytes a name holds, its
    decoding has no lone surrogate (MongoDB refuses one)."""
    decoded = decode_filename({"filename": name}, "filename")
    assert decoded is None or decoded.encode("utf-8")


headers = st.one_of(
    st.binary(max_size=300),
    st.lists(
        st.sampled_from(
            [
                b"Content-Type: application/pdf; name=",
                b"Content-Disposition: attachment; filename",
                b"*0*=utf-8''%E2%82",
                b"*1*=%AC.pdf",
                b"=?utf-8?B?",
                b"?=",
                b'"',
                b";",
                b"\r\n ",
                b"\r\n",
                b"\xff\xfe",
                b"filename*=bogus''%FF",
            ]
        ),
        max_size=12,
    ).map(b"".join),
)


@FAST
@given(header=headers)
def test_a_part_header_gives_a_filename_or_none(header: bytes) -> None:
    """Property: any bytes Gmail returns for BODY[n.MIME] give a str or None, or BadInput
    naming the reason; never another exception, never a lone surrogate."""
    try:
        name = filename_from_mime_header(header + b"\r\n\r\n")
    except BadInput as error:
        assert "MIME header cannot be read" in str(error)
        return
    assert name is None or isinstance(name, str)
    assert name is None or name.encode("utf-8")
