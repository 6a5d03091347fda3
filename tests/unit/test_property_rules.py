"""Properties of rule validation and query building, over any document MongoDB could hold.

Rules come from a collection that other tools write: `Rule.from_document` must turn any document
into a `Rule` or a `BadRule` naming it, and what it accepts must be safe to search with.
"""

from __future__ import annotations

import fnmatch
import re
import time
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crawler.errors import BadRule
from crawler.mime import ATTACHED_MESSAGE
from crawler.rules import MAX_GLOB_LENGTH, MAX_QUERY_LENGTH, MAX_RULE_ID_LENGTH, Rule, RuleTester

pytestmark = pytest.mark.unit

FAST = settings(max_examples=100, deadline=None)
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
FIELDS = ["_id", "user_uuid", "query", "filename", "content_types", "min_size", "max_size"]

# Values of every BSON type a careless writer might store, nested a little.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.binary(max_size=20),
    st.sampled_from(["u1", "*.pdf", "application/pdf", "image/*", "from:boss", 'a"b', "(x"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
documents = st.dictionaries(
    st.one_of(st.sampled_from([*FIELDS, "enabled"]), st.text(max_size=10)), values, max_size=8
)
# Documents that are valid more often: the right types, hostile contents.
plausible = st.fixed_dictionaries(
    {
        "_id": st.text(min_size=1, max_size=12),
        "user_uuid": st.from_regex(r"[a-z0-9.@-]{1,20}", fullmatch=True),
    },
    optional={
        "query": st.text(max_size=60),
        "filename": st.text(max_size=30),
        "content_types": st.lists(
            st.one_of(
                st.sampled_from(["image/*", "IMAGE/PNG", "*/*", "application/pdf", "text"]),
                st.text(max_size=12),
            ),
            max_size=3,
        ),
        "min_size": st.integers(min_value=-5, max_value=10**12),
        "max_size": st.integers(min_value=-5, max_value=10**12),
        "enabled": st.one_of(st.booleans(), st.sampled_from([0, 1, "true", None])),
    },
)


@dataclass(frozen=True)
class Part:
    filename: str | None
    content_type: str
    size: int
    inline: bool
    container: bool = False


parts = st.builds(
    Part,
    filename=st.one_of(st.none(), st.text(max_size=40)),
    content_type=st.one_of(
        st.sampled_from(["application/pdf", "image/png", "text/plain", "IMAGE/JPEG"]),
        st.text(max_size=20),
    ),
    size=st.integers(min_value=0, max_value=2**40),
    inline=st.booleans(),
)


def validated(document: dict[Any, Any]) -> Rule | None:
    """The rule, or None after checking that the BadRule names the rule: as it is, or quoted
    when it is too long or holds control characters."""
    try:
        return Rule.from_document(document)
    except BadRule as error:
        rule_id = str(document.get("_id", "?"))
        if len(rule_id) <= MAX_RULE_ID_LENGTH and not CONTROL.search(rule_id):
            assert str(error).startswith(f"rule {rule_id}: "), error
        else:
            assert str(error).startswith(f"rule {rule_id[:60]!r}"), error
            assert "the rule id (_id)" in str(error)
        return None


@FAST
@given(document=st.one_of(documents, plausible))
def test_any_document_is_a_rule_or_a_bad_rule_naming_it(document: dict[Any, Any]) -> None:
    """Property: no exception but BadRule, and BadRule's message starts with the rule's id."""
    validated(document)


@FAST
@given(document=plausible)
def test_what_validation_accepts_is_safe_to_search_with(document: dict[str, Any]) -> None:
    """Property: an accepted rule has typed, bounded fields, and its search query has no
    control character, balanced quotes, and contains the rule's query unchanged."""
    rule = validated(document)
    if rule is None:
        return
    assert rule.user_uuid == document["user_uuid"]
    # The id travels joined with others by commas, and into records and logs.
    assert 0 < len(rule.id) <= MAX_RULE_ID_LENGTH
    assert "," not in rule.id and not CONTROL.search(rule.id)
    if rule.query is not None:
        assert 0 < len(rule.query) <= MAX_QUERY_LENGTH
        assert not CONTROL.search(rule.query) and rule.query.count('"') % 2 == 0
    if rule.filename is not None:
        assert 0 < len(rule.filename) <= MAX_GLOB_LENGTH and not CONTROL.search(rule.filename)
    assert all(item == item.lower() and "/" in item for item in rule.content_types)
    assert all(
        isinstance(size, int) and size >= 0 for size in (rule.min_size or 0, rule.max_size or 0)
    )
    if rule.min_size is not None and rule.max_size is not None:
        assert rule.min_size <= rule.max_size
    query = rule.search_query
    if query is None:
        assert rule.wants_images and rule.query is None  # every message: no X-GM-RAW at all
    else:
        assert not CONTROL.search(query) and query.count('"') % 2 == 0
        assert rule.query is None or rule.query in query
        assert rule.wants_images or query.startswith("has:attachment")


@FAST
@given(document=plausible, part=parts)
def test_wants_is_total_and_keeps_inline_images_only_for_image_rules(
    document: dict[str, Any], part: Part
) -> None:
    """Property: `wants` answers a bool for any part, never an inline part unless the rule asks
    for images, and never a part outside the rule's size bounds; `may_want` (whether a part is
    worth reading its name for) never rules out a wanted part and never looks at the name."""
    rule = validated(document)
    if rule is None:
        return
    wanted = rule.wants(part)
    assert isinstance(wanted, bool)
    if part.inline and not rule.wants_images:
        assert not wanted
    if wanted:
        assert rule.min_size is None or part.size >= rule.min_size
        assert rule.max_size is None or part.size <= rule.max_size
        assert rule.filename is None or part.filename is not None
        assert rule.may_want(part)
    assert rule.may_want(part) == rule.may_want(replace(part, filename=None))


@FAST
@given(
    documents=st.lists(plausible, max_size=5, unique_by=lambda doc: doc["_id"]),  # _id is unique
    part=parts,
    found_by=st.sets(st.text(min_size=1, max_size=12), max_size=4),
)
def test_the_tester_names_only_enabled_rules_whose_query_found_the_message(
    documents: list[dict[str, Any]], part: Part, found_by: set[str]
) -> None:
    """Property: the rule ids for a part are enabled rules that found the message, in order."""
    rules = [rule for rule in map(validated, documents) if rule is not None]
    ids = RuleTester(rules).rule_ids(part, found_by | {rule.id for rule in rules[:1]})
    enabled = [rule.id for rule in rules if rule.enabled]
    assert set(ids) <= set(enabled)
    assert ids == [rule_id for rule_id in enabled if rule_id in ids]


def wants_as_specified(rule: Rule, part: Part, *, by_name: bool = True) -> bool:
    """What a rule keeps, written plainly from its fields with fnmatch, as the spec of `wants`
    (and of `may_want` without the name)."""
    images = any(pattern.startswith("image/") for pattern in rule.content_types)
    messages = any(
        pattern != "*/*" and fnmatch.fnmatchcase(ATTACHED_MESSAGE, pattern)
        for pattern in rule.content_types
    )
    if (part.inline and not images) or (part.container and not messages):
        return False
    if rule.content_types and not any(
        fnmatch.fnmatchcase(part.content_type.lower(), pattern) for pattern in rule.content_types
    ):
        return False
    if rule.min_size is not None and part.size < rule.min_size:
        return False
    if rule.max_size is not None and part.size > rule.max_size:
        return False
    if not by_name or rule.filename is None:
        return True
    return part.filename is not None and fnmatch.fnmatchcase(
        part.filename.lower(), rule.filename.lower()
    )


# Rules and parts that often match each other: shared globs, types and sizes.
matching_rules = st.fixed_dictionaries(
    {"_id": st.sampled_from([f"r{n}" for n in range(8)]), "user_uuid": st.just("u1")},
    optional={
        "filename": st.sampled_from(["*.pdf", "*", "R?PORT*", "[a-c]*", "*.[!p]*", "x"]),
        "content_types": st.lists(
            st.sampled_from(["image/*", "application/pdf", "*/*", "message/rfc822", "text/*"]),
            max_size=2,
        ),
        "min_size": st.sampled_from([0, 10, 1000]),
        "max_size": st.sampled_from([10, 1000, 10**6]),
        "enabled": st.booleans(),
    },
)
matching_parts = st.builds(
    Part,
    filename=st.one_of(
        st.none(), st.sampled_from(["report.PDF", "a.png", "Cat.txt", "x", "b.eml", "İ.pdf"])
    ),
    content_type=st.sampled_from(
        ["application/pdf", "IMAGE/PNG", "text/plain", "message/rfc822", "video/mp4"]
    ),
    size=st.sampled_from([0, 10, 500, 1000, 10**7]),
    inline=st.booleans(),
    container=st.booleans(),
)


@FAST
@given(
    documents=st.lists(matching_rules, max_size=8, unique_by=lambda doc: doc["_id"]),
    part=matching_parts,
    found_by=st.sets(st.sampled_from([f"r{n}" for n in range(8)])),
    as_list=st.booleans(),
)
def test_the_tester_answers_as_the_rules_say(
    documents: list[dict[str, Any]], part: Part, found_by: set[str], as_list: bool
) -> None:
    """Property: the tester (rules sorted by kind of part, shared tests run once, patterns
    compiled) keeps exactly the parts the plain reading of each rule keeps, in rule order,
    whatever collection `found_by` is."""
    rules = [rule for rule in map(validated, documents) if rule is not None]
    tester = RuleTester(rules)
    found = sorted(found_by) if as_list else found_by
    expected = [
        rule.id
        for rule in rules
        if rule.enabled and rule.id in found_by and wants_as_specified(rule, part)
    ]
    assert tester.rule_ids(part, found) == expected
    assert tester.may_want(part, found) == any(
        rule.enabled and rule.id in found_by and wants_as_specified(rule, part, by_name=False)
        for rule in rules
    )
    for rule in rules:
        assert rule.wants(part) == wants_as_specified(rule, part)
        assert rule.may_want(part) == wants_as_specified(rule, part, by_name=False)


@pytest.mark.parametrize("glob", ["*a" * 256, "*" + "?*" * 255, "[a-z]*" * 85, "*[!b]*" * 85])
def test_a_long_glob_cannot_stall_the_crawl(glob: str) -> None:
    """The longest glob validation allows, against a long name it does not match, is quick."""
    rule = Rule.from_document({"_id": "r", "user_uuid": "u", "filename": glob[:MAX_GLOB_LENGTH]})
    part = Part(filename="a" * 4000 + "b", content_type="application/pdf", size=1, inline=False)
    started = time.monotonic()
    rule.wants(part)
    assert time.monotonic() - started < 0.5
