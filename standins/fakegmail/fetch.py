"""FETCH and UID FETCH: which data items a client asks for, and how each message answers them.

Items: UID, FLAGS, INTERNALDATE, RFC822.SIZE, ENVELOPE, BODYSTRUCTURE, BODY, RFC822,
RFC822.HEADER, RFC822.TEXT, BODY[section]<offset.length>, BODY.PEEK[...], X-GM-MSGID,
X-GM-THRID, X-GM-LABELS, and the macros ALL, FAST and FULL. Section data always travels as a
literal. BODY[...], RFC822 and RFC822.TEXT set `\\Seen` in a folder opened with SELECT (never
with EXAMINE), and the message's FETCH response then carries its new FLAGS.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from standins.fakegmail import mutf7, texts
from standins.fakegmail.mailbox import StoredMessage
from standins.fakegmail.protocol import (
    Atom,
    Command,
    ParseError,
    Token,
    as_atom,
    parse_sequence_set,
    parse_tokens,
)
from standins.fakegmail.wire import astring, literal, nstring, paren

if TYPE_CHECKING:
    from standins.fakegmail.session import Session

_MACROS = {
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
_RFC822_SECTIONS = {
    "RFC822": ("", True),
    "RFC822.HEADER": ("HEADER", False),
    "RFC822.TEXT": ("TEXT", True),
}
_BODY_SECTION = re.compile(r"BODY(\.PEEK)?\[([^\]]*)\](?:<(\d+)\.(\d+)>)?", re.IGNORECASE)
_HEADER_TEXT = r"HEADER|TEXT|HEADER\.FIELDS(?:\.NOT)? \([^()]+\)"
_SECTION_SPEC = re.compile(
    rf"(?:[1-9]\d*(?:\.[1-9]\d*)*(?:\.(?:{_HEADER_TEXT}|MIME))?|{_HEADER_TEXT})?", re.IGNORECASE
)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_SEEN = "\\Seen"


@dataclass(frozen=True)
class Item:
    """One data item asked for: its name in the response and, for body data, its section."""

    name: str
    section: str | None = None
    partial: tuple[int, int] | None = None
    sets_seen: bool = False


def parse_items(token: Token) -> list[Item]:
    """The items of a FETCH: one item or macro, or a parenthesised list of them.

    RFC 3501 allows a macro (ALL, FAST, FULL) only alone; clients such as IMAPClient put it in
    parentheses all the same, and servers accept that.
    """
    elements = token if isinstance(token, tuple) else (token,)
    if not elements:
        raise ParseError("no FETCH items")
    return [item for element in elements for item in _items(element)]


def _items(token: Token) -> list[Item]:
    name = as_atom(token)
    if name in _MACROS:
        return [Item(part) for part in _MACROS[name]]
    return [_item(name)]


def _item(name: str) -> Item:
    if name in _RENDERERS:
        return Item(name)
    if name in _RFC822_SECTIONS:
        section, sets_seen = _RFC822_SECTIONS[name]
        return Item(name, section, sets_seen=sets_seen)
    match = _BODY_SECTION.fullmatch(name)
    if match is None or not _SECTION_SPEC.fullmatch(match.group(2)):
        raise ParseError(f"unknown FETCH item {name!r}")
    peek, section, offset, length = match.groups()
    partial = (int(offset), int(length)) if offset else None
    origin = f"<{offset}>" if offset else ""
    return Item(f"BODY[{section}]{origin}", section, partial, sets_seen=not peek)


async def fetch(session: Session, command: Command) -> bytes:
    """(UID) FETCH set items: one `* n FETCH (...)` per message, then OK (or NO when faulted)."""
    account, view = session.logged_in_account, session.selected
    if len(command.args) != 2:
        raise ParseError("FETCH takes a set and items")
    numbers = parse_sequence_set(command.args[0])
    items = parse_items(command.args[1])
    by_uid = command.name == "UID FETCH"
    if by_uid and not any(item.name == "UID" for item in items):
        items.insert(0, Item("UID"))
    targets = view.pick(numbers, by_uid=by_uid)
    tracker = session.output.tracker
    withheld = tracker.withheld([uid for _, uid in targets]) if tracker else frozenset()
    marks_seen = not view.readonly and any(item.sets_seen for item in items)
    for seq, uid in targets:
        stored = account.message(uid)
        if stored is None or uid in withheld:
            continue
        extra = []
        if marks_seen and _SEEN not in stored.flags:
            account.set_flags(stored, stored.flags | {_SEEN})
            extra = [] if any(item.name == "FLAGS" for item in items) else [Item("FLAGS")]
        await session.output.send(response(seq, stored, [*items, *extra]))
    return texts.PARTIAL_FETCH if withheld else texts.SUCCESS


def response(seq: int, stored: StoredMessage, items: list[Item]) -> bytes:
    """The `* seq FETCH (...)` line (with its literals) of one message."""
    rendered = [item.name.encode() + b" " + _value(item, stored) for item in items]
    return b"* %d FETCH %s\r\n" % (seq, paren(rendered))


def _value(item: Item, stored: StoredMessage) -> bytes:
    if item.section is not None:
        return _section(item, stored)
    return _RENDERERS[item.name](stored)


def _section(item: Item, stored: StoredMessage) -> bytes:
    data = stored.message.section(item.section or "")
    if data is None:
        return b"NIL"
    if item.partial is not None:
        offset, length = item.partial
        data = data[offset : offset + length]
    return literal(data)


def internaldate(stored: StoredMessage) -> str:
    """INTERNALDATE as IMAP writes it: `07-Mar-2024 10:04:03 +0000` (English months)."""
    when = stored.internaldate
    return (
        f"{when.day:02d}-{_MONTHS[when.month - 1]}-{when.year:04d} "
        f"{when.hour:02d}:{when.minute:02d}:{when.second:02d} {when.strftime('%z')}"
    )


def _system_first(label: str) -> tuple[bool, str]:
    return not label.startswith("\\"), label


def _label(label: str) -> bytes:
    # System labels are written bare (\Inbox, \Important); user labels as astrings.
    if label.startswith("\\") and label[1:].isalnum():
        return label.encode()
    return astring(mutf7.encode(label))


def _labels(stored: StoredMessage) -> bytes:
    return paren(_label(label) for label in sorted(stored.labels, key=_system_first))


_RENDERERS: dict[str, Callable[[StoredMessage], bytes]] = {
    "UID": lambda stored: b"%d" % stored.uid,
    "FLAGS": lambda stored: paren(flag.encode() for flag in sorted(stored.flags)),
    "INTERNALDATE": lambda stored: b'"%s"' % internaldate(stored).encode(),
    "RFC822.SIZE": lambda stored: b"%d" % stored.message.size,
    "ENVELOPE": lambda stored: stored.envelope,
    "BODYSTRUCTURE": lambda stored: stored.bodystructure,
    "BODY": lambda stored: body(stored.bodystructure),
    "X-GM-MSGID": lambda stored: b"%d" % stored.gm_msgid,
    "X-GM-THRID": lambda stored: b"%d" % stored.gm_thrid,
    "X-GM-LABELS": _labels,
}


def body(bodystructure: bytes) -> bytes:
    """BODY: the BODYSTRUCTURE without its extension data."""
    tokens = parse_tokens(bodystructure)
    if len(tokens) != 1:
        raise ValueError("a BODYSTRUCTURE is one list")
    return _render(_basic(tokens[0]))


def _basic(part: Token) -> Token:
    if not isinstance(part, tuple):
        return part
    if part and isinstance(part[0], tuple):  # multipart: children side by side, then subtype
        count = _leading_lists(part)
        return (*(_basic(child) for child in part[:count]), *part[count : count + 1])
    kind = [bytes(field).upper() for field in part[:2] if isinstance(field, bytes)]
    if kind == [b"MESSAGE", b"RFC822"]:
        return (*part[:8], _basic(part[8]), part[9])
    return part[:8] if kind[:1] == [b"TEXT"] else part[:7]


def _leading_lists(part: tuple[Token, ...]) -> int:
    return next(
        (index for index, child in enumerate(part) if not isinstance(child, tuple)), len(part)
    )


def _render(token: Token) -> bytes:
    if isinstance(token, tuple):
        rendered = [_render(child) for child in token]
        if token and isinstance(token[0], tuple):  # multipart children side by side
            count = _leading_lists(token)
            return b"(" + b"".join(rendered[:count]) + b" " + b" ".join(rendered[count:]) + b")"
        return paren(rendered)
    if isinstance(token, Atom):
        return token.encode()
    return nstring(token)
