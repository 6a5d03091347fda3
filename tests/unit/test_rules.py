import time
from dataclasses import dataclass
from typing import Any

import pytest
from bson import ObjectId

from crawler.errors import BadRule
from crawler.rules import MAX_RULE_ID_LENGTH, Rule, RuleTester, usable_rules

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class Part:
    filename: str | None = "report.PDF"
    content_type: str = "application/pdf"
    size: int = 1000
    inline: bool = False
    container: bool = False


def rule(**fields: Any) -> Rule:
    return Rule.from_document({"_id": "r1", "user_uuid": "aaabbb", **fields})


@pytest.mark.parametrize(
    ("fields", "part", "wanted"),
    [
        ({}, Part(), True),
        ({}, Part(filename=None), True),
        ({}, Part(content_type="image/png", inline=True), False),
        ({"content_types": ["image/*"]}, Part(content_type="image/png", inline=True), True),
        ({"content_types": ["IMAGE/PNG"]}, Part(content_type="image/png", inline=True), True),
        ({"content_types": ["application/pdf"]}, Part(content_type="image/png"), False),
        ({"content_types": ["*/*"]}, Part(content_type="text/calendar"), True),
        ({"filename": "*.pdf"}, Part(), True),
        ({"filename": "*.pdf"}, Part(filename="x.pdf.exe"), False),
        ({"filename": "*.pdf"}, Part(filename=None), False),
        ({"filename": "invoice-[0-9]*"}, Part(filename="Invoice-2024.pdf"), True),
        ({"min_size": 1000}, Part(size=1000), True),
        ({"min_size": 1001}, Part(size=1000), False),
        ({"max_size": 999}, Part(size=1000), False),
        ({"min_size": 0, "max_size": 0}, Part(size=0), True),
        ({"enabled": False}, Part(), True),  # enabled is the tester's concern, not wants()
        # An attached email is a container, kept whole only when a rule asks for its type.
        ({}, Part(content_type="message/rfc822", container=True), False),
        ({"content_types": ["*/*"]}, Part(content_type="message/rfc822", container=True), False),
        (
            {"content_types": ["message/rfc822"]},
            Part("a.eml", "message/rfc822", container=True),
            True,
        ),
        ({"content_types": ["message/*"]}, Part("a.eml", "message/rfc822", container=True), True),
        ({"content_types": ["message/rfc822"]}, Part(), False),
        ({}, Part("report.txt", "message/delivery-status"), True),
    ],
)
def test_wants(fields: dict[str, Any], part: Part, wanted: bool) -> None:
    assert rule(**fields).wants(part) is wanted


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"user_uuid": None}, "user_uuid"),
        ({"user_uuid": "a{b}"}, "user_uuid"),
        ({"query": 3}, "query must be a non-empty string"),
        ({"query": ""}, "query must be a non-empty string"),
        ({"query": "a\r\nA1 DELETE x"}, "control character"),
        ({"query": "a\x00b"}, "control character"),
        ({"query": "x" * 10_000}, "at most 2048"),
        ({"query": 'subject:"open'}, "unbalanced double quote"),
        ({"query": "(a OR b"}, "unbalanced parentheses"),
        ({"query": "a) OR (b"}, "unbalanced parentheses"),
        ({"query": "{a b"}, "unbalanced parentheses or braces"),
        ({"filename": ["*.pdf"]}, "filename must be a non-empty string"),
        ({"content_types": "application/pdf"}, "list of strings"),
        ({"content_types": ["pdf"]}, "invalid entries"),
        ({"min_size": -1}, "non-negative integer"),
        ({"max_size": True}, "non-negative integer"),
        ({"max_size": "10"}, "non-negative integer"),
        ({"min_size": 10, "max_size": 5}, "above max_size"),
        ({"enabled": "yes"}, "true or false"),
        ({"fliename": "*.pdf"}, "unknown field(s) 'fliename'"),
    ],
)
def test_invalid_rules_name_the_rule_and_reason(fields: dict[str, Any], reason: str) -> None:
    with pytest.raises(BadRule, match=r"^rule r1: ") as caught:
        rule(**fields)
    assert reason in str(caught.value)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (None, "has:attachment"),
        ("from:boss", "has:attachment (from:boss)"),
        ('subject:"a \\"quoted\\" phrase"', 'has:attachment (subject:"a \\"quoted\\" phrase")'),
        ("{a b} -c", "has:attachment ({a b} -c)"),
    ],
)
def test_search_query(query: str | None, expected: str) -> None:
    assert rule(query=query).search_query == expected


@pytest.mark.parametrize(("query", "expected"), [(None, None), ("from:boss", "from:boss")])
def test_a_rule_for_images_does_not_need_has_attachment(query: str | None, expected: str) -> None:
    # An inline-only image need not match has:attachment; BODYSTRUCTURE decides.
    assert rule(query=query, content_types=["image/*"]).search_query == expected


def test_tester_only_counts_rules_whose_query_found_the_message() -> None:
    pdfs = Rule.from_document({"_id": "pdfs", "user_uuid": "u", "filename": "*.pdf"})
    everything = Rule.from_document({"_id": "all", "user_uuid": "u"})
    disabled = Rule.from_document({"_id": "off", "user_uuid": "u", "enabled": False})
    tester = RuleTester([pdfs, everything, disabled])
    assert tester.rule_ids(Part(), found_by={"pdfs", "all", "off"}) == ["pdfs", "all"]
    assert tester.rule_ids(Part(), found_by={"all"}) == ["all"]
    assert tester.rule_ids(Part(filename="x.doc"), found_by={"pdfs"}) == []


def test_brackets_inside_quoted_phrases_are_words() -> None:
    assert rule(query='subject:"a) b" (c)').query == 'subject:"a) b" (c)'


@pytest.mark.parametrize(
    ("rule_id", "named", "reason"),
    [
        ("a,b", "rule a,b: ", "contains a comma"),
        ("", "rule : ", "is empty"),
        ("a\nb", "rule 'a\\nb': ", "contains a control character"),
        ("x" * 129, f"rule {'x' * 60!r}...: ", "is 129 characters long; at most 128"),
        (12345678901234567890, None, None),
        (ObjectId("650000000000000000000001"), None, None),
        ("y" * MAX_RULE_ID_LENGTH, None, None),
    ],
)
def test_a_rule_id_must_travel_joined_by_commas(
    rule_id: Any, named: str | None, reason: str | None
) -> None:
    """The queue joins ids with commas and records name them: an id that cannot travel fails
    its rule, named (quoted when it is long or holds control characters), not the account."""
    document = {"_id": rule_id, "user_uuid": "u1"}
    if named is None:
        assert Rule.from_document(document).id == str(rule_id)
        return
    with pytest.raises(BadRule) as caught:
        Rule.from_document(document)
    assert str(caught.value).startswith(named)
    assert f"the rule id (_id) {reason}" in str(caught.value)


def test_usable_rules_takes_the_first_rules_by_id_and_names_the_rest() -> None:
    oldest, newer = ObjectId("650000000000000000000001"), ObjectId("650000000000000000000002")
    documents = [
        {"_id": newer, "user_uuid": "u1"},
        {"_id": "b,c", "user_uuid": "u1"},  # invalid: named, and takes no place
        {"_id": oldest, "user_uuid": "u1", "filename": "*.pdf"},
        {"_id": 7, "user_uuid": "u1", "query": "from:a"},  # numbers, strings, then ObjectIds
        {"_id": "a", "user_uuid": "u1", "min_size": -1},
        {"_id": "z", "user_uuid": "u1"},
    ]
    rules, errors = usable_rules(documents, max_rules=3)

    assert [rule.id for rule in rules] == ["7", "z", str(oldest)]
    assert errors.keys() == {"a", "b,c", str(newer)}
    assert "non-negative integer" in errors["a"]
    assert "contains a comma" in errors["b,c"]
    assert errors[str(newer)] == (
        f"rule {newer}: the account has more than 3 rules (CRAWLER_MAX_RULES);"
        " only the first by id are used"
    )
    assert usable_rules(reversed(documents), max_rules=3) == (rules, errors)  # any order in
    assert usable_rules(documents, max_rules=100)[0][-1].id == str(newer)
    assert usable_rules([], max_rules=1) == ([], {})


def test_a_tester_over_many_rules_is_quick() -> None:
    """100 rules (CRAWLER_MAX_RULES), each with tests of its own, over 10,000 parts: the
    patterns are compiled once and `found_by` made a set once per call, well under a second."""
    rules = [
        Rule.from_document(
            {"_id": f"{n:024x}", "user_uuid": "u1", "filename": f"*{n}*", "min_size": n}
        )
        for n in range(100)
    ]
    tester = RuleTester(rules)
    found_by = [rule.id for rule in rules]  # a list: the tester makes it a set once per call
    parts = [Part(filename=f"scan-{n}.pdf", size=n) for n in range(10_000)]
    started = time.process_time()
    kept = sum(
        len(tester.rule_ids(part, found_by)) for part in parts if tester.may_want(part, found_by)
    )
    assert time.process_time() - started < 5.0
    assert kept > 10_000
