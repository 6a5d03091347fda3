"""Access tokens for XOAUTH2: refresh against the token endpoint, encryption at rest.

`accounts.oauth` holds `refresh_token`, `access_token` (both Fernet-encrypted with
`CRAWLER_SECRET_KEY`) and `expires_at` (epoch seconds). A cached access token is used until
`refresh_margin` seconds before it expires; then, or when Gmail refuses it, it is refreshed once.

The token endpoint is a peer that can lie, stall or flood, so every request to it is bounded: a
redirect is never followed (the form carries the refresh token and the client secret), the answer
is streamed and refused past MAX_ANSWER bytes, and CRAWLER_OAUTH_TIMEOUT is the request's total
time, connection, headers and body together: when it is up the connection is cut, however
slowly bytes still arrive. Answers are classified (`TokenAnswer.granted`):

- `invalid_grant` (a 400 or 401): `AuthRevoked`, or `AuthFailed` for a refused code: the
  account is `auth_failed` until re-authorized.
- `admin_policy_enforced` (the account's Workspace admin does not allow the app): `AuthFailed`.
- `invalid_client`, `unauthorized_client`, `deleted_client`, `invalid_scope`,
  `redirect_uri_mismatch`: our OAuth client is misconfigured, not the account: `ConfigError`
  naming the client settings (the account goes `error`, retried with backoff).
- any other OAuth error (`invalid_request`, `unsupported_grant_type` ...), a redirect, a 403, a
  404 or another 4xx, 429, 5xx, HTML or anything else that is not a JSON object, an answer over
  MAX_ANSWER, the deadline, no connection: `Transient` (retried, then `error`).

No message quotes what the endpoint said beyond its status, media type and OAuth error code.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

import requests
import urllib3
from cryptography.fernet import Fernet, InvalidToken
from oauthlib.oauth2 import WebApplicationClient
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import ProxyManager
from urllib3.response import HTTPResponse

from config import Settings
from config.endpoints import is_secure_endpoint
from crawler.errors import (
    AuthFailed,
    AuthRevoked,
    BadAccount,
    ConfigError,
    OAuthClientRefused,
    Transient,
)

IMAP_SCOPE = "https://mail.google.com/"
MISSING_KEY = (
    "CRAWLER_SECRET_KEY is not set: tokens are encrypted at rest with it. Make one with: "
    "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
)
MAX_ANSWER = 64 * 1024  # bytes of one token endpoint answer, at most; Google's take under 2 KiB
READ_PIECE = 16 * 1024  # bytes asked of the socket at a time
DEFAULT_EXPIRES_IN = 3600.0  # seconds, when an answer does not say
# Refusals that say our OAuth client is misconfigured: no account is at fault.
CLIENT_ERRORS = frozenset(
    {
        "invalid_client",
        "unauthorized_client",
        "deleted_client",
        "invalid_scope",
        "redirect_uri_mismatch",
    }
)
# Refusals about the account itself, short of a revoked grant: Google documents
# admin_policy_enforced as the account's Workspace administrator not allowing the app.
ACCOUNT_ERRORS = frozenset({"admin_policy_enforced"})
FORM_HEADERS = {
    "Content-Type": "application/x-www-form-urlencoded",
    "Accept": "application/json",
    "Accept-Encoding": "identity",  # the cap counts the bytes that arrive, not what they inflate to
}
_ERROR_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9.+-]{1,64}/[A-Za-z0-9.+-]{1,64}")
_ACCESS_TOKEN = re.compile(r"[\x21-\x7e]{1,8192}")  # printable ASCII: it goes into XOAUTH2


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
        """The token behind `ciphertext`; BadAccount naming `field` (its path in the document)
        when it cannot be read."""
        if not isinstance(ciphertext, str):
            raise BadAccount(f"{field} is missing or not a string")
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise BadAccount(
                f"{field} cannot be decrypted with CRAWLER_SECRET_KEY (wrong key?)"
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
        check_endpoint("CRAWLER_OAUTH_TOKEN_URL", settings.oauth_token_url)
        self._settings = settings
        self._cipher = cipher
        self._http = bounded_session(settings, http)
        self._clock = clock

    def cached(self, oauth: Mapping[str, Any]) -> AccessToken | None:
        """The stored access token, if it is not about to expire."""
        expires_at = oauth.get("expires_at")
        if not oauth.get("access_token") or not isinstance(expires_at, int | float):
            return None
        if expires_at - self._settings.oauth_refresh_margin <= self._clock():
            return None
        return AccessToken(
            self._cipher.decrypt(oauth["access_token"], "oauth.access_token"), expires_at
        )

    def refresh(self, oauth: Mapping[str, Any]) -> AccessToken:
        """A new access token from the token endpoint, using the stored refresh token."""
        refresh_token = self._cipher.decrypt(oauth.get("refresh_token"), "oauth.refresh_token")
        client = WebApplicationClient(self._settings.oauth_client_id)
        body = client.prepare_refresh_body(
            refresh_token=refresh_token,
            client_id=self._settings.oauth_client_id,
            client_secret=self._settings.oauth_client_secret.get_secret_value(),
        )
        answer = post_form(self._settings, self._http, body)
        revoked = AuthRevoked("the refresh token is expired or revoked (invalid_grant)")
        token = answer.granted("refresh", revoked)
        return AccessToken(token["access_token"], self._clock() + expires_in(token))

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
            check_endpoint(f"CRAWLER_OAUTH_{name}_URL", url)
        self._settings = settings
        self._http = bounded_session(settings, http)
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
        answer = post_form(self._settings, self._http, body)
        token = answer.granted("code", AuthFailed("token endpoint refused the code: invalid_grant"))
        refresh_token = token.get("refresh_token")
        if not isinstance(refresh_token, str) or not refresh_token:
            raise AuthFailed("the token endpoint gave no refresh token")
        return refresh_token


@dataclass(frozen=True)
class TokenAnswer:
    """What the token endpoint answered: its status, media type and (capped) body."""

    status: int
    media_type: str
    body: bytes

    def fields(self) -> dict[str, Any] | None:
        """The body as a JSON object, or None when it is not one."""
        try:
            fields = json.loads(self.body)
        except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            return None
        return fields if isinstance(fields, dict) else None

    def granted(self, what: str, invalid_grant: AuthFailed) -> dict[str, Any]:
        """The fields of an answer that grants an access token; else the error it is (see the
        module docstring), `invalid_grant` for that refusal of the `what` ("refresh", "code")."""
        fields = self.fields()
        code = _error_code(fields)
        if self.status in (400, 401) and code is not None:
            if code == "invalid_grant":
                raise invalid_grant
            if code in CLIENT_ERRORS:
                raise OAuthClientRefused(
                    f"token endpoint refused our OAuth client ({code}): check "
                    "CRAWLER_OAUTH_CLIENT_ID and CRAWLER_OAUTH_CLIENT_SECRET"
                )
            if code in ACCOUNT_ERRORS:
                raise AuthFailed(f"token endpoint refused the {what} for this account: {code}")
        if self.status != 200:
            said = f" ({code})" if code else ""
            raise Transient(f"token endpoint answered HTTP {self.status}{said}")
        if fields is None:
            raise Transient(f"token endpoint answered {self.media_type}, not a JSON object")
        if not isinstance(fields.get("access_token"), str) or not _ACCESS_TOKEN.fullmatch(
            fields["access_token"]
        ):
            raise Transient("token endpoint answered without a usable access_token")
        return fields


def _error_code(fields: Mapping[str, Any] | None) -> str | None:
    """The OAuth error code of an answer, when it has one that reads as one."""
    code = (fields or {}).get("error")
    if not isinstance(code, str):
        return None
    return code if _ERROR_CODE.fullmatch(code) else "unreadable_error"


def expires_in(token: Mapping[str, Any]) -> float:
    value = token.get("expires_in")
    if value is None:
        return DEFAULT_EXPIRES_IN
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise Transient("token endpoint answered an unreadable expires_in") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise Transient("token endpoint answered an unreadable expires_in")
    return seconds


def post_form(settings: Settings, session: requests.Session, body: str) -> TokenAnswer:
    """POST a form to the token endpoint, within CRAWLER_OAUTH_TIMEOUT in all, without following
    a redirect or reading more than MAX_ANSWER + 1 bytes; Transient when it cannot be had."""
    endpoint = Peer("token endpoint", settings.oauth_token_url, settings.oauth_timeout, MAX_ANSWER)
    return endpoint.request(session, "POST", data=body, headers=FORM_HEADERS)


@dataclass(frozen=True)
class Peer:
    """An HTTP peer of Google's that can lie, stall or flood: each request to it lasts `timeout`
    seconds in all (CRAWLER_OAUTH_TIMEOUT), follows no redirect, and reads at most `cap` bytes."""

    name: str
    url: str
    timeout: float
    cap: int

    def request(self, session: requests.Session, method: str, **kwargs: Any) -> TokenAnswer:
        """The answer to one request (`kwargs` as requests takes them); Transient when it
        cannot be had: no connection, the deadline, a redirect, 429, 5xx, an answer too big."""
        late = f"{self.name} took longer than CRAWLER_OAUTH_TIMEOUT ({self.timeout:g} s)"
        with _Deadline(self.timeout) as deadline:
            try:
                left = deadline.left()
                response = session.request(
                    method,
                    self.url,
                    timeout=(left, left),
                    allow_redirects=False,
                    stream=True,
                    **kwargs,
                )
            except requests.RequestException as error:
                if deadline.expired or isinstance(error, requests.Timeout):
                    raise Transient(late) from None
                raise Transient(f"{self.name} unreachable: {type(error).__name__}") from None
            with response:
                status = response.status_code
                if 300 <= status < 400:
                    raise Transient(f"{self.name} answered HTTP {status}, a redirect: not followed")
                if status >= 500 or status == 429:
                    raise Transient(f"{self.name} answered HTTP {status}")
                body_bytes = self._read_capped(response, deadline, late)
                media_type = (response.headers.get("Content-Type") or "").partition(";")[0].strip()
            if deadline.expired:
                raise Transient(late)
        shown = media_type if _MEDIA_TYPE.fullmatch(media_type) else "no media type"
        return TokenAnswer(status, shown, body_bytes)

    def _read_capped(self, response: requests.Response, deadline: _Deadline, late: str) -> bytes:
        """The body of `response`, of at most `cap` bytes; Transient when it is longer, is
        compressed, or does not arrive before the deadline."""
        cap, over = self.cap, f"{self.name} answered more than {self.cap} bytes"
        encoding = (response.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding != "identity":
            raise Transient(f"{self.name} answered a compressed body it was not asked for")
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            raise Transient(over)
        raw: urllib3.BaseHTTPResponse = response.raw
        body = bytearray()
        try:
            while len(body) <= cap:
                piece = raw.read(min(READ_PIECE, cap + 1 - len(body)), decode_content=False)
                if deadline.expired:
                    raise Transient(late)
                if not piece:
                    break
                body += piece
        except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as error:
            if deadline.expired:
                raise Transient(late) from None
            raise Transient(f"{self.name} answer broke off: {type(error).__name__}") from None
        if len(body) > cap:
            raise Transient(over)
        return bytes(body)


# -- the deadline -------------------------------------------------------------------------
#
# A socket timeout bounds silence, not a request: a peer that sends a byte now and then holds a
# read for ever. So each request to the token endpoint has a timer that, when its time is up,
# shuts down the socket the request is reading from, which wakes the read whatever it waits for.
# The socket is made known to the timer by the connection classes below, just before the answer's
# headers are read.

_current = threading.local()


class _Deadline:
    """The total time of one request, and the socket it cuts when the time is up."""

    def __init__(self, seconds: float) -> None:
        self._at = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._socket: object = None
        self._up = False
        self._timer = threading.Timer(max(seconds, 0.0), self._expire)
        self._timer.daemon = True

    def left(self) -> float:
        """Seconds left (a little more than none, for a timeout)."""
        return max(self._at - time.monotonic(), 0.001)

    @property
    def expired(self) -> bool:
        """Whether the time is up."""
        return self._up or time.monotonic() >= self._at

    def watch(self, sock: object) -> None:
        """Cut `sock` when the time is up (at once if it is)."""
        with self._lock:
            self._socket = sock
            if self._up:
                _cut(sock)

    def _expire(self) -> None:
        with self._lock:
            self._up = True
            if self._socket is not None:
                _cut(self._socket)

    def __enter__(self) -> _Deadline:
        _current.deadline = self
        self._timer.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._timer.cancel()
        with self._lock:
            self._socket = None  # a pooled connection outlives the request: never cut it later
        _current.deadline = None


def _cut(sock: object) -> None:
    """Shut a socket down under a read blocked on it (on the raw socket: TLS or not)."""
    raw = sock if isinstance(sock, socket.socket) else getattr(sock, "socket", None)
    if isinstance(raw, socket.socket):
        with contextlib.suppress(OSError):
            socket.socket.shutdown(raw, socket.SHUT_RDWR)


def _watch(sock: object) -> None:
    deadline = getattr(_current, "deadline", None)
    if isinstance(deadline, _Deadline) and sock is not None:
        deadline.watch(sock)


class _WatchedHTTPConnection(HTTPConnection):
    def getresponse(self) -> HTTPResponse:  # type: ignore[override]  # as urllib3's own
        _watch(self.sock)
        return super().getresponse()


class _WatchedHTTPSConnection(HTTPSConnection):
    def getresponse(self) -> HTTPResponse:  # type: ignore[override]  # as urllib3's own
        _watch(self.sock)
        return super().getresponse()


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_POOLS: dict[str, type[HTTPConnectionPool]] = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _DeadlineAdapter(HTTPAdapter):
    """Connections whose socket the current request's deadline can cut."""

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if isinstance(manager, ProxyManager):  # a SOCKS proxy keeps its own pools
            manager.pool_classes_by_scheme = _POOLS
        return manager


def bounded_session(
    settings: Settings, session: requests.Session | None, url: str | None = None
) -> requests.Session:
    """`session` (a new one if None), reaching the token endpoint (or `url`) through
    connections that the request's deadline can cut."""
    session = session or requests.Session()
    session.mount(url or settings.oauth_token_url, _DeadlineAdapter())
    return session


def check_endpoint(name: str, url: str) -> None:
    """Tokens travel only over HTTPS, except to a stand-in on this machine's loopback."""
    if not is_secure_endpoint(url):
        raise ConfigError(f"{name} must be https:// (got {url!r})")
