"""The fake Admin SDK Directory API over HTTP: users.list paged as Google pages it, for a domain
admin whose token comes from the fake token endpoint (domain-wide delegation through google-auth),
Google's 401/403/400 answers, and `serve` as a process beside the token endpoint's."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from google.auth.transport.requests import AuthorizedSession
from google.oauth2 import service_account

from standins import tokens
from standins.fakedirectory import (
    READONLY_SCOPE,
    USER_SCOPE,
    USERS_PATH,
    FakeDirectory,
    customer_id,
    user_id,
)
from standins.fakeoauth import SCOPE, FakeTokenEndpoint
from standins.workspace import new_key, service_account_key_file

pytestmark = pytest.mark.integration

DOMAIN = "example.com"
ADMIN = "admin@example.com"
CREDENTIAL_HELP = (
    "Expected OAuth 2 access token, login cookie or other valid authentication credential. "
    "See https://developers.google.com/identity/sign-in/web/devconsole-project."
)
REALM = 'Bearer realm="https://accounts.google.com/"'


@pytest.fixture
def oauth() -> Iterator[FakeTokenEndpoint]:
    with FakeTokenEndpoint() as endpoint:
        yield endpoint


@pytest.fixture
def directory(oauth: FakeTokenEndpoint) -> Iterator[FakeDirectory]:
    with FakeDirectory.for_endpoint(oauth) as directory:
        yield directory


@pytest.fixture
def key_file(oauth: FakeTokenEndpoint) -> dict[str, str]:
    """A service account to which example.com delegated the mail and directory-read scopes; the
    domain has its admin."""
    info = oauth.new_service_account()
    oauth.add_domain_user(ADMIN, is_admin=True, given_name="Ada", family_name="Admin")
    oauth.delegate(DOMAIN, info["client_id"], [SCOPE, READONLY_SCOPE])
    return info


def session(key_file: dict[str, str], subject: str = ADMIN, scope: str = READONLY_SCOPE) -> Any:
    """A requests session of google-auth's that gets (and sends) a delegated access token."""
    credentials = service_account.Credentials.from_service_account_info(
        key_file, scopes=[scope], subject=subject
    )
    return AuthorizedSession(credentials)


def list_users(directory: FakeDirectory, client: Any, **params: Any) -> requests.Response:
    response: requests.Response = client.get(directory.url, params=params, timeout=10)
    return response


def every_page(directory: FakeDirectory, client: Any, **params: Any) -> list[dict[str, Any]]:
    pages: list[dict[str, Any]] = []
    while True:
        response = list_users(directory, client, **params)
        assert response.status_code == 200, response.text
        pages.append(response.json())
        if "nextPageToken" not in pages[-1]:
            return pages
        params["pageToken"] = pages[-1]["nextPageToken"]


def add_users(oauth: FakeTokenEndpoint, count: int) -> list[str]:
    emails = [f"user{n:03d}@{DOMAIN}" for n in range(count)]
    for email in emails:
        oauth.add_domain_user(email)
    return emails


def assert_google_error(
    response: requests.Response,
    status: int,
    message: str,
    reason: str,
    *,
    detail: str | None = None,
    status_name: str | None = None,
    location: tuple[str, str] | None = None,
) -> None:
    """The answer is Google's JSON error: `message` on top, one error of `reason` (whose own
    message is `detail`, or `message`), the `status` name and the `location` (where, and its
    type) if given."""
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json; charset=UTF-8"
    expected_detail: dict[str, str] = {
        "message": detail or message,
        "domain": "global",
        "reason": reason,
    }
    if location is not None:
        expected_detail |= {"location": location[0], "locationType": location[1]}
    expected: dict[str, object] = {"code": status, "message": message, "errors": [expected_detail]}
    if status_name is not None:
        expected["status"] = status_name
    assert response.json() == {"error": expected}


def test_an_admin_pages_through_250_users_100_at_a_time(
    oauth: FakeTokenEndpoint, directory: FakeDirectory, key_file: dict[str, str]
) -> None:
    emails = [*add_users(oauth, 249), ADMIN]

    pages = every_page(directory, session(key_file), domain=DOMAIN, maxResults=100)

    assert [len(page["users"]) for page in pages] == [100, 100, 50]
    assert all(page["kind"] == "admin#directory#users" and page["etag"] for page in pages)
    listed = [user["primaryEmail"] for page in pages for user in page["users"]]
    assert listed == sorted(emails)
    assert [r.caller for r in directory.requests] == [ADMIN] * 3
    [token_request] = oauth.requests  # one token, reused for every page
    assert (token_request.subject, token_request.status) == (ADMIN, 200)


def test_a_page_is_100_users_unless_asked_and_at_most_500(
    oauth: FakeTokenEndpoint, directory: FakeDirectory, key_file: dict[str, str]
) -> None:
    add_users(oauth, 599)
    client = session(key_file)

    first = list_users(directory, client, domain=DOMAIN).json()
    biggest = list_users(directory, client, domain=DOMAIN, maxResults=500).json()
    rest = list_users(directory, client, domain=DOMAIN, pageToken=biggest["nextPageToken"]).json()

    assert len(first["users"]) == 100 and "nextPageToken" in first
    assert len(biggest["users"]) == 500
    assert len(rest["users"]) == 100 and "nextPageToken" not in rest


def test_users_are_googles_resources_with_their_flags(
    oauth: FakeTokenEndpoint, directory: FakeDirectory, key_file: dict[str, str]
) -> None:
    oauth.add_domain_user("bob.jones@example.com", suspended=True)
    oauth.add_domain_user("carol@example.com", archived=True)
    oauth.add_domain_user("dave@example.com")

    [page] = every_page(directory, session(key_file), domain=DOMAIN)

    users = {user["primaryEmail"]: user for user in page["users"]}
    assert list(users) == [ADMIN, "bob.jones@example.com", "carol@example.com", "dave@example.com"]
    flags = {e: (u["suspended"], u["archived"], u["isAdmin"]) for e, u in users.items()}
    assert flags == {
        ADMIN: (False, False, True),
        "bob.jones@example.com": (True, False, False),
        "carol@example.com": (False, True, False),
        "dave@example.com": (False, False, False),
    }
    bob = users["bob.jones@example.com"]
    assert bob["suspensionReason"] == "ADMIN"
    assert "suspensionReason" not in users["dave@example.com"]
    assert bob["kind"] == "admin#directory#user"
    assert bob["id"] == user_id("bob.jones@example.com") and len(bob["id"]) == 21
    assert bob["name"] == {"givenName": "Bob", "familyName": "Jones", "fullName": "Bob Jones"}
    assert users[ADMIN]["name"]["fullName"] == "Ada Admin"
    assert bob["emails"] == [{"address": "bob.jones@example.com", "primary": True}]
    assert bob["customerId"] == customer_id(DOMAIN)


def test_the_directory_follows_the_workspace_it_shares(
    oauth: FakeTokenEndpoint, directory: FakeDirectory, key_file: dict[str, str]
) -> None:
    client = session(key_file)
    oauth.add_domain_user("bob@example.com")
    oauth.add_domain_user("carol@example.org")  # another domain: not listed
    before = list_users(directory, client, domain=DOMAIN).json()["users"]
    oauth.remove_domain_user("bob@example.com")
    oauth.add_domain_user(ADMIN, is_admin=True, suspended=True)  # the admin is suspended

    after = list_users(directory, client, domain=DOMAIN)

    assert [user["primaryEmail"] for user in before] == [ADMIN, "bob@example.com"]
    assert_google_error(after, 403, "Not Authorized to access this resource/api", "forbidden")


@pytest.mark.parametrize("selector", ["domain", "my_customer", "customer_id"])
def test_domain_my_customer_and_the_customer_id_list_the_same(
    oauth: FakeTokenEndpoint,
    directory: FakeDirectory,
    key_file: dict[str, str],
    selector: str,
) -> None:
    add_users(oauth, 3)
    params = {
        "domain": {"domain": DOMAIN.upper()},
        "my_customer": {"customer": "my_customer"},
        "customer_id": {"customer": customer_id(DOMAIN)},
    }[selector]

    [page] = every_page(directory, session(key_file), **params)

    assert len(page["users"]) == 4


def test_a_page_past_the_last_user_has_no_users_key(
    oauth: FakeTokenEndpoint, directory: FakeDirectory, key_file: dict[str, str]
) -> None:
    oauth.add_domain_user("zoe@example.com")
    client = session(key_file)
    first = list_users(directory, client, domain=DOMAIN, maxResults=1).json()
    oauth.remove_domain_user("zoe@example.com")  # deleted between two pages

    second = list_users(directory, client, domain=DOMAIN, pageToken=first["nextPageToken"])

    assert [user["primaryEmail"] for user in first["users"]] == [ADMIN]
    assert second.status_code == 200
    assert second.json().keys() == {"kind", "etag"}  # Google leaves out an empty list


def bearer_get(directory: FakeDirectory, token: str | None, **params: Any) -> requests.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return requests.get(directory.url, params=params, headers=headers, timeout=10)


@pytest.mark.parametrize(
    "authorization", [None, "", "Basic YWRtaW46cGFzcw==", "Bearer", "Bearer   "]
)
def test_no_bearer_token_is_401_login_required(
    directory: FakeDirectory, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = requests.get(directory.url, params={"domain": DOMAIN}, headers=headers, timeout=10)

    assert_google_error(
        response,
        401,
        f"Request is missing required authentication credential. {CREDENTIAL_HELP}",
        "required",
        detail="Login Required.",
        status_name="UNAUTHENTICATED",
        location=("Authorization", "header"),
    )
    assert response.headers["WWW-Authenticate"] == REALM


@pytest.mark.parametrize(
    "token",
    [
        tokens.issue(ADMIN, 2_000_000_000, "another secret", scopes=[READONLY_SCOPE]),
        tokens.issue(ADMIN, time.time() - 1, scopes=[READONLY_SCOPE]),
        "ya29.a0AfH6SMBnotoneofours",
    ],
    ids=["forged", "expired", "not-ours"],
)
def test_a_bad_token_is_401_invalid_credentials(
    directory: FakeDirectory, key_file: dict[str, str], token: str
) -> None:
    response = bearer_get(directory, token, domain=DOMAIN)

    assert_google_error(
        response,
        401,
        f"Request had invalid authentication credentials. {CREDENTIAL_HELP}",
        "authError",
        detail="Invalid Credentials",
        status_name="UNAUTHENTICATED",
        location=("Authorization", "header"),
    )
    assert response.headers["WWW-Authenticate"] == f'{REALM}, error="invalid_token"'


def test_a_token_without_the_directory_scope_is_403_insufficient_scopes(
    directory: FakeDirectory, key_file: dict[str, str]
) -> None:
    response = list_users(directory, session(key_file, scope=SCOPE), domain=DOMAIN)

    assert_google_error(
        response,
        403,
        "Request had insufficient authentication scopes.",
        "insufficientPermissions",
        detail="Insufficient Permission",
        status_name="PERMISSION_DENIED",
    )
    assert response.headers["WWW-Authenticate"] == (
        f'{REALM}, error="insufficient_scope", scope="{USER_SCOPE} {READONLY_SCOPE}"'
    )


def test_the_read_write_scope_lists_too(directory: FakeDirectory, key_file: dict[str, str]) -> None:
    token = tokens.issue(ADMIN, time.time() + 60, scopes=[USER_SCOPE])

    assert bearer_get(directory, token, domain=DOMAIN).status_code == 200


def test_a_user_who_is_no_admin_is_403_not_authorized(
    oauth: FakeTokenEndpoint, directory: FakeDirectory, key_file: dict[str, str]
) -> None:
    oauth.add_domain_user("bob@example.com")

    response = list_users(directory, session(key_file, subject="bob@example.com"), domain=DOMAIN)

    assert_google_error(response, 403, "Not Authorized to access this resource/api", "forbidden")


NOT_AUTHORIZED = (403, "Not Authorized to access this resource/api", "forbidden", None)
BAD_INPUT = (400, "Invalid Input", "invalid", None)


def out_of_range(value: str) -> tuple[int, str, str, tuple[str, str]]:
    message = f"Invalid value '{value}'. Values must be within the range: [1, 500]"
    return (400, message, "invalidParameter", ("maxResults", "parameter"))


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, (400, "Bad Request", "badRequest", None)),
        ({"domain": "example.org"}, NOT_AUTHORIZED),
        ({"customer": "C0another"}, NOT_AUTHORIZED),
        ({"domain": DOMAIN, "maxResults": "0"}, out_of_range("0")),
        ({"domain": DOMAIN, "maxResults": "501"}, out_of_range("501")),
        ({"domain": DOMAIN, "maxResults": "ten"}, out_of_range("ten")),
        ({"domain": DOMAIN, "pageToken": "not-one-of-ours"}, BAD_INPUT),
        ({"domain": DOMAIN, "pageToken": "%%%"}, BAD_INPUT),
    ],
)
def test_bad_listings_are_refused_as_google_refuses_them(
    directory: FakeDirectory,
    key_file: dict[str, str],
    params: dict[str, str],
    expected: tuple[int, str, str, tuple[str, str] | None],
) -> None:
    status, message, reason, location = expected

    response = list_users(directory, session(key_file), **params)

    assert_google_error(response, status, message, reason, location=location)


@pytest.mark.parametrize("params", [{"query": "isSuspended=false"}, {"showDeleted": "true"}])
def test_filters_it_does_not_model_are_refused_not_ignored(
    directory: FakeDirectory, key_file: dict[str, str], params: dict[str, str]
) -> None:
    response = list_users(directory, session(key_file), domain=DOMAIN, **params)

    assert (
        response.status_code == 400 and response.json()["error"]["errors"][0]["reason"] == "invalid"
    )


def test_other_paths_and_methods_are_refused(
    directory: FakeDirectory, key_file: dict[str, str]
) -> None:
    client = session(key_file)

    other_path = client.get(directory.root_url + "admin/directory/v1/groups", timeout=10)
    post = client.post(directory.url, json={"primaryEmail": "x@example.com"}, timeout=10)

    assert other_path.status_code == 404
    assert post.status_code == 405 and post.headers["Allow"] == "GET"
    assert directory.root_url + USERS_PATH.lstrip("/") == directory.url


def test_serve_lists_the_users_of_the_token_endpoints_config(tmp_path: Path) -> None:
    private_key, public_key = new_key()
    client_id = "100000000000000000002"
    config = tmp_path / "workspace.json"
    config.write_text(
        json.dumps(
            {
                "token_secret": "shared by both",
                "service_accounts": [
                    {
                        "client_email": "crawler@p.iam.gserviceaccount.com",
                        "client_id": client_id,
                        "keys": {"key-1": public_key},
                    }
                ],
                "domains": {
                    DOMAIN: {
                        "users": [
                            {"email": ADMIN, "is_admin": True},
                            {"email": "alice@example.com", "archived": True},
                        ],
                        "delegations": {client_id: [READONLY_SCOPE]},
                    }
                },
            }
        )
    )
    servers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"import sys; from standins.{module} import serve; "
                "serve('127.0.0.1', 0, sys.argv[1])",
                str(config),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for module in ("fakeoauth", "fakedirectory")
    ]
    try:
        token_url, users_url = (s.stdout.readline().strip() if s.stdout else "" for s in servers)
        info = service_account_key_file(
            "crawler@p.iam.gserviceaccount.com",
            client_id,
            "key-1",
            private_key,
            project_id="p",
            token_uri=token_url,
        )
        credentials = service_account.Credentials.from_service_account_info(
            info, scopes=[READONLY_SCOPE], subject=ADMIN
        )
        response = AuthorizedSession(credentials).get(
            users_url, params={"customer": "my_customer"}, timeout=10
        )
    finally:
        for server in servers:
            server.send_signal(signal.SIGTERM)
    assert [server.wait(timeout=10) for server in servers] == [0, 0]
    for server in servers:
        if server.stdout:
            server.stdout.close()

    assert users_url.endswith(USERS_PATH)
    assert response.status_code == 200, response.text
    users = response.json()["users"]
    assert [(u["primaryEmail"], u["archived"]) for u in users] == [
        (ADMIN, False),
        ("alice@example.com", True),
    ]
