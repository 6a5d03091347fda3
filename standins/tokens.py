"""Access tokens that the fake token endpoint issues and the fake Gmail verifies.

A token is self-contained and signed (HMAC-SHA256 over the email and expiry with a secret both
fakes share), so a fake Gmail in another process accepts what the token endpoint issued without
any shared state, and an expired token is refused just as Gmail refuses one.

A token may carry the scopes it was granted (the JWT-bearer grant of a Workspace service account
names them); one without (the refresh grant's) grants the mail scope, which is all the fake
token endpoint grants that way. `verify`, what the fake Gmail asks, accepts only a token that
grants the mail scope, as Gmail's IMAP refuses any other; `read` gives the email, expiry and
scopes of any good token, for the fake Admin SDK Directory API.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from crawler.oauth import TokenCipher

DEFAULT_SECRET = "fake-google-signing-secret"  # noqa: S105  # the fakes' shared test secret
MAIL_SCOPE = "https://mail.google.com/"  # what Gmail's IMAP needs (XOAUTH2)
_PREFIX = "ya29.fake."


@dataclass(frozen=True)
class Claims:
    """What a good token grants: whose it is, until when, and for which scopes."""

    email: str
    expires_at: float
    scopes: frozenset[str]


def _sign(payload: bytes, secret: str) -> str:
    digest = hmac.new(secret.encode(), payload, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def issue(
    email: str,
    expires_at: float,
    secret: str = DEFAULT_SECRET,
    scopes: Iterable[str] | None = None,
) -> str:
    """An access token for `email` valid until `expires_at` (epoch seconds), for `scopes` (none
    given: the mail scope, as the refresh grant's tokens)."""
    fields = [email, str(int(expires_at))]
    if scopes is not None:
        fields.append(" ".join(sorted(set(scopes))))
    payload = "\x00".join(fields).encode()
    body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    return f"{_PREFIX}{body}.{_sign(payload, secret)}"


def read(token: str, now: float, secret: str = DEFAULT_SECRET) -> Claims | None:
    """What `token` grants, or None when it is forged, malformed or expired."""
    if not token.startswith(_PREFIX):
        return None
    body, _, signature = token[len(_PREFIX) :].partition(".")
    try:
        payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        email, expires_at, *scoped = payload.decode().split("\x00")
        expiry = int(expires_at)
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors too
        return None
    if len(scoped) > 1 or not signature.isascii():  # compare_digest takes ASCII text only
        return None
    if not hmac.compare_digest(signature, _sign(payload, secret)):
        return None
    if expiry <= now:
        return None
    scopes = frozenset(scoped[0].split()) if scoped else frozenset({MAIL_SCOPE})
    return Claims(email, float(expiry), scopes)


def verify(token: str, now: float, secret: str = DEFAULT_SECRET) -> str | None:
    """The email `token` grants Gmail access to, or None when it is forged, malformed, expired or
    not granted the mail scope."""
    claims = read(token, now, secret)
    return claims.email if claims is not None and MAIL_SCOPE in claims.scopes else None


def expiry(token: str) -> float | None:
    """When `token` stops working (unverified: read it only from a token `verify` accepted)."""
    body = token[len(_PREFIX) :].partition(".")[0]
    try:
        payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        return float(payload.decode().split("\x00")[1])
    except (ValueError, IndexError):
        return None


def gmail_account(
    cipher: TokenCipher, user_uuid: str, email: str, refresh_token: str, expires_at: float
) -> dict[str, Any]:
    """An `accounts` document of a Gmail account holding an access token (from `issue`) valid
    until `expires_at`, both tokens encrypted with `cipher` as the crawler stores them."""
    return {
        "user_uuid": user_uuid,
        "email": email,
        "provider": "gmail_oauth",
        "oauth": {
            "refresh_token": cipher.encrypt(refresh_token),
            "access_token": cipher.encrypt(issue(email, expires_at)),
            "expires_at": expires_at,
        },
    }
