"""Per-user rules: which Gmail searches to run and which attachments to keep.

A rule document (`rules` collection) has `user_uuid` and optionally `query` (Gmail search terms),
`filename` (a case-insensitive glob), `content_types` (`type/subtype`, `type/*`), `min_size` and
`max_size` (decoded bytes) and `enabled`. A rule with only `user_uuid` keeps every attachment.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from crawler.errors import BadAccount, BadRule
from crawler.keys import check_user_uuid
from crawler.mime import ATTACHED_MESSAGE

MAX_QUERY_LENGTH = 2048
MAX_GLOB_LENGTH = 512
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
            raise BadRule(f"rule {rule_id}: {error}") from error

    @classmethod
    def _validated(cls, rule_id: str, doc: Mapping[str, Any]) -> Rule:
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

    @property
    def wants_images(self) -> bool:
        """Inline images count only for rules that ask for images by content type."""
        return any(pattern.startswith("image/") for pattern in self.content_types)

    @property
    def wants_attached_messages(self) -> bool:
        """An attached email is a container, kept whole (as an `.eml`) only for a rule that asks
        for `message/rfc822` by a content type other than the catch-all `*/*`."""
        return any(
            pattern != "*/*" and fnmatch.fnmatchcase(ATTACHED_MESSAGE, pattern)
            for pattern in self.content_types
        )

    def wants(self, part: AttachmentFacts) -> bool:
        """Whether this rule keeps `part` (its query having found the message)."""
        return self.may_want(part) and (
            self.filename is None or _glob_match(part.filename, self.filename)
        )

    def may_want(self, part: AttachmentFacts) -> bool:
        """Whether this rule keeps `part` under some name: every test but the filename's."""
        if part.inline and not self.wants_images:
            return False
        if part.container and not self.wants_attached_messages:
            return False
        if self.content_types and not _type_match(part.content_type, self.content_types):
            return False
        return _within(part.size, self.min_size, self.max_size)


class RuleTester:
    """Decides, for the rules of one account, which rules keep which attachment."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = tuple(rule for rule in rules if rule.enabled)

    def rule_ids(self, part: AttachmentFacts, found_by: Collection[str]) -> list[str]:
        """Ids of the rules whose query found the message and that keep `part`."""
        return [rule.id for rule in self.rules if rule.id in found_by and rule.wants(part)]

    def may_want(self, part: AttachmentFacts, found_by: Collection[str]) -> bool:
        """Whether a rule whose query found the message keeps `part` under some name."""
        return any(rule.id in found_by and rule.may_want(part) for rule in self.rules)


def _glob_match(name: str | None, pattern: str) -> bool:
    return name is not None and fnmatch.fnmatchcase(name.lower(), pattern.lower())


def _type_match(content_type: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(content_type.lower(), pattern) for pattern in patterns)


def _within(size: int, low: int | None, high: int | None) -> bool:
    return (low is None or size >= low) and (high is None or size <= high)


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
