"""A stand-in for Google's OAuth2 endpoints over HTTP on loopback: the refresh-token grant, the
installed-app consent flow (a consent page that answers at once, and the code exchange), and the
JWT-bearer grant (RFC 7523) of a Google Workspace service account with domain-wide delegation.

`POST /token` takes a form (`grant_type=refresh_token`, `refresh_token`, `client_id`,
`client_secret`) and answers as https://oauth2.googleapis.com/token does, in JSON:

| Request | Status | Answer |
|---|---|---|
| a granted, unrevoked refresh token | 200 | `access_token`, `expires_in`, `scope`, `token_type` |
| no `grant_type`, or another | 400 | `unsupported_grant_type` `Invalid grant_type: <it>` |
| no `client_id` | 400 | `invalid_request` `Could not determine client ID from request.` |
| another `client_id` | 401 | `invalid_client` `The OAuth client was not found.` |
| no `client_secret` | 400 | `invalid_request` `client_secret is missing.` |
| a wrong `client_secret` | 401 | `invalid_client` `Unauthorized` |
| no `refresh_token` | 400 | `invalid_request` `Missing required parameter: refresh_token` |
| an unknown or revoked refresh token | 400 | `invalid_grant` `Token has been expired or revoked.` |
| not a form, a repeated parameter, a bad Content-Length | 400 | `invalid_request` |
| a body over 64 KiB | 413 | `invalid_request` |
| another method on `/token` | 405 | `invalid_request`, with `Allow: POST` |
| a POST after `fail_next(n, status)` | that 5xx | `internal_failure` |

The JWT-bearer grant: `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` and
`assertion=<JWT>`, no client credentials, as `google.oauth2.service_account.Credentials` sends
it (`with_subject(user)` for a Workspace user): an RS256 JWT whose header's `kid` is the key's
`private_key_id`, with `iss` (the service account's email), `sub` (the user, when delegated),
`scope`, `aud` (google-auth always sends https://oauth2.googleapis.com/token, whatever the
`token_uri`; the fake takes that or its own URL), `iat` and `exp`. Checked in this order (each
refusal a 400 `invalid_grant` unless it says otherwise):

- no `assertion`: 400 `invalid_request` `Missing required parameter: assertion`
- not a JWT (three base64url segments, JSON objects): `Bad Request`
- `iss` never a service account here: `Not a valid email or user ID.`
- `iss` a deleted service account: `Invalid grant: account not found`
- not RS256-signed by one of the account's keys (another key, a deleted one, an unknown `kid`):
  `Invalid JWT Signature.`
- `aud` another URL: `Invalid JWT: Failed audience check. The right audience is
  https://oauth2.googleapis.com/token`
- expired, `iat` in the future, no `iat` or `exp`, or `exp` over an hour after `iat` (5 minutes of
  skew allowed): `Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable
  timeframe. Check your iat and exp values and use a clock with skew to account for clock
  differences between systems.`
- no `scope`, or an empty one: 400 `invalid_scope` `Empty or missing scope not allowed.`
- a `sub` that is no user of a Workspace domain here (never was, or removed): `Invalid email or
  User ID`
- a `sub` whose domain has not delegated every requested scope to the account's client id:
  401 `unauthorized_client` `Client is unauthorized to retrieve access tokens using this method,
  or client not authorized for any of the scopes requested.`
- otherwise 200: `access_token` (for the `sub` user, or without `sub` for the service account
  itself, and the requested scopes), `expires_in`, `token_type`; no refresh token.

A suspended or archived user still gets a token (the delegation is the domain's, not the user's;
what the user may do is each service's to say). The accounts, their public keys, each domain's
users and the delegations its admin granted (Admin console > Security > API controls >
Domain-wide delegation: a client id and its scopes) live in a `standins.workspace.Workspace`,
which checks the assertions and which the fake Directory API (`standins.fakedirectory`) reads
too. `new_service_account` makes an RSA key, registers its public half and returns the JSON key
file Google would give (its `token_uri` and `auth_uri` pointing at this fake).

The consent flow: `GET /auth` with Google's query (`client_id`, a loopback `redirect_uri`,
`response_type=code`, the mail `scope`, `state`, a PKCE `code_challenge` with
`code_challenge_method=S256`, `login_hint`) consents at once as the `login_hint` account (or
`consent_as`) and redirects (302) to `redirect_uri?state=...&code=...&scope=...`, or with
`error=access_denied` when `consent` is False. `POST /token` with
`grant_type=authorization_code`, that `code` (once), the same `redirect_uri` and the
`code_verifier` answers a new refresh token (granted for that account) and an access token.

The refresh-grant texts down to `invalid_grant` and the JWT-bearer texts are Google's, as its
clients have reported them (docs/gmail-facts.md, "Domain-wide delegation"); the rest are this
fake's own, as are `Missing required parameter: assertion` (modelled on Google's answer to a
missing refresh token) and `Bad Request` as the answer to an assertion that is not a JWT (a text
Google gives with `invalid_grant`, for inputs it does not publish). The refresh token is not
repeated in the answer. Access tokens come from `standins.tokens`, signed with `token_secret`: the
fake Gmail verifies them with the same secret (and takes only those granted the mail scope), so
the two fakes share no state, even across processes. Client credentials are read from the form
only, as Google's own libraries send them.

For tests: `latency` delays every answer, `fail_next(n)` answers the next n POSTs with a 5xx,
`expires_in` sets the lifetime of the tokens issued from now on (0: expired at once), `clock`
is the endpoint's time (JWT checks and token lifetimes), and `request_count`,
`refresh_count(token)` and `requests` count and record what came in.
`misbehave(mode)` makes the endpoint hostile until `behave()`: every POST to the token URL (or
the next `times`) is answered as `mode` of `standins.hostile_oauth` says (a redirect, a flood, a
drip, an HTML page, any OAuth error), and recorded with that status.

`serve` runs one from a JSON file (all keys optional):

    {
      "client_id": "fake-client-id.apps.googleusercontent.com",
      "client_secret": "fake-client-secret",
      "grants": {"<refresh token>": "<email>"},
      "revoked": ["<refresh token>"],
      "token_secret": "<shared with the fake Gmail>",
      "expires_in": 3599,
      "consent_as": "<email that consents when the request has no login_hint>",
      "service_accounts": [
        {
          "client_email": "crawler@project.iam.gserviceaccount.com",
          "client_id": "<numeric client id>",
          "keys": {"<private_key_id>": "<public key PEM, or an X.509 certificate PEM>"}
        }
      ],
      "domains": {
        "example.com": {
          "users": [
            {"email": "alice@example.com", "suspended": false, "archived": false,
             "is_admin": false, "given_name": "Alice", "family_name": "Smith"}
          ],
          "delegations": {"<client id>": ["https://mail.google.com/"]}
        }
      }
    }

The fake Directory API's `serve` reads the same file (its `token_secret` and `domains`).

The HTTP plumbing (`standins.loopback`: a threaded server on loopback, started and stopped,
that reads forms and answers JSON) is shared with the fake Directory API.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import secrets
import threading
import time
import urllib.parse
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from standins import tokens
from standins.hostile_oauth import Misbehaviour
from standins.loopback import Answer, LoopbackService, Request, refusal, serve_until_stopped
from standins.workspace import (
    GOOGLE_TOKEN_URL,
    DomainConfig,
    DomainUser,
    ServiceAccount,
    ServiceAccountConfig,
    Workspace,
    domain_of,
    new_key,
    service_account_key_file,
    unverified_claim,
)

DEFAULT_CLIENT_ID = "fake-client-id.apps.googleusercontent.com"
DEFAULT_CLIENT_SECRET = "fake-client-secret"  # noqa: S105  # a fake's well-known test value
DEFAULT_EXPIRES_IN = 3599
SCOPE = tokens.MAIL_SCOPE
PATH = "/token"
CONSENT_PATH = "/auth"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"  # RFC 7523, section 2.1
RECORD_LIMIT = 10_000  # the newest requests kept in `requests`; the counters count them all

INVALID_GRANT = refusal(400, "invalid_grant", "Token has been expired or revoked.")
NOT_FOUND = refusal(404, "not_found", f"The token endpoint is {PATH}.")
METHOD_NOT_ALLOWED = Answer(
    405,
    {"error": "invalid_request", "error_description": "The token endpoint takes POST."},
    (("Allow", "POST"),),
)
# The JWT-bearer grant's refusals, in the order they are checked (docs/gmail-facts.md): this
# one here, the rest (`MALFORMED_ASSERTION` to `NOT_DELEGATED`) in `standins.workspace`.
NO_ASSERTION = refusal(400, "invalid_request", "Missing required parameter: assertion")


@dataclass(frozen=True)
class TokenRequest:
    """A request as recorded: what was asked (no client secret) and how it was answered."""

    method: str
    path: str
    status: int
    error: str | None
    grant_type: str | None
    client_id: str | None
    refresh_token: str | None
    issuer: str | None = None  # a JWT-bearer assertion's `iss` and `sub`, as claimed (unverified)
    subject: str | None = None


@dataclass(frozen=True)
class PendingCode:
    """An authorization code given out by the consent page, not yet exchanged."""

    email: str
    redirect_uri: str
    code_challenge: str


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge of a PKCE code verifier (RFC 7636)."""
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _loopback_http(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    try:
        return parts.scheme == "http" and ipaddress.ip_address(parts.hostname or "").is_loopback
    except ValueError:
        return parts.scheme == "http" and parts.hostname == "localhost"


class EndpointConfig(BaseModel):
    """The JSON file `serve` reads; see the module docstring."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str = DEFAULT_CLIENT_SECRET
    grants: dict[str, str] = Field(default_factory=dict)
    revoked: list[str] = Field(default_factory=list)
    token_secret: str = tokens.DEFAULT_SECRET
    expires_in: int = Field(default=DEFAULT_EXPIRES_IN, ge=0)
    consent_as: str | None = None
    service_accounts: list[ServiceAccountConfig] = Field(default_factory=list)
    domains: dict[str, DomainConfig] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _users_in_their_domain(self) -> Self:
        for name, domain in self.domains.items():
            for user in domain.users:
                if domain_of(user.email) != name.lower():
                    raise ValueError(f"user {user.email} is not in domain {name}")
            for client_id, scopes in domain.delegations.items():
                if not scopes:
                    raise ValueError(f"domain {name} delegates no scope to {client_id}")
        return self

    def workspace(self) -> Workspace:
        """The service accounts, users and delegations of this config."""
        workspace = Workspace()
        for account in self.service_accounts:
            workspace.add_service_account(account.client_email, account.client_id, account.keys)
        for name, domain in self.domains.items():
            for user in domain.users:
                workspace.add_user(**user.model_dump())
            for client_id, scopes in domain.delegations.items():
                workspace.delegate(name, client_id, scopes)
        return workspace

    @classmethod
    def load(cls, path: Path) -> EndpointConfig:
        """The config in `path`; ValueError naming the file and the problem."""
        try:
            return cls.model_validate_json(path.read_bytes())
        except (OSError, ValidationError) as error:
            raise ValueError(f"fake OAuth config {path}: {error}") from None


def _check_grant_type(form: Mapping[str, str]) -> Answer | None:
    grant_type = form.get("grant_type", "")
    if grant_type in {"refresh_token", "authorization_code", JWT_BEARER}:
        return None
    # Google's endpoint answers a missing grant_type as an unsupported empty one.
    return refusal(400, "unsupported_grant_type", f"Invalid grant_type: {grant_type}")


class FakeTokenEndpoint(LoopbackService):
    """Google's token endpoint for one OAuth client and a Google Workspace, serving while started
    (a context manager)."""

    name = "fake token endpoint"
    thread_name = "fake-oauth"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        token_secret: str = tokens.DEFAULT_SECRET,
        expires_in: int = DEFAULT_EXPIRES_IN,
        consent_as: str | None = None,
        workspace: Workspace | None = None,
    ) -> None:
        super().__init__(host, port)
        self.client_id = client_id
        self.consent_as = consent_as
        self.consent = True  # False: the user clicks "Cancel" on the consent page
        self.client_secret = client_secret
        self.token_secret = token_secret
        self.expires_in = expires_in
        self.latency = 0.0
        self.clock: Callable[[], float] = time.time  # the endpoint's time, in epoch seconds
        self.workspace = workspace if workspace is not None else Workspace()
        self._lock = threading.Lock()
        self._grants: dict[str, str] = {}
        self._codes: dict[str, PendingCode] = {}
        self._revoked: set[str] = set()
        self._failures: deque[int] = deque()  # statuses of the next injected failures
        self._misbehaviour: Misbehaviour | None = None
        self._misbehaving_left: int | None = None  # None: until `behave`
        self._total = 0
        self._per_refresh_token: Counter[str] = Counter()
        self._records: deque[TokenRequest] = deque(maxlen=RECORD_LIMIT)

    @classmethod
    def from_config(cls, config: EndpointConfig, host: str, port: int) -> FakeTokenEndpoint:
        """An endpoint with the client, grants, revocations and Workspace of `config`."""
        endpoint = cls(
            host,
            port,
            client_id=config.client_id,
            client_secret=config.client_secret,
            token_secret=config.token_secret,
            expires_in=config.expires_in,
            consent_as=config.consent_as,
            workspace=config.workspace(),
        )
        for refresh_token, email in config.grants.items():
            endpoint.add_grant(refresh_token, email)
        for refresh_token in config.revoked:
            endpoint.revoke(refresh_token)
        return endpoint

    @property
    def url(self) -> str:
        """The token URL, for CRAWLER_OAUTH_TOKEN_URL."""
        return f"{self.base_url}{PATH}"

    @property
    def consent_url(self) -> str:
        """The consent page URL, for CRAWLER_OAUTH_AUTH_URL."""
        return f"{self.base_url}{CONSENT_PATH}"

    def add_grant(self, refresh_token: str, email: str) -> None:
        """Let `refresh_token` get access tokens for `email` (again, if it was revoked)."""
        with self._lock:
            self._grants[refresh_token] = email
            self._revoked.discard(refresh_token)

    def revoke(self, refresh_token: str) -> None:
        """Refuse `refresh_token` from now on, as when the user removes the app's access."""
        with self._lock:
            self._revoked.add(refresh_token)

    # Google Workspace (`workspace` has the rest: keys, deletions, revoking a delegation)

    def add_service_account(
        self, client_email: str, client_id: str, keys: Mapping[str, str | bytes] | None = None
    ) -> ServiceAccount:
        """Register a service account with its public keys (PEM, or X.509 certificates) by
        `private_key_id`; its JWT-bearer assertions are checked against them."""
        return self.workspace.add_service_account(client_email, client_id, keys)

    def new_service_account(
        self,
        client_email: str | None = None,
        *,
        project_id: str = "fake-project",
        client_id: str | None = None,
    ) -> dict[str, str]:
        """A new service account with a new RSA key, registered here: its JSON key file as Google
        gives it (for `service_account.Credentials.from_service_account_info`), pointing at this
        endpoint. Delegate its `client_id` to a domain to act as that domain's users."""
        private_key, public_key = new_key()
        key_id = secrets.token_hex(20)
        client_id = client_id or str(10**20 + secrets.randbelow(10**20))
        client_email = client_email or (
            f"crawler-{secrets.token_hex(3)}@{project_id}.iam.gserviceaccount.com"
        )
        self.workspace.add_service_account(client_email, client_id, {key_id: public_key})
        return service_account_key_file(
            client_email,
            client_id,
            key_id,
            private_key,
            project_id=project_id,
            token_uri=self.url,
            auth_uri=self.consent_url,
        )

    def delegate(self, domain: str, client_id: str, scopes: Iterable[str]) -> None:
        """What the domain's admin grants in the Admin console: `client_id` may act as the
        domain's users for exactly `scopes` (replacing an earlier grant)."""
        self.workspace.delegate(domain, client_id, scopes)

    def add_domain_user(
        self,
        email: str,
        *,
        suspended: bool = False,
        archived: bool = False,
        is_admin: bool = False,
        given_name: str | None = None,
        family_name: str | None = None,
    ) -> DomainUser:
        """Add a user to the Workspace domain of `email` (or change their flags)."""
        return self.workspace.add_user(
            email,
            suspended=suspended,
            archived=archived,
            is_admin=is_admin,
            given_name=given_name,
            family_name=family_name,
        )

    def remove_domain_user(self, email: str) -> None:
        """Delete a user: assertions for them are refused from now on."""
        self.workspace.remove_user(email)

    # faults

    def fail_next(self, n: int, status: int = 503) -> None:
        """Answer the next `n` requests to the token URL with `status`, then normally again."""
        if n < 0 or not 500 <= status <= 599:
            raise ValueError(f"fail_next needs n >= 0 and a 5xx status, not {n}, {status}")
        with self._lock:
            self._failures.extend([status] * n)

    def misbehave(self, mode: Misbehaviour, times: int | None = None) -> None:
        """Answer POSTs to the token URL as `mode` does: the next `times`, or all until `behave`."""
        if times is not None and times < 1:
            raise ValueError(f"misbehave needs times >= 1 or None, not {times}")
        with self._lock:
            self._misbehaviour, self._misbehaving_left = mode, times

    def behave(self) -> None:
        """Answer as Google does again."""
        with self._lock:
            self._misbehaviour = self._misbehaving_left = None

    def misbehaving(self, request: Request) -> Misbehaviour | None:
        """The mode to answer `request` with (recorded with its status), or None: answer it."""
        if request.method != "POST" or request.path != PATH:
            return None
        with self._lock:
            mode = self._misbehaviour
            if mode is not None and self._misbehaving_left is not None:
                self._misbehaving_left -= 1
                if self._misbehaving_left <= 0:
                    self._misbehaviour = self._misbehaving_left = None
        if mode is not None:
            body = {"error": mode.error} if mode.error else {}
            self._record(request, Answer(mode.status, body))
        return mode

    # counters

    @property
    def request_count(self) -> int:
        """Every HTTP request answered so far, refusals and failures included."""
        with self._lock:
            return self._total

    def refresh_count(self, refresh_token: str) -> int:
        """The requests that carried `refresh_token`, whatever their answer."""
        with self._lock:
            return self._per_refresh_token[refresh_token]

    @property
    def requests(self) -> list[TokenRequest]:
        """The newest requests (up to RECORD_LIMIT), oldest first."""
        with self._lock:
            return list(self._records)

    # answering

    def answer(self, request: Request) -> Answer:
        """The answer to one request, recorded and delayed by `latency`."""
        answer = self._decide(request)
        self._record(request, answer)
        self._closing.wait(self.latency)
        return answer

    def _decide(self, request: Request) -> Answer:
        path, _, query = request.path.partition("?")
        if path == CONSENT_PATH and request.method == "GET":
            return self._consent(dict(urllib.parse.parse_qsl(query)))
        if request.path != PATH:
            return NOT_FOUND
        if request.method != "POST":
            return METHOD_NOT_ALLOWED
        failure = self._injected_failure()
        if failure is not None:
            return failure
        if request.problem is not None:
            return request.problem.answer
        return self._token(request.form)

    def _token(self, form: Mapping[str, str]) -> Answer:
        refused = _check_grant_type(form)
        if refused is not None:
            return refused
        if form.get("grant_type") == JWT_BEARER:  # no client credentials: the JWT is signed
            return self._jwt_grant(form)
        return self._check_client(form) or self._grant(form)

    def _injected_failure(self) -> Answer | None:
        with self._lock:
            if not self._failures:
                return None
            status = self._failures.popleft()
        return refusal(status, "internal_failure", HTTPStatus(status).phrase)

    def _check_client(self, form: Mapping[str, str]) -> Answer | None:
        client_id = form.get("client_id", "")
        client_secret = form.get("client_secret", "")
        if not client_id:
            return refusal(400, "invalid_request", "Could not determine client ID from request.")
        if client_id != self.client_id:
            return refusal(401, "invalid_client", "The OAuth client was not found.")
        if not client_secret:
            return refusal(400, "invalid_request", "client_secret is missing.")
        if client_secret != self.client_secret:
            return refusal(401, "invalid_client", "Unauthorized")
        return None

    def _consent(self, query: Mapping[str, str]) -> Answer:
        if query.get("client_id") != self.client_id:
            return refusal(401, "invalid_client", "The OAuth client was not found.")
        redirect_uri = query.get("redirect_uri", "")
        if not _loopback_http(redirect_uri):
            return refusal(400, "invalid_request", "redirect_uri must be a loopback http URL.")
        challenge = query.get("code_challenge", "")
        if query.get("code_challenge_method") != "S256" or not challenge:
            return refusal(400, "invalid_request", "A PKCE S256 code_challenge is required.")
        email = query.get("login_hint") or self.consent_as
        answer: dict[str, str] = {"state": query.get("state", "")}
        if query.get("response_type") != "code":
            answer["error"] = "unsupported_response_type"
        elif SCOPE not in query.get("scope", "").split():
            answer["error"] = "invalid_scope"
        elif not self.consent or email is None:
            answer["error"] = "access_denied"
        else:
            code = secrets.token_urlsafe(24)
            with self._lock:
                self._codes[code] = PendingCode(email, redirect_uri, challenge)
            answer |= {"code": code, "scope": SCOPE}
        location = f"{redirect_uri}?{urllib.parse.urlencode(answer)}"
        return Answer(302, {}, (("Location", location),))

    def _grant(self, form: Mapping[str, str]) -> Answer:
        if form.get("grant_type") == "authorization_code":
            return self._exchange(form)
        refresh_token = form.get("refresh_token", "")
        if not refresh_token:
            return refusal(400, "invalid_request", "Missing required parameter: refresh_token")
        with self._lock:
            email = None if refresh_token in self._revoked else self._grants.get(refresh_token)
            expires_in = self.expires_in
        if email is None:
            return INVALID_GRANT
        access_token = tokens.issue(email, self.clock() + expires_in, self.token_secret)
        body = {
            "access_token": access_token,
            "expires_in": expires_in,
            "scope": SCOPE,
            "token_type": "Bearer",
        }
        return Answer(200, body)

    def _exchange(self, form: Mapping[str, str]) -> Answer:
        with self._lock:
            pending = self._codes.pop(form.get("code", ""), None)  # a code works once
        if pending is None:
            return refusal(400, "invalid_grant", "Malformed auth code.")
        if form.get("redirect_uri") != pending.redirect_uri:
            return refusal(400, "redirect_uri_mismatch", "Bad Request")
        if pkce_challenge(form.get("code_verifier", "")) != pending.code_challenge:
            return refusal(400, "invalid_grant", "Invalid code verifier.")
        refresh_token = f"1//fake-{secrets.token_urlsafe(24)}"
        self.add_grant(refresh_token, pending.email)
        with self._lock:
            expires_in = self.expires_in
        access_token = tokens.issue(pending.email, self.clock() + expires_in, self.token_secret)
        body = {
            "access_token": access_token,
            "expires_in": expires_in,
            "refresh_token": refresh_token,
            "scope": SCOPE,
            "token_type": "Bearer",
        }
        return Answer(200, body)

    def _jwt_grant(self, form: Mapping[str, str]) -> Answer:
        assertion = form.get("assertion", "")
        if not assertion:
            return NO_ASSERTION
        now = self.clock()
        outcome = self.workspace.check_assertion(assertion, now, (GOOGLE_TOKEN_URL, self.url))
        if isinstance(outcome, Answer):
            return outcome
        with self._lock:
            expires_in = self.expires_in
        access_token = tokens.issue(
            outcome.email, now + expires_in, self.token_secret, scopes=outcome.scopes
        )
        body = {"access_token": access_token, "expires_in": expires_in, "token_type": "Bearer"}
        return Answer(200, body)

    def _record(self, request: Request, answer: Answer) -> None:
        refresh_token = request.form.get("refresh_token")
        grant_type = request.form.get("grant_type")
        assertion = request.form.get("assertion", "") if grant_type == JWT_BEARER else ""
        record = TokenRequest(
            method=request.method,
            path=request.path,
            status=answer.status,
            error=answer.error,
            grant_type=grant_type,
            client_id=request.form.get("client_id"),
            refresh_token=refresh_token,
            issuer=unverified_claim(assertion, "iss"),
            subject=unverified_claim(assertion, "sub"),
        )
        with self._lock:
            self._total += 1
            if refresh_token:
                self._per_refresh_token[refresh_token] += 1
            self._records.append(record)


def serve(host: str, port: int, config_path: str | Path) -> None:
    """Run an endpoint from the JSON config until SIGTERM or SIGINT; prints its URL once it
    listens."""
    serve_until_stopped(
        FakeTokenEndpoint.from_config(EndpointConfig.load(Path(config_path)), host, port)
    )
