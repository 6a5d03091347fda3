"""Per-user rules: which Gmail searches to run and which attachments to keep.

A rule document (`rules` collection) has `user_uuid` and optionally `query` (Gmail search terms),
`filename` (a case-insensitive glob), `content_types` (`type/subtype`, `type/*`), `min_size` and
`max_size` (decoded bytes) and `enabled`. A rule with only `user_uuid` keeps every attachment.
Its `_id`, as text, travels in the UID queue and in attachment records, so it must be short and
plain. An account has at most `CRAWLER_MAX_RULES` rules: `usable_rules` takes the first ones by
`_id` and names the others, with the reason, as it names the rules that are invalid.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Set
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple, Protocol

from bson import ObjectId

from crawler.errors import BadAccount, BadRule
from crawler.keys import check_user_uuid
from crawler.mime import ATTACHED_MESSAGE

MAX_QUERY_LENGTH = 2048
MAX_GLOB_LENGTH = 512
MAX_RULE_ID_LENGTH = 128  # characters of str(_id): an ObjectId has 24
_MIME_NAME = r"[a-z0-9!#$&^_.+-]+"
_CONTENT_TYPE = re.compile(rf"(\*/\*|{_MIME_NAME}/(\*|{_MIME_NAME}))")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_KNOWN_FIELDS = frozenset(
    {"_id", "user_uuid", "query", "filename", "content_types", "min_size", "max_size", "enabled"}
)


class AttachmentFacts(Protocol):
    """What a rule looks at in an attachment part."""

    @property
    def filename(self) -> str | None: ...
    @property
    def content_type(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def inline(self) -> bool: ...
    @property
    def container(self) -> bool: ...


@dataclass(frozen=True)
class Rule:
    """One validated rule."""

    id: str
    user_uuid: str
    query: str | None = None
    filename: str | None = None
    content_types: tuple[str, ...] = ()
    min_size: int | None = None
    max_size: int | None = None
    enabled: bool = True

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Rule:
        """Validate a `rules` document; BadRule names the rule and the reason."""
        rule_id = str(doc.get("_id", "?"))
        try:
            return cls._validated(rule_id, doc)
        except (TypeError, ValueError, BadAccount) as error:
            raise BadRule(f"rule {_shown(rule_id)}: {error}") from error

    @classmethod
    def _validated(cls, rule_id: str, doc: Mapping[str, Any]) -> Rule:
        _check_id(rule_id)
        unknown = sorted(set(doc) - _KNOWN_FIELDS)
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(map(repr, unknown))}")
        min_size = _size(doc.get("min_size"), "min_size")
        max_size = _size(doc.get("max_size"), "max_size")
        if min_size is not None and max_size is not None and min_size > max_size:
            raise ValueError(f"min_size {min_size} is above max_size {max_size}")
        return cls(
            id=rule_id,
            user_uuid=check_user_uuid(doc.get("user_uuid")),
            query=_query(doc.get("query")),
            filename=_text(doc.get("filename"), "filename", MAX_GLOB_LENGTH),
            content_types=_content_types(doc.get("content_types")),
            min_size=min_size,
            max_size=max_size,
            enabled=_flag(doc.get("enabled", True)),
        )

    @property
    def search_query(self) -> str | None:
        """The X-GM-RAW query that finds this rule's candidate messages (None: every message).

        Gmail does not say what `has:attachment` matches, and a message whose only image is
        inline need not match it; so a rule that wants images searches by its own query alone.
        """
        if self.wants_images:
            return self.query or None
        return f"has:attachment ({self.query})" if self.query else "has:attachment"

    @cached_property
    def wants_images(self) -> bool:
        """Inline images count only for rules that ask for images by content type."""
        return any(pattern.startswith("image/") for pattern in self.content_types)

    @cached_property
    def wants_attached_messages(self) -> bool:
        """An attached email is a container, kept whole (as an `.eml`) only for a rule that asks
        for `message/rfc822` by a content type other than the catch-all `*/*`."""
        return any(
            pattern != "*/*" and fnmatch.fnmatchcase(ATTACHED_MESSAGE, pattern)
            for pattern in self.content_types
        )

    def wants(self, part: AttachmentFacts) -> bool:
        """Whether this rule keeps `part` (its query having found the message)."""
        return self.may_want(part) and self.keeps_name(_lower(part.filename))

    def may_want(self, part: AttachmentFacts) -> bool:
        """Whether this rule keeps `part` under some name: every test but the filename's."""
        if part.inline and not self.wants_images:
            return False
        if part.container and not self.wants_attached_messages:
            return False
        return self.keeps_type_and_size(part.content_type.lower(), part.size)

    def keeps_type_and_size(self, content_type: str, size: int) -> bool:
        """The content type (in lower case) and size tests."""
        low, high, types, _ = self.checks
        return low <= size <= high and (types is None or types(content_type) is not None)

    def keeps_name(self, filename: str | None) -> bool:
        """The filename test, on the name in lower case (None: the part has no name)."""
        glob = self.checks.glob
        return glob is None or (filename is not None and glob(filename) is not None)

    @cached_property
    def checks(self) -> Checks:
        """The rule's tests of a part, its patterns compiled once."""
        types = "|".join(fnmatch.translate(pattern) for pattern in self.content_types)
        glob = None if self.filename is None else fnmatch.translate(self.filename.lower())
        return Checks(
            -math.inf if self.min_size is None else self.min_size,
            math.inf if self.max_size is None else self.max_size,
            re.compile(types).match if types else None,
            re.compile(glob).match if glob else None,
        )


class Checks(NamedTuple):
    """A rule's tests of a part, compiled: the size bounds, then the `match` of the pattern
    of its content types and of its filename glob (None: no such test), which match the
    content type and the name in lower case."""

    low: float
    high: float
    types: Callable[[str], re.Match[str] | None] | None
    glob: Callable[[str], re.Match[str] | None] | None


class RuleTester:
    """Decides, for the rules of one account, which rules keep which attachment.

    It is asked once or twice per attachment part about every rule of the account, so it sorts
    the rules once by the kind of part they can keep (inline or not, attached email or not),
    runs a test that several rules share (rules that differ only in their query) once per part,
    and each rule compiles its patterns once.
    """

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = tuple(rule for rule in rules if rule.enabled)
        self._by_kind = {
            (inline, container): _Tests(
                rule
                for rule in self.rules
                if (rule.wants_images or not inline)
                and (rule.wants_attached_messages or not container)
            )
            for inline in (False, True)
            for container in (False, True)
        }

    def rule_ids(self, part: AttachmentFacts, found_by: Collection[str]) -> list[str]:
        """Ids of the rules whose query found the message and that keep `part`, in rule order."""
        tests = self._by_kind[bool(part.inline), bool(part.container)]
        if not tests.order:
            return []
        found = _as_set(found_by)
        content_type, size, name = part.content_type.lower(), part.size, _lower(part.filename)
        # Rule.keeps_type_and_size and Rule.keeps_name, inlined: this runs per part and rule.
        kept = [
            low <= size <= high
            and (types is None or types(content_type) is not None)
            and (glob is None or (name is not None and glob(name) is not None))
            for low, high, types, glob in tests.checks
        ]
        return [rule_id for rule_id, test in tests.order if kept[test] and rule_id in found]

    def may_want(self, part: AttachmentFacts, found_by: Collection[str]) -> bool:
        """Whether a rule whose query found the message keeps `part` under some name."""
        tests = self._by_kind[bool(part.inline), bool(part.container)]
        found = _as_set(found_by)
        content_type, size = part.content_type.lower(), part.size
        return any(
            rule.keeps_type_and_size(content_type, size) and not found.isdisjoint(ids)
            for rule, ids in tests.shared
        )


class _Tests:
    """Rules in order, with the tests they share: `shared` holds one rule for each distinct
    set of tests (type, size, glob) with the ids of the rules that have it; `order` pairs each
    rule id with the index of its tests in `shared`."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        index: dict[tuple[Any, ...], int] = {}
        members: list[tuple[Rule, list[str]]] = []
        order: list[tuple[str, int]] = []
        for rule in rules:
            key = (rule.content_types, rule.min_size, rule.max_size, rule.filename)
            if key not in index:
                index[key] = len(members)
                members.append((rule, []))
            members[index[key]][1].append(rule.id)
            order.append((rule.id, index[key]))
        self.order = tuple(order)
        self.shared = tuple((rule, tuple(ids)) for rule, ids in members)
        self.checks = tuple(rule.checks for rule, _ in members)


def usable_rules(
    documents: Iterable[Mapping[str, Any]], max_rules: int
) -> tuple[list[Rule], dict[str, str]]:
    """The rules an account's crawl uses, and why each of the others is not used (by id).

    The documents are taken in `_id` order (MongoDB's order of types, then values): each valid
    one until there are `max_rules` (`CRAWLER_MAX_RULES`), so that the same rules win on every
    crawl; an invalid one is named with its reason, and so is each valid one beyond the cap.
    """
    rules: list[Rule] = []
    errors: dict[str, str] = {}
    for document in sorted(documents, key=lambda document: _id_order(document.get("_id"))):
        try:
            rule = Rule.from_document(document)
        except BadRule as error:
            errors[str(document.get("_id"))] = str(error)
            continue
        if len(rules) < max_rules:
            rules.append(rule)
        else:
            errors[rule.id] = (
                f"rule {rule.id}: the account has more than {max_rules} rules "
                "(CRAWLER_MAX_RULES); only the first by id are used"
            )
    return rules, errors


def _id_order(value: Any) -> tuple[int, Any]:
    """A sort key that orders `_id`s of different types as MongoDB does: numbers, then
    strings, then ObjectIds; any other type after them, by its text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, -math.inf if math.isnan(value) else value)
    if isinstance(value, str):
        return (1, value)
    if isinstance(value, ObjectId):
        return (2, value.binary)
    return (3, str(value))


def _check_id(rule_id: str) -> None:
    """An id is joined with others in the UID queue and named in records and logs: no comma,
    no control character, not empty and not long."""
    if not rule_id:
        raise ValueError("the rule id (_id) is empty")
    if len(rule_id) > MAX_RULE_ID_LENGTH:
        raise ValueError(
            f"the rule id (_id) is {len(rule_id)} characters long; at most {MAX_RULE_ID_LENGTH}"
        )
    if "," in rule_id:
        raise ValueError("the rule id (_id) contains a comma")
    if _CONTROL.search(rule_id):
        raise ValueError("the rule id (_id) contains a control character (CR, LF, NUL, ...)")


def _shown(rule_id: str) -> str:
    """The id as a message names it: as it is, unless it is too long or holds control bytes."""
    if len(rule_id) <= MAX_RULE_ID_LENGTH and not _CONTROL.search(rule_id):
        return rule_id
    return repr(rule_id[:60]) + ("..." if len(rule_id) > 60 else "")


def _as_set(ids: Collection[str]) -> Set[str]:
    return ids if isinstance(ids, Set) else frozenset(ids)


def _lower(name: str | None) -> str | None:
    return None if name is None else name.lower()


def _text(value: Any, field: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"{field} must be a non-empty string, not {value!r:.60}")
    if len(value) > limit:
        raise ValueError(f"{field} is {len(value)} characters long; at most {limit}")
    if _CONTROL.search(value):
        raise ValueError(f"{field} contains a control character (CR, LF, NUL, ...)")
    return value


def _query(value: Any) -> str | None:
    query = _text(value, "query", MAX_QUERY_LENGTH)
    if query is None:
        return None
    if query.count('"') % 2:
        raise ValueError("query has an unbalanced double quote")
    depth = 0
    unquoted = re.sub(r'"[^"]*"', "", query)  # brackets inside a quoted phrase are words
    for char in unquoted.replace("{", "(").replace("}", ")"):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            break
    if depth:
        raise ValueError("query has unbalanced parentheses or braces")
    return query


def _content_types(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        raise ValueError("content_types must be a list of strings like 'application/pdf'")
    types = tuple(item.strip().lower() for item in value)
    bad = [item for item in types if not _CONTENT_TYPE.fullmatch(item)]
    if bad:
        raise ValueError(f"content_types has invalid entries {bad!r:.200}")
    return types


def _size(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{field} must be a non-negative integer of bytes, not {value!r:.60}")
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"enabled must be true or false, not {value!r:.60}")
    return value
