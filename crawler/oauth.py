"""Access tokens for XOAUTH2: refresh against the token endpoint, encryption at rest.

`accounts.oauth` holds `refresh_token`, `access_token` (both Fernet-encrypted with
`CRAWLER_SECRET_KEY`) and `expires_at` (epoch seconds). A cached access token is used until
`refresh_margin` seconds before it expires; then, or when Gmail refuses it, it is refreshed once.
"""

from __future__ import annotations

import ipaddress
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

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
        _check_endpoint("CRAWLER_OAUTH_TOKEN_URL", settings.oauth_token_url)
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
        response = _post(self._settings, self._http, body)
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


class Consent:
    """The installed-app consent flow for one account: a URL to open, then the code exchange.

    The user opens `url`, signs in and consents; Google redirects the browser to `redirect_uri`
    (a loopback listener) with a code, which `refresh_token` exchanges. A random `state` and a
    PKCE (S256) verifier keep the code from being used by anyone who merely sees it.
    """

    def __init__(
        self,
        settings: Settings,
        redirect_uri: str,
        login_hint: str,
        http: requests.Session | None = None,
    ) -> None:
        for name, url in (("AUTH", settings.oauth_auth_url), ("TOKEN", settings.oauth_token_url)):
            _check_endpoint(f"CRAWLER_OAUTH_{name}_URL", url)
        self._settings = settings
        self._http = http or requests.Session()
        self._client = WebApplicationClient(settings.oauth_client_id)
        self.redirect_uri = redirect_uri
        self.state = secrets.token_urlsafe(24)
        self._verifier = self._client.create_code_verifier(64)
        query = {
            "client_id": settings.oauth_client_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": IMAP_SCOPE,
            "state": self.state,
            "code_challenge": self._client.create_code_challenge(self._verifier, "S256"),
            "code_challenge_method": "S256",
            "access_type": "offline",  # a refresh token, not only an access token
            "prompt": "consent",  # a refresh token even when the user consented before
            "login_hint": login_hint,
        }
        self.url = f"{settings.oauth_auth_url}?{urlencode(query)}"

    def refresh_token(self, redirect: Mapping[str, str]) -> str:
        """The refresh token for the code in the redirect's query; AuthFailed when refused."""
        if not secrets.compare_digest(redirect.get("state", ""), self.state):
            raise AuthFailed("the consent redirect does not belong to this request: start again")
        if "error" in redirect or "code" not in redirect:
            raise AuthFailed(f"consent was not given: {redirect.get('error', 'no code')}")
        body = self._client.prepare_request_body(
            code=redirect["code"],
            redirect_uri=self.redirect_uri,
            code_verifier=self._verifier,
            client_secret=self._settings.oauth_client_secret.get_secret_value(),
        )
        response = _post(self._settings, self._http, body)
        try:
            token = self._client.parse_request_body_response(response.text)
        except (OAuth2Error, ValueError) as error:
            raise AuthFailed(f"token endpoint refused the code: {_describe(error)}") from None
        refresh_token = token.get("refresh_token")
        if not isinstance(refresh_token, str) or not refresh_token:
            raise AuthFailed("the token endpoint gave no refresh token")
        return refresh_token


def _post(settings: Settings, http: requests.Session, body: str) -> requests.Response:
    """POST a form to the token endpoint; Transient when it is unreachable or failing."""
    try:
        response = http.post(
            settings.oauth_token_url,
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=settings.oauth_timeout,
        )
    except requests.RequestException as error:
        raise Transient(f"token endpoint unreachable: {type(error).__name__}") from None
    if response.status_code >= 500 or response.status_code == 429:
        raise Transient(f"token endpoint answered HTTP {response.status_code}")
    return response


def _describe(error: Exception) -> str:
    return getattr(error, "error", None) or type(error).__name__


def _check_endpoint(name: str, url: str) -> None:
    """Tokens travel only over HTTPS, except to a stand-in on this machine's loopback."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return
    host = parts.hostname or ""
    loopback = host == "localhost" or _is_loopback_ip(host)
    if parts.scheme != "http" or not loopback:
        raise ConfigError(f"{name} must be https:// (got {url!r})")


def _is_loopback_ip(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
