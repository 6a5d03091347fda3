"""The fake token endpoint over HTTP: refreshes, Google's refusals, faults, counters, `serve`."""

from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from oauthlib.oauth2 import InvalidClientError, InvalidGrantError
from requests_oauthlib import OAuth2Session

from standins import tokens
from standins.fakeoauth import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    SCOPE,
    EndpointConfig,
    FakeTokenEndpoint,
    MalformedRequest,
    parse_form,
    pkce_challenge,
)

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
