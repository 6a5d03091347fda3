"""No IMAP command injection: strings from rules and accounts reach the wire only as one IMAP
argument, over a real TCP session to the fake Gmail, whose ledger keeps every byte each command
line carried.

The check of a SEARCH line is written here from RFC 3501's grammar, not taken from the crawler
or the fake: the X-GM-RAW argument is one quoted string (DQUOTE *QUOTED-CHAR DQUOTE), one
literal ("{" number ["+"] "}" CRLF *CHAR8) or one atom (1*ATOM-CHAR: no space, no control
character, none of `(){%*"\\]`), and nothing follows it.
"""

from __future__ import annotations

import itertools
import re
import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crawler.errors import BadRule, ProtocolError
from crawler.gmail.session import ImapSession
from crawler.rules import Rule
from standins import tokens
from standins.fakegmail import Account, FakeGmail
from tests.plugins.crawling import World
from tests.plugins.fakes import build_message

pytestmark = pytest.mark.integration

EMAIL = "alice@example.com"
ALL_MAIL = "[Gmail]/All Mail"
WIRE = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# -- hostile strings ----------------------------------------------------------------------------

# Every byte that means something to an IMAP parser, and the ones rules validation refuses.
SPECIALS = '"\\\r\n\x00\x7f\t(){}[]%*+<>~:- '
hostile_text = st.text(
    alphabet=st.one_of(
        st.sampled_from(SPECIALS),
        st.sampled_from("abcOR0123"),
        st.characters(codec="utf-8"),  # any code point but the surrogates: UTF-8 on the wire
    ),
    min_size=1,
    max_size=30,
)
# Queries that pass validation more often: words, operators, phrases, groups, IMAP syntax.
_word = st.text(
    alphabet=st.one_of(
        st.sampled_from("abcxyz019.@_-*%[]+\\"), st.characters(min_codepoint=0xA0, codec="utf-8")
    ),
    min_size=1,
    max_size=8,
)
_term = st.one_of(
    _word,
    _word.map(lambda w: f"from:{w}"),
    _word.map(lambda w: f'subject:"{w} {w}"'),
    st.integers(0, 99).map(lambda n: f"{{{n}}}"),  # a literal announcement, as a Gmail group
    st.integers(0, 99).map(lambda n: f"{{{n}+}}"),
    st.sampled_from(["()", "{}", "*", "%", "\\", "NIL", "A1", "LOGOUT", '""']),
)
gmail_query = st.recursive(
    _term,
    lambda inner: st.one_of(
        st.tuples(inner, inner).map(" ".join),
        st.tuples(inner, inner).map(lambda pair: f"({pair[0]} OR {pair[1]})"),
        st.tuples(inner, inner).map(lambda pair: f"{{{pair[0]} {pair[1]}}}"),
        inner.map(lambda term: f"-{term}"),
    ),
    max_leaves=4,
)
rule_query = st.one_of(hostile_text, gmail_query)


# -- the wire, read by the grammar --------------------------------------------------------------

_SEARCH = re.compile(
    rb"(?P<tag>[A-Za-z0-9]+) UID SEARCH (?P<charset>CHARSET UTF-8 )?UID (?P<above>\d+):\d+"
    rb"(?: X-GM-RAW (?P<query>.*))?\r\n",
    re.DOTALL,
)
_QUOTED = re.compile(rb'"((?:[\x01-\x09\x0b\x0c\x0e-\x21\x23-\x5b\x5d-\x7f]|\\["\\])*)"')
_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n", re.DOTALL)
_ATOM_CHARS = frozenset(range(0x21, 0x7F)) - frozenset(b'(){%*"\\]')


def search_argument(line: bytes) -> tuple[int, str | None]:
    """(the UID searched above, the X-GM-RAW argument) of a well-formed UID SEARCH command.

    Fails unless the argument is exactly one quoted string or one literal that ends the line.
    """
    match = _SEARCH.fullmatch(line)
    assert match is not None, f"not a well-formed UID SEARCH: {line!r}"
    above, raw = int(match["above"]) - 1, match["query"]
    if raw is None:
        assert match["charset"] is None, line
        return above, None
    assert match["charset"] is not None, f"X-GM-RAW without CHARSET UTF-8: {line!r}"
    quoted = _QUOTED.fullmatch(raw)
    if quoted is not None:
        return above, re.sub(rb"\\(.)", rb"\1", quoted[1]).decode("ascii")
    if raw and all(byte in _ATOM_CHARS for byte in raw):
        return above, raw.decode("ascii")
    literal = _LITERAL.match(raw)
    assert literal is not None, f"X-GM-RAW argument is no quoted string, literal or atom: {raw!r}"
    data = raw[literal.end() :]
    assert len(data) == int(literal[1]), f"literal of {len(data)} bytes announced {literal[1]}"
    return above, data.decode("utf-8")


def command_name(line: bytes) -> str:
    words = line.split(b"\r\n", 1)[0].split(b" ")
    name = words[1].decode()
    return f"UID {words[2].decode()}" if name == "UID" else name


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b'a1 UID SEARCH CHARSET UTF-8 UID 1:9 X-GM-RAW "a \\"b\\" \\\\"\r\n', (0, 'a "b" \\')),
        (b"a1 UID SEARCH CHARSET UTF-8 UID 8:9 X-GM-RAW {2}\r\n\xc3\xa9\r\n", (7, "\u00e9")),
        (b"a1 UID SEARCH CHARSET UTF-8 UID 1:9 X-GM-RAW from:a@b.c\r\n", (0, "from:a@b.c")),
        (b"a1 UID SEARCH UID 1:9\r\n", (0, None)),
    ],
)
def test_the_grammar_check_reads_quoted_strings_and_literals(
    line: bytes, expected: tuple[int, str | None]
) -> None:
    assert search_argument(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        b"a1 UID SEARCH CHARSET UTF-8 UID 1:9 X-GM-RAW (a)\r\n",  # a list, not a string
        b"a1 UID SEARCH CHARSET UTF-8 UID 1:9 X-GM-RAW a*\r\n",  # a wildcard in an atom
        b"a1 UID SEARCH CHARSET UTF-8 UID 1:9 X-GM-RAW {5}\r\n",  # a literal without its data
        b'a1 UID SEARCH CHARSET UTF-8 UID 1:9 X-GM-RAW "a" "b"\r\n',  # two arguments
        b'a1 UID SEARCH CHARSET UTF-8 UID 1:9 X-GM-RAW "a\r\nA2 LOGOUT"\r\n',  # CRLF in a string
        b"a1 UID SEARCH CHARSET UTF-8 UID 1:9 X-GM-RAW {9}\r\nx\r\n",  # short literal
    ],
)
def test_the_grammar_check_refuses_anything_else(line: bytes) -> None:
    with pytest.raises(AssertionError):
        search_argument(line)


# -- one session per query ----------------------------------------------------------------------


@pytest.fixture
def mailbox(fake_gmail: FakeGmail) -> Account:
    account = fake_gmail.add_account(EMAIL)
    account.add_message(build_message(attachments={"a.pdf": b"%PDF"}))
    return account


def searched_by_a_session(gmail: FakeGmail, account: Account, query: str | None) -> list[bytes]:
    """The command lines a session that runs one search for `query` sent."""
    before = len(account.ledger.lines)
    session = ImapSession("127.0.0.1", gmail.port, tls=False, timeout=5, max_literal=2**20)
    try:
        session.xoauth2(EMAIL, tokens.issue(EMAIL, time.time() + 3600))
        folder = session.examine(ALL_MAIL)
        try:
            session.search(query, 0, folder.uidnext)
        except ProtocolError as error:  # the fake refuses what it cannot model, as BAD
            assert "BAD" in str(error), error
    finally:
        session.logout()
    return account.ledger.lines[before:]


@WIRE
@given(query=rule_query, images=st.booleans())
def test_a_rule_query_crosses_the_wire_as_one_argument_or_is_a_named_bad_rule(
    fake_gmail: FakeGmail, mailbox: Account, query: str, images: bool
) -> None:
    """Property: a query that validation accepts is sent as exactly one UID SEARCH whose
    X-GM-RAW argument is one quoted string or literal decoding to the rule's search query,
    between the session's own commands; one it refuses is a BadRule naming the rule."""
    document = {"_id": "r1", "user_uuid": "u1", "query": query}
    if images:  # a rule for images searches by its query alone, without has:attachment
        document["content_types"] = ["image/*"]
    try:
        rule = Rule.from_document(document)
    except BadRule as error:
        assert str(error).startswith("rule r1: "), error
        return

    lines = searched_by_a_session(fake_gmail, mailbox, rule.search_query)

    own = [line for line in lines if command_name(line) != "CAPABILITY"]
    assert [command_name(line) for line in own] == [
        "AUTHENTICATE",
        "ID",
        "EXAMINE",
        "UID SEARCH",
        "LOGOUT",
    ], lines
    assert search_argument(own[3]) == (0, rule.search_query)


@settings(max_examples=40, deadline=None)
@given(query=hostile_text.filter(lambda text: re.search(r"[\x00-\x1f\x7f]", text) is not None))
def test_the_session_refuses_control_characters_without_sending_anything(query: str) -> None:
    """Property: ImapSession.search, used without Rule validation, refuses any query with a
    control character before a byte is written (the session here has no server at all)."""
    session = ImapSession.__new__(ImapSession)  # a session that never connected
    with pytest.raises(BadRule, match="control character"):
        session.search(query, 0)


# -- whole crawls: one SEARCH per distinct query ------------------------------------------------

_accounts = itertools.count()


@WIRE
@given(queries=st.lists(st.one_of(st.none(), rule_query), min_size=1, max_size=4))
def test_a_crawl_sends_one_search_per_distinct_valid_query_and_names_the_bad_rules(
    world: World, queries: list[str | None]
) -> None:
    """Property: a crawl of an account with these rules sends one well-formed UID SEARCH per
    distinct search query of its valid rules and nothing but its own commands; each invalid
    rule is named in rule_errors; an account with no valid rule never connects."""
    n = next(_accounts)
    email, user_uuid = f"user{n}@example.com", f"u{n}"
    account = world.add_account(email, user_uuid, enabled=False)  # a rule that is not used
    account.add_message(build_message(attachments={"a.pdf": b"%PDF"}))
    valid: dict[str, Rule] = {}
    invalid = []
    for query in queries:
        document: dict[str, object] = {"user_uuid": user_uuid}
        if query is not None:
            document["query"] = query
        world.db.rules.insert_one(document)  # gives it an ObjectId, as discovery expects
        try:
            valid[str(document["_id"])] = Rule.from_document(document)
        except BadRule:
            invalid.append(str(document["_id"]))

    outcome = world.iterate().outcomes[user_uuid]

    status = world.status(user_uuid)
    assert sorted(status.get("rule_errors") or {}) == sorted(invalid)
    if not valid:
        assert outcome == "error" and "no usable rule" in status["last_error"]["message"]
        assert account.ledger.sessions_opened == 0
        return
    names = Counter(command_name(line) for line in account.ledger.lines)
    expected = {rule.search_query for rule in valid.values()}
    searches = [line for line in account.ledger.lines if command_name(line) == "UID SEARCH"]
    assert sorted(search_argument(line)[1] or "" for line in searches) == sorted(
        query or "" for query in expected
    )
    allowed = {"CAPABILITY", "AUTHENTICATE", "ID", "LIST", "EXAMINE", "UID SEARCH", "UID FETCH"}
    assert set(names) - {"LOGOUT"} <= allowed, names
    assert names["LOGOUT"] == account.ledger.sessions_opened


# -- account strings: folder, user name, password -----------------------------------------------


@pytest.mark.parametrize(
    "folder", ['INBOX"\r\nA1 DELETE INBOX\r\nA2 EXAMINE "x', "{5}", "a\\b (c)", "\u00e9*%"]
)
def test_a_hostile_folder_name_stays_one_examine_argument(world: World, folder: str) -> None:
    """A folder written straight into MongoDB (the CLI refuses the worst) is one quoted
    EXAMINE argument in modified UTF-7, where a line break is data too."""
    account = world.gmail.add_account("bob@example.com", password="app-password")
    world.db.accounts.insert_one(
        {
            "user_uuid": "bob",
            "email": "bob@example.com",
            "provider": "imap_password",
            "password": world.cipher.encrypt("app-password"),
            "imap": {"host": "127.0.0.1", "port": world.gmail.port, "tls": False},
            "folder": folder,
        }
    )
    world.db.rules.insert_one({"user_uuid": "bob"})

    assert world.iterate().outcomes == {"bob": "error"}  # there is no such folder

    names = [command_name(line) for line in account.ledger.lines]
    assert names == ["CAPABILITY", "LOGIN", "ID", "EXAMINE", "LOGOUT"], account.ledger.lines
    examine = account.ledger.lines[3]
    assert re.fullmatch(rb'\S+ EXAMINE "(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*"\r\n', examine)


@pytest.mark.parametrize(
    ("field", "value", "state", "error"),
    [
        ("username", "bob@example.com\r\nA1 DELETE INBOX", "error", "BadAccount"),
        ("password", "app-password\r\nA1 DELETE INBOX", "error", "BadAccount"),
        ("password", 'app-password"\r\nA1 DELETE INBOX', "error", "BadAccount"),
        ("password", "app-password\x00", "error", "BadAccount"),
        ("username", "bob@example.com {5}", "auth_failed", "AuthFailed"),
        ("username", 'bob@example.com" "x', "auth_failed", "AuthFailed"),
    ],
)
def test_a_hostile_login_never_adds_a_command(
    world: World, field: str, value: str, state: str, error: str
) -> None:
    """A user name or password with a control character fails that account as BadAccount
    before LOGIN; one with spaces, quotes or braces is one quoted LOGIN argument."""
    world.gmail.add_account("bob@example.com", password="app-password")
    document = {
        "user_uuid": "bob",
        "email": "bob@example.com",
        "provider": "imap_password",
        "password": world.cipher.encrypt("app-password"),
        "imap": {"host": "127.0.0.1", "port": world.gmail.port, "tls": False},
    }
    document[field] = world.cipher.encrypt(value) if field == "password" else value
    world.db.accounts.insert_one(document)
    world.db.rules.insert_one({"user_uuid": "bob"})

    assert world.iterate().outcomes == {"bob": state}

    assert world.status("bob")["last_error"]["type"] == error
    lines = world.gmail.ledger.lines  # every line the server received, logged in or not
    assert all(line.endswith(b"\r\n") and line.count(b"\r\n") == 1 for line in lines), lines
    assert not any(line.startswith(b"A1 ") or b"DELETE" in line for line in lines), lines
    logins = [line for line in lines if command_name(line) == "LOGIN"]
    if error == "BadAccount":
        assert logins == []
    else:
        quoted = value.replace("\\", "\\\\").replace('"', '\\"')
        [login] = logins
        assert login.endswith(f' LOGIN "{quoted}" "app-password"\r\n'.encode()), login
