"""One pure table from Gmail's response lines to the error taxonomy.

Every line the session reads from the server goes through `classify`. The table is ordered: the
first pattern that matches wins. Texts are Gmail's own (GMAIL_IMAP.md); matching is on the
status and response code, not on the free text where Gmail gives a code.
"""

from __future__ import annotations

import re

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

_TAG = rb"[A-Za-z0-9.]+"

TABLE: tuple[tuple[re.Pattern[bytes], type[CrawlerError]], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), error)
    for pattern, error in (
        (rb"^\* BYE \[OVERQUOTA\]", OverQuota),
        (rb"^\S+ NO \[ALERT\] Account exceeded command or bandwidth limits", OverQuota),
        (rb"^\S+ NO \[ALERT\] Too many simultaneous connections", TooManyConnections),
        (rb"^\S+ NO \[AUTHENTICATIONFAILED\]", AuthFailed),
        (rb"^\S+ NO \[ALERT\] Please log in via your web browser", WebLoginRequired),
        (rb"^\* NO \[WEBALERT ", WebLoginRequired),
        (rb"^\S+ NO Lookup failed", AccountUnavailable),
        (rb"^\S+ NO \[ALERT\] Your account is not enabled for IMAP use", ImapDisabled),
        (rb"^\S+ NO \[ALERT\] IMAP access is disabled for your domain", ImapDisabled),
        (rb"^\S+ NO Some messages could not be FETCHed", PartialFetch),
        (rb"^\S+ NO \[UNAVAILABLE\]", Transient),
        (rb"^\S+ NO System Error", Transient),
        (rb"^\* BYE Session expired", SessionExpired),
        (rb"^\* BYE ", Transient),
        (rb"^" + _TAG + rb" OK .*\[THROTTLED\]\s*$", Throttled),
        (rb"^" + _TAG + rb" BAD ", ProtocolError),
    )
)


def classify(line: bytes) -> type[CrawlerError] | None:
    """The error class a server line signals, or None for an ordinary line.

    `* BYE` after our own LOGOUT is ordinary; the session checks that before asking.
    """
    if line[:2] == b"* " and line[2:3].isdigit():  # `* 12 FETCH ...`: data, which no row matches
        return None
    for pattern, error in TABLE:
        if pattern.search(line):
            return error
    return None
