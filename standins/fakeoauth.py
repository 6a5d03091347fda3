"""A stand-in for Google's OAuth2 endpoints over HTTP on loopback: the refresh-token grant, and
the installed-app consent flow (a consent page that answers at once, and the code exchange).

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

The consent flow: `GET /auth` with Google's query (`client_id`, a loopback `redirect_uri`,
`response_type=code`, the mail `scope`, `state`, a PKCE `code_challenge` with
`code_challenge_method=S256`, `login_hint`) consents at once as the `login_hint` account (or
`consent_as`) and redirects (302) to `redirect_uri?state=...&code=...&scope=...`, or with
`error=access_denied` when `consent` is False. `POST /token` with
`grant_type=authorization_code`, that `code` (once), the same `redirect_uri` and the
`code_verifier` answers a new refresh token (granted for that account) and an access token.

The error texts down to `invalid_grant` are Google's, as its clients have reported them; the rest
are this fake's own. The refresh token is not repeated in the answer. Access tokens come from
`standins.tokens`, signed with `token_secret`: the fake Gmail verifies them with the same
secret, so the two fakes share no state, even across processes. Client credentials are read from
the form only, as Google's own libraries send them.

For tests: `latency` delays every answer, `fail_next(n)` answers the next n POSTs with a 5xx,
`expires_in` sets the lifetime of the tokens issued from now on (0: expired at once), and
`request_count`, `refresh_count(token)` and `requests` count and record what came in.
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
      "consent_as": "<email that consents when the request has no login_hint>"
    }
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import logging
import secrets
import signal
import threading
import time
import urllib.parse
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from standins import tokens
from standins.hostile_oauth import Misbehaviour

logger = logging.getLogger(__name__)

DEFAULT_CLIENT_ID = "fake-client-id.apps.googleusercontent.com"
DEFAULT_CLIENT_SECRET = "fake-client-secret"  # noqa: S105  # a fake's well-known test value
DEFAULT_EXPIRES_IN = 3599
SCOPE = "https://mail.google.com/"
PATH = "/token"
CONSENT_PATH = "/auth"
FORM_TYPE = "application/x-www-form-urlencoded"
MAX_BODY = 64 * 1024
MAX_FIELDS = 32
RECORD_LIMIT = 10_000  # the newest requests kept in `requests`; the counters count them all
STOP_POLL_SECONDS = 0.01  # how long `stop` waits for the serving loop to notice; tests stop often
IDLE_TIMEOUT = 10.0  # a client that connects and sends nothing does not hold a thread for ever
JSON_HEADERS = (
    ("Content-Type", "application/json; charset=utf-8"),
    ("Cache-Control", "no-cache, no-store, max-age=0, must-revalidate"),
    ("Pragma", "no-cache"),
)


@dataclass(frozen=True)
class Answer:
    """An HTTP status, a JSON body and any extra headers."""

    status: int
    body: Mapping[str, object]
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def error(self) -> str | None:
        """The OAuth error code, when this is a refusal."""
        error = self.body.get("error")
        return error if isinstance(error, str) else None


def refusal(status: int, error: str, description: str) -> Answer:
    """An OAuth error answer."""
    return Answer(status, {"error": error, "error_description": description})


INVALID_GRANT = refusal(400, "invalid_grant", "Token has been expired or revoked.")
NOT_FOUND = refusal(404, "not_found", f"The token endpoint is {PATH}.")
METHOD_NOT_ALLOWED = Answer(
    405,
    {"error": "invalid_request", "error_description": "The token endpoint takes POST."},
    (("Allow", "POST"),),
)


class MalformedRequest(Exception):
    """A request body that is not a form the endpoint can read."""

    def __init__(self, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.answer = refusal(status, "invalid_request", description)


@dataclass(frozen=True)
class Request:
    """What the endpoint needs of an HTTP request; `problem` when its body could not be read."""

    method: str
    path: str
    form: Mapping[str, str] = field(default_factory=dict)
    problem: MalformedRequest | None = None


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

    @classmethod
    def load(cls, path: Path) -> EndpointConfig:
        """The config in `path`; ValueError naming the file and the problem."""
        try:
            return cls.model_validate_json(path.read_bytes())
        except (OSError, ValidationError) as error:
            raise ValueError(f"fake OAuth config {path}: {error}") from None


def parse_form(content_type: str | None, body: bytes) -> dict[str, str]:
    """The parameters of a form body; MalformedRequest when it is not one."""
    media_type = (content_type or FORM_TYPE).partition(";")[0].strip().lower()
    if media_type != FORM_TYPE:
        raise MalformedRequest(f"The request body must be {FORM_TYPE}, not {media_type}.")
    try:
        pairs = urllib.parse.parse_qsl(
            body.decode(),
            keep_blank_values=True,
            strict_parsing=True,
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except ValueError:  # UnicodeDecodeError is a ValueError too
        raise MalformedRequest("The request body is not a valid form.") from None
    names = Counter(name for name, _ in pairs)
    repeated = sorted(name for name, count in names.items() if count > 1)
    if repeated:
        raise MalformedRequest(f"Parameter given more than once: {repeated[0]}")
    return dict(pairs)


def read_form(headers: Message, read: Callable[[int], bytes]) -> dict[str, str]:
    """Read and parse a request's form body, of at most MAX_BODY bytes."""
    raw_length = headers.get("Content-Length", "0")
    try:
        length = int(raw_length)
    except ValueError:
        raise MalformedRequest(f"Invalid Content-Length: {raw_length}") from None
    if length < 0:
        raise MalformedRequest(f"Invalid Content-Length: {raw_length}")
    if length > MAX_BODY:
        raise MalformedRequest(f"The request body is over {MAX_BODY} bytes.", status=413)
    return parse_form(headers.get("Content-Type"), read(length))


def _check_grant_type(form: Mapping[str, str]) -> Answer | None:
    grant_type = form.get("grant_type", "")
    if grant_type in {"refresh_token", "authorization_code"}:
        return None
    # Google's endpoint answers a missing grant_type as an unsupported empty one.
    return refusal(400, "unsupported_grant_type", f"Invalid grant_type: {grant_type}")


class FakeTokenEndpoint:
    """Google's token endpoint for one OAuth client, serving while started (a context manager)."""

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
    ) -> None:
        self.client_id = client_id
        self.consent_as = consent_as
        self.consent = True  # False: the user clicks "Cancel" on the consent page
        self.client_secret = client_secret
        self.token_secret = token_secret
        self.expires_in = expires_in
        self.latency = 0.0
        self._address = (host, port)
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
        self._closing = threading.Event()
        self._server: _TokenServer | None = None
        self._serving: threading.Thread | None = None

    @classmethod
    def from_config(cls, config: EndpointConfig, host: str, port: int) -> FakeTokenEndpoint:
        """An endpoint with the client, grants and revocations of `config`."""
        endpoint = cls(
            host,
            port,
            client_id=config.client_id,
            client_secret=config.client_secret,
            token_secret=config.token_secret,
            expires_in=config.expires_in,
            consent_as=config.consent_as,
        )
        for refresh_token, email in config.grants.items():
            endpoint.add_grant(refresh_token, email)
        for refresh_token in config.revoked:
            endpoint.revoke(refresh_token)
        return endpoint

    @property
    def port(self) -> int:
        """The port it listens on."""
        if self._server is None:
            raise RuntimeError("the fake token endpoint is not running")
        port: int = self._server.server_address[1]
        return port

    @property
    def url(self) -> str:
        """The token URL, for CRAWLER_OAUTH_TOKEN_URL."""
        return f"http://{self._address[0]}:{self.port}{PATH}"

    @property
    def consent_url(self) -> str:
        """The consent page URL, for CRAWLER_OAUTH_AUTH_URL."""
        return f"http://{self._address[0]}:{self.port}{CONSENT_PATH}"

    def start(self) -> None:
        """Listen, and answer every connection from a daemon thread of its own."""
        if self._server is not None:
            raise RuntimeError("the fake token endpoint is already running")
        self._closing.clear()
        self._server = _TokenServer(self._address, self)
        self._serving = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": STOP_POLL_SECONDS},
            name=f"fake-oauth:{self.port}",
            daemon=True,
        )
        self._serving.start()

    def stop(self) -> None:
        """Stop listening; requests being delayed by `latency` are answered at once."""
        server, serving = self._server, self._serving
        self._server = self._serving = None
        if server is not None and serving is not None:
            self._closing.set()
            server.shutdown()
            server.server_close()
            serving.join()

    def __enter__(self) -> FakeTokenEndpoint:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def add_grant(self, refresh_token: str, email: str) -> None:
        """Let `refresh_token` get access tokens for `email` (again, if it was revoked)."""
        with self._lock:
            self._grants[refresh_token] = email
            self._revoked.discard(refresh_token)

    def revoke(self, refresh_token: str) -> None:
        """Refuse `refresh_token` from now on, as when the user removes the app's access."""
        with self._lock:
            self._revoked.add(refresh_token)

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

    @property
    def closing(self) -> threading.Event:
        """Set while the endpoint stops: a slow answer stops with it."""
        return self._closing

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
        form = request.form
        return _check_grant_type(form) or self._check_client(form) or self._grant(form)

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
        access_token = tokens.issue(email, time.time() + expires_in, self.token_secret)
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
        access_token = tokens.issue(pending.email, time.time() + expires_in, self.token_secret)
        body = {
            "access_token": access_token,
            "expires_in": expires_in,
            "refresh_token": refresh_token,
            "scope": SCOPE,
            "token_type": "Bearer",
        }
        return Answer(200, body)

    def _record(self, request: Request, answer: Answer) -> None:
        refresh_token = request.form.get("refresh_token")
        record = TokenRequest(
            method=request.method,
            path=request.path,
            status=answer.status,
            error=answer.error,
            grant_type=request.form.get("grant_type"),
            client_id=request.form.get("client_id"),
            refresh_token=refresh_token,
        )
        with self._lock:
            self._total += 1
            if refresh_token:
                self._per_refresh_token[refresh_token] += 1
            self._records.append(record)


class _TokenServer(ThreadingHTTPServer):
    """The listening socket, answering with the endpoint it serves."""

    # The default backlog of 5 drops bursts of connections, which then retry a second later.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], endpoint: FakeTokenEndpoint) -> None:
        super().__init__(address, _TokenRequestHandler)
        self.endpoint = endpoint

    def handle_error(self, request: object, client_address: object) -> None:
        logger.exception("fake token endpoint dropped the connection of %s", client_address)


class _TokenRequestHandler(BaseHTTPRequestHandler):
    """One HTTP request (HTTP/1.0: the connection closes after the answer)."""

    server: _TokenServer
    server_version = "ESF"  # what Google's front end calls itself
    sys_version = ""
    timeout = IDLE_TIMEOUT

    def do_POST(self) -> None:
        try:
            request = Request("POST", self.path, read_form(self.headers, self.rfile.read))
        except MalformedRequest as problem:
            request = Request("POST", self.path, problem=problem)
        endpoint = self.server.endpoint
        mode = endpoint.misbehaving(request)
        if mode is not None:
            self.close_connection = True
            mode.write(self.wfile, endpoint.closing)
            return
        self._reply(endpoint.answer(request))

    def do_GET(self) -> None:
        self._reply(self.server.endpoint.answer(Request(self.command, self.path)))

    do_PUT = do_DELETE = do_PATCH = do_GET

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def _reply(self, answer: Answer) -> None:
        body = json.dumps(answer.body, indent=2).encode()
        self.send_response(answer.status)
        for name, value in (*JSON_HEADERS, *answer.headers):
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(host: str, port: int, config_path: str | Path) -> None:
    """Run an endpoint from the JSON config until SIGTERM or SIGINT; prints its URL once it listens.

    Called from the main thread: the signals are blocked before the server's threads start, so
    that they inherit the mask and `sigwait` here receives them.
    """
    endpoint = FakeTokenEndpoint.from_config(EndpointConfig.load(Path(config_path)), host, port)
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    try:
        with endpoint:
            print(endpoint.url, flush=True)
            signal.sigwait(stop_signals)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
