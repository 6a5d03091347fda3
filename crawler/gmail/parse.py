"""FETCH answers parsed as IMAPClient parses them, a token at a time instead of a byte at a time.

IMAPClient's lexer walks every line of an answer byte by byte in Python, and its parser calls a
function per token: on a batch's metadata (ENVELOPE and BODYSTRUCTURE, some 700 bytes and 100
tokens a message) that was most of the session's CPU. `parse_fetch_response` here cuts an
answer's tokens with one regular expression and builds its values in one loop, for answers made
of what IMAPClient reads without fuss: words, quoted strings, balanced parentheses, literals of
the size they announce. Anything else (a `%` or a control character, an unclosed quote or
`[`, a quote straight after a word, unbalanced parentheses, a literal of another size, nesting
deeper than `MAX_NESTING`) is left to IMAPClient's own parser, which then gives its own values or
errors. Either way the values are IMAPClient's: the same types, the same conversions (INTERNALDATE,
ENVELOPE, BODYSTRUCTURE go through IMAPClient's own), the same errors.

IMAPClient's token rules (`imapclient.response_lexer`), which the expression follows: whitespace
is space, tab, CR and LF; a word is a run of bytes that are neither control characters nor `(`,
`)`, `%`, `"`, `[` or space, with `[...]` sections inside it taken whole, whatever they hold; a
quoted string keeps its quotes, and inside it `\\\\` and `\\"` lose their backslash while any other
backslash stays. Its values (`imapclient.response_parser.atom`): `NIL` is None, `{n}` the
literal that ends its line, a quoted string its content, digits without a leading zero an int,
any other word itself.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from imapclient import response_parser
from imapclient.exceptions import ProtocolError
from imapclient.response_parser import _convert_ENVELOPE, _convert_INTERNALDATE, _int_or_error
from imapclient.response_types import BodyData

# IMAPClient's parser recurses per level of parentheses; deeper than this it is left to it, so
# that it gives up (RecursionError) where it always has.
MAX_NESTING = 100

# One token after any whitespace: a closed quoted string (group 1), a parenthesis (2), a word not
# followed by what would make IMAPClient refuse it (3), or any other byte (4: the answer is left
# to IMAPClient). Every byte but trailing whitespace belongs to some match.
_TOKEN = re.compile(
    rb"[ \t\r\n]*+(?:"
    rb'("[^"\\]*+(?:\\.[^"\\]*+)*+")'
    rb"|([()])"
    rb'|((?>(?:[^\x00-\x20()%"\[]+|\[[^\]]*\])+))(?![\["])'
    rb"|(.))",
    re.DOTALL,
)
_ESCAPED = re.compile(rb'\\([\\"])')
_LEADING_ZERO = ord("0")
_BRACE = ord("{")


class _Unusual(Exception):
    """The answer holds something the fast path leaves to IMAPClient's parser."""


def _values(records: list[Any]) -> list[Any]:
    """The top-level values of an answer's records (lines, or (line, literal) pairs), as
    IMAPClient's `gen_parsed_response` gives them; _Unusual for what it is left to read."""
    top: list[Any] = []
    current = top
    stack: list[list[Any]] = []
    for record in records:
        line, literal = _record(record)
        for quoted, paren, word, _ in _TOKEN.findall(line):
            if paren == b"(":
                if len(stack) == MAX_NESTING:
                    raise _Unusual
                stack.append(current)
                current = []
            elif paren and stack:
                done = tuple(current)
                current = stack.pop()
                current.append(done)
            else:
                current.append(_atom(quoted, word, literal))
    if stack:
        raise _Unusual  # a tuple left open
    return top


def _record(record: Any) -> tuple[bytes, bytes | None]:
    """A record's line and the literal that follows it (None for a line without one)."""
    if isinstance(record, bytes):
        return record, None
    if isinstance(record, tuple):
        line, literal = record
        if isinstance(line, bytes) and line.endswith(b"}"):
            return line, literal
    raise _Unusual


def _atom(quoted: bytes, word: bytes, literal: bytes | None) -> Any:
    """The value of a quoted string or a word; _Unusual for any other token (`)` at the top,
    `%`, a control character, what IMAPClient refuses)."""
    if quoted:
        text = quoted[1:-1]
        return _ESCAPED.sub(rb"\1", text) if b"\\" in text else text
    if not word:
        raise _Unusual
    if word == b"NIL":
        return None
    if word[0] == _BRACE:
        return _literal(word, literal)
    if word.isdigit() and (word[0] != _LEADING_ZERO or len(word) == 1):
        return int(word)
    return word


def _literal(word: bytes, literal: bytes | None) -> bytes:
    """The literal `{n}` stands for, when its line brought one of exactly n bytes."""
    try:
        size = int(word[1:-1])
    except ValueError:
        raise _Unusual from None
    if literal is None or len(literal) != size:
        raise _Unusual
    return literal


def parse_fetch_response(
    records: list[Any], normalise_times: bool = True, uid_is_key: bool = True
) -> defaultdict[int, dict[bytes, Any]]:
    """IMAPClient's `parse_fetch_response`: each message's items, keyed by UID (or sequence
    number), each with its sequence number as `SEQ`."""
    if records == [None]:
        return defaultdict()
    try:
        values = _values(records)
    except _Unusual:
        parsed: defaultdict[int, dict[bytes, Any]]
        parsed = response_parser.parse_fetch_response(records, normalise_times, uid_is_key)
        return parsed
    response = iter(values)
    parsed = defaultdict(dict)
    for value in response:
        seq = _int_or_error(value, "invalid message ID")
        try:
            items = next(response)
        except StopIteration:
            raise ProtocolError("unexpected EOF") from None
        msg_id, msg_data = _message(seq, items, normalise_times, uid_is_key)
        parsed[msg_id].update(msg_data)
    return parsed


def _message(
    seq: int, items: Any, normalise_times: bool, uid_is_key: bool
) -> tuple[int, dict[bytes, Any]]:
    """One message's key and items, converted as IMAPClient converts them."""
    if not isinstance(items, tuple):
        raise ProtocolError(f"bad response type: {items!r}")
    if len(items) % 2:
        raise ProtocolError(f"uneven number of response items: {items!r}")
    msg_id = seq
    msg_data: dict[bytes, Any] = {b"SEQ": seq}
    for i in range(0, len(items), 2):
        word = items[i].upper()
        value = items[i + 1]
        if word == b"UID":
            uid = _int_or_error(value, "invalid UID")
            if uid_is_key:
                msg_id = uid
            else:
                msg_data[word] = uid
        elif word == b"INTERNALDATE":
            msg_data[word] = _convert_INTERNALDATE(value, normalise_times)
        elif word == b"ENVELOPE":
            msg_data[word] = _convert_ENVELOPE(value, normalise_times)
        elif word in (b"BODY", b"BODYSTRUCTURE"):
            msg_data[word] = BodyData.create(value)
        else:
            msg_data[word] = value
    return msg_id, msg_data
