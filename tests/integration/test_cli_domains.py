"""`crawler domains` against the fake token endpoint and the fake Directory API: a key stored
and checked, a missing delegation explained, bad key files refused, a domain's directory synced
again and again, and the synced accounts crawled without a single refresh token."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from crawler.delegation import DIRECTORY_SCOPE
from crawler.oauth import IMAP_SCOPE
from standins.fakedirectory import FakeDirectory
from standins.fakegmail import FakeGmail
from standins.fakeoauth import FakeTokenEndpoint
from tests.plugins.admin import Admin, error_line
from tests.plugins.fakes import build_message

pytestmark = pytest.mark.integration

DOMAIN = "corp.example"
ADMIN = f"it@{DOMAIN}"


class Google:
    """The fake token endpoint and directory of one Workspace domain, and a key file for it."""

    def __init__(self, oauth: FakeTokenEndpoint, directory: FakeDirectory, folder: Path) -> None:
        self.oauth, self.directory = oauth, directory
        self.key_file = oauth.new_service_account()
        self.key_path = folder / "key.json"
        self.key_path.write_text(json.dumps(self.key_file))
        oauth.add_domain_user(ADMIN, is_admin=True)

    def grant(self) -> None:
        self.oauth.delegate(DOMAIN, self.key_file["client_id"], [IMAP_SCOPE, DIRECTORY_SCOPE])

    def env(self) -> dict[str, str]:
        return {
            "CRAWLER_OAUTH_TOKEN_URL": self.oauth.url,
            "CRAWLER_DIRECTORY_URL": self.directory.root_url,
        }


@pytest.fixture
def google(tmp_path: Path) -> Iterator[Google]:
    with FakeTokenEndpoint() as oauth, FakeDirectory.for_endpoint(oauth) as directory:
        yield Google(oauth, directory, tmp_path)


def add_domain(admin: Admin, google: Google, *options: str, stdin: str | None = None) -> Any:
    source = "-" if stdin is not None else str(google.key_path)
    line = f"domains add {DOMAIN} --service-account-file {source} --admin {ADMIN}"
    return admin.run(line, *options, stdin=stdin, **google.env())


def test_a_checked_key_is_stored_encrypted_and_listed_without_a_secret(
    admin: Admin, google: Google
) -> None:
    google.grant()

    result = add_domain(admin, google, stdin=google.key_path.read_text())

    assert result.exit_code == 0, result.output
    stored = admin.db.domains.find_one({"domain": DOMAIN})
    assert (stored["client_id"], stored["admin"]) == (google.key_file["client_id"], ADMIN)
    private = google.key_file["private_key"]
    assert private.splitlines()[1] not in json.dumps(stored, default=str)
    listing = admin.run("domains list --json")
    [row] = json.loads(listing.output)
    assert (row["domain"], row["refused"], row["accounts"]) == (DOMAIN, None, 0)
    assert private.splitlines()[1] not in listing.output
    assert google.key_file["client_email"] in admin.run("domains list").output


def test_a_missing_delegation_stores_the_key_and_names_the_grant_to_make(
    admin: Admin, google: Google
) -> None:
    result = add_domain(admin, google)

    assert result.exit_code == 1
    line = error_line(result.stderr)
    assert f"add client ID {google.key_file['client_id']}" in line
    assert IMAP_SCOPE in line and DIRECTORY_SCOPE in line
    assert admin.db.domains.count_documents({"domain": DOMAIN}) == 1

    google.grant()
    checked = admin.run(f"domains check {DOMAIN}", **google.env())
    assert checked.exit_code == 0, checked.output
    assert "accepts the service account" in checked.output


@pytest.mark.parametrize(
    ("key_file", "reason"),
    [
        ("not json", "not JSON"),
        ('{"type": "authorized_user"}', "not a service account key"),
        ('{"type": "service_account", "client_email": "a@b"}', "no usable client_id"),
    ],
)
def test_a_bad_key_file_is_refused_and_nothing_stored(
    admin: Admin, google: Google, key_file: str, reason: str
) -> None:
    result = add_domain(admin, google, stdin=key_file)

    assert result.exit_code == 2
    assert reason in error_line(result.stderr)
    assert admin.db.domains.count_documents({}) == 0


def test_a_key_that_is_not_the_service_account_s_is_refused(admin: Admin, google: Google) -> None:
    google.grant()
    stranger = google.oauth.new_service_account()  # a key Google does not know for this account
    forged = {**google.key_file, "private_key": stranger["private_key"]}

    result = add_domain(admin, google, stdin=json.dumps(forged))

    assert result.exit_code == 1
    assert "Invalid JWT Signature" in error_line(result.stderr)
    assert admin.db.domains.count_documents({}) == 0


def test_sync_adds_the_active_users_again_and_again_and_reports_those_gone(
    admin: Admin, google: Google
) -> None:
    google.grant()
    assert add_domain(admin, google).exit_code == 0
    for n in range(1_100):  # three pages of the directory
        google.oauth.add_domain_user(f"user{n:04}@{DOMAIN}", suspended=n % 100 == 7)
    google.oauth.add_domain_user(f"old@{DOMAIN}", archived=True)
    sync = f"domains sync {DOMAIN} --content-type application/pdf"

    first = admin.run(sync, **google.env())

    assert first.exit_code == 0, first.output
    assert "1102 users in the directory (12 suspended or archived), 1090 accounts added" in (
        first.output
    )
    accounts = list(admin.db.accounts.find({"domain": DOMAIN}))
    assert len(accounts) == 1_090
    assert {a["provider"] for a in accounts} == {"g_apps_oauth"}
    assert not any("oauth" in a for a in accounts)
    assert admin.db.rules.count_documents({"content_types": ["application/pdf"]}) == 1_090
    pages = [r for r in google.directory.requests if r.status == 200]
    assert len(pages) == 3

    google.oauth.remove_domain_user(f"user0001@{DOMAIN}")
    google.oauth.add_domain_user(f"user0002@{DOMAIN}", suspended=True)
    google.oauth.add_domain_user(f"new@{DOMAIN}")
    second = admin.run(sync, **google.env())
    assert "1 accounts added, 1088 there already" in second.output
    assert f"2 accounts no longer active (--prune removes them): user0001@{DOMAIN}" in (
        second.output
    )
    assert admin.db.accounts.count_documents({"domain": DOMAIN}) == 1_091

    pruned = admin.run(f"{sync} --prune", **google.env())
    assert "0 accounts added" in pruned.output
    assert "2 accounts removed" in pruned.output
    assert admin.db.accounts.count_documents({"domain": DOMAIN}) == 1_089
    assert admin.db.rules.count_documents({}) == 1_089  # their rules went with them


def test_sync_crawls_again_an_account_whose_user_came_back(
    admin: Admin, google: Google, fake_gmail: FakeGmail, redis_server: redis.Redis
) -> None:
    google.grant()
    assert add_domain(admin, google).exit_code == 0
    google.oauth.add_domain_user(f"ann@{DOMAIN}")
    fake_gmail.add_account(f"ann@{DOMAIN}")
    fake_gmail.add_account(ADMIN)
    assert admin.run(f"domains sync {DOMAIN}", **google.env()).exit_code == 0
    iterator = admin.iterator(fake_gmail, google.oauth, redis_server)
    google.oauth.remove_domain_user(f"ann@{DOMAIN}")  # deleted, then restored by the admin
    assert sorted(iterator.iterate().outcomes.values()) == ["auth_failed", "idle"]
    google.oauth.add_domain_user(f"ann@{DOMAIN}")

    again = admin.run(f"domains sync {DOMAIN}", **google.env())

    assert "0 accounts added, 2 there already (1 crawled again: their users are back)" in (
        again.output
    )
    assert sorted(iterator.iterate().outcomes.values()) == ["idle"]


def test_a_synced_domain_is_crawled_without_a_refresh_token(
    admin: Admin, google: Google, fake_gmail: FakeGmail, redis_server: redis.Redis
) -> None:
    google.grant()
    assert add_domain(admin, google).exit_code == 0
    for name in ("ann", "bob"):
        google.oauth.add_domain_user(f"{name}@{DOMAIN}")
        mailbox = fake_gmail.add_account(f"{name}@{DOMAIN}")
        mailbox.add_message(build_message(attachments={f"{name}.pdf": b"%PDF-1.4 " * 40}))
    fake_gmail.add_account(ADMIN)
    assert admin.run(f"domains sync {DOMAIN}", **google.env()).exit_code == 0

    outcomes = admin.iterator(fake_gmail, google.oauth, redis_server).iterate().outcomes

    assert set(outcomes.values()) == {"idle"} and len(outcomes) == 3
    names = sorted(doc["filename"] for doc in admin.db.attachments.find())
    assert names == ["ann.pdf", "bob.pdf"]


def test_sync_and_check_of_an_unknown_domain_fail_in_one_line(admin: Admin, google: Google) -> None:
    for command in ("sync", "check"):
        result = admin.run(f"domains {command} {DOMAIN}", **google.env())
        assert result.exit_code == 1
        assert f"no domain {DOMAIN}" in error_line(result.stderr)
    assert admin.run("domains remove nowhere.example").exit_code == 1


def test_remove_forgets_the_key_and_keeps_the_accounts(admin: Admin, google: Google) -> None:
    google.grant()
    assert add_domain(admin, google).exit_code == 0
    google.oauth.add_domain_user(f"ann@{DOMAIN}")
    assert admin.run(f"domains sync {DOMAIN}", **google.env()).exit_code == 0

    assert admin.run(f"domains remove {DOMAIN}").exit_code == 0

    assert admin.db.domains.count_documents({}) == 0
    assert admin.db.accounts.count_documents({"domain": DOMAIN}) == 2


def test_status_shows_a_refused_domain_and_never_its_key(
    admin: Admin, google: Google, fake_gmail: FakeGmail, redis_server: redis.Redis
) -> None:
    assert add_domain(admin, google).exit_code == 1  # stored; the delegation is missing
    google.oauth.add_domain_user(f"ann@{DOMAIN}")
    fake_gmail.add_account(f"ann@{DOMAIN}")
    added = admin.run(f"accounts add ann@{DOMAIN} --user-uuid ann --provider g_apps_oauth")
    assert added.exit_code == 0, added.output
    assert admin.run("rules add --user-uuid ann").exit_code == 0

    outcomes = admin.iterator(fake_gmail, google.oauth, redis_server).iterate().outcomes

    assert outcomes == {"ann": "deferred"}
    report = json.loads(admin.run("status --json").stdout)
    [(domain, until, why)] = report["refused_domains"]
    assert domain == DOMAIN and until.endswith("UTC")
    assert f"add client ID {google.key_file['client_id']}" in why
    shown = admin.run("status").stdout
    assert "Workspace domains Google refuses" in shown
    private = google.key_file["private_key"].splitlines()[1:-1]
    for output in (json.dumps(report), shown, admin.run("domains list --json").stdout):
        assert not [line for line in private if line in output]
