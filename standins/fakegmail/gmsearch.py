"""X-GM-RAW: the part of Gmail's search syntax that the fake Gmail understands.

``parse(query)`` turns a query into a ``Query``; ``Query.matches`` tests one message. Malformed
queries (unbalanced parentheses, braces or quotes, a dangling ``OR``, a ``-`` glued to ``)``,
``}`` or ``OR``, nesting deeper than 64) raise ``QuerySyntaxError``; nothing else is ever
raised. A ``-`` standing alone is punctuation, which Gmail ignores.

Syntax:

- Terms side by side must all match (``AND`` is accepted and ignored); ``a OR b`` and ``a | b``
  match either; ``-term`` negates; ``( ... )`` groups; ``{a b}`` matches any of its terms;
  ``"a phrase"`` matches consecutive words.
- A bare word matches, case-insensitively, any word of the subject, the From/To/Cc/Bcc addresses,
  the body text (text/* parts that are not attachments; HTML tags dropped) or an attachment's
  file name that *starts* with it; a word with punctuation (``a@b.com``) is the phrase of its
  words. Punctuation alone matches everything.
- ``from:``, ``to:`` (To, Cc and Bcc), ``cc:``, ``bcc:``: a substring of one address as
  ``Name <mailbox@host>`` (decoded), case-insensitive.
- ``subject:``: a word (word prefix) or quoted phrase in the decoded subject.
- ``filename:``: the whole name, its extension (``filename:pdf``) or a substring of it.
- ``has:attachment`` (a part with a file name or an attachment disposition, not an inline
  image), ``has:userlabels``, ``has:nouserlabels``.
- ``larger:`` / ``size:`` and ``smaller:``: RFC822.SIZE against bytes with an optional ``K``,
  ``M`` or ``G`` suffix (``KB``, ``MB``, ``GB`` too; powers of 1024).
- ``after:`` / ``newer:`` and ``before:`` / ``older:``: the internal date against midnight of
  ``YYYY/MM/DD``, ``YYYY-MM-DD`` or ``MM/DD/YYYY`` in the timezone of ``now`` (after is
  inclusive, before exclusive), or against epoch seconds.
- ``newer_than:`` / ``older_than:``: ``Nd``, ``Nm`` (calendar months) or ``Ny`` before ``now``.
- ``label:``: case-insensitive; ``\\Inbox`` style system labels by name (``label:inbox``), a
  space or ``/`` in a label name written as ``-`` (``label:work-q1`` finds ``Work/Q1``).
- ``in:``: ``anywhere`` matches everything; ``inbox``, ``sent``, ``trash``, ``spam``,
  ``drafts``, ``starred``, ``important`` and any other name as ``label:``.
- ``is:``: ``unread`` / ``read`` (the ``\\Seen`` flag), ``starred`` (``\\Starred`` label or
  ``\\Flagged`` flag), ``important``. The caller passes labels and flags in one collection.
- An operator value may be quoted (``subject:"a b"``) or a group: ``subject:(a b)`` needs both,
  ``subject:{a b}`` either.
- Unknown operators (``foo:bar``) and operator values that do not parse (``larger:abc``) are
  plain words, as in Gmail, where they usually match nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property

from standins.fakegmail.message import FakeMessage

MAX_DEPTH = 64
_WORD = re.compile(r"\w+")
_PUNCTUATION = frozenset("(){}|")
_SIZE = re.compile(r"(\d{1,30})([kmg]?)b?", re.IGNORECASE)
_RELATIVE = re.compile(r"(\d{1,9})([dmy])", re.IGNORECASE)
_YMD = re.compile(r"(\d{4})[/-](\d{1,2})[/-](\d{1,2})")
_MDY = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")
_EPOCH_MIN = datetime(1, 1, 1, tzinfo=UTC)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


class QuerySyntaxError(ValueError):
    """A query Gmail would refuse: the server answers BAD."""


# ---------------------------------------------------------------------------------------------
# What a query is tested against.


class _Facts:
    """One message, its labels and dates, with word lists computed once."""

    def __init__(
        self, message: FakeMessage, labels: Collection[str], internaldate: datetime, now: datetime
    ) -> None:
        self.message = message
        self.labels = frozenset(labels)
        self.internaldate = _aware(internaldate)
        self.now = _aware(now)

    @cached_property
    def label_keys(self) -> frozenset[str]:
        return frozenset(_label_key(label) for label in self.labels)

    @cached_property
    def word_fields(self) -> list[list[str]]:
        """The word lists a bare word searches, one per field so phrases stay inside one."""
        message = self.message
        fields = [message.subject, message.text, *message.attachment_filenames]
        fields += message.header_addresses("from", "to", "cc", "bcc")
        return [_words(text) for text in fields]

    def addresses(self, names: tuple[str, ...]) -> list[str]:
        return [address.casefold() for address in self.message.header_addresses(*names)]


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def _label_key(label: str) -> str:
    name = label.casefold().removeprefix("\\")
    return re.sub(r"[\s/-]+", "-", name).strip("-")


def _has_phrase(words: Sequence[str], haystack: Sequence[str], *, prefix: bool) -> bool:
    """Whether `words` occur consecutively in `haystack` (the last one as a prefix if asked)."""
    if not words:
        return True
    last = len(words) - 1
    for start in range(len(haystack) - last):
        if all(haystack[start + i] == word for i, word in enumerate(words[:last])) and (
            haystack[start + last].startswith(words[last])
            if prefix
            else haystack[start + last] == words[last]
        ):
            return True
    return False


# ---------------------------------------------------------------------------------------------
# The query tree.

Predicate = Callable[[_Facts], bool]


@dataclass(frozen=True)
class Query:
    """A parsed X-GM-RAW query."""

    test: Predicate
    text: str

    def matches(
        self,
        message: FakeMessage,
        *,
        labels: Collection[str],
        internaldate: datetime,
        now: datetime,
    ) -> bool:
        """Whether `message` matches; `labels` holds its X-GM-LABELS and its flags."""
        return self.test(_Facts(message, labels, internaldate, now))


def _all(items: list[Predicate]) -> Predicate:
    return lambda facts: all(item(facts) for item in items)


def _any(items: list[Predicate]) -> Predicate:
    return lambda facts: any(item(facts) for item in items)


def _not(item: Predicate) -> Predicate:
    return lambda facts: not item(facts)


def _bare_words(text: str, *, phrase: bool) -> Predicate:
    words = _words(text)
    prefix = not phrase
    return lambda facts: any(
        _has_phrase(words, field, prefix=prefix) for field in facts.word_fields
    )


# ---------------------------------------------------------------------------------------------
# Operators: each turns a value into a predicate, or None when the value does not parse.


def _address_operator(*headers: str) -> Callable[[str], Predicate | None]:
    def make(value: str) -> Predicate:
        needle = value.casefold()
        return lambda facts: any(needle in address for address in facts.addresses(headers))

    return make


def _subject(value: str) -> Predicate:
    words = _words(value)
    return lambda facts: _has_phrase(words, _words(facts.message.subject), prefix=True)


def _filename(value: str) -> Predicate:
    needle = value.casefold()

    def test(facts: _Facts) -> bool:
        names = [name.casefold() for name in facts.message.attachment_filenames]
        return any(needle in name or name.rpartition(".")[2] == needle for name in names)

    return test


def _has(value: str) -> Predicate | None:
    kind = value.casefold()
    if kind == "attachment":
        return lambda facts: facts.message.has_attachment
    if kind in ("userlabels", "nouserlabels"):
        wanted = kind == "userlabels"
        return lambda facts: any(not label.startswith("\\") for label in facts.labels) == wanted
    return None


def _bytes(value: str) -> int | None:
    match = _SIZE.fullmatch(value)
    if match is None:
        return None
    return int(match[1]) * _UNITS[match[2].lower()]


def _larger(value: str) -> Predicate | None:
    size = _bytes(value)
    return None if size is None else (lambda facts: facts.message.size > size)


def _smaller(value: str) -> Predicate | None:
    size = _bytes(value)
    return None if size is None else (lambda facts: facts.message.size < size)


def _date(value: str) -> Callable[[datetime], datetime] | None:
    """The moment a date names, given `now` (whose timezone midnight is taken in)."""
    if value.isdigit() and value.isascii():
        seconds = int(value)
        return lambda now: _from_epoch(seconds)
    match = _YMD.fullmatch(value)
    year_month_day = (match[1], match[2], match[3]) if match else None
    match = _MDY.fullmatch(value)
    if match:
        year_month_day = (match[3], match[1], match[2])
    if year_month_day is None:
        return None
    year, month, day = (int(part) for part in year_month_day)
    try:
        datetime(year, month, day)
    except ValueError:
        return None
    return lambda now: datetime(year, month, day, tzinfo=now.tzinfo)


def _from_epoch(seconds: int) -> datetime:
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return datetime.max.replace(tzinfo=UTC)


def _after(value: str) -> Predicate | None:
    moment = _date(value)
    return None if moment is None else (lambda facts: facts.internaldate >= moment(facts.now))


def _before(value: str) -> Predicate | None:
    moment = _date(value)
    return None if moment is None else (lambda facts: facts.internaldate < moment(facts.now))


def _ago(value: str) -> Callable[[datetime], datetime] | None:
    match = _RELATIVE.fullmatch(value)
    if match is None:
        return None
    count, unit = int(match[1]), match[2].lower()
    return lambda now: _minus(now, count, unit)


def _minus(now: datetime, count: int, unit: str) -> datetime:
    """`now` less `count` days, calendar months or years (the earliest date on overflow)."""
    try:
        if unit == "d":
            return now - timedelta(days=count)
        months = now.year * 12 + now.month - 1 - count * (12 if unit == "y" else 1)
        year, month = divmod(months, 12)
        first = now.replace(year=year, month=month + 1, day=1)
        return first + timedelta(days=min(now.day, _month_days(first)) - 1)
    except (OverflowError, ValueError):
        return _EPOCH_MIN


def _month_days(first: datetime) -> int:
    following = first.replace(day=28) + timedelta(days=4)
    return (following - timedelta(days=following.day)).day


def _newer_than(value: str) -> Predicate | None:
    cutoff = _ago(value)
    return None if cutoff is None else (lambda facts: facts.internaldate > cutoff(facts.now))


def _older_than(value: str) -> Predicate | None:
    cutoff = _ago(value)
    return None if cutoff is None else (lambda facts: facts.internaldate < cutoff(facts.now))


_LABEL_ALIASES = {"drafts": "draft", "chat": "chats"}


def _label(value: str) -> Predicate:
    key = _label_key(value)
    key = _LABEL_ALIASES.get(key, key)
    return lambda facts: key in facts.label_keys


def _in(value: str) -> Predicate:
    if value.casefold() == "anywhere":
        return lambda facts: True
    return _label(value)


def _is(value: str) -> Predicate | None:
    state = value.casefold()
    if state in ("unread", "read"):
        wanted = state == "read"
        return lambda facts: ("\\Seen" in facts.labels) == wanted
    if state == "starred":
        return lambda facts: bool({"\\Starred", "\\Flagged"} & facts.labels)
    if state == "important":
        return lambda facts: "\\Important" in facts.labels
    return None


_OPERATORS: dict[str, Callable[[str], Predicate | None]] = {
    "from": _address_operator("from"),
    "to": _address_operator("to", "cc", "bcc"),
    "cc": _address_operator("cc"),
    "bcc": _address_operator("bcc"),
    "subject": _subject,
    "filename": _filename,
    "has": _has,
    "larger": _larger,
    "size": _larger,
    "smaller": _smaller,
    "after": _after,
    "newer": _after,
    "before": _before,
    "older": _before,
    "newer_than": _newer_than,
    "older_than": _older_than,
    "label": _label,
    "in": _in,
    "is": _is,
}


# ---------------------------------------------------------------------------------------------
# Tokens.


@dataclass(frozen=True)
class _Token:
    kind: str  # "word", "phrase", "(", ")", "{", "}", "or", "not", "op(", "op{"
    text: str = ""
    value: str = ""  # an operator's value, for a word like from:x or subject:"a b"
    quoted: bool = False  # the value was quoted


def _tokens(query: str) -> Iterator[_Token]:
    pos = 0
    while pos < len(query):
        char = query[pos]
        if char.isspace():
            pos += 1
        elif char in _PUNCTUATION:
            yield _Token("or" if char == "|" else char)
            pos += 1
        elif char == '"':
            text, pos = _quoted(query, pos)
            yield _Token("phrase", text)
        elif char == "-" and pos + 1 < len(query) and not query[pos + 1].isspace():
            yield _Token("not")
            pos += 1
        else:
            token, pos = _word(query, pos)
            yield token


def _quoted(query: str, pos: int) -> tuple[str, int]:
    end = query.find('"', pos + 1)
    if end < 0:
        raise QuerySyntaxError(f"unbalanced quote at {pos}")
    return query[pos + 1 : end], end + 1


def _word(query: str, pos: int) -> tuple[_Token, int]:
    end = pos
    while end < len(query) and not query[end].isspace() and query[end] not in '(){}|"':
        end += 1
    text = query[pos:end]
    name, colon, value = text.partition(":")
    operator = name.casefold() if colon and name.casefold() in _OPERATORS else ""
    following = query[end : end + 1]
    if operator and not value and following == '"':
        quoted, end = _quoted(query, end)
        return _Token("word", text + quoted, value=quoted, quoted=True), end
    if operator and not value and following in ("(", "{"):
        return _Token("op" + following, operator), end + 1
    if text in ("OR", "AND"):
        return _Token(text.lower()), end
    return _Token("word", text, value=value if operator else ""), end


# ---------------------------------------------------------------------------------------------
# The parser: a sequence of OR-chains of (negated) terms and groups.

_CLOSERS = {"(": ")", "{": "}", "op(": ")", "op{": "}"}


class _Parser:
    def __init__(self, query: str) -> None:
        self.tokens = [token for token in _tokens(query) if token.kind != "and"]
        self.pos = 0

    def peek(self) -> str:
        return self.tokens[self.pos].kind if self.pos < len(self.tokens) else ""

    def take(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def sequence(self, closer: str, operator: str, depth: int) -> list[Predicate]:
        if depth > MAX_DEPTH:
            raise QuerySyntaxError("query nested too deeply")
        items = []
        while self.peek() not in ("", closer):
            if self.peek() in (")", "}"):
                raise QuerySyntaxError(f"unbalanced {self.peek()!r}")
            items.append(self.chain(operator, depth))
        if self.peek() != closer:
            raise QuerySyntaxError(f"missing {closer!r}")
        if closer:
            self.take()
        return items

    def chain(self, operator: str, depth: int) -> Predicate:
        items = [self.unary(operator, depth)]
        while self.peek() == "or":
            self.take()
            items.append(self.unary(operator, depth))
        return items[0] if len(items) == 1 else _any(items)

    def unary(self, operator: str, depth: int) -> Predicate:
        negate = False
        while self.peek() == "not":
            self.take()
            negate = not negate
        if self.peek() in ("", ")", "}", "or"):
            raise QuerySyntaxError("a term is missing (after '-' or around OR)")
        item = self.primary(operator, depth)
        return _not(item) if negate else item

    def primary(self, operator: str, depth: int) -> Predicate:
        token = self.take()
        if token.kind in _CLOSERS:
            inner = token.text if token.kind.startswith("op") else operator
            items = self.sequence(_CLOSERS[token.kind], inner, depth + 1)
            return _all(items) if token.kind.endswith("(") else _any(items)
        return _term(token, operator)


def _term(token: _Token, operator: str) -> Predicate:
    phrase = token.kind == "phrase"
    if token.value or token.quoted:
        name = token.text.partition(":")[0].casefold()
        made = _OPERATORS[name](token.value)
        if made is not None:
            return made
    elif operator:
        made = _OPERATORS[operator](token.text)
        if made is not None:
            return made
    return _bare_words(token.text, phrase=phrase or token.quoted)


def parse(query: str) -> Query:
    """Parse an X-GM-RAW query; QuerySyntaxError when it is malformed."""
    parser = _Parser(query)
    return Query(_all(parser.sequence("", "", 0)), query)
