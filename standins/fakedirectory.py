"""A stand-in for the Admin SDK Directory API's users.list over HTTP on loopback: the users of a
Google Workspace domain, as its admin (or a service account acting as its admin through
domain-wide delegation) lists them.

`GET /admin/directory/v1/users?domain=D` (or `customer=my_customer`, or the domain's customer
id), with `maxResults` (1 to 500, default 100) and the `pageToken` of the page before, answers as
https://admin.googleapis.com/admin/directory/v1/users does:
`{"kind": "admin#directory#users", "etag": ..., "users": [...], "nextPageToken": ...}`, users by
primary email, `users` left out when there are none and `nextPageToken` on every page but the
last. Each user: `kind`, `id`, `primaryEmail`, `name` (`givenName`, `familyName`, `fullName`),
`isAdmin`, `isDelegatedAdmin`, `suspended` (with `suspensionReason`), `archived`, `emails`,
`customerId`, `orgUnitPath`, `isMailboxSetup`, `includeInGlobalAddressList`.

The request needs `Authorization: Bearer <access token>`, a token of `standins.tokens` signed
with `token_secret` (what the fake token endpoint issues) for an admin of that domain, granted
https://www.googleapis.com/auth/admin.directory.user.readonly (or the read-write
.../admin.directory.user). Refusals are Google's JSON errors
(`{"error": {"code", "message", "errors": [{"message", "domain", "reason", ...}], "status"}}`),
each given here as its status, `message` and (`reason`):

- no Authorization, or not Bearer: 401 `Request is missing required authentication credential.
  Expected OAuth 2 access token, login cookie or other valid authentication credential. See
  https://developers.google.com/identity/sign-in/web/devconsole-project.` (`required`)
- a forged, malformed or expired token: 401 `Request had invalid authentication credentials.
  Expected OAuth 2 access token, ...` (the same) (`authError`)
- a token granted neither scope: 403 `Request had insufficient authentication scopes.`
  (`insufficientPermissions`)
- a token of a user who is no admin (or suspended, or no user at all), or a `domain` or
  `customer` not the admin's: 403 `Not Authorized to access this resource/api` (`forbidden`)
- neither `domain` nor `customer`: 400 `Bad Request` (`badRequest`)
- `maxResults` not within 1..500: 400 `Invalid value '<it>'. Values must be within the range:
  [1, 500]` (`invalidParameter`)
- a `pageToken` it did not give: 400 `Invalid Input` (`invalid`)
- `query`, or `showDeleted=true` (not modelled): 400, the fake's own (`invalid`)
- another path; another method: 404; 405, the fake's own

A 401 carries `WWW-Authenticate: Bearer realm="https://accounts.google.com/"` (with
`error="invalid_token"` for a bad token), a 403 for scopes `error="insufficient_scope"` and the
scopes that would do. The texts down to `Invalid value` are Google's (docs/gmail-facts.md,
"Domain-wide delegation"); `Invalid Input` and the rest are the fake's own. `fields`, `orderBy`,
`projection`, `viewType`, `alt` and `prettyPrint` are accepted and ignored (the answer is always
the full resource, by email).

The users come from a `standins.workspace.Workspace`: share the token endpoint's in-process
(`FakeDirectory.for_endpoint(oauth)`), or, as a process, read the token endpoint's JSON config
(`serve(host, port, config_path)`: its `token_secret` and `domains`). The HTTP plumbing is the
token endpoint's too (`standins.loopback.LoopbackService`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from standins import tokens
from standins.fakeoauth import EndpointConfig, FakeTokenEndpoint
from standins.loopback import Answer, LoopbackService, Request, serve_until_stopped
from standins.workspace import DomainUser, Workspace

USERS_PATH = "/admin/directory/v1/users"
READONLY_SCOPE = "https://www.googleapis.com/auth/admin.directory.user.readonly"
USER_SCOPE = "https://www.googleapis.com/auth/admin.directory.user"
LIST_SCOPES = (USER_SCOPE, READONLY_SCOPE)  # either lets an admin list users
MY_CUSTOMER = "my_customer"
DEFAULT_MAX_RESULTS = 100
MAX_RESULTS = 500
RECORD_LIMIT = 10_000
REALM = 'Bearer realm="https://accounts.google.com/"'
API_HEADERS = (
    ("Content-Type", "application/json; charset=UTF-8"),
    ("Vary", "Origin"),
    ("Vary", "X-Origin"),
    ("Vary", "Referer"),
    ("Cache-Control", "private"),
)
_CREDENTIAL_HELP = (
    "Expected OAuth 2 access token, login cookie or other valid authentication credential. "
    "See https://developers.google.com/identity/sign-in/web/devconsole-project."
)
_PAGE_TOKEN_PREFIX = "after:"  # noqa: S105  # not a secret: where a page starts


def api_error(
    status: int,
    message: str,
    reason: str,
    *,
    detail: str | None = None,
    status_name: str | None = None,
    location: tuple[str, str] | None = None,
    headers: tuple[tuple[str, str], ...] = (),
) -> Answer:
    """A Google API error: `message` on top, one error of `reason` (its own `detail` message, or
    the same), with `location` (where, and its type) and a `status` name when given."""
    error: dict[str, str] = {"message": detail or message, "domain": "global", "reason": reason}
    if location is not None:
        error |= {"location": location[0], "locationType": location[1]}
    body: dict[str, object] = {"code": status, "message": message, "errors": [error]}
    if status_name is not None:
        body["status"] = status_name
    return Answer(status, {"error": body}, headers)


MISSING_CREDENTIALS = api_error(
    401,
    f"Request is missing required authentication credential. {_CREDENTIAL_HELP}",
    "required",
    detail="Login Required.",
    status_name="UNAUTHENTICATED",
    location=("Authorization", "header"),
    headers=(("WWW-Authenticate", REALM),),
)
INVALID_CREDENTIALS = api_error(
    401,
    f"Request had invalid authentication credentials. {_CREDENTIAL_HELP}",
    "authError",
    detail="Invalid Credentials",
    status_name="UNAUTHENTICATED",
    location=("Authorization", "header"),
    headers=(("WWW-Authenticate", f'{REALM}, error="invalid_token"'),),
)
INSUFFICIENT_SCOPES = api_error(
    403,
    "Request had insufficient authentication scopes.",
    "insufficientPermissions",
    detail="Insufficient Permission",
    status_name="PERMISSION_DENIED",
    headers=(
        (
            "WWW-Authenticate",
            f'{REALM}, error="insufficient_scope", scope="{" ".join(LIST_SCOPES)}"',
        ),
    ),
)
NOT_AUTHORIZED = api_error(403, "Not Authorized to access this resource/api", "forbidden")
BAD_REQUEST = api_error(400, "Bad Request", "badRequest")
BAD_PAGE_TOKEN = api_error(400, "Invalid Input", "invalid")
NOT_FOUND = api_error(404, f"The fake directory serves {USERS_PATH} only.", "notFound")
METHOD_NOT_ALLOWED = api_error(
    405, "The fake directory lists users (GET) only.", "badRequest", headers=(("Allow", "GET"),)
)


def _bad_max_results(raw: str) -> Answer:
    return api_error(
        400,
        f"Invalid value '{raw}'. Values must be within the range: [1, {MAX_RESULTS}]",
        "invalidParameter",
        location=("maxResults", "parameter"),
    )


def _not_modelled(parameter: str) -> Answer:
    return api_error(400, f"The fake directory does not filter users ({parameter}).", "invalid")


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def user_id(email: str) -> str:
    """A user's immutable id: 21 digits, as Google's, the same for an email every time."""
    return str(10**20 + int.from_bytes(_digest(email.lower())[:8], "big") % 10**20)


def customer_id(domain: str) -> str:
    """A domain's customer id (`C` and 8 letters or digits, as Google's)."""
    number = int.from_bytes(_digest(domain.lower())[:8], "big")
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
    letters = ""
    for _ in range(7):
        number, digit = divmod(number, len(alphabet))
        letters += alphabet[digit]
    return f"C0{letters}"


def user_resource(user: DomainUser) -> dict[str, object]:
    """A user as users.list gives it."""
    resource: dict[str, object] = {
        "kind": "admin#directory#user",
        "id": user_id(user.email),
        "primaryEmail": user.email,
        "name": {
            "givenName": user.given_name,
            "familyName": user.family_name,
            "fullName": f"{user.given_name} {user.family_name}".strip(),
        },
        "isAdmin": user.is_admin,
        "isDelegatedAdmin": False,
        "suspended": user.suspended,
        "archived": user.archived,
        "emails": [{"address": user.email, "primary": True}],
        "customerId": customer_id(user.domain),
        "orgUnitPath": "/",
        "isMailboxSetup": True,
        "includeInGlobalAddressList": True,
    }
    if user.suspended:
        resource["suspensionReason"] = "ADMIN"
    return resource


def _etag(value: object) -> str:
    digest = base64.urlsafe_b64encode(_digest(json.dumps(value, sort_keys=True))[:20]).decode()
    return f'"{digest.rstrip("=")}"'


def _page_token(after: str) -> str:
    return base64.urlsafe_b64encode(f"{_PAGE_TOKEN_PREFIX}{after}".encode()).decode().rstrip("=")


def _page_start(page_token: str | None) -> str | Answer | None:
    """The email a page starts after, None for the first page, or the refusal of a bad token."""
    if page_token is None:
        return None
    try:
        text = base64.urlsafe_b64decode(page_token + "=" * (-len(page_token) % 4)).decode()
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors too
        return BAD_PAGE_TOKEN
    if not text.startswith(_PAGE_TOKEN_PREFIX):
        return BAD_PAGE_TOKEN
    return text[len(_PAGE_TOKEN_PREFIX) :]


def _max_results(raw: str | None) -> int | Answer:
    if raw is None:
        return DEFAULT_MAX_RESULTS
    try:
        value = int(raw)
    except ValueError:
        return _bad_max_results(raw)
    return value if 1 <= value <= MAX_RESULTS else _bad_max_results(raw)


@dataclass(frozen=True)
class DirectoryRequest:
    """A request as recorded: what was asked, by whom (when the token was good) and the answer."""

    method: str
    path: str
    status: int
    reason: str | None
    caller: str | None


class FakeDirectory(LoopbackService):
    """The Directory API's users.list over a `Workspace`, serving while started (a context
    manager)."""

    name = "fake directory"
    thread_name = "fake-directory"
    reply_headers = API_HEADERS

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        workspace: Workspace | None = None,
        token_secret: str = tokens.DEFAULT_SECRET,
    ) -> None:
        super().__init__(host, port)
        self.workspace = workspace if workspace is not None else Workspace()
        self.token_secret = token_secret
        self.clock: Callable[[], float] = time.time  # what tokens' expiry is checked against
        self._lock = threading.Lock()
        self._records: deque[DirectoryRequest] = deque(maxlen=RECORD_LIMIT)

    @classmethod
    def for_endpoint(
        cls, endpoint: FakeTokenEndpoint, host: str = "127.0.0.1", port: int = 0
    ) -> FakeDirectory:
        """A directory of the token endpoint's Workspace that takes its access tokens."""
        return cls(host, port, workspace=endpoint.workspace, token_secret=endpoint.token_secret)

    @classmethod
    def from_config(cls, config: EndpointConfig, host: str, port: int) -> FakeDirectory:
        """A directory of the domains of the token endpoint's `config`, taking its tokens."""
        return cls(host, port, workspace=config.workspace(), token_secret=config.token_secret)

    @property
    def url(self) -> str:
        """The users.list URL."""
        return f"{self.base_url}{USERS_PATH}"

    @property
    def root_url(self) -> str:
        """The API's root URL, as client libraries take it (`rootUrl`)."""
        return f"{self.base_url}/"

    @property
    def requests(self) -> list[DirectoryRequest]:
        """The newest requests (up to RECORD_LIMIT), oldest first."""
        with self._lock:
            return list(self._records)

    def answer(self, request: Request) -> Answer:
        """The answer to one request, recorded."""
        caller: DomainUser | None = None
        path, _, query = request.path.partition("?")
        if path != USERS_PATH:
            answer = NOT_FOUND
        elif request.method != "GET":
            answer = METHOD_NOT_ALLOWED
        else:
            authorized = self._authorize(request.authorization)
            if isinstance(authorized, Answer):
                answer = authorized
            else:
                caller = authorized
                answer = self._list(caller, dict(urllib.parse.parse_qsl(query)))
        error = answer.body.get("error")
        reason = None
        if isinstance(error, Mapping) and isinstance(error.get("errors"), list):
            reason = error["errors"][0].get("reason")
        record = DirectoryRequest(
            request.method, request.path, answer.status, reason, caller.email if caller else None
        )
        with self._lock:
            self._records.append(record)
        return answer

    def _authorize(self, authorization: str | None) -> DomainUser | Answer:
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return MISSING_CREDENTIALS
        claims = tokens.read(token.strip(), self.clock(), self.token_secret)
        if claims is None:
            return INVALID_CREDENTIALS
        if not claims.scopes.intersection(LIST_SCOPES):
            return INSUFFICIENT_SCOPES
        user = self.workspace.user(claims.email)
        if user is None or not user.is_admin or user.suspended:
            return NOT_AUTHORIZED
        return user

    def _list(self, admin: DomainUser, params: Mapping[str, str]) -> Answer:
        refused = _refuse_listing(admin, params)
        if refused is not None:
            return refused
        max_results = _max_results(params.get("maxResults"))
        after = _page_start(params.get("pageToken"))
        if isinstance(max_results, Answer):
            return max_results
        if isinstance(after, Answer):
            return after
        users = self.workspace.users(admin.domain)
        if after is not None:
            users = [user for user in users if user.email.lower() > after]
        page = [user_resource(user) for user in users[:max_results]]
        body: dict[str, object] = {"kind": "admin#directory#users", "etag": _etag(page)}
        if page:
            body["users"] = page
        if len(users) > max_results:
            body["nextPageToken"] = _page_token(users[max_results - 1].email.lower())
        return Answer(200, body)


def _refuse_listing(admin: DomainUser, params: Mapping[str, str]) -> Answer | None:
    """The refusal of a listing `admin` may not make, or the fake does not model."""
    domain, customer = params.get("domain"), params.get("customer")
    if not domain and not customer:
        return BAD_REQUEST
    if domain and domain.lower() != admin.domain:
        return NOT_AUTHORIZED
    if not domain and customer not in {MY_CUSTOMER, customer_id(admin.domain)}:
        return NOT_AUTHORIZED
    if "query" in params:
        return _not_modelled("query")
    if params.get("showDeleted", "false").lower() == "true":
        return _not_modelled("showDeleted")
    return None


def serve(host: str, port: int, config_path: str | Path) -> None:
    """Run a directory from the token endpoint's JSON config (its `token_secret` and `domains`)
    until SIGTERM or SIGINT; prints its users.list URL once it listens."""
    config = EndpointConfig.load(Path(config_path))
    serve_until_stopped(FakeDirectory.from_config(config, host, port))
