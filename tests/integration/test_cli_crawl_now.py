"""`crawler accounts crawl-now`, `crawler rules enable|disable`, and the one answer of every
command for a user_uuid it does not know, against the embedded MongoDB stand-in; what they
change is crawled by the real crawler on the fake Gmail."""

import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from bson import ObjectId

from crawler.blobs import FileBlobStore
from crawler.store.status import new_status
from standins.fakegmail import FakeGmail
from standins.fakeoauth import FakeTokenEndpoint
from tests.plugins.admin import ADD_GMAIL, ADD_IMAP, Admin, error_line
from tests.plugins.fakes import build_message

pytestmark = pytest.mark.integration

ERROR = {"type": "BadAccount", "message": "email is missing", "at": 5.0}


def status(admin: Admin, user_uuid: str) -> dict[str, Any]:
    found: dict[str, Any] = admin.db.crawl_status.find_one({"user_uuid": user_uuid})
    return found


def account_with_rule(admin: Admin, user: str, **fields: Any) -> None:
    """A gmail_oauth account with one rule, and a crawl status with `fields`."""
    assert admin.run(ADD_GMAIL.format(user=user), stdin="token").exit_code == 0
    assert admin.run(f"rules add --user-uuid {user}").exit_code == 0
    if fields:
        admin.db.crawl_status.insert_one(new_status(user, 0) | fields)


# -- accounts crawl-now ---------------------------------------------------------------------


def test_crawl_now_clears_a_throttle_backoff(admin: Admin) -> None:
    until = time.time() + 3600
    account_with_rule(
        admin,
        "slow",
        state="throttled",
        throttle_reason="over_quota",
        throttle_backoff_timestamp=until,
        next_crawl_at=until,
        consecutive_throttles=3,
    )
    before = time.time()

    done = admin.run("accounts crawl-now slow")

    assert done.exit_code == 0, done.stderr
    assert done.stdout.startswith("slow is due now: a worker of its shard crawls it")
    assert "it was throttled (over_quota) until" in done.stdout
    after = status(admin, "slow")
    assert (after["state"], after["throttle_backoff_timestamp"]) == ("idle", 0)
    assert after["consecutive_throttles"] == 0
    assert before <= after["next_crawl_at"] <= time.time()
    again = admin.run("accounts crawl-now slow")
    assert again.stdout.endswith("at its next pass; it was due already\n")


def test_crawl_now_retries_an_account_in_error_at_once(admin: Admin) -> None:
    later = time.time() + 6 * 3600
    fields = {"state": "error", "last_error": ERROR, "consecutive_errors": 4}
    account_with_rule(admin, "broken", next_crawl_at=later, **fields)

    done = admin.run("accounts crawl-now broken")

    assert done.exit_code == 0, done.stderr
    assert "it was in error (BadAccount), to be retried in 5h 59m: backoff cleared" in done.stdout
    after = status(admin, "broken")
    assert (after["state"], after["consecutive_errors"]) == ("idle", 0)
    assert after["next_crawl_at"] <= time.time()


def test_crawl_now_leaves_a_crawl_running_alone(admin: Admin) -> None:
    started = time.time() - 90
    fields = {"state": "crawling", "worker": "host:42", "last_started_at": started}
    account_with_rule(admin, "busy", next_crawl_at=started, **fields)

    done = admin.run("accounts crawl-now busy")

    assert done.exit_code == 0, done.stderr
    assert done.stdout.startswith("busy is being crawled now, by host:42 since ")
    assert "(1m 30s ago)" in done.stdout or "(1m 31s ago)" in done.stdout
    after = status(admin, "busy")
    assert {name: after[name] for name in fields} == fields


@pytest.mark.parametrize(
    ("provider", "says"),
    [
        (
            "gmail_oauth",
            "Google refused its grant (AuthRevoked); it is crawled at once after: "
            "crawler accounts authorize who",
        ),
        (
            "imap_password",
            "its IMAP server refused its password (AuthRevoked); it is crawled at "
            "once after: crawler accounts set-password who --password-stdin",
        ),
        (
            "g_apps_oauth",
            "Google refused it (AuthRevoked); it is crawled at once after crawler "
            "domains sync corp.example, if its user is active in the domain's directory",
        ),
    ],
)
def test_crawl_now_points_an_auth_failed_account_to_its_new_credentials(
    admin: Admin, provider: str, says: str
) -> None:
    account = {"user_uuid": "who", "email": "who@corp.example", "provider": provider}
    admin.db.accounts.insert_one(account | {"domain": "corp.example"})
    admin.db.rules.insert_one({"user_uuid": "who"})
    revoked = {"type": "AuthRevoked", "message": "invalid_grant", "at": 5.0}
    failed = {"state": "auth_failed", "next_crawl_at": None, "last_error": revoked}
    admin.db.crawl_status.insert_one(new_status("who", 0) | failed)

    refused = admin.run("accounts crawl-now who")

    assert refused.exit_code == 1
    assert error_line(refused.stderr) == f"error: who is auth_failed: {says}"
    assert status(admin, "who")["state"] == "auth_failed"


def test_crawl_now_refuses_an_account_without_an_enabled_rule(admin: Admin) -> None:
    admin.run(ADD_GMAIL.format(user="bare"), stdin="token")

    no_rule = admin.run("accounts crawl-now bare")
    admin.run("rules add --user-uuid bare --disabled")
    disabled = admin.run("accounts crawl-now bare")

    assert no_rule.exit_code == disabled.exit_code == 1
    assert error_line(no_rule.stderr) == (
        "error: bare has no rule: a crawl would take nothing; add one first "
        "(crawler rules add --user-uuid bare)"
    )
    assert "bare has no enabled rule" in error_line(disabled.stderr)
    assert "crawler rules enable ID" in disabled.stderr
    assert admin.db.crawl_status.count_documents({}) == 0


def test_crawl_now_gives_an_account_no_worker_has_seen_a_status_due_now(admin: Admin) -> None:
    account_with_rule(admin, "fresh")

    done = admin.run("accounts crawl-now fresh")

    assert done.exit_code == 0, done.stderr
    assert done.stdout == "fresh is due now: a worker of its shard crawls it at its next pass\n"
    assert status(admin, "fresh")["state"] == "idle"
    assert status(admin, "fresh")["next_crawl_at"] <= time.time()


def test_crawl_now_says_when_the_daily_limit_will_stop_the_crawl_again(admin: Admin) -> None:
    until = time.time() + 7200
    account_with_rule(
        admin,
        "heavy",
        state="throttled",
        throttle_reason="daily_limit",
        throttle_backoff_timestamp=until,
        next_crawl_at=until,
    )

    done = admin.run("accounts crawl-now heavy")

    assert done.exit_code == 0, done.stderr
    assert "note: it had reached CRAWLER_DAILY_DOWNLOAD_LIMIT" in done.stdout.splitlines()[1]


def test_crawl_now_says_when_google_refuses_the_domain_of_a_workspace_user(admin: Admin) -> None:
    until = time.time() + 1800
    refused = {"message": "unauthorized_client", "at": time.time(), "until": until}
    admin.db.domains.insert_one({"domain": "corp.example", "refused": refused})
    account = {"user_uuid": "dana", "email": "dana@corp.example", "provider": "g_apps_oauth"}
    admin.db.accounts.insert_one(account | {"domain": "corp.example"})
    admin.db.rules.insert_one({"user_uuid": "dana"})
    admin.db.crawl_status.insert_one(new_status("dana", 0) | {"next_crawl_at": until})

    done = admin.run("accounts crawl-now dana")

    assert done.exit_code == 0, done.stderr
    assert "it was idle, its next crawl in 29m" in done.stdout
    assert done.stdout.splitlines()[1].startswith(
        "note: Google refuses the service account of corp.example until "
    )
    assert "(crawler domains check corp.example once it is fixed)" in done.stdout


def test_a_throttled_account_made_due_by_crawl_now_is_crawled_at_the_next_pass(
    admin: Admin, fake_gmail: FakeGmail, redis_server: redis.Redis
) -> None:
    fake_gmail.add_account("alice@example.com").add_message(
        build_message(attachments={"q3.pdf": b"%PDF-1.4 q3"})
    )
    with FakeTokenEndpoint() as oauth:
        oauth.add_grant("refresh-alice", "alice@example.com")
        assert admin.run(ADD_GMAIL.format(user="alice"), stdin="refresh-alice").exit_code == 0
        assert admin.run("rules add --user-uuid alice").exit_code == 0
        iterator = admin.iterator(fake_gmail, oauth, redis_server)
        iterator.store.discover_accounts(time.time())
        until = time.time() + 3600
        throttled = {"state": "throttled", "throttle_backoff_timestamp": until}
        admin.db.crawl_status.update_one(
            {"user_uuid": "alice"}, {"$set": throttled | {"next_crawl_at": until}}
        )
        assert iterator.iterate().outcomes == {}  # backing off

        assert admin.run("accounts crawl-now alice").exit_code == 0

        assert iterator.iterate().outcomes == {"alice": "idle"}
    assert [row["filename"] for row in admin.db.attachments.find()] == ["q3.pdf"]


# -- rules enable | disable -----------------------------------------------------------------


def test_rules_disable_and_enable(admin: Admin) -> None:
    admin.run(ADD_GMAIL.format(user="u1"), stdin="token")
    first = admin.run("rules add --user-uuid u1").stdout.strip()
    second = admin.run("rules add --user-uuid u1 --filename *.pdf").stdout.strip()

    disabled = admin.run(f"rules disable {first}")
    again = admin.run(f"rules disable {first}")
    last = admin.run(f"rules disable {second}")

    assert disabled.exit_code == again.exit_code == last.exit_code == 0
    assert disabled.stdout == (
        f"disabled rule {first} of u1: it takes nothing from the next crawl on "
        "(the attachments it saved stay)\n"
    )
    assert again.stdout == f"rule {first} of u1 is disabled already\n"
    assert last.stdout.splitlines()[1] == (
        f"u1 has no enabled rule left: it is not crawled until one is enabled "
        f"(crawler rules enable {second})"
    )
    assert [rule["enabled"] for rule in admin.db.rules.find().sort("_id")] == [False, False]

    admin.db.crawl_status.insert_one(new_status("u1", 0) | {"next_crawl_at": time.time() + 900})
    enabled = admin.run(f"rules enable {first}")
    assert enabled.exit_code == 0
    assert enabled.stdout.startswith(f"enabled rule {first} of u1: its next crawl uses it (next")
    assert enabled.stdout.endswith("; crawler accounts crawl-now u1 crawls it at once\n")
    assert admin.run(f"rules enable {first}").stdout == f"rule {first} of u1 is enabled already\n"
    assert admin.db.rules.find_one({"_id": ObjectId(first)})["enabled"] is True
    listed = json.loads(admin.run("rules list --user-uuid u1 --json").stdout)
    assert [row["enabled"] for row in listed] == [True, False]


def test_rules_enable_refuses_an_unknown_or_unusable_rule(admin: Admin) -> None:
    admin.db.rules.insert_one(
        {"_id": "legacy", "user_uuid": "u1", "min_size": "big", "enabled": False}
    )

    unknown = admin.run("rules enable 0123456789abcdef01234567")
    unknown_too = admin.run("rules disable nothing-here")
    unusable = admin.run("rules enable legacy")

    assert unknown.exit_code == unknown_too.exit_code == 1
    assert error_line(unknown.stderr) == "error: no rule with id 0123456789abcdef01234567"
    assert error_line(unknown_too.stderr) == "error: no rule with id nothing-here"
    assert unusable.exit_code == 2
    assert error_line(unusable.stderr).startswith(
        "error: rule legacy cannot be enabled: the crawler refuses it: min_size must be"
    )
    assert admin.db.rules.find_one({"_id": "legacy"})["enabled"] is False


def test_a_disabled_rule_takes_nothing_until_enabled(
    admin: Admin, fake_gmail: FakeGmail, redis_server: redis.Redis
) -> None:
    fake_gmail.add_account("carol@example.com").add_message(
        build_message(attachments={"plan.pdf": b"%PDF-1.4 plan"})
    )
    with FakeTokenEndpoint() as oauth:
        oauth.add_grant("refresh-carol", "carol@example.com")
        assert admin.run(ADD_GMAIL.format(user="carol"), stdin="refresh-carol").exit_code == 0
        rule_id = admin.run("rules add --user-uuid carol --disabled").stdout.strip()
        iterator = admin.iterator(fake_gmail, oauth, redis_server)

        assert iterator.iterate().outcomes == {"carol": "idle"}  # resting: no enabled rule
        assert admin.db.attachments.count_documents({}) == 0
        assert admin.run(f"rules enable {rule_id}").exit_code == 0
        assert admin.run("accounts crawl-now carol").exit_code == 0
        assert iterator.iterate().outcomes == {"carol": "idle"}

    assert [row["filename"] for row in admin.db.attachments.find()] == ["plan.pdf"]


# -- unknown users --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "stdin"),
    [
        ("accounts crawl-now nobody", ""),
        ("accounts authorize nobody --refresh-token-stdin --no-verify", "token"),
        ("accounts remove nobody", ""),
        ("accounts set-password nobody --password-stdin", "pw"),
        ("rules list --user-uuid nobody", ""),
        ("rules list --user-uuid nobody --json", ""),
        ("attachments list --user-uuid nobody", ""),
        ("attachments list --user-uuid nobody --json", ""),
        ("attachments export --user-uuid nobody --to out/deeper", ""),
    ],
)
def test_every_command_says_no_account_for_an_unknown_user(
    admin: Admin, line: str, stdin: str
) -> None:
    admin.run(ADD_GMAIL.format(user="somebody"), stdin="token")  # not the one asked for
    admin.run("rules add --user-uuid somebody")

    refused = admin.process(line, stdin=stdin)

    assert refused.returncode == 1 and refused.stdout == ""
    assert error_line(refused.stderr) == "error: no account nobody"
    assert not (admin.cwd / "out").exists()
    assert admin.db.accounts.count_documents({}) == 1


def test_rules_test_of_an_unknown_user_says_no_account(admin: Admin, tmp_path: Path) -> None:
    eml = tmp_path / "m.eml"
    eml.write_bytes(build_message(attachments={"a.pdf": b"%PDF"}))

    refused = admin.run(f"rules test {eml} --user-uuid nobody")

    assert refused.exit_code == 1 and error_line(refused.stderr) == "error: no account nobody"


def test_what_a_removed_account_left_can_still_be_listed_and_exported(
    admin: Admin, tmp_path: Path
) -> None:
    admin.run(ADD_IMAP.format(user="gone") + " --imap-host h", stdin="pw")
    rule_id = admin.run("rules add --user-uuid gone").stdout.strip()
    blobs = FileBlobStore(admin.blob_dir)
    with blobs.writer() as writer:
        writer.write(b"kept")
        key = blobs.commit(writer)
    attachment = {"user_uuid": "gone", "gm_msgid": 1, "part": "2", "filename": "kept.txt"}
    admin.db.attachments.insert_one(attachment | {"blob": key, "sha256": key, "saved_at": 1})
    assert admin.run("accounts remove gone").exit_code == 0

    rules = admin.run("rules list --user-uuid gone --json")
    listed = admin.run("attachments list --user-uuid gone --json")
    exported = admin.run("attachments export --user-uuid gone --to", str(tmp_path / "o"))

    assert [row["id"] for row in json.loads(rules.stdout)] == [rule_id]
    assert [row["filename"] for row in json.loads(listed.stdout)] == ["kept.txt"]
    assert exported.exit_code == 0, exported.stderr
    assert (tmp_path / "o" / "kept.txt").read_bytes() == b"kept"


def test_rules_list_of_an_account_without_rules_says_so(admin: Admin) -> None:
    admin.run(ADD_GMAIL.format(user="bare"), stdin="token")

    shown = admin.run("rules list --user-uuid bare")
    as_json = admin.run("rules list --user-uuid bare --json")

    assert shown.exit_code == as_json.exit_code == 0
    assert shown.stdout == (
        "bare has no rule: nothing is crawled until one is added "
        "(crawler rules add --user-uuid bare)\n"
    )
    assert json.loads(as_json.stdout) == []
