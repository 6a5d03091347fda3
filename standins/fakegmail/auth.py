"""Logging in: AUTHENTICATE XOAUTH2 (and PLAIN), LOGIN with an app password, and login faults.

XOAUTH2 takes its initial response on the command line (SASL-IR) or after a `+ ` continuation.
A token is good when `tokens.verify` accepts it, it names the `user=` of the XOAUTH2 string, and
that account exists. A bad token gets Gmail's 400 challenge, then (whatever the client answers:
an empty line, or its token again as imaplib sends) `NO [AUTHENTICATIONFAILED]`. An account with
`max_connections` sessions logged in refuses one more after the same challenge. Login faults
(faults.py) fire only on a login whose credentials are right; IMAP turned off (by the user or
for a Workspace domain) is refused at once, as Gmail does (docs/gmail-facts.md).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import TYPE_CHECKING

from standins import tokens
from standins.fakegmail import texts
from standins.fakegmail.faults import DAILY_LIMIT_LOGIN, Fault, FaultKind
from standins.fakegmail.protocol import (
    Command,
    ParseError,
    Token,
    as_atom,
    as_bytes,
    as_text,
)

if TYPE_CHECKING:
    from standins.fakegmail.mailbox import Account
    from standins.fakegmail.session import Session

_MECHANISMS = ("XOAUTH2", "PLAIN")


def parse_xoauth2(response: bytes) -> tuple[str, str] | None:
    """The user and bearer token of a decoded XOAUTH2 initial response, or None."""
    fields = dict(
        item.split("=", 1)
        for item in response.decode("utf-8", "replace").split("\x01")
        if "=" in item
    )
    scheme, _, token = fields.get("auth", "").partition(" ")
    if not fields.get("user") or scheme.lower() != "bearer" or not token:
        return None
    return fields["user"], token


def parse_plain(response: bytes) -> tuple[str, str] | None:
    """The user and password of a decoded PLAIN initial response, or None."""
    parts = response.decode("utf-8", "replace").split("\x00")
    if len(parts) != 3 or not parts[1]:
        return None
    return parts[1], parts[2]


async def authenticate(session: Session, command: Command) -> bytes:
    """AUTHENTICATE XOAUTH2 / PLAIN, with or without an initial response on the line."""
    if not 1 <= len(command.args) <= 2:
        raise ParseError("AUTHENTICATE takes a mechanism and an optional initial response")
    mechanism = as_atom(command.args[0])
    if mechanism not in _MECHANISMS:  # OAUTHBEARER, XOAUTH, PLAIN-CLIENTTOKEN: not modelled
        return texts.AUTH_FAILED
    response = await _initial_response(session, command.args[1:])
    if mechanism == "PLAIN":
        credentials = parse_plain(response) if response is not None else None
        return await _password_login(session, credentials)
    credentials = parse_xoauth2(response) if response is not None else None
    account = _account(session, credentials[0] if credentials else None)
    valid = account is not None and credentials is not None and _token_valid(session, *credentials)
    if valid and credentials:  # Gmail ends the session when the token it logged in with expires
        session.token_expires_at = tokens.expiry(credentials[1])
    return await _conclude(session, account if valid else None, oauth=True)


async def login(session: Session, command: Command) -> bytes:
    """LOGIN with an account's app password (quoted strings or literals)."""
    if len(command.args) != 2:
        raise ParseError("LOGIN takes a user and a password")
    user, password = as_text(command.args[0]), as_text(command.args[1])
    return await _password_login(session, (user, password))


async def _password_login(session: Session, credentials: tuple[str, str] | None) -> bytes:
    account = _account(session, credentials[0] if credentials else None)
    expected = account.password if account else None
    valid = bool(
        credentials and expected and hmac.compare_digest(credentials[1].encode(), expected.encode())
    )
    return await _conclude(session, account if valid else None, oauth=False)


def _account(session: Session, user: str | None) -> Account | None:
    """The account a login names; the attempt counts in its ledger from here on."""
    account = session.shared.accounts.get(user) if user else None
    if account:
        account.ledger.attach(session.record)
    return account


def _token_valid(session: Session, user: str, token: str) -> bool:
    email = tokens.verify(token, session.shared.clock(), session.shared.token_secret)
    return email is not None and email.lower() == user.lower()


async def _initial_response(session: Session, rest: tuple[Token, ...]) -> bytes | None:
    """The decoded initial response; None when it is not base64 (ParseError: cancelled)."""
    if rest:
        encoded = as_bytes(rest[0])
    else:
        await session.output.line(b"+ ")
        encoded = (await session.read_line()).rstrip(b"\r\n")
    if encoded == b"*":
        raise ParseError("the client cancelled AUTHENTICATE")
    if encoded == b"=":  # SASL-IR's empty initial response
        return b""
    try:
        return base64.b64decode(encoded, validate=True)
    except binascii.Error:
        return None


async def _conclude(session: Session, account: Account | None, *, oauth: bool) -> bytes:
    """The end of a login whose credentials were checked (`account` is None when wrong).

    XOAUTH2 refusals come after Gmail's 400 challenge (unless a fault says at once).
    """
    fault = account.faults.take_login() if account else None
    if fault is None and account is not None and account.quota.locked():
        fault = DAILY_LIMIT_LOGIN  # past the daily download limit: NO [ALERT] for up to a day
    challenge = oauth and (fault is None or fault.challenge)
    if account is None or (fault and fault.kind is FaultKind.INVALID_TOKEN):
        return await _after_challenge(session, texts.AUTH_FAILED, challenge=challenge)
    if fault and fault.kind is not FaultKind.TOO_MANY_CONNECTIONS:
        return await _refusal(session, fault)
    if fault or not account.admit(session.record):
        return await _after_challenge(session, texts.TOO_MANY_CONNECTIONS, challenge=challenge)
    await session.logged_in(account)
    return texts.AUTHENTICATED % account.email.encode()


async def _after_challenge(session: Session, refusal: bytes, *, challenge: bool) -> bytes:
    if challenge:
        await session.output.line(b"+ " + texts.XOAUTH2_CHALLENGE)
        await session.read_line()  # an empty line, or the token once more
    return refusal


async def _refusal(session: Session, fault: Fault) -> bytes:
    if fault.kind is FaultKind.LOOKUP_FAILED:
        return texts.LOOKUP_FAILED % session.session_id
    if fault.kind is FaultKind.IMAP_DISABLED:
        return texts.IMAP_DISABLED
    if fault.kind is FaultKind.IMAP_DISABLED_DOMAIN:
        return texts.IMAP_DISABLED_DOMAIN
    if fault.kind is FaultKind.WEB_LOGIN:
        await session.output.line(texts.WEB_LOGIN_ALERT % fault.url.encode())
        return texts.WEB_LOGIN_REFUSED % fault.url.encode()
    return texts.LOGIN_OVERQUOTA
