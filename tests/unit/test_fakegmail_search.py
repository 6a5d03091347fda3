"""X-GM-RAW search in the fake Gmail: each operator, the combinators and malformed queries."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from standins.fakegmail.gmsearch import QuerySyntaxError, parse
from standins.fakegmail.message import FakeMessage

pytestmark = pytest.mark.unit

INVOICE = FakeMessage(
    b"From: Alice Example <alice@example.com>\r\n"
    b"To: Bob <bob@example.org>\r\n"
    b"Cc: carol@example.net\r\n"
    b"Subject: =?utf-8?q?Invoice_March_caf=C3=A9?=\r\n"
    b"Date: Fri, 05 Jan 2024 12:00:00 +0000\r\n"
    b"Content-Type: multipart/mixed; boundary=b\r\n"
    b"\r\n"
    b"--b\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"\r\n"
    b"<p>Hello <b>world</b>, the quarterly report follows.</p>\r\n"
    b"--b\r\n"
    b"Content-Type: application/pdf; name=Invoice-2024.PDF\r\n"
    b"Content-Disposition: attachment; filename=Invoice-2024.PDF\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n" + b"QUFB" * 500 + b"\r\n"
    b"--b--\r\n"
)
LABELS = ["\\Inbox", "\\Important", "Work/Q1 Reports", "\\Seen"]
INTERNALDATE = datetime(2024, 1, 5, 12, 0, tzinfo=UTC)
NOW = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)


def matches(query: str, message: FakeMessage = INVOICE, labels: list[str] = LABELS) -> bool:
    return parse(query).matches(message, labels=labels, internaldate=INTERNALDATE, now=NOW)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", True),
        ("has:attachment", True),
        ("-has:attachment", False),
        ("has:userlabels", True),
        ("has:nouserlabels", False),
        ("from:alice", True),
        ("from:ALICE@EXAMPLE.COM", True),
        ("from:example", True),
        ("from:bob", False),
        ("to:bob", True),
        ("to:carol", True),
        ("cc:carol", True),
        ("cc:bob", False),
        ("bcc:bob", False),
        ("subject:invoice", True),
        ("subject:inv", True),
        ("subject:café", True),
        ('subject:"invoice march"', True),
        ('subject:"march invoice"', False),
        ("subject:hello", False),
        ("filename:pdf", True),
        ("filename:invoice-2024.pdf", True),
        ("filename:invoice", True),
        ("filename:doc", False),
        ("larger:1K", True),
        ("larger:1M", False),
        ("size:1000", True),
        ("smaller:10k", True),
        ("smaller:100", False),
        ("after:2024/01/05", True),
        ("after:2024-01-06", False),
        ("before:2024/01/06", True),
        ("before:2024/01/05", False),
        ("newer:01/01/2024", True),
        ("older:01/05/2024", False),
        ("after:1704067200", True),
        ("newer_than:90d", True),
        ("newer_than:60d", False),
        ("newer_than:3m", True),
        ("newer_than:2m", False),
        ("older_than:1y", False),
        ("older_than:30d", True),
        ("label:inbox", True),
        ("label:INBOX", True),
        ("label:important", True),
        ("label:work-q1-reports", True),
        ("label:work/q1-reports", True),
        ('label:"work/q1 reports"', True),
        ("label:work", False),
        ("label:starred", False),
        ("in:inbox", True),
        ("in:anywhere", True),
        ("in:trash", False),
        ("in:spam", False),
        ("in:sent", False),
        ("is:read", True),
        ("is:unread", False),
        ("is:important", True),
        ("is:starred", False),
        ("hello", True),
        ("HELLO", True),
        ("wor", True),
        ("orld", False),
        ("quarterly report", True),
        ("alice", True),
        ("invoice", True),
        ("2024", True),
        ("nothing", False),
        ('"quarterly report"', True),
        ('"report quarterly"', False),
        ("alice@example.com", True),
        ("foo:bar", False),
        ("larger:lots", False),
        ("-nothing", True),
        ("-from:alice", False),
        ("hello nothing", False),
        ("hello AND world", True),
        ("hello OR nothing", True),
        ("nothing OR zilch", False),
        ("nothing | hello", True),
        ("{nothing hello}", True),
        ("{nothing zilch}", False),
        ("-{nothing zilch}", True),
        ("(hello world)", True),
        ("(hello nothing) OR alice", True),
        ("-(hello nothing)", True),
        ("-(hello world)", False),
        ("--hello", True),
        ("from:alice -subject:march", False),
        ("from:(alice example)", True),
        ("from:(alice bob)", False),
        ("subject:{hello march}", True),
        ("has:attachment filename:pdf from:alice after:2024/01/01", True),
        ("-", True),
    ],
)
def test_query(query: str, expected: bool) -> None:
    assert matches(query) is expected


@pytest.mark.parametrize(
    ("labels", "query", "expected"),
    [
        (["\\Starred"], "is:starred", True),
        (["\\Flagged"], "is:starred", True),
        ([], "is:unread", True),
        (["\\Sent"], "in:sent", True),
        (["\\Trash"], "in:trash", True),
        (["\\Draft"], "in:drafts", True),
        (["\\Inbox"], "has:nouserlabels", True),
    ],
)
def test_labels_and_flags(labels: list[str], query: str, expected: bool) -> None:
    assert matches(query, labels=labels) is expected


def test_plain_message_without_attachment_or_date() -> None:
    plain = FakeMessage(b"Subject: hi\r\n\r\nno files here\r\n")
    assert not matches("has:attachment", plain)
    assert matches("files", plain)
    assert not matches("filename:txt", plain)


def test_naive_dates_are_taken_as_utc() -> None:
    query = parse("after:2024/01/05")
    naive = datetime(2024, 1, 5, 0, 0)
    assert query.matches(INVOICE, labels=[], internaldate=naive, now=naive)


@pytest.mark.parametrize(
    "query",
    [
        "(hello",
        "hello)",
        "{hello",
        "hello}",
        '"hello',
        'subject:"hello',
        "(a}",
        "a OR",
        "OR a",
        "a OR OR b",
        "a | ",
        "-OR a",
        "-)",
        "(" * 70 + ")" * 70,
    ],
)
def test_malformed_queries_raise(query: str) -> None:
    with pytest.raises(QuerySyntaxError):
        parse(query)


_QUERY_PIECES = st.sampled_from(
    [
        "(",
        ")",
        "{",
        "}",
        '"',
        "-",
        " ",
        "OR",
        "|",
        "AND",
        "from:",
        "subject:",
        "x",
        "larger:",
        "10M",
        "after:",
        "2024/02/30",
        "newer_than:",
        "99999999999y",
        "label:",
        "in:",
        "is:",
        "has:",
        "attachment",
        "filename:",
        "é",
        ":",
        "older_than:",
        "5m",
        "before:",
        "9" * 20,
    ]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_QUERY_PIECES, max_size=25).map("".join) | st.text(max_size=60))
def test_arbitrary_text_only_raises_syntax_errors(query: str) -> None:
    try:
        parsed = parse(query)
    except QuerySyntaxError:
        return
    assert isinstance(matches(query), bool)
    assert parsed.text == query
