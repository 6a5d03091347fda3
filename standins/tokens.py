"""Access tokens that the fake token endpoint issues and the fake Gmail verifies.

A token is self-contained and signed (HMAC-SHA256 over the email and expiry with a secret both
fakes share), so a fake Gmail in another process accepts what the token endpoint issued without
any shared state, and an expired token is refused just as Gmail refuses one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from crawler.oauth import TokenCipher

DEFAULT_SECRET = "fake-google-signing-secret"  # noqa: S105  # the fakes' shared test secret
_PREFIX = "ya29.fake."


def _sign(payload: bytes, secret: str) -> str:
    digest = hmac.new(secret.encode(), payload, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def issue(email: str, expires_at: float, secret: str = DEFAULT_SECRET) -> str:
    """An access token for `email` valid until `expires_at` (epoch seconds)."""
    payload = f"{email}\x00{int(expires_at)}".encode()
    body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    return f"{_PREFIX}{body}.{_sign(payload, secret)}"


def verify(token: str, now: float, secret: str = DEFAULT_SECRET) -> str | None:
    """The email `token` grants access to, or None when it is forged, malformed or expired."""
    if not token.startswith(_PREFIX):
        return None
    body, _, signature = token[len(_PREFIX) :].partition(".")
    try:
        payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        email, expires_at = payload.decode().split("\x00")
        expiry = int(expires_at)
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors too
        return None
    if not hmac.compare_digest(signature, _sign(payload, secret)) or expiry <= now:
        return None
    return email


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
