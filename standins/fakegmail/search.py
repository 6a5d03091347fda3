"""SEARCH and UID SEARCH over the selected folder; X-GM-RAW goes through gmsearch.

Keys: ALL, a sequence set, UID set, NOT key, OR key key, (keys...), the flag keys (SEEN, UNSEEN,
FLAGGED, ...), X-GM-RAW query, X-GM-MSGID n, X-GM-THRID n, X-GM-LABELS label; keys in a row
must all match. `CHARSET UTF-8` (or US-ASCII) may come first. A command that does not follow
this syntax gets `BAD Could not parse command`; so does an X-GM-RAW query that gmsearch cannot
parse (Gmail itself reads almost any text as a query; the fake refuses what it cannot model,
loudly, rather than guess).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING

from standins.fakegmail import gmsearch, mutf7, texts
from standins.fakegmail.mailbox import Account, StoredMessage
from standins.fakegmail.protocol import (
    Command,
    ParseError,
    Token,
    as_atom,
    as_bytes,
    as_number,
    as_text,
    parse_sequence_set,
)

if TYPE_CHECKING:
    from standins.fakegmail.session import Session

_CHARSETS = frozenset({"UTF-8", "US-ASCII"})
# Key -> (flag, whether the message must have it).
_FLAG_KEYS = {
    "SEEN": ("\\Seen", True),
    "UNSEEN": ("\\Seen", False),
    "FLAGGED": ("\\Flagged", True),
    "UNFLAGGED": ("\\Flagged", False),
    "ANSWERED": ("\\Answered", True),
    "UNANSWERED": ("\\Answered", False),
    "DELETED": ("\\Deleted", True),
    "UNDELETED": ("\\Deleted", False),
    "DRAFT": ("\\Draft", True),
    "UNDRAFT": ("\\Draft", False),
}


@dataclass
class Candidate:
    """A message as a search key sees it. The message itself is read only when a key asks for
    more than its numbers (a generated account makes it then), so a UID set narrows a search
    of a big account cheaply."""

    seq: int
    uid: int
    account: Account
    largest_uid: int
    largest_seq: int
    now: datetime

    @cached_property
    def stored(self) -> StoredMessage:
        """The message (`found` checks that it still exists)."""
        stored = self.account.message(self.uid)
        if stored is None:
            raise LookupError(self.uid)
        return stored

    @property
    def found(self) -> bool:
        """Whether the message still exists."""
        try:
            return self.stored is not None
        except LookupError:
            return False


Predicate = Callable[[Candidate], bool]


async def search(session: Session, command: Command) -> bytes:
    """(UID) SEARCH [CHARSET c] keys: `* SEARCH n...` with UIDs or sequence numbers."""
    account, view = session.logged_in_account, session.selected
    predicate = parse_keys(_without_charset(command.args))
    now = datetime.fromtimestamp(session.shared.clock(), UTC)
    found: list[int] = []
    for seq, uid in enumerate(view.uids, start=1):
        candidate = Candidate(seq, uid, account, view.largest_uid, len(view.uids), now)
        try:
            matched = predicate(candidate)
        except LookupError:  # gone since SELECT
            continue
        if matched and candidate.found:
            found.append(uid if command.name.startswith("UID") else seq)
    await session.output.line(b"* SEARCH" + b"".join(b" %d" % number for number in found))
    return texts.SEARCH_DONE


def parse_keys(tokens: Sequence[Token]) -> Predicate:
    """The predicate that search keys in a row stand for (all must match)."""
    reader = _Keys(tokens)
    predicates = [reader.key()]
    while reader.more():
        predicates.append(reader.key())
    return lambda candidate: all(predicate(candidate) for predicate in predicates)


def _without_charset(args: tuple[Token, ...]) -> tuple[Token, ...]:
    if args and isinstance(args[0], str) and args[0].upper() == "CHARSET":
        if len(args) < 2 or as_text(args[1]).upper() not in _CHARSETS:
            raise ParseError("unsupported CHARSET")
        return args[2:]
    return args


class _Keys:
    """Reads search keys one after the other."""

    def __init__(self, tokens: Sequence[Token]) -> None:
        self._tokens = tokens
        self._pos = 0

    def more(self) -> bool:
        return self._pos < len(self._tokens)

    def next(self) -> Token:
        if not self.more():
            raise ParseError("search key without its argument")
        self._pos += 1
        return self._tokens[self._pos - 1]

    def key(self) -> Predicate:
        token = self.next()
        if isinstance(token, tuple):
            return parse_keys(token)
        name = as_atom(token)
        if name in _FLAG_KEYS:
            flag, wanted = _FLAG_KEYS[name]
            return lambda c: (flag in c.stored.flags) == wanted
        parser = _KEYS.get(name)
        if parser is not None:
            return parser(self)
        numbers = parse_sequence_set(token)
        return lambda c: numbers.contains(c.seq, c.largest_seq)


def _all(keys: _Keys) -> Predicate:
    return lambda c: True


def _uid(keys: _Keys) -> Predicate:
    uids = parse_sequence_set(keys.next())
    return lambda c: uids.contains(c.uid, c.largest_uid)


def _not(keys: _Keys) -> Predicate:
    inner = keys.key()
    return lambda c: not inner(c)


def _or(keys: _Keys) -> Predicate:
    left, right = keys.key(), keys.key()
    return lambda c: left(c) or right(c)


def _gm_raw(keys: _Keys) -> Predicate:
    try:
        query = gmsearch.parse(as_text(keys.next()))
    except gmsearch.QuerySyntaxError as error:
        raise ParseError(f"X-GM-RAW: {error}") from None
    # gmsearch reads flags (is:unread) and labels from one collection.
    return lambda c: query.matches(
        c.stored.message,
        labels=c.stored.labels | c.stored.flags,
        internaldate=c.stored.internaldate,
        now=c.now,
    )


def _gm_msgid(keys: _Keys) -> Predicate:
    wanted = as_number(keys.next())
    return lambda c: c.stored.gm_msgid == wanted


def _gm_thrid(keys: _Keys) -> Predicate:
    wanted = as_number(keys.next())
    return lambda c: c.stored.gm_thrid == wanted


def _gm_labels(keys: _Keys) -> Predicate:
    try:
        label = mutf7.decode(as_bytes(keys.next()))
    except ValueError:
        raise ParseError("label is not modified UTF-7") from None
    return lambda c: label in c.stored.labels


_KEYS: dict[str, Callable[[_Keys], Predicate]] = {
    "ALL": _all,
    "UID": _uid,
    "NOT": _not,
    "OR": _or,
    "X-GM-RAW": _gm_raw,
    "X-GM-MSGID": _gm_msgid,
    "X-GM-THRID": _gm_thrid,
    "X-GM-LABELS": _gm_labels,
}
