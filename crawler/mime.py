"""BODYSTRUCTURE to attachment parts, and attachment filename decoding.

The structure comes parsed by IMAPClient: nested tuples of bytes, ints and None. Part numbers
follow RFC 3501 section 6.4.5. A leaf is an attachment when its disposition is `attachment`, or it
has a filename, or it is neither text nor `message/*` nor an inline image (a nameless PDF is still
a file); an inline image is an `image/*` part with a Content-ID whose disposition is not
`attachment`. An attached message (`message/rfc822` whose structure the server gave) is a
container: we descend into it, and it is itself a part that only a rule asking for its type keeps
(saved whole, as an `.eml`). A `message/rfc822` part whose inner structure is cut short is a plain
leaf: saved whole, it still holds what is inside.

Anyone can mail an account, so every shape is read leniently and contained: a part that cannot be
read is listed as unreadable, with the reason, and every other part is still found. A missing or
syntactically invalid Content-Type is `text/plain` (RFC 2045 section 5.2).
"""

from __future__ import annotations

import codecs
import email.errors
import email.header
import email.policy
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from typing import Any

from crawler.errors import BadInput

MAX_DEPTH = 64
_SECTION = re.compile(r"^(filename|name)\*(?:(\d+)(\*)?)?$")
# RFC 2045 token: printable ASCII but space and tspecials.
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")
_SURROGATE = re.compile("[\ud800-\udfff]")
_READ_ERRORS = (TypeError, ValueError, IndexError, AttributeError, KeyError)
ATTACHED_MESSAGE = "message/rfc822"
_ENVELOPE_SUBJECT = 1


@dataclass(frozen=True)
class AttachmentPart:
    """One attachment as BODYSTRUCTURE describes it."""

    part: str
    content_type: str
    encoding: str
    encoded_size: int
    filename: str | None
    content_id: str | None
    inline: bool
    needs_header: bool  # no usable name in the structure: read BODY.PEEK[<part>.MIME]
    decoded_size: int | None = None  # known once downloaded
    container: bool = False  # an attached message: kept whole only when a rule asks for it
    warnings: tuple[str, ...] = ()  # what was not understood in the part's description

    @property
    def size(self) -> int:
        """Decoded size: exact once downloaded, else estimated from the encoded size."""
        if self.decoded_size is not None:
            return self.decoded_size
        if self.encoding == "base64":
            return self.encoded_size * 57 // 78  # 76 characters and CRLF carry 57 bytes
        if self.encoding in _UUENCODINGS:
            return self.encoded_size * 45 // 63  # 61 characters and CRLF carry 45 bytes
        return self.encoded_size


_UUENCODINGS = frozenset({"uuencode", "x-uuencode", "uue", "x-uue"})


@dataclass(frozen=True)
class Unreadable:
    """A part of the structure that cannot be read, and why."""

    part: str
    reason: str


@dataclass
class Structure:
    """What a message's BODYSTRUCTURE holds: its attachment parts and the parts it garbles."""

    parts: list[AttachmentPart] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)


def attachment_parts(structure: Any) -> Structure:
    """The attachment parts of a message; each part the structure garbles is listed apart."""
    found = Structure()
    _walk(structure, "", 0, found)
    return found


def _walk(node: Any, number: str, depth: int, found: Structure) -> None:
    try:
        if depth > MAX_DEPTH:
            raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
        if _is_multipart(node):
            for index, child in enumerate(_children(node), start=1):
                _walk(child, _join(number, index), depth + 1, found)
            return
        here = number or "1"
        inner = _attached_message(node)
        part = _leaf(node, here, inner)
        if part is not None:
            found.parts.append(part)
        if inner is not None:
            # The enclosed message's parts are here.1, here.2 ... (or here.1 when single part).
            _walk(inner, here if _is_multipart(inner) else f"{here}.1", depth + 1, found)
    except _READ_ERRORS as error:
        found.unreadable.append(Unreadable(number or "1", f"malformed BODYSTRUCTURE: {error}"))


def _is_multipart(node: Sequence[Any]) -> bool:
    return len(node) > 0 and isinstance(node[0], list | tuple)


def _children(node: Sequence[Any]) -> list[Sequence[Any]]:
    if isinstance(node[0], list):  # IMAPClient's BodyData gathers the children in a list
        return list(node[0])
    children: list[Sequence[Any]] = []
    for child in node:  # the children come first, then the subtype and extension data
        if not isinstance(child, tuple | list):
            break
        children.append(child)
    return children


def _join(number: str, index: int) -> str:
    return f"{number}.{index}" if number else str(index)


def _attached_message(node: Sequence[Any]) -> Sequence[Any] | None:
    """The enclosed message's structure, when the server gave it: envelope, body, line count
    follow the basic fields. Gmail sometimes cuts them off and goes on with the extension data
    (`"MESSAGE" "RFC822" ... 23379 NIL ("ATTACHMENT" ...) NIL`): then there is none."""
    if _content_type(node)[0] != ATTACHED_MESSAGE or len(node) < 10:
        return None
    body, lines = node[8], node[9]
    if isinstance(body, tuple | list) and body and isinstance(lines, int):
        return body
    return None


def _content_type(node: Sequence[Any]) -> tuple[str, tuple[str, ...]]:
    """The part's type, with a warning when it is invalid and so read as text/plain."""
    # A server writes an invalid type as strings (Dovecot: `"" ""`, `"TEXT" ""`); NIL is no
    # type at all (Gmail's multipart without parts: `("RELATED" NIL ("ATTACHMENT" NIL) NIL)`).
    maintype, subtype = _text(node[0]), _text(node[1])
    if maintype and subtype and _TOKEN.fullmatch(maintype) and _TOKEN.fullmatch(subtype):
        return f"{maintype}/{subtype}".lower(), ()
    written = f"{maintype}/{subtype}"
    return "text/plain", (f"invalid Content-Type {written!r:.80}: read as text/plain",)


def _leaf(node: Sequence[Any], number: str, inner: Sequence[Any] | None) -> AttachmentPart | None:
    kind, warnings = _content_type(node)
    if kind.startswith("multipart/"):  # a multipart without children: nothing in it
        return None
    params = _params(node[2])
    disposition, disposition_params = _disposition(node, kind, inner is not None)
    content_id = _optional_text(node[3])
    inline_image = (
        kind.startswith("image/") and content_id is not None and disposition != "attachment"
    )
    filename = decode_filename(disposition_params, "filename") or decode_filename(params, "name")
    if inner is not None:
        filename = filename or _eml_name(node[7])
    elif not (
        inline_image
        or disposition == "attachment"
        or filename is not None
        or not kind.startswith(("text/", "message/"))
    ):
        return None
    return AttachmentPart(
        part=number,
        content_type=kind,
        encoding=(_optional_text(node[5]) or "7bit").strip().lower(),
        encoded_size=int(node[6]),
        filename=filename,
        content_id=content_id,
        inline=inline_image,
        needs_header=filename is None or "\ufffd" in filename,
        container=inner is not None,
        warnings=warnings,
    )


def _eml_name(envelope: Any) -> str:
    """An attached message's file name, as mail clients offer it: its subject, then `.eml`."""
    subject = None
    if isinstance(envelope, tuple | list) and len(envelope) > _ENVELOPE_SUBJECT:
        subject = _optional_text(envelope[_ENVELOPE_SUBJECT])
    name = " ".join(_decode_words(subject).split()) if subject else ""
    return f"{name or 'message'}.eml"


def _disposition(
    node: Sequence[Any], kind: str, attached: bool
) -> tuple[str | None, dict[str, bytes]]:
    # Extension data of a single part: md5, disposition, language, location. Text parts have
    # a line count first, and an attached message has envelope, body and line count.
    index = 10 if attached else 8 if kind.startswith("text/") else 7
    index += 1
    if len(node) <= index or not isinstance(node[index], tuple | list):
        return None, {}
    value = node[index]
    name = _optional_text(value[0]) if value else None
    return (name.lower() if name else None), _params(value[1] if len(value) > 1 else None)


def _params(value: Any) -> dict[str, bytes]:
    if not isinstance(value, tuple | list):
        return {}
    items = list(value)
    return {
        _text(key).lower(): item if isinstance(item, bytes) else _text(item).encode()
        for key, item in zip(items[::2], items[1::2], strict=False)
        if key is not None and item is not None
    }


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    raise TypeError(f"expected a string, got {value!r:.40}")


def decode_filename(params: dict[str, bytes], key: str) -> str | None:
    """The decoded value of parameter `key` (RFC 2231 sections, RFC 2047 words, raw 8-bit)."""
    sections = _rfc2231_sections(params, key)
    if sections:
        return _valid(_join_sections(sections)) or None
    raw = params.get(key)
    if raw is None:
        return None
    return _valid(_decode_words(_decode_bytes(raw, None))) or None


def _valid(text: str) -> str:
    """`text` with each lone surrogate (an escape like `\\ud800` that RFC 2047 decoding
    read, or a byte Python's email kept undecoded) made U+FFFD: no store takes them."""
    return _SURROGATE.sub("\ufffd", text)


def _rfc2231_sections(params: dict[str, bytes], key: str) -> list[tuple[int, bool, bytes]]:
    sections = []
    for name, value in params.items():
        match = _SECTION.match(name)
        if match and match.group(1) == key:
            index, starred = match.group(2), match.group(3)
            sections.append((int(index or 0), index is None or starred is not None, value))
    return sorted(sections, key=lambda section: section[0])


def _join_sections(sections: list[tuple[int, bool, bytes]]) -> str:
    charset = None
    data = bytearray()
    for index, (_, encoded, value) in enumerate(sections):
        text = value
        if encoded and index == 0 and value.count(b"'") >= 2:
            declared, _, text = value.split(b"'", 2)
            charset = declared.decode("ascii", "replace") or None
        data += urllib.parse.unquote_to_bytes(text) if encoded else text
    return _decode_bytes(bytes(data), charset)


def _decode_bytes(data: bytes, charset: str | None) -> str:
    """Bytes in their declared charset, an invalid byte becoming U+FFFD as mail clients show it;
    undeclared (or unknown) ones as UTF-8, else latin-1, which never fails."""
    if charset is not None and _known(charset):
        return data.decode(charset, "replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _known(charset: str) -> bool:
    try:
        codecs.lookup(charset)
    except (LookupError, ValueError):  # ValueError: a NUL in the name
        return False
    return True


def header_text(raw: bytes | str | None) -> str | None:
    """A header's text as mail clients show it: raw 8-bit bytes read as UTF-8 (else Latin-1)
    and RFC 2047 encoded words decoded; a word that does not decode stays as written."""
    if raw is None:
        return None
    return _decode_words(_decode_bytes(raw, None) if isinstance(raw, bytes) else raw)


def _decode_words(value: str) -> str:
    """RFC 2047 encoded words; a word that does not decode leaves the value as written."""
    if "=?" not in value:
        return value
    try:
        chunks = email.header.decode_header(value)
    except (email.errors.HeaderParseError, ValueError):
        return value
    if any(charset is not None and not _known(charset) for _, charset in chunks):
        return value
    return "".join(_decoded_chunk(chunk, charset) for chunk, charset in chunks)


def _decoded_chunk(chunk: str | bytes, charset: str | None) -> str:
    if isinstance(chunk, str):
        return chunk
    if charset is None:  # unencoded text, which decode_header keeps as raw-unicode-escape
        try:
            return chunk.decode("raw-unicode-escape")
        except UnicodeDecodeError:  # a backslash escape of its own, cut short (`\\u`)
            return chunk.decode("latin-1")
    return _decode_bytes(chunk, charset)


def filename_from_mime_header(header: bytes) -> str | None:
    """The filename in a part's MIME header (`BODY.PEEK[n.MIME]`), decoded by the email package.

    BadInput when the header cannot be read: the email package raises many kinds of error on
    hostile headers (IndexError on `; \\xff*`, HeaderParseError on a broken encoded word)."""
    try:
        message = BytesHeaderParser(policy=email.policy.default).parsebytes(header)
        name = message.get_filename()
    except Exception as error:  # any error of the parser is this header's fault
        raise BadInput(f"the part's MIME header cannot be read: {type(error).__name__}") from None
    return _valid(name) if name else None
