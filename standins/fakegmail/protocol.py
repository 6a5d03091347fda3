"""What a client sends: command framing, tokens (atoms, strings, literals, lists), sequence sets.

Pure functions over bytes. A command arrives as its lines with every literal's data spliced in
(`{5}\\r\\nhello`), exactly as it crossed the wire; `literal_marker` tells the reader when a line
announces a literal that must be read before the command is complete.

Tokens: an `Atom` (a str: keywords, numbers, NIL, flags, sequence sets, fetch attributes such as
`BODY.PEEK[HEADER.FIELDS (FROM)]<0.100>` with their bracketed section kept whole), `bytes` for a
quoted string or a literal, and a tuple for a parenthesised list. Separators are single spaces,
as RFC 3501 requires; anything else is a `ParseError`. A quoted string holding 8-bit bytes (RFC
3501 allows 7-bit QUOTED-CHARs only) is kept as `EightBitQuoted`: in a SEARCH, Gmail answers
`BAD Could not parse command` to one, and to a literal holding 8-bit bytes without
`CHARSET UTF-8` (`eight_bit_without_charset`); both facts and their sources are in
docs/gmail-facts.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeAlias

_LITERAL_AT_END = re.compile(rb"\{(\d{1,10})(\+?)\}\r?\n\Z")
_TAG = re.compile(rb"[\x21-\x7e]+")
_TAG_SPECIALS = frozenset(b'(){%*"\\+')
_ATOM_STOP = frozenset(b' (){"') | frozenset(range(0x20)) | frozenset(range(0x7F, 0x100))
_QUOTED_ESCAPES = frozenset(b'"\\')
_LITERAL_OPEN = re.compile(rb"(\d{1,10})\+?\}\r?\n")
_SEQUENCE_SET = re.compile(
    r"(?:[0-9]+|\*)(?::(?:[0-9]+|\*))?(?:,(?:[0-9]+|\*)(?::(?:[0-9]+|\*))?)*"
)


class ParseError(ValueError):
    """The client's command does not follow IMAP syntax; `tag` is set when it could be read."""

    def __init__(self, message: str, tag: str | None = None) -> None:
        super().__init__(message)
        self.tag = tag


class Atom(str):
    """An IMAP atom as the client sent it (compare case-insensitively where IMAP does)."""

    __slots__ = ()


class EightBitQuoted(bytes):
    """A quoted string that holds 8-bit bytes, which RFC 3501 does not allow in one."""

    __slots__ = ()


Token: TypeAlias = "Atom | bytes | tuple[Token, ...]"  # noqa: S105  # a type, not a secret


@dataclass(frozen=True)
class Command:
    """One tagged command. `name` is upper case, with the UID prefix: `UID FETCH`."""

    tag: str
    name: str
    args: tuple[Token, ...]


@dataclass(frozen=True)
class LiteralMarker:
    """A `{n}` (synchronising: the server answers `+` first) or `{n+}` at the end of a line."""

    size: int
    synchronizing: bool


def literal_marker(line: bytes) -> LiteralMarker | None:
    """The literal that `line` (with its line ending) announces, or None."""
    match = _LITERAL_AT_END.search(line)
    if match is None:
        return None
    return LiteralMarker(size=int(match.group(1)), synchronizing=not match.group(2))


def parse_command(data: bytes) -> Command:
    """The command in `data`: its lines and spliced literals, with or without the final CRLF."""
    data = _strip_line_end(data)
    tag_bytes, space, rest = data.partition(b" ")
    if not space or not _TAG.fullmatch(tag_bytes) or _TAG_SPECIALS & set(tag_bytes):
        raise ParseError("invalid tag")
    tag = tag_bytes.decode("ascii")
    try:
        tokens = _Lexer(rest).tokens()
    except ParseError as error:
        raise ParseError(str(error), tag) from None
    name, args = _command_name(tokens, tag)
    return Command(tag=tag, name=name, args=args)


def parse_tokens(data: bytes) -> tuple[Token, ...]:
    """The tokens in `data` (used for data items such as a BODYSTRUCTURE, too)."""
    return _Lexer(data).tokens()


def _strip_line_end(data: bytes) -> bytes:
    if data.endswith(b"\r\n"):
        return data[:-2]
    return data.removesuffix(b"\n")


def _command_name(tokens: tuple[Token, ...], tag: str) -> tuple[str, tuple[Token, ...]]:
    if not tokens or not isinstance(tokens[0], Atom):
        raise ParseError("no command", tag)
    name = tokens[0].upper()
    if name != "UID":
        return name, tokens[1:]
    if len(tokens) < 2 or not isinstance(tokens[1], Atom):
        raise ParseError("UID without a command", tag)
    return f"UID {tokens[1].upper()}", tokens[2:]


class _Lexer:
    """Reads tokens from one command (or data item) with a cursor."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def tokens(self, *, closing: bool = False) -> tuple[Token, ...]:
        items: list[Token] = []
        if closing and self._take(b")"):
            return ()
        while True:
            items.append(self._token())
            if closing and self._take(b")"):
                return tuple(items)
            if self.pos == len(self.data):
                if closing:
                    raise ParseError("unclosed list")
                return tuple(items)
            # BODYSTRUCTURE writes the parts of a multipart side by side: `((...)(...) "MIXED")`.
            adjacent_list = isinstance(items[-1], tuple) and self.data[self.pos] == ord("(")
            if not adjacent_list and not self._take(b" "):
                raise ParseError(f"unexpected byte at {self.pos}")

    def _take(self, char: bytes) -> bool:
        if self.data[self.pos : self.pos + 1] == char:
            self.pos += 1
            return True
        return False

    def _token(self) -> Token:
        if self._take(b"("):
            return self.tokens(closing=True)
        if self._take(b'"'):
            return self._quoted()
        if self._take(b"{"):
            return self._literal()
        return self._atom()

    def _quoted(self) -> bytes:
        out = bytearray()
        while self.pos < len(self.data):
            byte = self.data[self.pos]
            self.pos += 1
            if byte == ord('"'):
                return bytes(out) if out.isascii() else EightBitQuoted(out)
            if byte in (0, ord("\r"), ord("\n")):
                break
            if byte == ord("\\"):
                if self.pos == len(self.data) or self.data[self.pos] not in _QUOTED_ESCAPES:
                    raise ParseError("bad escape in quoted string")
                byte = self.data[self.pos]
                self.pos += 1
            out.append(byte)
        raise ParseError("unterminated quoted string")

    def _literal(self) -> bytes:
        match = _LITERAL_OPEN.match(self.data, self.pos)
        if match is None:
            raise ParseError("bad literal")
        size = int(match.group(1))
        start = match.end()
        if start + size > len(self.data):
            raise ParseError("literal shorter than announced")
        self.pos = start + size
        return self.data[start : self.pos]

    def _atom(self) -> Atom:
        start = self.pos
        while self.pos < len(self.data) and self.data[self.pos] not in _ATOM_STOP:
            if self.data[self.pos] == ord("["):
                # A section such as [HEADER.FIELDS (FROM TO)] holds spaces and parens.
                end = self.data.find(b"]", self.pos)
                if end < 0:
                    raise ParseError("unclosed [")
                self.pos = end
            self.pos += 1
        if self.pos == start:
            raise ParseError(f"expected a token at {start}")
        return Atom(self.data[start : self.pos].decode("ascii"))


def eight_bit_without_charset(args: tuple[Token, ...]) -> bool:
    """Whether SEARCH arguments carry 8-bit bytes as Gmail cannot parse them: in a quoted
    string, or in a literal without `CHARSET UTF-8` first (the command is then US-ASCII)."""
    charset = args[1] if len(args) > 1 and _is_atom(args[0], "CHARSET") else None
    declared = isinstance(charset, bytes | Atom) and _ascii(charset).upper() == "UTF-8"
    return any(_eight_bit(token, literal_too=not declared) for token in args)


def _is_atom(token: Token, value: str) -> bool:
    return isinstance(token, Atom) and token.upper() == value


def _ascii(token: Atom | bytes) -> str:
    return str(token) if isinstance(token, Atom) else token.decode("ascii", "replace")


def _eight_bit(token: Token, *, literal_too: bool) -> bool:
    if isinstance(token, tuple):
        return any(_eight_bit(inner, literal_too=literal_too) for inner in token)
    if isinstance(token, EightBitQuoted):
        return True
    return literal_too and isinstance(token, bytes) and not token.isascii()


def as_text(token: Token) -> str:
    """An astring argument as text (UTF-8); ParseError for a list."""
    if isinstance(token, tuple):
        raise ParseError("expected a string, got a list")
    if isinstance(token, Atom):
        return str(token)
    try:
        return token.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError("string is not UTF-8") from None


def as_bytes(token: Token) -> bytes:
    """An astring argument as the bytes sent (a folder name in modified UTF-7, say)."""
    if isinstance(token, tuple):
        raise ParseError("expected a string, got a list")
    return token.encode("ascii") if isinstance(token, Atom) else token


def as_atom(token: Token) -> str:
    """An atom argument, upper-cased; ParseError for strings and lists."""
    if not isinstance(token, Atom):
        raise ParseError("expected an atom")
    return token.upper()


def as_number(token: Token) -> int:
    """A number argument."""
    value = as_atom(token)
    if not value.isdigit() or not value.isascii():
        raise ParseError("expected a number")
    return int(value)


@dataclass(frozen=True)
class SequenceSet:
    """A sequence set such as `1:4,7,9:*`; each bound is a number or None for `*`."""

    ranges: tuple[tuple[int | None, int | None], ...]

    def resolve(self, largest: int) -> list[tuple[int, int]]:
        """The ranges as (low, high) with `*` standing for `largest`.

        `n:*` is the range between n and `largest` in either order, so it always holds the
        largest number even when that is below n (RFC 3501 section 6.4.8).
        """
        resolved = []
        for low, high in self.ranges:
            first = largest if low is None else low
            last = largest if high is None else high
            resolved.append((min(first, last), max(first, last)))
        return resolved

    def contains(self, value: int, largest: int) -> bool:
        """Whether `value` is in the set when `*` stands for `largest`."""
        return any(low <= value <= high for low, high in self.resolve(largest))


def parse_sequence_set(token: Token) -> SequenceSet:
    """The sequence set in an atom argument."""
    value = as_atom(token)
    if not _SEQUENCE_SET.fullmatch(value):
        raise ParseError(f"bad sequence set {value!r}")
    ranges = []
    for piece in value.split(","):
        low, _, high = piece.partition(":")
        bounds = (_bound(low), _bound(high or low))
        if 0 in bounds:
            raise ParseError("sequence numbers start at 1")
        ranges.append(bounds)
    return SequenceSet(tuple(ranges))


def _bound(text: str) -> int | None:
    return None if text == "*" else int(text)
