"""Access tokens for XOAUTH2: refresh against the token endpoint, encryption at rest.

`accounts.oauth` holds `refresh_token`, `access_token` (both Fernet-encrypted with
`CRAWLER_SECRET_KEY`) and `expires_at` (epoch seconds). A cached access token is used until
`refresh_margin` seconds before it expires; then, or when Gmail refuses it, it is refreshed once.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography.fernet import Fernet, InvalidToken
from oauthlib.oauth2 import InvalidGrantError, OAuth2Error, WebApplicationClient

from config import Settings
from crawler.errors import AuthFailed, AuthRevoked, BadAccount, ConfigError, Transient

IMAP_SCOPE = "https://mail.google.com/"
MISSING_KEY = (
    "CRAWLER_SECRET_KEY is not set: tokens are encrypted at rest with it. Make one with: "
    "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
)


class TokenCipher:
    """Encrypts tokens at rest with a Fernet key."""

    def __init__(self, key: str) -> None:
        if not key:
            raise ConfigError(MISSING_KEY)
        try:
            self._fernet = Fernet(key.encode())
        except ValueError as error:
            raise ConfigError(f"CRAWLER_SECRET_KEY is not a valid Fernet key: {error}") from None

    def encrypt(self, token: str) -> str:
        """The ciphertext of `token`, as text for MongoDB."""
        return self._fernet.encrypt(token.encode()).decode()

    def decrypt(self, ciphertext: object, field: str) -> str:
        """The token behind `ciphertext`; BadAccount naming `field` when it cannot be read."""
        if not isinstance(ciphertext, str):
            raise BadAccount(f"oauth.{field} is missing or not a string")
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise BadAccount(
                f"oauth.{field} cannot be decrypted with CRAWLER_SECRET_KEY (wrong key?)"
            ) from None


@dataclass(frozen=True)
class AccessToken:
    """A bearer token and when it stops working."""

    token: str
    expires_at: float


class TokenSource:
    """Gives a usable access token for an account, refreshing it when due."""

    def __init__(
        self,
        settings: Settings,
        cipher: TokenCipher,
        http: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        _check_token_url(settings.oauth_token_url)
        self._settings = settings
        self._cipher = cipher
        self._http = http or requests.Session()
        self._clock = clock

    def cached(self, oauth: Mapping[str, Any]) -> AccessToken | None:
        """The stored access token, if it is not about to expire."""
        expires_at = oauth.get("expires_at")
        if not oauth.get("access_token") or not isinstance(expires_at, int | float):
            return None
        if expires_at - self._settings.oauth_refresh_margin <= self._clock():
            return None
        return AccessToken(self._cipher.decrypt(oauth["access_token"], "access_token"), expires_at)

    def refresh(self, oauth: Mapping[str, Any]) -> AccessToken:
        """A new access token from the token endpoint, using the stored refresh token."""
        refresh_token = self._cipher.decrypt(oauth.get("refresh_token"), "refresh_token")
        client = WebApplicationClient(self._settings.oauth_client_id)
        body = client.prepare_refresh_body(
            refresh_token=refresh_token,
            client_id=self._settings.oauth_client_id,
            client_secret=self._settings.oauth_client_secret.get_secret_value(),
        )
        response = self._post(body)
        try:
            token = client.parse_request_body_response(response.text)
        except InvalidGrantError:
            raise AuthRevoked("the refresh token is expired or revoked (invalid_grant)") from None
        except (OAuth2Error, ValueError) as error:
            raise AuthFailed(f"token endpoint refused the refresh: {_describe(error)}") from None
        expires_in = float(token.get("expires_in") or 3600)
        return AccessToken(str(token["access_token"]), self._clock() + expires_in)

    def encrypted(self, access: AccessToken) -> dict[str, Any]:
        """The `oauth` fields to store for a refreshed token."""
        return {"access_token": self._cipher.encrypt(access.token), "expires_at": access.expires_at}

    def _post(self, body: str) -> requests.Response:
        try:
            response = self._http.post(
                self._settings.oauth_token_url,
                data=body,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                timeout=self._settings.oauth_timeout,
            )
        except requests.RequestException as error:
            raise Transient(f"token endpoint unreachable: {type(error).__name__}") from None
        if response.status_code >= 500 or response.status_code == 429:
            raise Transient(f"token endpoint answered HTTP {response.status_code}")
        return response


def _describe(error: Exception) -> str:
    return getattr(error, "error", None) or type(error).__name__


def _check_token_url(url: str) -> None:
    """Tokens travel only over HTTPS, except to a stand-in on this machine's loopback."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return
    host = parts.hostname or ""
    loopback = host == "localhost" or _is_loopback_ip(host)
    if parts.scheme != "http" or not loopback:
        raise ConfigError(f"CRAWLER_OAUTH_TOKEN_URL must be https:// (got {url!r})")


def _is_loopback_ip(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
