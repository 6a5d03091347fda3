import pytest
from hypothesis import given
from hypothesis import strategies as st

from crawler.errors import (
    AccountUnavailable,
    AuthFailed,
    CrawlerError,
    ImapDisabled,
    OverQuota,
    PartialFetch,
    ProtocolError,
    SessionExpired,
    Throttled,
    TooManyConnections,
    Transient,
    WebLoginRequired,
)
from crawler.gmail.classify import TABLE, classify

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"A5 OK Success [THROTTLED]", Throttled),
        (b"A3 OK [READ-ONLY] [Gmail]/All Mail selected. (Success) [THROTTLED]", Throttled),
        (b"* BYE [OVERQUOTA] Account exceeded command or bandwidth limits.", OverQuota),
        (b"A1 NO [ALERT] Account exceeded command or bandwidth limits. (Failure)", OverQuota),
        (b"A1 NO [ALERT] Too many simultaneous connections. (Failure)", TooManyConnections),
        (b"A1 NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)", AuthFailed),
        (b"* NO [WEBALERT https://accounts.google.com/x] Web login required.", WebLoginRequired),
        (
            b"A1 NO [ALERT] Please log in via your web browser: https://x (Failure)",
            WebLoginRequired,
        ),
        (b"A1 NO Lookup failed 7c2b", AccountUnavailable),
        (
            b"A1 NO [ALERT] Your account is not enabled for IMAP use. Please visit your Gmail "
            b"settings page and enable your account for IMAP access. (Failure)",
            ImapDisabled,
        ),
        (
            b"A1 NO [ALERT] IMAP access is disabled for your domain. Please contact your domain "
            b"administrator for questions about this feature. (Failure)",
            ImapDisabled,
        ),
        (
            b"A1 NO [ALERT] IMAP access is disabled for your domain. Please contact your domain "
            b"administrator. (Failure)",
            ImapDisabled,
        ),
        (b"A9 NO Some messages could not be FETCHed (Failure)", PartialFetch),
        (b"A9 NO System Error (Failure)", Transient),
        (b"A9 NO [UNAVAILABLE] try later", Transient),
        (b"* BYE System Error", Transient),
        (b"* BYE Session expired, please login again.", SessionExpired),
        (b"A2 BAD Could not parse command", ProtocolError),
        (b"A5 OK Success", None),
        (b"A3 OK [READ-ONLY] [Gmail]/All Mail selected. (Success)", None),
        (b"* 12 EXISTS", None),
        (b"* SEARCH 302 1877 1890", None),
        (b'* 1 FETCH (UID 302 X-GM-LABELS ("[THROTTLED]"))', None),
        (b"* OK [THROTTLED] is only a suffix on tagged OK", None),
    ],
)
def test_classify(line: bytes, expected: type[CrawlerError] | None) -> None:
    assert classify(line) is expected


def every_row(line: bytes) -> type[CrawlerError] | None:
    return next((error for pattern, error in TABLE if pattern.search(line)), None)


@given(
    st.sampled_from([b"* 1", b"* 12 ", b"* ", b"*", b"* x", b"A1", b"", b" "]),
    st.lists(st.sampled_from([b" NO ", b" BYE ", b"[OVERQUOTA]", b" OK ", b"x", b"[THROTTLED]"])),
)
def test_data_lines_are_ordinary_as_every_row_says(start: bytes, rest: list[bytes]) -> None:
    line = start + b"".join(rest)
    assert classify(line) is every_row(line)


@pytest.mark.parametrize(
    ("line", "by", "advice"),
    [
        (
            "a1 NO [ALERT] Your account is not enabled for IMAP use. Please visit your Gmail "
            "settings page and enable your account for IMAP access. (Failure)",
            "user",
            "IMAP is disabled by the user: in Gmail settings, 'Forwarding and POP/IMAP', "
            "choose 'Enable IMAP'",
        ),
        (
            "a1 NO [ALERT] IMAP access is disabled for your domain. Please contact your domain "
            "administrator. (Failure)",
            "domain",
            "IMAP is disabled for the account's Google Workspace domain by its administrator",
        ),
    ],
)
def test_imap_disabled_says_by_whom_and_what_to_do(line: str, by: str, advice: str) -> None:
    error = ImapDisabled(f"authenticate: {line}")  # as the session makes it
    assert isinstance(error, AccountUnavailable)
    assert error.by == by
    assert str(error).startswith(advice)
    assert str(error).endswith(f"; Gmail said: authenticate: {line}")
