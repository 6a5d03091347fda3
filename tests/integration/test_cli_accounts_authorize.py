"""Getting an account in: `crawler accounts add --authorize` runs the consent flow, a refresh
token read from standard input is checked with the token endpoint before it is stored (by
`add` and by `authorize`, unless --no-verify), the OAuth client is required before anything
starts, a `g_apps_oauth` account needs its Workspace domain and no token, and `add` says when
the account has no rule. Against the fake token endpoint and its consent page, over real
sockets, and the embedded MongoDB."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from crawler.delegation import ServiceAccountKey
from crawler.oauth import IMAP_SCOPE, TokenCipher
from crawler.store.domains import DomainBook
from crawler.store.status import new_status
from standins.fakegmail import FakeGmail
from standins.fakeoauth import FakeTokenEndpoint
from tests.plugins.admin import (
    ADD_GMAIL,
    KEY,
    Admin,
    closed_port,
    consent_flow_in_browser,
    error_line,
    oauth_env,
)
from tests.plugins.fakes import build_message

pytestmark = pytest.mark.integration

CHECKED = "accounts add {user}@example.com --user-uuid {user} --refresh-token-stdin"
REFUSED = (
    "the refresh token was refused by Google (invalid_grant): it is expired, revoked or not a "
    "refresh token"
)
NO_RULE = "no rule yet: nothing is crawled until one is added (crawler rules add --user-uuid {user}"


@pytest.fixture
def oauth() -> Iterator[FakeTokenEndpoint]:
    with FakeTokenEndpoint() as endpoint:
        yield endpoint


def cipher() -> TokenCipher:
    return TokenCipher(KEY)


def account(admin: Admin, user_uuid: str) -> Any:
    return admin.db.accounts.find_one({"user_uuid": user_uuid})


def refresh_token(admin: Admin, user_uuid: str) -> str:
    return cipher().decrypt(account(admin, user_uuid)["oauth"]["refresh_token"], "refresh_token")


# -- add --authorize: the consent flow for a new account -------------------------------------


def test_add_authorize_stores_the_consent_s_refresh_token_and_the_account_is_crawled(
    admin: Admin, oauth: FakeTokenEndpoint, fake_gmail: FakeGmail, redis_server: redis.Redis
) -> None:
    fake_gmail.add_account("erin@example.com").add_message(
        build_message(attachments={"plan.pdf": b"%PDF-1.4 plan"})
    )

    done = consent_flow_in_browser(
        admin, oauth, "accounts add erin@example.com --user-uuid erin --authorize --no-browser"
    )

    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0] == "Open this page signed in as erin@example.com, and allow access:"
    assert lines[1].startswith(oauth.consent_url + "?") and "client_id=fake-client-id" in lines[1]
    assert lines[2:] == [
        "added gmail_oauth account erin@example.com (erin)",
        NO_RULE.format(user="erin") + " ...)",
    ]
    stored = account(admin, "erin")
    assert (stored["email"], stored["provider"]) == ("erin@example.com", "gmail_oauth")
    token = refresh_token(admin, "erin")
    assert token.startswith("1//fake-") and token not in done.stdout + done.stderr
    [consent, exchange] = oauth.requests
    assert (consent.method, consent.path.partition("?")[0]) == ("GET", "/auth")
    assert exchange.grant_type == "authorization_code"  # not checked again with a refresh

    assert admin.run("rules add --user-uuid erin").exit_code == 0
    iterator = admin.iterator(fake_gmail, oauth, redis_server)
    assert iterator.iterate().outcomes == {"erin": "idle"}
    listed = json.loads(admin.run("attachments list --user-uuid erin --json").stdout)
    assert [row["filename"] for row in listed] == ["plan.pdf"]
    assert oauth.refresh_count(token) == 1


def test_add_authorize_for_an_existing_user_uuid_fails_before_the_consent(
    admin: Admin, oauth: FakeTokenEndpoint
) -> None:
    assert admin.run(ADD_GMAIL.format(user="erin"), stdin="old\n").exit_code == 0

    again = admin.run(
        "accounts add erin@example.com --user-uuid erin --authorize --no-browser",
        **oauth_env(oauth),
    )

    assert again.exit_code == 1 and "exists already" in error_line(again.stderr)
    assert "http" not in again.stdout and oauth.requests == []
    assert refresh_token(admin, "erin") == "old"


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (
            "--authorize --refresh-token-stdin",
            "give --refresh-token-stdin or --authorize, not both",
        ),
        ("--authorize --no-verify", "--no-verify is for --refresh-token-stdin"),
        ("--no-verify", "needs --refresh-token-stdin (a refresh token you hold) or --authorize"),
        ("--authorize --provider g_apps_oauth", "a g_apps_oauth account takes no"),
        ("--refresh-token-stdin --provider g_apps_oauth", "a g_apps_oauth account takes no"),
        ("--no-verify --provider g_apps_oauth", "a g_apps_oauth account takes no"),
        (
            "--authorize --provider imap_password --password-stdin --imap-host h",
            "--refresh-token-stdin, --authorize and --no-verify are for gmail_oauth accounts",
        ),
    ],
)
def test_add_refuses_flags_that_do_not_go_together(
    admin: Admin, oauth: FakeTokenEndpoint, options: str, says: str
) -> None:
    refused = admin.run(
        f"accounts add a@example.com --user-uuid a {options}", stdin="t", **oauth_env(oauth)
    )

    assert refused.exit_code == 2 and says in error_line(refused.stderr)
    assert admin.db.accounts.count_documents({}) == 0 and oauth.requests == []


# -- a refresh token from standard input is checked with Google ------------------------------


def test_a_garbage_refresh_token_is_refused_at_add_and_nothing_is_stored(
    admin: Admin, oauth: FakeTokenEndpoint
) -> None:
    refused = admin.process(
        CHECKED.format(user="alice"), stdin="garbage-SECRET-token\n", **oauth_env(oauth)
    )

    assert refused.returncode == 2, refused.stderr
    assert error_line(refused.stderr) == (
        f"error: alice (alice@example.com): {REFUSED}; nothing was stored"
    )
    assert "SECRET" not in refused.stdout + refused.stderr
    assert admin.db.accounts.count_documents({}) == 0
    assert oauth.refresh_count("garbage-SECRET-token") == 1  # asked once, of the endpoint


def test_a_garbage_refresh_token_is_refused_at_authorize_and_the_old_one_stays(
    admin: Admin, oauth: FakeTokenEndpoint
) -> None:
    assert admin.run(ADD_GMAIL.format(user="a"), stdin="old-token\n").exit_code == 0
    failed = {"state": "auth_failed", "next_crawl_at": None, "auth_revoked": True}
    admin.db.crawl_status.insert_one(new_status("a", 0) | failed)

    refused = admin.process(
        "accounts authorize a --refresh-token-stdin", stdin="garbage-SECRET\n", **oauth_env(oauth)
    )

    assert refused.returncode == 2, refused.stderr
    assert f"a (a@example.com): {REFUSED}" in error_line(refused.stderr)
    assert "SECRET" not in refused.stdout + refused.stderr
    assert refresh_token(admin, "a") == "old-token"
    status = admin.db.crawl_status.find_one({"user_uuid": "a"})
    assert (status["state"], status["auth_revoked"]) == ("auth_failed", True)
    assert oauth.refresh_count("garbage-SECRET") == 1


def test_no_verify_stores_the_token_without_asking_the_endpoint(
    admin: Admin, oauth: FakeTokenEndpoint
) -> None:
    added = admin.run(
        CHECKED.format(user="a") + " --no-verify", stdin="garbage-SECRET\n", **oauth_env(oauth)
    )
    authorized = admin.run(
        "accounts authorize a --refresh-token-stdin --no-verify",
        stdin="other-SECRET\n",
        **oauth_env(oauth),
    )

    assert added.exit_code == 0, added.stderr
    assert "its refresh token was not checked" in added.stdout
    assert authorized.exit_code == 0, authorized.stderr
    assert refresh_token(admin, "a") == "other-SECRET"
    assert (
        account(admin, "a")["oauth"]["access_token"],
        account(admin, "a")["oauth"]["expires_at"],
    ) == ("", 0)
    assert oauth.requests == []
    assert "SECRET" not in added.stdout + added.stderr + authorized.stdout + authorized.stderr


def test_a_checked_token_s_access_token_is_stored_and_serves_the_first_crawl(
    admin: Admin, oauth: FakeTokenEndpoint, fake_gmail: FakeGmail, redis_server: redis.Redis
) -> None:
    fake_gmail.add_account("alice@example.com").add_message(
        build_message(attachments={"q3.pdf": b"%PDF-1.4 q3"})
    )
    oauth.add_grant("1//alice-SECRET", "alice@example.com")
    assert admin.run("rules add --user-uuid alice").exit_code == 0
    before = time.time()

    added = admin.process(
        CHECKED.format(user="alice"), stdin="1//alice-SECRET\n", **oauth_env(oauth)
    )

    assert added.returncode == 0, added.stderr
    assert added.stdout == (
        "added gmail_oauth account alice@example.com (alice): Google accepted its refresh token\n"
    )  # a rule exists: no hint
    oauth_fields = account(admin, "alice")["oauth"]
    access_token = cipher().decrypt(oauth_fields["access_token"], "access_token")
    assert access_token and before + 3500 < oauth_fields["expires_at"] < time.time() + 3600
    assert refresh_token(admin, "alice") == "1//alice-SECRET"
    for secret in ("SECRET", access_token, oauth_fields["access_token"]):
        assert secret not in added.stdout + added.stderr
    assert oauth.refresh_count("1//alice-SECRET") == 1

    iterator = admin.iterator(fake_gmail, oauth, redis_server)
    assert iterator.iterate().outcomes == {"alice": "idle"}
    assert oauth.refresh_count("1//alice-SECRET") == 1  # the crawl used the stored token


def test_authorize_with_a_checked_token_stores_its_access_token_and_revives(
    admin: Admin, oauth: FakeTokenEndpoint
) -> None:
    assert admin.run(ADD_GMAIL.format(user="carol"), stdin="revoked\n").exit_code == 0
    failed = {"state": "auth_failed", "next_crawl_at": None, "auth_revoked": True}
    admin.db.crawl_status.insert_one(new_status("carol", 0) | failed)
    oauth.add_grant("1//carol-renewed", "carol@example.com")

    done = admin.run(
        "accounts authorize carol --refresh-token-stdin",
        stdin="1//carol-renewed\n",
        **oauth_env(oauth),
    )

    assert done.exit_code == 0, done.stderr
    assert done.stdout == "authorized carol: it was auth_failed and is due now\n"
    oauth_fields = account(admin, "carol")["oauth"]
    assert refresh_token(admin, "carol") == "1//carol-renewed"
    assert cipher().decrypt(oauth_fields["access_token"], "access_token")
    assert oauth_fields["expires_at"] > time.time() + 3000
    assert admin.db.crawl_status.find_one({"user_uuid": "carol"})["state"] == "idle"


@pytest.mark.parametrize(
    "line",
    [CHECKED.format(user="a"), "accounts authorize a --refresh-token-stdin"],
    ids=["add", "authorize"],
)
def test_an_unreachable_endpoint_says_so_and_suggests_no_verify(
    admin: Admin, oauth: FakeTokenEndpoint, line: str
) -> None:
    if "authorize" in line:
        assert admin.run(ADD_GMAIL.format(user="a"), stdin="old\n").exit_code == 0
    nowhere = oauth_env(oauth) | {"CRAWLER_OAUTH_TOKEN_URL": f"http://127.0.0.1:{closed_port()}/t"}

    done = admin.process(line, stdin="1//some-hush-token\n", **nowhere)

    assert done.returncode == 1, done.stderr
    said = error_line(done.stderr)
    assert said.startswith("error: a (a@example.com): the refresh token could not be checked: ")
    assert "token endpoint unreachable" in said and "--no-verify" in said
    assert "hush" not in done.stdout + done.stderr
    if "authorize" in line:
        assert refresh_token(admin, "a") == "old"
    else:
        assert admin.db.accounts.count_documents({}) == 0


# -- no OAuth client: fail before anything starts ---------------------------------------------


@pytest.mark.parametrize(
    ("line", "unset"),
    [
        (
            "accounts add a@example.com --user-uuid a --authorize --no-browser",
            ["CRAWLER_OAUTH_CLIENT_ID"],
        ),
        ("accounts authorize a --no-browser", ["CRAWLER_OAUTH_CLIENT_SECRET"]),
        ("accounts authorize a", ["CRAWLER_OAUTH_CLIENT_ID", "CRAWLER_OAUTH_CLIENT_SECRET"]),
        (CHECKED.format(user="a"), ["CRAWLER_OAUTH_CLIENT_SECRET"]),
        ("accounts authorize a --refresh-token-stdin", ["CRAWLER_OAUTH_CLIENT_ID"]),
    ],
)
def test_without_the_oauth_client_it_fails_at_once_naming_what_is_missing(
    admin: Admin, oauth: FakeTokenEndpoint, line: str, unset: list[str]
) -> None:
    if " authorize a" in line:
        assert admin.run(ADD_GMAIL.format(user="a"), stdin="old\n").exit_code == 0
    env = oauth_env(oauth) | dict.fromkeys(unset, "")
    started = time.monotonic()

    done = admin.process(line, stdin="1//some-hush-token\n", **env)

    assert time.monotonic() - started < 10  # not the consent's 300 s wait
    assert done.returncode == 1, done.stderr
    said = error_line(done.stderr)
    assert said.startswith(
        f"error: {' and '.join(unset)} {'is' if len(unset) == 1 else 'are'} not set"
    )
    for name in {"CRAWLER_OAUTH_CLIENT_ID", "CRAWLER_OAUTH_CLIENT_SECRET"} - set(unset):
        assert name not in said
    assert "http" not in done.stdout and "hush" not in done.stdout + done.stderr
    assert oauth.requests == []
    if " authorize a" in line:
        assert refresh_token(admin, "a") == "old"
    else:
        assert admin.db.accounts.count_documents({}) == 0


# -- g_apps_oauth: tokens from the Workspace domain ------------------------------------------


def save_domain(admin: Admin, oauth: FakeTokenEndpoint, domain: str) -> dict[str, str]:
    """A `domains` document for `domain` with a service account the fake knows; its key file."""
    key_file = oauth.new_service_account()
    key = ServiceAccountKey.parse(json.dumps(key_file).encode())
    DomainBook(admin.db).saved(domain, key.document(domain, f"admin@{domain}", cipher()), 0)
    return key_file


def test_a_g_apps_oauth_account_needs_its_domain_first(
    admin: Admin, oauth: FakeTokenEndpoint
) -> None:
    line = "accounts add dana@Corp.Example --user-uuid dana --provider g_apps_oauth"

    refused = admin.process(line)

    assert refused.returncode == 1
    assert error_line(refused.stderr) == (
        "error: no service account for the Workspace domain corp.example: "
        "run `crawler domains add corp.example` first"
    )
    assert admin.db.accounts.count_documents({}) == 0

    save_domain(admin, oauth, "corp.example")
    added = admin.process(line)

    assert added.returncode == 0, added.stderr
    assert added.stdout.splitlines() == [
        "added g_apps_oauth account dana@Corp.Example (dana): its tokens come from the service "
        "account of corp.example",
        NO_RULE.format(user="dana") + " ...)",
    ]
    stored = account(admin, "dana")
    del stored["_id"]
    assert stored == {
        "user_uuid": "dana",
        "email": "dana@Corp.Example",
        "provider": "g_apps_oauth",
        "domain": "corp.example",
    }


def test_a_g_apps_oauth_account_added_by_the_cli_is_crawled_through_its_domain(
    admin: Admin, oauth: FakeTokenEndpoint, fake_gmail: FakeGmail, redis_server: redis.Redis
) -> None:
    key_file = save_domain(admin, oauth, "corp.example")
    oauth.delegate("corp.example", key_file["client_id"], [IMAP_SCOPE])
    oauth.add_domain_user("dana@corp.example")
    fake_gmail.add_account("dana@corp.example").add_message(
        build_message(attachments={"m.pdf": b"%PDF-1.4 minutes"})
    )
    line = "accounts add dana@corp.example --user-uuid dana --provider g_apps_oauth"
    assert admin.run(line).exit_code == 0
    assert admin.run("rules add --user-uuid dana").exit_code == 0

    assert admin.iterator(fake_gmail, oauth, redis_server).iterate().outcomes == {"dana": "idle"}

    listed = json.loads(admin.run("attachments list --user-uuid dana --json").stdout)
    assert [row["filename"] for row in listed] == ["m.pdf"]
    assert [(r.grant_type, r.subject) for r in oauth.requests] == [
        ("urn:ietf:params:oauth:grant-type:jwt-bearer", "dana@corp.example")
    ]


def test_authorize_explains_that_a_g_apps_oauth_account_s_tokens_come_from_its_domain(
    admin: Admin, oauth: FakeTokenEndpoint
) -> None:
    save_domain(admin, oauth, "corp.example")
    assert (
        admin.run(
            "accounts add dana@corp.example --user-uuid dana --provider g_apps_oauth"
        ).exit_code
        == 0
    )

    for line in (
        "accounts authorize dana --no-browser",
        "accounts authorize dana --refresh-token-stdin",
    ):
        refused = admin.run(line, stdin="t\n", **oauth_env(oauth))

        assert refused.exit_code == 2
        said = error_line(refused.stderr)
        assert (
            "dana is a g_apps_oauth account: its tokens come from the service account of its"
            in said
        )
        assert "Workspace domain corp.example" in said and "http" not in refused.stdout
    assert "oauth" not in account(admin, "dana") and oauth.requests == []


# -- the hint about rules --------------------------------------------------------------------


def test_add_says_nothing_is_crawled_until_the_account_has_a_rule(admin: Admin) -> None:
    assert admin.run("rules add --user-uuid ruled").exit_code == 0

    bare = admin.run(ADD_GMAIL.format(user="bare"), stdin="t\n")
    ruled = admin.run(ADD_GMAIL.format(user="ruled"), stdin="t\n")
    imap = admin.run(
        "accounts add i@example.com --user-uuid imap --provider imap_password --password-stdin"
        " --imap-host h",
        stdin="pw\n",
    )

    assert bare.exit_code == ruled.exit_code == imap.exit_code == 0
    assert bare.stdout.splitlines()[1:] == [
        "no rule yet: nothing is crawled until one is added "
        "(crawler rules add --user-uuid bare ...)"
    ]
    assert len(ruled.stdout.splitlines()) == 1 and "no rule" not in ruled.stdout
    assert NO_RULE.format(user="imap") in imap.stdout
