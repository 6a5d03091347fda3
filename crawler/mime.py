"""BODYSTRUCTURE to attachment parts, and attachment filename decoding.

The structure comes parsed by IMAPClient: nested tuples of bytes, ints and None. Part numbers
follow RFC 3501 section 6.4.5. A leaf is an attachment when its disposition is `attachment`, or it
has a filename, or it is neither text nor an inline image (a nameless PDF is still a file); an
inline image is an `image/*` part with a Content-ID whose disposition is not `attachment`. We
descend into `message/rfc822` (a forwarded message) instead of keeping it whole.
"""

from __future__ import annotations

import email.header
import email.policy
import re
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from typing import Any

from crawler.errors import ProtocolError

MAX_DEPTH = 64
_SECTION = re.compile(r"^(filename|name)\*(?:(\d+)(\*)?)?$")


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

    @property
    def size(self) -> int:
        """Decoded size: exact once downloaded, else estimated from the encoded size."""
        if self.decoded_size is not None:
            return self.decoded_size
        if self.encoding == "base64":
            return self.encoded_size * 57 // 78  # 76 characters and CRLF carry 57 bytes
        return self.encoded_size


def attachment_parts(structure: Sequence[Any]) -> list[AttachmentPart]:
    """The attachment parts of a message; ProtocolError if the structure is malformed."""
    try:
        return list(_walk(structure, "", 0))
    except (TypeError, ValueError, IndexError, AttributeError) as error:
        raise ProtocolError(f"malformed BODYSTRUCTURE: {error}") from None


def _walk(node: Sequence[Any], number: str, depth: int) -> Iterator[AttachmentPart]:
    if depth > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    if _is_multipart(node):
        for index, child in enumerate(_children(node), start=1):
            yield from _walk(child, _join(number, index), depth + 1)
        return
    kind = f"{_text(node[0])}/{_text(node[1])}".lower()
    here = number or "1"
    if kind == "message/rfc822" and len(node) > 8 and isinstance(node[8], tuple | list):
        # The enclosed message's parts are here.1, here.2 ... (or here.1 when single part).
        inner = node[8]
        yield from _walk(inner, here if _is_multipart(inner) else f"{here}.1", depth + 1)
        return
    part = _leaf(node, here, kind)
    if part is not None:
        yield part


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


def _leaf(node: Sequence[Any], number: str, kind: str) -> AttachmentPart | None:
    params = _params(node[2])
    disposition, disposition_params = _disposition(node, kind)
    content_id = _text(node[3]) if node[3] is not None else None
    inline_image = (
        kind.startswith("image/") and content_id is not None and disposition != "attachment"
    )
    filename = decode_filename(disposition_params, "filename") or decode_filename(params, "name")
    is_file = disposition == "attachment" or filename is not None or not kind.startswith("text/")
    if not (is_file or inline_image) or kind.startswith(("multipart/", "message/")):
        return None
    return AttachmentPart(
        part=number,
        content_type=kind,
        encoding=_text(node[5]).lower() if node[5] is not None else "7bit",
        encoded_size=int(node[6]),
        filename=filename,
        content_id=content_id,
        inline=inline_image,
        needs_header=filename is None or "\ufffd" in filename,
    )


def _disposition(node: Sequence[Any], kind: str) -> tuple[str | None, dict[str, bytes]]:
    # Extension data of a single part: md5, disposition, language, location. Text parts have
    # a line count first, and message/rfc822 has envelope, body and line count.
    index = {"text": 8, "message": 10}.get(kind.split("/", maxsplit=1)[0], 7) + 1
    if len(node) <= index or not isinstance(node[index], tuple | list):
        return None, {}
    value = node[index]
    name = _text(value[0]).lower() if value and value[0] is not None else None
    return name, _params(value[1] if len(value) > 1 else None)


def _params(value: Any) -> dict[str, bytes]:
    if not isinstance(value, tuple | list):
        return {}
    items = list(value)
    return {
        _text(key).lower(): item if isinstance(item, bytes) else _text(item).encode()
        for key, item in zip(items[::2], items[1::2], strict=False)
        if key is not None and item is not None
    }


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
        return _join_sections(sections) or None
    raw = params.get(key)
    if raw is None:
        return None
    return _decode_words(_decode_bytes(raw, "utf-8")) or None


def _rfc2231_sections(params: dict[str, bytes], key: str) -> list[tuple[int, bool, bytes]]:
    sections = []
    for name, value in params.items():
        match = _SECTION.match(name)
        if match and match.group(1) == key:
            index, starred = match.group(2), match.group(3)
            sections.append((int(index or 0), index is None or starred is not None, value))
    return sorted(sections, key=lambda section: section[0])


def _join_sections(sections: list[tuple[int, bool, bytes]]) -> str:
    charset = "utf-8"
    data = bytearray()
    for index, (_, encoded, value) in enumerate(sections):
        text = value
        if encoded and index == 0 and value.count(b"'") >= 2:
            declared, _, text = value.split(b"'", 2)
            charset = declared.decode("ascii", "replace") or charset
        data += urllib.parse.unquote_to_bytes(text) if encoded else text
    return _decode_bytes(bytes(data), charset)


def _decode_bytes(data: bytes, charset: str) -> str:
    for candidate in (charset, "utf-8"):
        try:
            return data.decode(candidate)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("latin-1")


def _decode_words(value: str) -> str:
    if "=?" not in value:
        return value
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (LookupError, ValueError, UnicodeDecodeError):
        return value


def filename_from_mime_header(header: bytes) -> str | None:
    """The filename in a part's MIME header (`BODY.PEEK[n.MIME]`), decoded by the email package."""
    message = BytesHeaderParser(policy=email.policy.default).parsebytes(header)
    try:
        name = message.get_filename()
    except (LookupError, ValueError, UnicodeError):
        return None
    return name or None
