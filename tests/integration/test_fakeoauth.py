"""The fake token endpoint over HTTP: refreshes, the JWT-bearer grant of domain-wide delegation,
Google's refusals, faults, counters, `serve`."""

from __future__ import annotations

import base64
import datetime
import http.client
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import google.auth.transport.requests
import pytest
import requests
from google.auth import crypt, jwt
from google.auth.exceptions import RefreshError
from google.oauth2 import service_account
from imapclient import IMAPClient
from oauthlib.oauth2 import InvalidClientError, InvalidGrantError
from requests_oauthlib import OAuth2Session

from standins import tokens
from standins.fakegmail import FakeGmail
from standins.fakeoauth import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    JWT_BEARER,
    SCOPE,
    EndpointConfig,
    FakeTokenEndpoint,
    pkce_challenge,
)
from standins.loopback import MalformedRequest, parse_form
from standins.workspace import GOOGLE_TOKEN_URL, new_key, service_account_key_file

pytestmark = pytest.mark.integration

EMAIL = "alice@example.com"
REFRESH_TOKEN = "1//alice-refresh-token"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def endpoint() -> Iterator[FakeTokenEndpoint]:
    with FakeTokenEndpoint() as endpoint:
        endpoint.add_grant(REFRESH_TOKEN, EMAIL)
        yield endpoint


@pytest.fixture
def oauth_session(monkeypatch: pytest.MonkeyPatch) -> Iterator[OAuth2Session]:
    """A requests-oauthlib session; the fake listens on plain HTTP, which oauthlib refuses."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    with OAuth2Session(FakeTokenEndpoint().client_id, scope=[SCOPE]) as session:
        yield session


def refresh(endpoint: FakeTokenEndpoint, **changes: str | None) -> requests.Response:
    """A refresh request as Google documents it; a change of None leaves that field out."""
    form: dict[str, str | None] = {
        "grant_type": "refresh_token",
        "refresh_token": REFRESH_TOKEN,
        "client_id": endpoint.client_id,
        "client_secret": endpoint.client_secret,
        **changes,
    }
    data = {name: value for name, value in form.items() if value is not None}
    return requests.post(endpoint.url, data=data, timeout=10)


def post_raw(
    endpoint: FakeTokenEndpoint, headers: dict[str, str], body: bytes
) -> requests.Response:
    return requests.post(endpoint.url, data=body, headers=headers, timeout=10)


def oauthlib_refresh(
    session: OAuth2Session, endpoint: FakeTokenEndpoint, client_secret: str | None = None
) -> dict[str, object]:
    token: dict[str, object] = session.refresh_token(
        endpoint.url,
        refresh_token=REFRESH_TOKEN,
        client_id=endpoint.client_id,
        client_secret=client_secret or endpoint.client_secret,
        timeout=10,
    )
    return token


def assert_refused(response: requests.Response, status: int, error: str, description: str) -> None:
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert response.json() == {"error": error, "error_description": description}


def test_a_plain_post_gets_a_token_that_the_fake_gmail_accepts(
    endpoint: FakeTokenEndpoint,
) -> None:
    response = refresh(endpoint)

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    answer = response.json()
    assert answer.keys() == {"access_token", "expires_in", "scope", "token_type"}
    assert (answer["expires_in"], answer["scope"], answer["token_type"]) == (3599, SCOPE, "Bearer")
    now = time.time()
    assert tokens.verify(answer["access_token"], now) == EMAIL
    assert tokens.verify(answer["access_token"], now + 3600) is None
    assert tokens.verify(answer["access_token"], now, secret="another secret") is None


def test_requests_oauthlib_refreshes_and_keeps_its_refresh_token(
    endpoint: FakeTokenEndpoint, oauth_session: OAuth2Session
) -> None:
    token = oauthlib_refresh(oauth_session, endpoint)

    assert tokens.verify(str(token["access_token"]), time.time()) == EMAIL
    assert token["expires_in"] == 3599
    assert token["refresh_token"] == REFRESH_TOKEN  # Google does not repeat it: the client keeps it
    [request] = endpoint.requests
    assert (request.grant_type, request.client_id, request.status) == (
        "refresh_token",
        endpoint.client_id,
        200,
    )


def test_the_token_secret_is_the_one_given(endpoint: FakeTokenEndpoint) -> None:
    with FakeTokenEndpoint(token_secret="shared with gmail") as other:
        other.add_grant(REFRESH_TOKEN, EMAIL)
        access_token = refresh(other).json()["access_token"]

    assert tokens.verify(access_token, time.time(), secret="shared with gmail") == EMAIL
    assert tokens.verify(access_token, time.time()) is None


@pytest.mark.parametrize("refresh_token", [REFRESH_TOKEN, "1//never-granted"])
def test_a_revoked_or_unknown_refresh_token_is_invalid_grant(
    endpoint: FakeTokenEndpoint, refresh_token: str
) -> None:
    endpoint.revoke(REFRESH_TOKEN)

    response = refresh(endpoint, refresh_token=refresh_token)

    assert_refused(response, 400, "invalid_grant", "Token has been expired or revoked.")


def test_oauthlib_raises_invalid_grant_for_a_revoked_token(
    endpoint: FakeTokenEndpoint, oauth_session: OAuth2Session
) -> None:
    endpoint.revoke(REFRESH_TOKEN)

    with pytest.raises(InvalidGrantError, match="Token has been expired or revoked"):
        oauthlib_refresh(oauth_session, endpoint)


def test_a_grant_given_again_works_again(endpoint: FakeTokenEndpoint) -> None:
    endpoint.revoke(REFRESH_TOKEN)
    endpoint.add_grant(REFRESH_TOKEN, "alice@example.org")

    access_token = refresh(endpoint).json()["access_token"]

    assert tokens.verify(access_token, time.time()) == "alice@example.org"


NO_CLIENT_ID = "Could not determine client ID from request."
NO_REFRESH_TOKEN = "Missing required parameter: refresh_token"


@pytest.mark.parametrize(
    ("changes", "status", "error", "description"),
    [
        ({"client_id": "other"}, 401, "invalid_client", "The OAuth client was not found."),
        ({"client_secret": "wrong"}, 401, "invalid_client", "Unauthorized"),
        ({"client_id": None}, 400, "invalid_request", NO_CLIENT_ID),
        ({"client_secret": None}, 400, "invalid_request", "client_secret is missing."),
        ({"grant_type": None}, 400, "unsupported_grant_type", "Invalid grant_type: "),
        ({"grant_type": "password"}, 400, "unsupported_grant_type", "Invalid grant_type: password"),
        ({"refresh_token": None}, 400, "invalid_request", NO_REFRESH_TOKEN),
        ({"refresh_token": ""}, 400, "invalid_request", NO_REFRESH_TOKEN),
    ],
)
def test_refusals_are_googles(
    endpoint: FakeTokenEndpoint,
    changes: dict[str, str | None],
    status: int,
    error: str,
    description: str,
) -> None:
    assert_refused(refresh(endpoint, **changes), status, error, description)


def test_oauthlib_raises_invalid_client_for_a_wrong_secret(
    endpoint: FakeTokenEndpoint, oauth_session: OAuth2Session
) -> None:
    with pytest.raises(InvalidClientError, match="Unauthorized"):
        oauthlib_refresh(oauth_session, endpoint, client_secret="wrong")


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        (
            {"Content-Type": "application/json"},
            json.dumps({"grant_type": "refresh_token"}).encode(),
        ),
        ({"Content-Type": "text/plain"}, b"grant_type=refresh_token"),
        ({"Content-Type": FORM}, b"grant_type=refresh_token&refresh_token"),
        ({"Content-Type": FORM}, b"grant_type=refresh_token&&client_id=x"),
        ({"Content-Type": FORM}, b"grant_type=refresh_token&refresh_token=%ff%fe"),
        ({"Content-Type": FORM}, b"grant_type=refresh_token&refresh_token=\xff"),
        ({"Content-Type": FORM}, b"grant_type=refresh_token&grant_type=refresh_token"),
        ({"Content-Type": FORM}, b"&".join(b"f%d=1" % n for n in range(100))),
    ],
)
def test_malformed_bodies_are_invalid_request_and_the_endpoint_goes_on(
    endpoint: FakeTokenEndpoint, headers: dict[str, str], body: bytes
) -> None:
    response = post_raw(endpoint, headers, body)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert refresh(endpoint).status_code == 200


@pytest.mark.parametrize(("length", "status"), [("abc", 400), ("-5", 400), ("1000000", 413)])
def test_a_bad_content_length_is_refused_without_reading(
    endpoint: FakeTokenEndpoint, length: str, status: int
) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=10)
    try:
        connection.putrequest("POST", "/token")
        connection.putheader("Content-Type", FORM)
        connection.putheader("Content-Length", length)
        connection.endheaders()
        response = connection.getresponse()
        answer = json.loads(response.read())
    finally:
        connection.close()

    assert response.status == status
    assert answer["error"] == "invalid_request"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_other_methods_are_405(endpoint: FakeTokenEndpoint, method: str) -> None:
    response = requests.request(method, endpoint.url, timeout=10)

    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert response.json()["error"] == "invalid_request"


def test_other_paths_are_404(endpoint: FakeTokenEndpoint) -> None:
    response = requests.post(endpoint.url.replace("/token", "/oauth2/v4/token"), timeout=10)

    assert response.status_code == 404


def test_injected_failures_come_first_then_the_endpoint_recovers(
    endpoint: FakeTokenEndpoint,
) -> None:
    endpoint.fail_next(2)
    endpoint.fail_next(1, status=500)

    statuses = [refresh(endpoint).status_code for _ in range(4)]

    assert statuses == [503, 503, 500, 200]
    assert endpoint.refresh_count(REFRESH_TOKEN) == 4


@pytest.mark.parametrize(("n", "status"), [(-1, 503), (1, 404), (1, 600)])
def test_only_server_errors_can_be_injected(
    endpoint: FakeTokenEndpoint, n: int, status: int
) -> None:
    with pytest.raises(ValueError, match="5xx"):
        endpoint.fail_next(n, status=status)


def test_latency_delays_every_answer(endpoint: FakeTokenEndpoint) -> None:
    endpoint.latency = 0.3

    started = time.monotonic()
    response = refresh(endpoint)

    assert time.monotonic() - started >= 0.3
    assert response.status_code == 200


def test_stop_answers_delayed_requests_at_once() -> None:
    answered: list[int] = []
    with FakeTokenEndpoint() as endpoint:
        endpoint.latency = 30
        caller = threading.Thread(target=lambda: answered.append(refresh(endpoint).status_code))
        caller.start()
        deadline = time.monotonic() + 10
        while endpoint.request_count == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
    caller.join(timeout=10)

    assert time.monotonic() - started < 5
    assert answered == [400]  # no grant was added: invalid_grant, but not 30 s later


def test_an_expires_in_of_zero_issues_tokens_expired_at_once(endpoint: FakeTokenEndpoint) -> None:
    endpoint.expires_in = 0

    answer = refresh(endpoint).json()

    assert answer["expires_in"] == 0
    assert tokens.verify(answer["access_token"], time.time()) is None


def test_counters_and_the_record(endpoint: FakeTokenEndpoint) -> None:
    endpoint.add_grant("1//bob", "bob@example.com")
    for _ in range(3):
        refresh(endpoint)
    refresh(endpoint, refresh_token="1//bob")
    requests.get(endpoint.url, timeout=10)

    assert endpoint.request_count == 5
    assert endpoint.refresh_count(REFRESH_TOKEN) == 3
    assert endpoint.refresh_count("1//bob") == 1
    assert endpoint.refresh_count("1//nobody") == 0
    records = endpoint.requests
    assert [(r.method, r.status, r.refresh_token) for r in records] == [
        *[("POST", 200, REFRESH_TOKEN)] * 3,
        ("POST", 200, "1//bob"),
        ("GET", 405, None),
    ]
    assert endpoint.client_secret not in repr(records)


def test_concurrent_refreshes_are_all_answered_and_counted(endpoint: FakeTokenEndpoint) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: refresh(endpoint).status_code, range(40)))

    assert statuses == [200] * 40
    assert endpoint.refresh_count(REFRESH_TOKEN) == 40


@pytest.mark.parametrize(
    ("content_type", "body", "form"),
    [
        (FORM, b"a=1&b=%2F", {"a": "1", "b": "/"}),
        (f"{FORM}; charset=UTF-8", b"a=", {"a": ""}),
        (None, b"a=%E2%82%AC", {"a": "\N{EURO SIGN}"}),
        (FORM, b"", {}),
    ],
)
def test_parse_form_reads_forms(
    content_type: str | None, body: bytes, form: dict[str, str]
) -> None:
    assert parse_form(content_type, body) == form


def test_parse_form_names_a_repeated_parameter() -> None:
    with pytest.raises(MalformedRequest, match="more than once: refresh_token"):
        parse_form(FORM, b"refresh_token=a&refresh_token=b")


def test_serve_runs_from_a_config_file_until_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "fake-oauth.json"
    config.write_text(
        json.dumps(
            {
                "client_id": "cli-client",
                "client_secret": "cli-secret",
                "grants": {"1//granted": EMAIL, "1//revoked": EMAIL},
                "revoked": ["1//revoked"],
                "token_secret": "from the config",
                "expires_in": 60,
            }
        )
    )
    command = "import sys; from standins.fakeoauth import serve; serve('127.0.0.1', 0, sys.argv[1])"
    with subprocess.Popen(
        [sys.executable, "-c", command, str(config)], stdout=subprocess.PIPE, text=True
    ) as server:
        try:
            url = server.stdout.readline().strip() if server.stdout else ""
            form = {
                "grant_type": "refresh_token",
                "client_id": "cli-client",
                "client_secret": "cli-secret",
            }
            granted = requests.post(url, data={**form, "refresh_token": "1//granted"}, timeout=10)
            revoked = requests.post(url, data={**form, "refresh_token": "1//revoked"}, timeout=10)
        finally:
            server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0

    assert granted.json()["expires_in"] == 60
    assert tokens.verify(granted.json()["access_token"], time.time(), "from the config") == EMAIL
    assert revoked.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    "text",
    ['{"grants": {"a": 1}}', '{"client_id": "x", "unknown": 1}', "not json", '{"expires_in": -1}'],
)
def test_a_bad_config_names_its_file(tmp_path: Path, text: str) -> None:
    config = tmp_path / "fake-oauth.json"
    config.write_text(text)

    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "fake-oauth.json"))):
        EndpointConfig.load(config)


# -- the consent flow ---------------------------------------------------------------------

REDIRECT = "http://127.0.0.1:9/cb"
VERIFIER = "v" * 64


def consent(endpoint: FakeTokenEndpoint, **changes: str | None) -> requests.Response:
    query = {
        "client_id": DEFAULT_CLIENT_ID,
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": "https://mail.google.com/",
        "state": "s1",
        "code_challenge": pkce_challenge(VERIFIER),
        "code_challenge_method": "S256",
        "login_hint": "alice@example.com",
    }
    query = {k: v for k, v in (query | changes).items() if v is not None}
    return requests.get(endpoint.consent_url, params=query, allow_redirects=False, timeout=5)


def redirected(answer: requests.Response) -> dict[str, str]:
    assert answer.status_code == 302
    location = answer.headers["Location"]
    assert location.startswith(REDIRECT + "?")
    return dict(urllib.parse.parse_qsl(location.partition("?")[2]))


def exchange(endpoint: FakeTokenEndpoint, code: str, **changes: str) -> requests.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": VERIFIER,
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_CLIENT_SECRET,
    }
    return requests.post(endpoint.url, data=form | changes, timeout=5)


def test_consent_then_exchange_grants_a_working_refresh_token(endpoint: FakeTokenEndpoint) -> None:
    query = redirected(consent(endpoint))
    assert query["state"] == "s1" and query["scope"] == "https://mail.google.com/"

    answer = exchange(endpoint, query["code"])
    assert answer.status_code == 200, answer.text
    token = answer.json()
    assert tokens.verify(token["access_token"], time.time()) == "alice@example.com"
    assert refresh(endpoint, refresh_token=token["refresh_token"]).status_code == 200
    assert exchange(endpoint, query["code"]).json()["error"] == "invalid_grant"  # used once


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "email"}, "invalid_scope"),
        ({"login_hint": None}, "access_denied"),  # nobody to consent as
    ],
)
def test_consent_refusals_redirect_with_the_error(
    endpoint: FakeTokenEndpoint, changes: dict[str, str | None], error: str
) -> None:
    assert redirected(consent(endpoint, **changes)) == {"state": "s1", "error": error}


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({"client_id": "other"}, 401),
        ({"redirect_uri": "http://attacker.example/cb"}, 400),
        ({"redirect_uri": "https://127.0.0.1/cb"}, 400),
        ({"code_challenge_method": "plain"}, 400),
        ({"code_challenge": None}, 400),
    ],
)
def test_a_bad_consent_request_is_not_redirected(
    endpoint: FakeTokenEndpoint, changes: dict[str, str | None], status: int
) -> None:
    answer = consent(endpoint, **changes)
    assert answer.status_code == status and "Location" not in answer.headers


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"code_verifier": "w" * 64}, "invalid_grant"),
        ({"redirect_uri": "http://127.0.0.1:9/other"}, "redirect_uri_mismatch"),
        ({"client_secret": "wrong"}, "invalid_client"),
    ],
)
def test_an_exchange_must_match_its_consent(
    endpoint: FakeTokenEndpoint, changes: dict[str, str], error: str
) -> None:
    code = redirected(consent(endpoint))["code"]
    assert exchange(endpoint, code, **changes).json()["error"] == error


def test_the_user_can_refuse_consent(endpoint: FakeTokenEndpoint) -> None:
    endpoint.consent = False
    assert redirected(consent(endpoint))["error"] == "access_denied"


# -- domain-wide delegation: the JWT-bearer grant (RFC 7523) --------------------------------

DOMAIN = "example.com"
USER = "alice@example.com"
READONLY = "https://www.googleapis.com/auth/gmail.readonly"


@pytest.fixture
def key_file(endpoint: FakeTokenEndpoint) -> dict[str, str]:
    """A service account's JSON key file; example.com delegated the mail scope to it."""
    info = endpoint.new_service_account()
    endpoint.add_domain_user(USER)
    endpoint.delegate(DOMAIN, info["client_id"], [SCOPE])
    return info


def delegated(
    info: dict[str, str],
    subject: str | None = USER,
    scopes: tuple[str, ...] = (SCOPE,),
    **kwargs: Any,
) -> service_account.Credentials:
    """google-auth's own service account credentials, acting as `subject`."""
    return service_account.Credentials.from_service_account_info(
        info, scopes=list(scopes), subject=subject, **kwargs
    )


def refresh_with_google_auth(credentials: service_account.Credentials) -> None:
    credentials.refresh(google.auth.transport.requests.Request())


def refusal_of(credentials: service_account.Credentials) -> RefreshError:
    with pytest.raises(RefreshError) as caught:
        refresh_with_google_auth(credentials)
    return caught.value


def assert_google_auth_refused(
    endpoint: FakeTokenEndpoint,
    credentials: service_account.Credentials,
    status: int,
    error: str,
    description: str,
) -> None:
    """google-auth raises RefreshError with Google's error and text, and does not retry."""
    refused = refusal_of(credentials)
    assert refused.args == (
        f"{error}: {description}",
        {"error": error, "error_description": description},
    )
    assert refused.retryable is False
    [request] = [r for r in endpoint.requests if r.grant_type == JWT_BEARER]
    assert (request.status, request.error) == (status, error)


def assertion(
    info: dict[str, str], header: dict[str, Any] | None = None, lifetime: int = 3600, **claims: Any
) -> str:
    """A JWT-bearer assertion signed with the key file's key, named by its `kid`: Google's claims
    (`exp` `lifetime` after `iat`), changed by `claims` (a value of None leaves that claim out)."""
    now = int(time.time())
    payload = {
        "iss": info["client_email"],
        "sub": USER,
        "scope": SCOPE,
        "aud": GOOGLE_TOKEN_URL,
        "iat": now,
        "exp": now + lifetime,
        **claims,
    }
    signer = crypt.RSASigner.from_string(info["private_key"])
    header = {"kid": info["private_key_id"], **(header or {})}
    signed = jwt.encode(signer, {k: v for k, v in payload.items() if v is not None}, header=header)
    return str(signed.decode())


def post_assertion(endpoint: FakeTokenEndpoint, value: str | None) -> requests.Response:
    form = {"grant_type": JWT_BEARER} | ({} if value is None else {"assertion": value})
    return requests.post(endpoint.url, data=form, timeout=10)


def test_google_auth_gets_a_token_for_a_delegated_user_that_the_fake_gmail_logs_in(
    endpoint: FakeTokenEndpoint, key_file: dict[str, str], fake_gmail: FakeGmail
) -> None:
    fake_gmail.add_account(USER)
    credentials = delegated(key_file)

    refresh_with_google_auth(credentials)

    assert credentials.valid and tokens.verify(credentials.token, time.time()) == USER
    lifetime = credentials.expiry - datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    assert 3500 < lifetime.total_seconds() <= 3599
    with IMAPClient("127.0.0.1", fake_gmail.port, ssl=False, timeout=10) as client:
        assert b"(Success)" in b"".join(client.oauth2_login(USER, credentials.token))
    [request] = endpoint.requests
    assert (request.grant_type, request.status, request.client_id) == (JWT_BEARER, 200, None)
    assert (request.issuer, request.subject) == (key_file["client_email"], USER)


def test_the_answer_is_googles_and_the_token_carries_the_scopes(
    endpoint: FakeTokenEndpoint, key_file: dict[str, str]
) -> None:
    endpoint.delegate(DOMAIN, key_file["client_id"], [SCOPE, READONLY])

    response = post_assertion(endpoint, assertion(key_file, scope=f"{READONLY} {SCOPE}"))

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    answer = response.json()
    assert answer.keys() == {"access_token", "expires_in", "token_type"}  # no refresh token
    assert (answer["expires_in"], answer["token_type"]) == (3599, "Bearer")
    claims = tokens.read(answer["access_token"], time.time())
    assert claims is not None and claims.email == USER
    assert claims.scopes == {SCOPE, READONLY}


def test_a_token_without_the_mail_scope_is_no_good_for_gmail(
    endpoint: FakeTokenEndpoint, key_file: dict[str, str], fake_gmail: FakeGmail
) -> None:
    fake_gmail.add_account(USER)
    endpoint.delegate(DOMAIN, key_file["client_id"], [READONLY])
    credentials = delegated(key_file, scopes=(READONLY,))

    refresh_with_google_auth(credentials)

    claims = tokens.read(credentials.token, time.time())
    assert claims is not None and claims.scopes == {READONLY}
    assert tokens.verify(credentials.token, time.time()) is None  # IMAP needs mail.google.com
    with (
        IMAPClient("127.0.0.1", fake_gmail.port, ssl=False, timeout=10) as client,
        pytest.raises(IMAPClient.Error, match="AUTHENTICATIONFAILED"),
    ):
        client.oauth2_login(USER, credentials.token)


def test_without_sub_the_token_is_the_service_accounts_own(
    endpoint: FakeTokenEndpoint, key_file: dict[str, str]
) -> None:
    credentials = delegated(key_file, subject=None)

    refresh_with_google_auth(credentials)

    claims = tokens.read(credentials.token, time.time())
    assert claims is not None and claims.email == key_file["client_email"]


def test_suspended_and_archived_users_still_get_tokens(
    endpoint: FakeTokenEndpoint, key_file: dict[str, str]
) -> None:
    endpoint.add_domain_user("bob@example.com", suspended=True)
    endpoint.add_domain_user("carol@example.com", archived=True)

    for user in ("bob@example.com", "carol@example.com"):
        credentials = delegated(key_file, subject=user)
        refresh_with_google_auth(credentials)
        assert tokens.verify(credentials.token, time.time()) == user


def test_a_second_key_works_beside_the_first(
    endpoint: FakeTokenEndpoint, key_file: dict[str, str]
) -> None:
    private_key, public_key = new_key()
    endpoint.workspace.add_key(key_file["client_email"], "second-key-id", public_key)
    rotated = key_file | {"private_key_id": "second-key-id", "private_key": private_key}

    for info in (key_file, rotated):
        credentials = delegated(info)
        refresh_with_google_auth(credentials)
        assert tokens.verify(credentials.token, time.time()) == USER


NOT_DELEGATED_TEXT = (
    "Client is unauthorized to retrieve access tokens using this method, or client not "
    "authorized for any of the scopes requested."
)


@pytest.mark.parametrize(
    ("change", "scopes"),
    [
        pytest.param(
            lambda e, info: e.workspace.revoke_delegation(DOMAIN, info["client_id"]),
            (SCOPE,),
            id="revoked",
        ),
        pytest.param(lambda e, info: None, (SCOPE, READONLY), id="one-scope-not-delegated"),
        pytest.param(lambda e, info: None, (READONLY,), id="no-scope-delegated"),
        pytest.param(
            lambda e, info: (
                e.delegate(DOMAIN, "another-client-id", [SCOPE])
                or e.workspace.revoke_delegation(DOMAIN, info["client_id"])
            ),
            (SCOPE,),
            id="another-client",
        ),
        pytest.param(
            lambda e, info: (
                e.delegate("example.org", info["client_id"], [SCOPE])
                or e.workspace.revoke_delegation(DOMAIN, info["client_id"])
            ),
            (SCOPE,),
            id="another-domain",
        ),
    ],
)
def test_no_delegation_for_the_client_or_a_scope_is_unauthorized_client(
    endpoint: FakeTokenEndpoint,
    key_file: dict[str, str],
    change: Callable[[FakeTokenEndpoint, dict[str, str]], object],
    scopes: tuple[str, ...],
) -> None:
    change(endpoint, key_file)

    assert_google_auth_refused(
        endpoint, delegated(key_file, scopes=scopes), 401, "unauthorized_client", NOT_DELEGATED_TEXT
    )


@pytest.mark.parametrize(
    "subject", ["nobody@example.com", "alice@example.org", "removed@example.com", "not-an-email"]
)
def test_an_unknown_or_removed_user_is_invalid_grant(
    endpoint: FakeTokenEndpoint, key_file: dict[str, str], subject: str
) -> None:
    endpoint.add_domain_user("removed@example.com")
    endpoint.delegate("example.org", key_file["client_id"], [SCOPE])
    endpoint.remove_domain_user("removed@example.com")

    assert_google_auth_refused(
        endpoint,
        delegated(key_file, subject=subject),
        400,
        "invalid_grant",
        "Invalid email or User ID",
    )


def test_a_signature_by_another_key_is_invalid(
    endpoint: FakeTokenEndpoint, key_file: dict[str, str]
) -> None:
    other = endpoint.new_service_account()  # a key registered, but to another account
    forged = key_file | {"private_key": other["private_key"]}

    assert_google_auth_refused(
        endpoint, delegated(forged), 400, "invalid_grant", "Invalid JWT Signature."
    )


def test_a_deleted_key_is_an_invalid_signature(
    endpoint: FakeTokenEndpoint, key_file: dict[str, str]
) -> None:
    refresh_with_google_auth(delegated(key_file))
    endpoint.workspace.delete_key(key_file["client_email"], key_file["private_key_id"])
    endpoint.workspace.add_key(key_file["client_email"], "another-key", new_key()[1])

    refused = refusal_of(delegated(key_file))

    assert refused.args[1] == {
        "error": "invalid_grant",
        "error_description": "Invalid JWT Signature.",
    }


def test_an_unknown_key_id_is_an_invalid_signature(
    endpoint: FakeTokenEndpoint, key_file: dict[str, str]
) -> None:
    unknown_kid = key_file | {"private_key_id": "0" * 40}

    assert_google_auth_refused(
        endpoint, delegated(unknown_kid), 400, "invalid_grant", "Invalid JWT Signature."
    )


def test_an_unknown_service_account_is_not_a_valid_email(
    endpoint: FakeTokenEndpoint, key_file: dict[str, str]
) -> None:
    ghost = key_file | {"client_email": "ghost@fake-project.iam.gserviceaccount.com"}

    assert_google_auth_refused(
        endpoint, delegated(ghost), 400, "invalid_grant", "Not a valid email or user ID."
    )


def test_a_deleted_service_account_is_not_found(
    endpoint: FakeTokenEndpoint, key_file: dict[str, str]
) -> None:
    endpoint.workspace.delete_service_account(key_file["client_email"])

    assert_google_auth_refused(
        endpoint, delegated(key_file), 400, "invalid_grant", "Invalid grant: account not found"
    )


TIMEFRAME = (
    "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
    "Check your iat and exp values and use a clock with skew to account for clock differences "
    "between systems."
)


@pytest.mark.parametrize(
    "endpoint_ahead", [2 * 3600, -3600], ids=["expired", "issued-in-the-future"]
)
def test_an_assertion_out_of_its_timeframe_is_refused(
    endpoint: FakeTokenEndpoint, key_file: dict[str, str], endpoint_ahead: int
) -> None:
    endpoint.clock = lambda: time.time() + endpoint_ahead  # the client's clock is off

    assert_google_auth_refused(endpoint, delegated(key_file), 400, "invalid_grant", TIMEFRAME)


def test_five_minutes_of_clock_skew_are_allowed(
    endpoint: FakeTokenEndpoint, key_file: dict[str, str]
) -> None:
    endpoint.clock = lambda: time.time() - 240

    credentials = delegated(key_file)
    refresh_with_google_auth(credentials)

    assert credentials.valid


def test_another_audience_is_refused(endpoint: FakeTokenEndpoint, key_file: dict[str, str]) -> None:
    credentials = delegated(key_file, additional_claims={"aud": "https://example.com/token"})

    assert_google_auth_refused(
        endpoint,
        credentials,
        400,
        "invalid_grant",
        "Invalid JWT: Failed audience check. The right audience is https://oauth2.googleapis.com/token",
    )


def test_no_scope_is_invalid_scope(endpoint: FakeTokenEndpoint, key_file: dict[str, str]) -> None:
    assert_google_auth_refused(
        endpoint,
        delegated(key_file, scopes=()),
        400,
        "invalid_scope",
        "Empty or missing scope not allowed.",
    )


@pytest.mark.parametrize(
    ("claims", "description"),
    [
        ({"lifetime": 3601}, TIMEFRAME),
        ({"lifetime": 0}, TIMEFRAME),
        ({"exp": None}, TIMEFRAME),
        ({"iat": None}, TIMEFRAME),
        ({"iat": "now"}, TIMEFRAME),
        (
            {"aud": None},
            "Invalid JWT: Failed audience check. The right audience is https://oauth2.googleapis.com/token",
        ),
        (
            {"aud": [GOOGLE_TOKEN_URL]},
            "Invalid JWT: Failed audience check. The right audience is https://oauth2.googleapis.com/token",
        ),
        ({"iss": None}, "Not a valid email or user ID."),
        ({"sub": 42}, "Invalid email or User ID"),
    ],
)
def test_bad_claims_are_refused(
    endpoint: FakeTokenEndpoint,
    key_file: dict[str, str],
    claims: dict[str, Any],
    description: str,
) -> None:
    response = post_assertion(endpoint, assertion(key_file, **claims))

    assert_refused(response, 400, "invalid_grant", description)


def test_the_endpoints_own_url_is_a_good_audience(
    endpoint: FakeTokenEndpoint, key_file: dict[str, str]
) -> None:
    response = post_assertion(endpoint, assertion(key_file, aud=endpoint.url))

    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "header", [{"alg": "HS256"}, {"alg": "none"}, {"kid": 7}], ids=["HS256", "none", "kid-not-text"]
)
def test_only_rs256_by_the_named_key_is_a_signature(
    endpoint: FakeTokenEndpoint, key_file: dict[str, str], header: dict[str, Any]
) -> None:
    response = post_assertion(endpoint, assertion(key_file, header=header))

    assert_refused(response, 400, "invalid_grant", "Invalid JWT Signature.")


def test_an_assertion_without_a_kid_is_checked_against_every_key(
    endpoint: FakeTokenEndpoint, key_file: dict[str, str]
) -> None:
    signer = crypt.RSASigner.from_string(key_file["private_key"])  # no key id: no `kid`
    now = int(time.time())
    claims = {"iss": key_file["client_email"], "sub": USER, "scope": SCOPE}
    claims |= {"aud": GOOGLE_TOKEN_URL, "iat": now, "exp": now + 3600}
    unnamed = jwt.encode(signer, claims).decode()
    assert "kid" not in jwt.decode_header(unnamed)

    assert post_assertion(endpoint, unnamed).status_code == 200


def _unpadded(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _segment(value: object) -> str:
    return _unpadded(json.dumps(value).encode())


@pytest.mark.parametrize(
    "value",
    [
        "not-a-jwt",
        "a.b.c",
        "a.b",
        f"{_segment({'alg': 'RS256'})}.{_segment([1, 2])}.c2ln",
        f"{_segment('header')}.{_segment({'iss': 'x'})}.c2ln",
        f"{_segment({'alg': 'RS256'})}.{_segment({'iss': 'x'})}.%%%",
        f"{_segment({'alg': 'RS256'})}.{'W' * 40000}.c2ln",
        f"{_segment({'alg': 'RS256'})}.{_unpadded(b'[' * 30000)}.c2ln",  # deeper than json goes
    ],
)
def test_an_assertion_that_is_not_a_jwt_is_a_bad_request(
    endpoint: FakeTokenEndpoint, key_file: dict[str, str], value: str
) -> None:
    assert_refused(post_assertion(endpoint, value), 400, "invalid_grant", "Bad Request")
    assert post_assertion(endpoint, assertion(key_file)).status_code == 200  # it goes on


@pytest.mark.parametrize("value", [None, ""])
def test_no_assertion_is_invalid_request(endpoint: FakeTokenEndpoint, value: str | None) -> None:
    assert_refused(
        post_assertion(endpoint, value),
        400,
        "invalid_request",
        "Missing required parameter: assertion",
    )


def test_the_jwt_grant_keeps_the_bounds_and_faults(
    endpoint: FakeTokenEndpoint, key_file: dict[str, str]
) -> None:
    endpoint.fail_next(1)
    credentials = delegated(key_file)

    refresh_with_google_auth(credentials)  # google-auth retries a 503

    assert [r.status for r in endpoint.requests] == [503, 200]
    oversized = {"grant_type": JWT_BEARER, "assertion": "a" * (70 * 1024)}
    response = requests.post(endpoint.url, data=oversized, timeout=10)
    assert response.status_code == 413


def test_new_service_account_is_googles_key_file(endpoint: FakeTokenEndpoint) -> None:
    info = endpoint.new_service_account(project_id="crawler-prod")

    assert list(info) == [
        "type",
        "project_id",
        "private_key_id",
        "private_key",
        "client_email",
        "client_id",
        "auth_uri",
        "token_uri",
        "auth_provider_x509_cert_url",
        "client_x509_cert_url",
        "universe_domain",
    ]
    assert info["type"] == "service_account" and info["project_id"] == "crawler-prod"
    assert re.fullmatch(r"[0-9a-f]{40}", info["private_key_id"])
    assert info["private_key"].startswith("-----BEGIN PRIVATE KEY-----\n")
    assert info["private_key"].endswith("-----END PRIVATE KEY-----\n")
    assert re.fullmatch(r"[a-z0-9-]+@crawler-prod\.iam\.gserviceaccount\.com", info["client_email"])
    assert re.fullmatch(r"1\d{20}", info["client_id"])
    assert (info["token_uri"], info["auth_uri"]) == (endpoint.url, endpoint.consent_url)
    assert info["client_x509_cert_url"].endswith(info["client_email"].replace("@", "%40"))
    account = endpoint.workspace.service_account(info["client_email"])
    assert account is not None and list(account.keys) == [info["private_key_id"]]
    key_file = json.loads(json.dumps(info))  # as read back from the file
    assert delegated(key_file, subject=None).service_account_email == info["client_email"]


def test_serve_takes_service_accounts_and_domains_from_its_config(tmp_path: Path) -> None:
    private_key, public_key = new_key()
    config = tmp_path / "fake-oauth.json"
    config.write_text(
        json.dumps(
            {
                "token_secret": "from the config",
                "service_accounts": [
                    {
                        "client_email": "crawler@p.iam.gserviceaccount.com",
                        "client_id": "100000000000000000001",
                        "keys": {"key-1": public_key},
                    }
                ],
                "domains": {
                    "example.com": {
                        "users": [{"email": USER}, {"email": "bob@example.com", "suspended": True}],
                        "delegations": {"100000000000000000001": [SCOPE]},
                    }
                },
            }
        )
    )
    command = "import sys; from standins.fakeoauth import serve; serve('127.0.0.1', 0, sys.argv[1])"
    with subprocess.Popen(
        [sys.executable, "-c", command, str(config)], stdout=subprocess.PIPE, text=True
    ) as server:
        try:
            url = server.stdout.readline().strip() if server.stdout else ""
            info = service_account_key_file(
                "crawler@p.iam.gserviceaccount.com",
                "100000000000000000001",
                "key-1",
                private_key,
                project_id="p",
                token_uri=url,
            )
            granted = delegated(info)
            refresh_with_google_auth(granted)
            refused = refusal_of(delegated(info, subject="carol@example.com"))
        finally:
            server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0

    assert tokens.verify(granted.token, time.time(), "from the config") == USER
    assert refused.args[1]["error_description"] == "Invalid email or User ID"


@pytest.mark.parametrize(
    "text",
    [
        '{"service_accounts": [{"client_email": "a@b", "client_id": "1", "keys": {"k": "x"}}]}',
        '{"domains": {"example.com": {"users": [{"email": "alice@example.org"}]}}}',
        '{"domains": {"example.com": {"delegations": {"1": []}}}}',
        '{"domains": {"example.com": {"users": [{"email": "a@example.com", "admin": true}]}}}',
    ],
)
def test_a_bad_workspace_config_names_its_file(tmp_path: Path, text: str) -> None:
    config = tmp_path / "fake-oauth.json"
    config.write_text(text)

    with pytest.raises(ValueError, match=re.escape(str(config))):
        EndpointConfig.load(config)
