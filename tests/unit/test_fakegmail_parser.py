"""The fake Gmail's pure parsing: commands, sequence sets, modified UTF-7, FETCH items, SASL."""

import pytest

from standins.fakegmail import mutf7
from standins.fakegmail.auth import parse_plain, parse_xoauth2
from standins.fakegmail.fetch import Item, body, parse_items
from standins.fakegmail.folders import Folder, pattern_matches
from standins.fakegmail.protocol import (
    Atom,
    Command,
    LiteralMarker,
    ParseError,
    Token,
    literal_marker,
    parse_command,
    parse_sequence_set,
    parse_tokens,
)
from standins.fakegmail.selection import Selection
from standins.fakegmail.wire import astring

pytestmark = pytest.mark.unit

A = Atom


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"a1 NOOP\r\n", Command("a1", "NOOP", ())),
        (b"a1 noop", Command("a1", "NOOP", ())),
        (
            b"a2 uid fetch 1:* (UID FLAGS)\r\n",
            Command("a2", "UID FETCH", (A("1:*"), (A("UID"), A("FLAGS")))),
        ),
        (
            b'a3 LOGIN "al\\"ice" "p\\\\w"\r\n',
            Command("a3", "LOGIN", (b'al"ice', b"p\\w")),
        ),
        (
            b"a4 LOGIN {5}\r\nalice {2}\r\npw\r\n",
            Command("a4", "LOGIN", (b"alice", b"pw")),
        ),
        (
            b"a5 LOGIN {5+}\r\nalice pw\r\n",
            Command("a5", "LOGIN", (b"alice", A("pw"))),
        ),
        (
            b'a6 UID SEARCH X-GM-RAW {8}\r\na\r\n"b" c\r\n',
            Command("a6", "UID SEARCH", (A("X-GM-RAW"), b'a\r\n"b" c')),
        ),
        (
            b"a7 UID FETCH 7 (BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.100> X-GM-LABELS)",
            Command(
                "a7",
                "UID FETCH",
                (A("7"), (A("BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.100>"), A("X-GM-LABELS"))),
            ),
        ),
        (b"a8 FETCH 1 BODY[]", Command("a8", "FETCH", (A("1"), A("BODY[]")))),
        (
            b'a9 LIST "" "*"',
            Command("a9", "LIST", (b"", b"*")),
        ),
        (
            b'b1 LIST (SPECIAL-USE) "" % RETURN ()',
            Command("b1", "LIST", ((A("SPECIAL-USE"),), b"", A("%"), A("RETURN"), ())),
        ),
        (
            b"b2 SEARCH OR (UID 1:3 NOT SEEN) ALL",
            Command(
                "b2",
                "SEARCH",
                (A("OR"), (A("UID"), A("1:3"), A("NOT"), A("SEEN")), A("ALL")),
            ),
        ),
        (
            'b3 SELECT "Entwürfe"'.encode(),
            Command("b3", "SELECT", ("Entwürfe".encode(),)),
        ),
        (
            b"b.4] STORE 1 +FLAGS (\\Seen)",
            Command("b.4]", "STORE", (A("1"), A("+FLAGS"), (A("\\Seen"),))),
        ),
    ],
)
def test_parse_command(data: bytes, expected: Command) -> None:
    assert parse_command(data) == expected


@pytest.mark.parametrize(
    ("data", "tag"),
    [
        (b"", None),
        (b"NOOP\r\n", None),
        (b"a+1 NOOP", None),
        (b"a*1 NOOP", None),
        (b"a1 \r\n", "a1"),
        (b'a1 "NOOP"', "a1"),
        (b"a1 (NOOP)", "a1"),
        (b"a1 UID", "a1"),
        (b"a1 NOOP  X", "a1"),
        (b"a1 NOOP X ", "a1"),
        (b'a1 LOGIN "alice', "a1"),
        (b'a1 LOGIN "bad\\escape" x', "a1"),
        (b'a1 LOGIN "two\r\nlines" x', "a1"),
        (b"a1 FETCH 1 (UID", "a1"),
        (b"a1 FETCH 1 UID)", "a1"),
        (b"a1 FETCH 1 (UID )", "a1"),
        (b"a1 FETCH 1 BODY[TEXT", "a1"),
        (b"a1 LOGIN {10}\r\nshort", "a1"),
        (b"a1 LOGIN {x}\r\nshort", "a1"),
        (b"a1 LOGIN {3}alice", "a1"),
        (b"a1 LOGIN al\xffce pw", "a1"),
    ],
)
def test_parse_command_refuses(data: bytes, tag: str | None) -> None:
    with pytest.raises(ParseError) as refused:
        parse_command(data)
    assert refused.value.tag == tag


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"a1 LOGIN {5}\r\n", LiteralMarker(5, synchronizing=True)),
        (b"a1 LOGIN {12+}\r\n", LiteralMarker(12, synchronizing=False)),
        (b"a1 LOGIN {0}\n", LiteralMarker(0, synchronizing=True)),
        (b"a1 LOGIN alice pw\r\n", None),
        (b'a1 LOGIN "{5}"\r\n', None),
        (b"a1 LOGIN {5} x\r\n", None),
        (b"a1 LOGIN {5}", None),
    ],
)
def test_literal_marker(line: bytes, expected: LiteralMarker | None) -> None:
    assert literal_marker(line) == expected


@pytest.mark.parametrize(
    ("text", "largest", "inside", "outside"),
    [
        ("1:*", 9, [1, 5, 9], [0, 10]),
        ("5:*", 9, [5, 9], [4, 10]),
        # n:* always holds the largest number, even below n (RFC 3501 6.4.8).
        ("5:*", 3, [3, 4, 5], [2, 6]),
        ("*", 7, [7], [6, 8]),
        ("1,3:4,9", 20, [1, 3, 4, 9], [2, 5, 8, 10]),
        ("4:2", 9, [2, 3, 4], [1, 5]),
        ("*:3", 5, [3, 4, 5], [2]),
    ],
)
def test_sequence_set(text: str, largest: int, inside: list[int], outside: list[int]) -> None:
    numbers = parse_sequence_set(A(text))
    assert [n for n in inside if numbers.contains(n, largest)] == inside
    assert [n for n in outside if numbers.contains(n, largest)] == []


@pytest.mark.parametrize("text", ["", "0", "0:5", "1:", ":3", "a", "1,,2", "1:2:3", "-1", "\uff11"])
def test_sequence_set_refuses(text: str) -> None:
    with pytest.raises(ParseError):
        parse_sequence_set(A(text))


def test_sequence_set_is_an_atom() -> None:
    with pytest.raises(ParseError):
        parse_sequence_set(b"1:*")


@pytest.mark.parametrize(
    ("name", "wire"),
    [
        ("INBOX", b"INBOX"),
        ("[Gmail]/All Mail", b"[Gmail]/All Mail"),
        ("Tom & Jerry", b"Tom &- Jerry"),
        ("Entwürfe", b"Entw&APw-rfe"),
        ("~peter/mail/日本語/台北", b"~peter/mail/&ZeVnLIqe-/&U,BTFw-"),
        ("[Gmail]/Вся почта", b"[Gmail]/&BBIEQQRP- &BD8EPgRHBEIEMA-"),
        ("😀", b"&2D3eAA-"),
    ],
)
def test_modified_utf7(name: str, wire: bytes) -> None:
    assert mutf7.encode(name) == wire
    assert mutf7.decode(wire) == name


@pytest.mark.parametrize("wire", [b"&Jjo!-", "Entwürfe".encode(), b"&AP-"])
def test_modified_utf7_refuses(wire: bytes) -> None:
    with pytest.raises(ValueError, match=r"."):
        mutf7.decode(wire)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Work", b"Work"),
        ("Work/Q1", b"Work/Q1"),
        ("two words", b'"two words"'),
        ("NIL", b'"NIL"'),
        ("", b'""'),
        ('say "hi"', b'"say \\"hi\\""'),
        ("50%", b'"50%"'),
        ("a]b", b'"a]b"'),
    ],
)
def test_astring(value: str, expected: bytes) -> None:
    assert astring(value) == expected


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (A("UID"), [Item("UID")]),
        (A("fast"), [Item("FLAGS"), Item("INTERNALDATE"), Item("RFC822.SIZE")]),
        (
            A("FULL"),
            [Item(n) for n in ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY")],
        ),
        (
            (A("X-GM-MSGID"), A("BODY.PEEK[2]<0.1048576>")),
            [Item("X-GM-MSGID"), Item("BODY[2]<0>", "2", (0, 1048576))],
        ),
        (A("body[]"), [Item("BODY[]", "", sets_seen=True)]),
        (A("BODY.PEEK[2.1.MIME]"), [Item("BODY[2.1.MIME]", "2.1.MIME")]),
        (
            A("BODY.PEEK[HEADER.FIELDS (FROM DATE)]"),
            [Item("BODY[HEADER.FIELDS (FROM DATE)]", "HEADER.FIELDS (FROM DATE)")],
        ),
        (A("RFC822"), [Item("RFC822", "", sets_seen=True)]),
        ((A("UID"), A("FAST")), [Item("UID"), *parse_items(A("FAST"))]),
        (A("RFC822.HEADER"), [Item("RFC822.HEADER", "HEADER")]),
        (A("RFC822.TEXT"), [Item("RFC822.TEXT", "TEXT", sets_seen=True)]),
    ],
)
def test_parse_fetch_items(token: Token, expected: list[Item]) -> None:
    assert parse_items(token) == expected


@pytest.mark.parametrize(
    "token",
    [
        A("BODY[MIME]"),
        A("BODY[0]"),
        A("BODY[1.]"),
        A("BODY[FOO]"),
        A("BODY.PEEK[1]<5>"),
        A("BODY[HEADER.FIELDS]"),
        A("X-GM-NOTHING"),
        (A("UID"), (A("FLAGS"),)),
        (),
        b"UID",
    ],
)
def test_parse_fetch_items_refuses(token: Token) -> None:
    with pytest.raises(ParseError):
        parse_items(token)


@pytest.mark.parametrize(
    ("structure", "expected"),
    [
        (
            b'("TEXT" "PLAIN" ("CHARSET" "UTF-8") NIL NIL "7BIT" 13 1 NIL NIL NIL NIL)',
            b'("TEXT" "PLAIN" ("CHARSET" "UTF-8") NIL NIL "7BIT" 13 1)',
        ),
        (
            b'(("TEXT" "PLAIN" NIL NIL NIL "7BIT" 2 1 NIL NIL NIL NIL)'
            b'("APPLICATION" "PDF" ("NAME" "a.pdf") NIL NIL "BASE64" 8 NIL'
            b' ("ATTACHMENT" ("FILENAME" "a.pdf")) NIL NIL) "MIXED" ("BOUNDARY" "b") NIL NIL NIL)',
            b'(("TEXT" "PLAIN" NIL NIL NIL "7BIT" 2 1)'
            b'("APPLICATION" "PDF" ("NAME" "a.pdf") NIL NIL "BASE64" 8) "MIXED")',
        ),
        (
            b'("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 50 (NIL "s" NIL NIL NIL NIL NIL NIL NIL NIL)'
            b' ("TEXT" "PLAIN" NIL NIL NIL "7BIT" 4 1 NIL NIL NIL NIL) 5 NIL NIL NIL NIL)',
            b'("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 50 (NIL "s" NIL NIL NIL NIL NIL NIL NIL NIL)'
            b' ("TEXT" "PLAIN" NIL NIL NIL "7BIT" 4 1) 5)',
        ),
        (
            b'("TEXT" "PLAIN" NIL NIL {3}\r\na\r\n "7BIT" 2 1 NIL NIL NIL NIL)',
            b'("TEXT" "PLAIN" NIL NIL {3}\r\na\r\n "7BIT" 2 1)',
        ),
    ],
)
def test_body_drops_extension_data(structure: bytes, expected: bytes) -> None:
    assert body(structure) == expected
    assert parse_tokens(expected)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (b"user=a@b.c\x01auth=Bearer ya29.x\x01\x01", ("a@b.c", "ya29.x")),
        (b"user=a@b.c\x01auth=bearer t=1\x01\x01", ("a@b.c", "t=1")),
        (b"user=a@b.c\x01auth=Basic t\x01\x01", None),
        (b"auth=Bearer t\x01\x01", None),
        (b"user=a@b.c\x01\x01", None),
        (b"", None),
    ],
)
def test_parse_xoauth2(response: bytes, expected: tuple[str, str] | None) -> None:
    assert parse_xoauth2(response) == expected


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (b"\x00alice\x00pw", ("alice", "pw")),
        (b"admin\x00alice\x00pw", ("alice", "pw")),
        (b"alice\x00pw", None),
        (b"\x00\x00pw", None),
    ],
)
def test_parse_plain(response: bytes, expected: tuple[str, str] | None) -> None:
    assert parse_plain(response) == expected


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        (b"*", "[Gmail]/All Mail", True),
        (b"%", "[Gmail]/All Mail", False),
        (b"%", "[Gmail]", True),
        (b"[Gmail]/%", "[Gmail]/All Mail", True),
        (b"inbox", "INBOX", True),
        (b"work", "Work", False),
        (b"*Mail", "[Gmail]/Sent Mail", True),
        (b"Entw&APw-rfe", "Entwürfe", True),
        (b"a.c", "abc", False),
    ],
)
def test_list_pattern(pattern: bytes, name: str, matches: bool) -> None:
    assert pattern_matches(pattern, Folder(name, name)) is matches


@pytest.mark.parametrize(
    ("text", "by_uid", "expected"),
    [
        ("1:*", True, [(1, 2), (2, 5), (3, 9)]),
        ("3:*", True, [(2, 5), (3, 9)]),
        ("10:*", True, [(3, 9)]),
        ("3,5:5,1", True, [(2, 5)]),
        ("2:*", False, [(2, 5), (3, 9)]),
        ("3,1", False, [(1, 2), (3, 9)]),
        ("4:7", False, []),
    ],
)
def test_selection_pick(text: str, by_uid: bool, expected: list[tuple[int, int]]) -> None:
    view = Selection(Folder("INBOX", "\\Inbox"), readonly=True, uids=[2, 5, 9])
    assert view.pick(parse_sequence_set(A(text)), by_uid=by_uid) == expected
