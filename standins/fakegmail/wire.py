"""How the fake Gmail writes IMAP data items: NIL, quoted strings, literals, lists."""

from __future__ import annotations

from collections.abc import Iterable

_PRINTABLE = frozenset(range(0x20, 0x7F))


def nstring(value: str | bytes | None) -> bytes:
    """NIL, a quoted string, or a literal when the value has CR, LF, 8-bit or NUL bytes."""
    if value is None:
        return b"NIL"
    data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    if all(byte in _PRINTABLE for byte in data):
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n" % len(data) + data


def literal(data: bytes) -> bytes:
    """A synchronising literal, as servers send message bodies."""
    return b"{%d}\r\n" % len(data) + data


def paren(items: Iterable[bytes]) -> bytes:
    """A parenthesised list of already-rendered items."""
    return b"(" + b" ".join(items) + b")"


_ATOM_SPECIALS = frozenset(b'(){ %*"\\]')


def astring(value: str | bytes) -> bytes:
    """An atom when the value is a plain word (not NIL), else what `nstring` writes."""
    data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    plain = all(byte in _PRINTABLE and byte not in _ATOM_SPECIALS for byte in data)
    if data and plain and data.upper() != b"NIL":
        return data
    return nstring(data)
