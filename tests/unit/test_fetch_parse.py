"""`crawler.gmail.parse` gives what IMAPClient's own parser gives, values and errors alike."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from imapclient import response_parser
from imapclient.exceptions import ProtocolError

from crawler.gmail import parse

pytestmark = pytest.mark.unit

# What Dovecot sends for one message of the benchmark's mailbox.
DOVECOT_LINE = (
    b'1 (UID 1 RFC822.SIZE 5333 INTERNALDATE "01-Jan-2024 08:00:00 +0000" ENVELOPE '
    b'("Mon, 01 Jan 2024 08:00:00 +0000" "Minutes 0" (("Acme Billing" NIL "billing" '
    b'"acme-hosting.example")) (("Acme Billing" NIL "billing" "acme-hosting.example")) '
    b'(("Acme Billing" NIL "billing" "acme-hosting.example")) (("Alice Martin" NIL "alice" '
    b'"example.com")) NIL NIL NIL "<74943a523b01908c.9cba7d32@acme-hosting.example>") '
    b'BODYSTRUCTURE (("text" "plain" ("charset" "UTF-8") NIL NIL "7bit" 2122 33 NIL NIL NIL NIL)'
    b'("application" "pdf" ("name" "a \\"b\\" \\\\ c.pdf") NIL NIL "base64" 1000 NIL '
    b'("attachment" ("filename" "a.pdf")) NIL NIL) "mixed" ("boundary" "--x") NIL NIL NIL))'
)
GMAIL_LINE = (
    b"7 (X-GM-MSGID 1278455344230334865 X-GM-THRID 1278455344230334865 "
    b'X-GM-LABELS (\\Inbox \\Important "&AMk-t&AOk-" Work/Projects) UID 42 RFC822.SIZE 10 '
    b'INTERNALDATE "17-Jul-1996 02:44:25 -0700" ENVELOPE (NIL "" NIL NIL NIL NIL NIL NIL NIL '
    b'NIL) BODYSTRUCTURE ("text" "plain" NIL NIL NIL "7bit" 0 0 NIL NIL NIL NIL))'
)


def outcome(call: Any, *args: Any) -> Any:
    """What a call returns, or the type and text of what it raises."""
    try:
        return ("value", call(*args))
    except Exception as error:  # the kind and its words are the behaviour compared
        return ("error", type(error), str(error))


def shown(value: Any) -> str:
    """`repr`, which tells types apart (int from bytes), without objects' addresses."""
    return re.sub(r" at 0x[0-9a-f]+", "", repr(value))


def assert_as_imapclient(records: list[Any], *options: bool) -> Any:
    ours = outcome(parse.parse_fetch_response, records, *options)
    theirs = outcome(response_parser.parse_fetch_response, records, *options)
    assert ours == theirs
    assert shown(ours) == shown(theirs)
    return ours


def test_a_dovecot_answer_gives_imapclient_s_values_without_its_parser(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expected = response_parser.parse_fetch_response([DOVECOT_LINE, GMAIL_LINE])
    monkeypatch.setattr(response_parser, "gen_parsed_response", None)  # never falls back
    parsed = parse.parse_fetch_response([DOVECOT_LINE, GMAIL_LINE])
    assert parsed == expected and shown(parsed) == shown(expected)
    assert parsed[42][b"X-GM-LABELS"] == (
        b"\\Inbox",
        b"\\Important",
        b"&AMk-t&AOk-",
        b"Work/Projects",
    )
    name = parsed[1][b"BODYSTRUCTURE"][0][1][2]
    assert name == (b"name", b'a "b" \\ c.pdf')


@pytest.mark.parametrize("uid_is_key", [True, False])
@pytest.mark.parametrize("normalise_times", [True, False])
def test_the_options_are_imapclient_s(uid_is_key: bool, normalise_times: bool) -> None:
    assert_as_imapclient([DOVECOT_LINE, GMAIL_LINE], normalise_times, uid_is_key)


def test_literals_are_the_bytes_their_line_announces() -> None:
    records = [
        (b"3 (UID 9 BODY[2] {5}", b"hello"),
        b" BODY[HEADER.FIELDS (CONTENT-TYPE)] {2}",
        b")",
    ]
    with pytest.raises(ProtocolError):  # a line ending in {2} that brought no literal
        response_parser.parse_fetch_response(records)
    assert_as_imapclient(records)
    records = [(b"3 (UID 9 BODY[2] {5}", b"hello"), (b" BODY[1] {0}", b""), b")"]
    kind, parsed = assert_as_imapclient(records)
    assert kind == "value" and parsed[9] == {b"SEQ": 3, b"BODY[2]": b"hello", b"BODY[1]": b""}


@pytest.mark.parametrize(
    "records",
    [
        [b"1 (UID 1 FLAGS (%))"],  # a `%`: IMAPClient's own parser reads it
        [b"1 (UID 1 X \x0b)"],  # a control character is a token of its own
        [b'1 (UID 1 X "unclosed)'],
        [b"1 (UID 1 BODY[2 NIL)"],
        [b'1 (UID 1 X a"b")'],  # a quote straight after a word
        [b"1 (UID 1 X (a)"],  # a tuple left open
        [b"1 (UID 1 X a))"],  # a parenthesis closing nothing
        [b"1 (UID 1 X {x})"],
        [(b"1 (UID 1 X {4}", b"abc"), b")"],  # a literal of another size
        [(b"1 (UID 1 X {3} Y", b"abc"), b")"],  # a literal not at the end of its line
        [b"1 (UID 1 X {3})"],  # no literal at all
        [b"x (UID 1)"],
        [b"1 UID"],
        [b"1 (UID)"],
        [b"1 (UID x)"],
        [b"1 (1 2)"],
        [b"1"],
        [b""],
        [],
        [None],
        [b"1 (UID 1 INTERNALDATE NIL ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL))"],
        [b'1 (UID 1 INTERNALDATE "not a date")'],
        [b"1 (UID 01 X 0 Y 007 Z -1 W +5 V 1.5)"],
        [b'1 (UID 1 X "\\a\\\\\\"" Y \\Seen Z [a "b" (c)]d)'],
        [b"  1\t(UID\r\n1   X ()  ) 2 (UID 2) "],
    ],
)
def test_what_the_fast_path_leaves_and_what_imapclient_refuses_come_out_alike(
    records: list[Any],
) -> None:
    assert_as_imapclient(records)


def nested(depth: int) -> bytes:
    return b"1 (UID 1 BODYSTRUCTURE " + b"(" * depth + b'"text" "plain"' + b")" * depth + b")"


def test_nesting_past_the_limit_is_left_to_imapclient_which_gives_up() -> None:
    assert_as_imapclient([nested(parse.MAX_NESTING - 1)])
    assert_as_imapclient([nested(parse.MAX_NESTING + 1)])
    with pytest.raises(RecursionError):
        parse.parse_fetch_response([nested(1000)])


FRAGMENTS = [
    b"(", b")", b" ", b"  ", b"\t", b"\r\n", b"NIL", b"nil", b"0", b"00", b"007", b"42", b"-3",
    b"UID", b"BODY[2]", b"BODY[HEADER.FIELDS (A B)]", b"[", b"]", b"[x y]", b"\\Seen", b'"',
    b'"a b"', b'"x\\"y"', b'"\\\\"', b'"\\a"', b'""', b'"(\\")"', b"%", b"\x00", b"\x0b", b"\x7f",
    b"\xff", b"{", b"}", b"{3}", b"{x}", b"+5", b"a", b"ENVELOPE", b"INTERNALDATE",
    b'"01-Jan-2024 08:00:00 +0530"', b"BODYSTRUCTURE", b'("text" "plain" NIL NIL NIL "7bit" 1 2)',
]  # fmt: skip
lines = st.lists(st.sampled_from(FRAGMENTS), max_size=30).map(b"".join)


@st.composite
def records(draw: st.DrawFn) -> list[Any]:
    out: list[Any] = []
    for _ in range(draw(st.integers(0, 4))):
        line = draw(lines)
        if draw(st.booleans()):
            literal = draw(st.binary(max_size=8))
            size = len(literal) if draw(st.integers(0, 5)) else draw(st.integers(0, 9))
            out.append((line + b"{%d}" % size, literal))
        else:
            out.append(line)
    return out


@settings(max_examples=500)
@given(records())
def test_any_answer_parses_as_imapclient_parses_it(answer: list[Any]) -> None:
    assert_as_imapclient(answer)
    try:
        values = parse._values(answer)
    except parse._Unusual:
        return
    assert shown(values) == shown(list(response_parser.parse_response(answer)))


messages = st.builds(
    lambda number, items: b"%d (%s)" % (number, b" ".join(items)),
    st.integers(0, 99),
    st.lists(
        st.sampled_from(
            [
                b"UID 7",
                b"UID 8",
                b"RFC822.SIZE 5333",
                b'INTERNALDATE "17-Jul-1996 02:44:25 -0700"',
                b'INTERNALDATE "31-Feb-2024 08:00:00 +0000"',
                b"ENVELOPE " + DOVECOT_LINE.split(b"ENVELOPE ", 1)[1].split(b" BODYSTRUCTURE")[0],
                b"BODYSTRUCTURE " + DOVECOT_LINE.split(b"BODYSTRUCTURE ", 1)[1][:-1],
                b"X-GM-LABELS (\\Inbox)",
                b"FLAGS ()",
            ]
        ),
        max_size=6,
    ),
)


@given(st.lists(messages, max_size=4), st.booleans(), st.booleans())
def test_any_run_of_messages_parses_as_imapclient_parses_it(
    answer: list[bytes], normalise_times: bool, uid_is_key: bool
) -> None:
    assert_as_imapclient(answer, normalise_times, uid_is_key)
