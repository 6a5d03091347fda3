"""The operator commands (`status`, `accounts`, `rules`, `attachments`) against the embedded
MongoDB stand-in and a real Redis: in-process through typer's runner, and as real processes
where standard input, exit codes and tracebacks matter. Accounts and rules made by the CLI are
crawled by the real crawler, on the fake Gmail and on Dovecot."""

import json
import os
import shlex
import stat
import time
import uuid
from email.message import EmailMessage
from pathlib import Path

import pytest
import redis
from bson import ObjectId

from crawler.blobs import FileBlobStore
from crawler.iterate import CrawlIterator
from crawler.store.status import new_status
from standins.fakegmail import FakeGmail
from standins.fakeoauth import FakeTokenEndpoint
from tests.plugins.admin import (
    ADD_GMAIL,
    ADD_IMAP,
    Admin,
    cipher,
    closed_port,
    consent_flow_in_browser,
    error_line,
)
from tests.plugins.dovecot import Dovecot
from tests.plugins.fakes import build_message

pytestmark = pytest.mark.integration

# -- accounts -----------------------------------------------------------------------------


# Unchecked: these tests store made-up tokens (tests/integration/test_cli_accounts_authorize.py
# has the check with Google).
def test_a_gmail_account_keeps_its_refresh_token_encrypted(admin: Admin) -> None:
    added = admin.process(ADD_GMAIL.format(user="alice"), stdin="1//refresh-SECRET-token\n")

    assert added.returncode == 0, added.stderr
    raw = admin.db.accounts.find_one({"user_uuid": "alice"})
    assert (raw["email"], raw["provider"]) == ("alice@example.com", "gmail_oauth")
    assert (raw["oauth"]["access_token"], raw["oauth"]["expires_at"]) == ("", 0)
    assert cipher().decrypt(raw["oauth"]["refresh_token"], "rt") == "1//refresh-SECRET-token"
    assert "SECRET" not in json.dumps(raw, default=str)


def test_an_imap_account_keeps_its_password_encrypted_and_its_server(admin: Admin) -> None:
    added = admin.run(
        ADD_IMAP.format(user="bob") + " --imap-host imap.example.com --imap-port 1143"
        " --no-imap-tls --username bob.b --folder Archive/2024",
        stdin="pass word SECRET\n",
    )

    assert added.exit_code == 0, added.stderr
    raw = admin.db.accounts.find_one({"user_uuid": "bob"})
    assert raw["imap"] == {"host": "imap.example.com", "port": 1143, "tls": False}
    assert raw["provider"] == "imap_password"
    assert (raw["username"], raw["folder"]) == ("bob.b", "Archive/2024")
    assert cipher().decrypt(raw["password"], "password") == "pass word SECRET"
    assert "oauth" not in raw and "SECRET" not in json.dumps(raw, default=str)


def test_accounts_list_shows_state_next_crawl_and_never_a_secret(admin: Admin) -> None:
    admin.run(ADD_GMAIL.format(user="alice"), stdin="refresh-SECRET")
    admin.run(ADD_IMAP.format(user="bob") + " --imap-host h", stdin="pw-SECRET")
    admin.run("rules add --user-uuid alice")
    admin.run("rules add --user-uuid alice --disabled")
    until = time.time() + 600
    throttled = {"state": "throttled", "throttle_backoff_timestamp": until, "next_crawl_at": until}
    admin.db.crawl_status.insert_one(new_status("alice", 0) | throttled)
    ciphertext = admin.db.accounts.find_one({"user_uuid": "alice"})["oauth"]["refresh_token"]

    listed = admin.run("accounts list --json")
    shown = admin.run("accounts list")

    assert json.loads(listed.stdout) == [
        {
            "email": "alice@example.com",
            "user_uuid": "alice",
            "provider": "gmail_oauth",
            "rules": 2,
            "enabled_rules": 1,
            "state": "throttled",
            "next_crawl_at": until,
        },
        {
            "email": "bob@example.com",
            "user_uuid": "bob",
            "provider": "imap_password",
            "rules": 0,
            "enabled_rules": 0,
            "state": None,
            "next_crawl_at": None,
        },
    ]
    [alice] = [line for line in shown.stdout.splitlines() if "alice@example.com" in line]
    for text in ("2 (1 disabled)", "throttled", time.strftime("%Y-%m-%d", time.gmtime(until))):
        assert text in alice, text
    assert "(in 9m" in alice or "(in 10m" in alice
    [bob] = [line for line in shown.stdout.splitlines() if "bob@example.com" in line]
    assert "no rule" in bob
    assert len(json.loads(admin.run("accounts list --limit 1 --json").stdout)) == 1
    for output in (listed.stdout, shown.stdout):
        assert "SECRET" not in output and ciphertext not in output


def test_a_second_account_with_the_same_user_uuid_is_refused(admin: Admin) -> None:
    assert admin.run(ADD_GMAIL.format(user="a"), stdin="one").exit_code == 0

    again = admin.run(ADD_GMAIL.format(user="a"), stdin="two")

    assert again.exit_code == 1 and "exists already" in error_line(again.stderr)
    assert admin.db.accounts.count_documents({}) == 1


@pytest.mark.parametrize(
    ("line", "stdin", "says"),
    [
        ("accounts add x@example.com --user-uuid 'a b' --refresh-token-stdin", "t", "usable id"),
        (
            f"accounts add x@example.com --user-uuid {'a' * 129} --refresh-token-stdin",
            "t",
            "is 129 characters long (at most 128)",
        ),
        ("accounts add not-an-address --user-uuid a --refresh-token-stdin", "t", "not a mailbox"),
        ("accounts add x@example.com --user-uuid a", "t", "needs --refresh-token-stdin"),
        (ADD_GMAIL.format(user="a"), "\n", "no refresh token on standard input"),
        (ADD_GMAIL.format(user="a") + " --imap-host h", "t", "for --provider imap_password"),
        (ADD_IMAP.format(user="a"), "pw", "needs --imap-host"),
        (ADD_IMAP.format(user="a") + " --imap-host 'h x'", "pw", "needs --imap-host"),
        (
            "accounts add a@example.com --user-uuid a --provider imap_password --imap-host h",
            "pw",
            "needs --password-stdin",
        ),
    ],
)
def test_a_bad_account_is_refused_in_one_line(
    admin: Admin, line: str, stdin: str, says: str
) -> None:
    refused = admin.run(line, stdin=stdin)

    assert refused.exit_code == 2 and says in error_line(refused.stderr)
    assert admin.db.accounts.count_documents({}) == 0


def test_a_folder_that_would_inject_an_imap_command_is_refused(admin: Admin) -> None:
    line = ADD_IMAP.format(user="a") + " --imap-host h --folder"

    refused = admin.run(line, "INBOX\r\nA1 DELETE INBOX", stdin="pw")

    assert refused.exit_code == 2 and "control characters" in error_line(refused.stderr)


def test_remove_takes_the_account_and_its_status_but_not_its_rules(admin: Admin) -> None:
    admin.run(ADD_GMAIL.format(user="a"), stdin="t")
    admin.run("rules add --user-uuid a")
    admin.db.crawl_status.insert_one(new_status("a", 0))

    removed = admin.run("accounts remove a")
    unknown = admin.run("accounts remove a")

    assert removed.exit_code == 0
    assert admin.db.accounts.count_documents({}) == admin.db.crawl_status.count_documents({}) == 0
    assert admin.db.rules.count_documents({"user_uuid": "a"}) == 1
    assert unknown.exit_code == 1 and "no account" in error_line(unknown.stderr)
    assert "rules" in admin.run("accounts remove --help").stdout


def test_authorize_replaces_the_token_and_brings_an_auth_failed_account_back(
    admin: Admin,
) -> None:
    admin.run(ADD_GMAIL.format(user="a"), stdin="old")
    cached = {"oauth.access_token": "x", "oauth.expires_at": 9e9}
    admin.db.accounts.update_one({"user_uuid": "a"}, {"$set": cached})
    error = {"type": "AuthRevoked", "message": "invalid_grant", "at": 5.0}
    failed = {"state": "auth_failed", "next_crawl_at": None, "last_error": error}
    admin.db.crawl_status.insert_one(new_status("a", 0) | failed | {"auth_revoked": True})
    before = time.time()

    done = admin.run("accounts authorize a --refresh-token-stdin --no-verify", stdin="new\n")

    assert done.exit_code == 0 and "due now" in done.stdout
    oauth = admin.db.accounts.find_one({"user_uuid": "a"})["oauth"]
    assert cipher().decrypt(oauth["refresh_token"], "rt") == "new"
    assert (oauth["access_token"], oauth["expires_at"]) == ("", 0)
    status = admin.db.crawl_status.find_one({"user_uuid": "a"})
    assert (status["state"], status["last_error"], status["auth_revoked"]) == ("idle", None, False)
    assert before <= status["next_crawl_at"] <= time.time()


def test_authorize_refuses_an_unknown_or_password_account(admin: Admin) -> None:
    admin.run(ADD_IMAP.format(user="b") + " --imap-host h", stdin="pw")

    unknown = admin.run("accounts authorize nobody --refresh-token-stdin", stdin="t")
    password = admin.run("accounts authorize b --refresh-token-stdin", stdin="t")
    no_flag = admin.run("accounts authorize b --no-browser", stdin="t")

    assert unknown.exit_code == 1 and "no account" in error_line(unknown.stderr)
    assert password.exit_code == 2 and "no refresh token" in error_line(password.stderr)
    assert no_flag.exit_code == 2 and "no refresh token" in error_line(no_flag.stderr)
    assert "oauth" not in admin.db.accounts.find_one({"user_uuid": "b"})


# -- the crawler reads what the CLI stores --------------------------------------------------


def test_a_gmail_account_added_and_reauthorized_by_the_cli_is_crawled(
    admin: Admin, fake_gmail: FakeGmail, redis_server: redis.Redis
) -> None:
    with FakeTokenEndpoint() as oauth:
        mailbox = fake_gmail.add_account("alice@example.com")
        mailbox.add_message(build_message(attachments={"q3.pdf": b"%PDF-1.4 q3"}))
        oauth.add_grant("refresh-old", "alice@example.com")
        oauth.revoke("refresh-old")
        added = admin.process(ADD_GMAIL.format(user="alice"), stdin="refresh-old\n")
        assert added.returncode == 0, added.stderr
        assert admin.run("rules add --user-uuid alice --filename *.pdf").exit_code == 0
        iterator = admin.iterator(fake_gmail, oauth, redis_server)

        assert iterator.iterate().outcomes == {"alice": "auth_failed"}
        oauth.add_grant("refresh-new", "alice@example.com")
        authorized = admin.run(
            "accounts authorize alice --refresh-token-stdin --no-verify", stdin="refresh-new"
        )
        assert authorized.exit_code == 0, authorized.stderr
        assert iterator.iterate().outcomes == {"alice": "idle"}

    listed = json.loads(admin.run("attachments list --user-uuid alice --json").stdout)
    assert [(row["filename"], row["size"]) for row in listed] == [("q3.pdf", 11)]
    assert oauth.refresh_count("refresh-new") == 1


def consent_in_browser(admin: Admin, oauth: FakeTokenEndpoint, user: str) -> tuple[int, str]:
    """`accounts authorize` with the consent flow; the test plays the browser. (exit, stderr)"""
    done = consent_flow_in_browser(admin, oauth, f"accounts authorize {user} --no-browser")
    return done.returncode, done.stderr


def test_authorize_runs_the_consent_flow_with_a_loopback_redirect(
    admin: Admin, fake_gmail: FakeGmail, redis_server: redis.Redis
) -> None:
    with FakeTokenEndpoint() as oauth:
        fake_gmail.add_account("carol@example.com").add_message(
            build_message(attachments={"plan.pdf": b"%PDF-1.4 plan"})
        )
        assert admin.run(ADD_GMAIL.format(user="carol"), stdin="revoked\n").exit_code == 0
        assert admin.run("rules add --user-uuid carol").exit_code == 0

        assert consent_in_browser(admin, oauth, "carol") == (0, "")

        iterator = admin.iterator(fake_gmail, oauth, redis_server)
        assert iterator.iterate().outcomes == {"carol": "idle"}
        [consent, exchange, refresh] = oauth.requests
        assert (consent.method, consent.path.partition("?")[0]) == ("GET", "/auth")
        assert (exchange.grant_type, refresh.grant_type) == ("authorization_code", "refresh_token")
    stored = admin.db.accounts.find_one({"user_uuid": "carol"})["oauth"]["refresh_token"]
    assert cipher().decrypt(stored, "refresh_token").startswith("1//fake-")


def test_a_refused_consent_changes_nothing_and_says_why(admin: Admin) -> None:
    with FakeTokenEndpoint() as oauth:
        assert admin.run(ADD_GMAIL.format(user="dan"), stdin="old-token\n").exit_code == 0
        oauth.consent = False

        code, stderr = consent_in_browser(admin, oauth, "dan")

    assert code == 1 and "consent was not given: access_denied" in error_line(stderr)
    stored = admin.db.accounts.find_one({"user_uuid": "dan"})["oauth"]["refresh_token"]
    assert cipher().decrypt(stored, "refresh_token") == "old-token"


def test_an_imap_account_added_by_the_cli_is_crawled_on_dovecot(
    admin: Admin, dovecot: Dovecot, redis_server: redis.Redis
) -> None:
    user = f"u{uuid.uuid4().hex[:10]}"
    dovecot.add_user(user, "app-password", [build_message(attachments={"a.txt": b"on dovecot"})])
    server = f"--imap-host {dovecot.host} --imap-port {dovecot.port} --no-imap-tls"
    line = f"{ADD_IMAP.format(user=user)} --username {user} {server}"
    added = admin.process(line, stdin="app-password\n")
    assert added.returncode == 0, added.stderr
    admin.run(f"rules add --user-uuid {user}")

    iterator = CrawlIterator(admin.db, settings=admin.settings(), redis_client=redis_server)

    assert iterator.iterate().outcomes == {user: "idle"}
    out = admin.cwd / "out"
    exported = admin.run(f"attachments export --user-uuid {user} --to", str(out))
    assert exported.exit_code == 0, exported.stderr
    assert (out / "a.txt").read_bytes() == b"on dovecot"


# -- rules ----------------------------------------------------------------------------------


def test_rules_add_stores_a_validated_rule_and_prints_its_id(admin: Admin) -> None:
    added = admin.run(
        "rules add --user-uuid u1 --filename *.pdf --content-type application/pdf"
        " --content-type application/x-pdf --min-size 10 --disabled"
    )

    assert added.exit_code == 0
    rule_id = added.stdout.strip()
    assert admin.db.rules.find_one({"_id": ObjectId(rule_id)}) == {
        "_id": ObjectId(rule_id),
        "user_uuid": "u1",
        "filename": "*.pdf",
        "content_types": ["application/pdf", "application/x-pdf"],
        "min_size": 10,
        "enabled": False,
    }
    assert "no account u1 yet" in added.stderr


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ("--user-uuid u1 --min-size 5 --max-size 1", "min_size 5 is above max_size 1"),
        ("--user-uuid u1 --min-size -1", "min_size must be a non-negative integer"),
        ("--user-uuid u1 --content-type pdf", "content_types has invalid entries"),
        ("--user-uuid u1 --query 'from:(bob'", "unbalanced parentheses"),
        ("--user-uuid u1 --query 'subject:\"open'", "unbalanced double quote"),
        ("--user-uuid u1 --filename 'a\nb'", "control character"),
        ("--user-uuid 'a{b}'", "not a usable id"),
        (f"--user-uuid {'a' * 129}", "is 129 characters long (at most 128)"),
    ],
)
def test_a_bad_rule_is_refused_in_one_line_naming_the_reason(
    admin: Admin, options: str, says: str
) -> None:
    refused = admin.run(f"rules add {options}")

    assert refused.exit_code == 2
    assert error_line(refused.stderr).startswith("error: bad rule: ")
    assert says in refused.stderr
    assert admin.db.rules.count_documents({}) == 0


def test_rules_add_refuses_a_rule_past_crawler_max_rules(admin: Admin) -> None:
    admin.db.rules.insert_many([{"user_uuid": "u1"}, {"user_uuid": "u1", "enabled": False}])
    assert admin.run("rules add --user-uuid u2", CRAWLER_MAX_RULES="2").exit_code == 0

    refused = admin.run("rules add --user-uuid u1 --disabled", CRAWLER_MAX_RULES="2")

    assert refused.exit_code == 2
    assert error_line(refused.stderr) == (
        "error: u1 has 2 rules already, as many as CRAWLER_MAX_RULES (2) allows:"
        " remove one (crawler rules remove) or raise CRAWLER_MAX_RULES"
    )
    assert admin.db.rules.count_documents({"user_uuid": "u1"}) == 2
    assert admin.run("rules add --user-uuid u1", CRAWLER_MAX_RULES="3").exit_code == 0


def test_rules_list_and_remove(admin: Admin) -> None:
    first = admin.run("rules add --user-uuid u1 --query from:bob").stdout.strip()
    admin.run("rules add --user-uuid u2")
    admin.db.rules.insert_one({"_id": "legacy-1", "user_uuid": "u1", "min_size": "big"})

    listed = json.loads(admin.run("rules list --user-uuid u1 --json").stdout)
    table = admin.run("rules list").stdout

    assert [(row["id"], row["query"], row["problem"]) for row in listed] == [
        ("legacy-1", None, "min_size must be a non-negative integer of bytes, not 'big'"),
        (first, "from:bob", None),  # by _id: MongoDB sorts strings before ObjectIds
    ]
    assert first in table and "u2" in table and "legacy-1" in table
    assert admin.run(f"rules remove {first}").exit_code == 0
    assert admin.run("rules remove legacy-1").exit_code == 0
    unknown = admin.run(f"rules remove {first}")
    assert unknown.exit_code == 1 and "no rule" in error_line(unknown.stderr)
    assert [rule["user_uuid"] for rule in admin.db.rules.find()] == ["u2"]


def several_attachments(path: Path) -> Path:
    """A message: a body, a 3,000-byte PDF, a 6,000-byte photo, notes, an inline logo."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "b@example.com", "a@example.com", "Files"
    message.set_content("See attached.\n")
    message.add_attachment(b"%" * 3000, maintype="application", subtype="pdf", filename="r.pdf")
    message.add_attachment(b"J" * 6000, maintype="image", subtype="jpeg", filename="photo.jpg")
    message.add_attachment(b"n" * 100, maintype="text", subtype="plain", filename="notes.txt")
    logo = b"P" * 50
    message.add_attachment(
        logo, maintype="image", subtype="png", disposition="inline", cid="<logo@example.com>"
    )
    path.write_bytes(message.as_bytes())
    return path


def test_rules_test_shows_which_rules_take_which_parts(admin: Admin) -> None:
    eml = shlex.quote(str(several_attachments(admin.cwd / "several.eml")))
    pdf = admin.run("rules add --user-uuid u1 --filename *.PDF").stdout.strip()
    image = admin.run("rules add --user-uuid u1 --content-type image/* --query x").stdout.strip()
    big = admin.run("rules add --user-uuid u1 --min-size 5000").stdout.strip()
    admin.run("rules add --user-uuid u1 --disabled")  # would take everything, if enabled

    report = json.loads(admin.run(f"rules test {eml} --user-uuid u1 --json").stdout)
    shown = admin.run(f"rules test {eml} --user-uuid u1").stdout

    taken = {
        row["part"]: (row["filename"], row["size"], set(row["rules"])) for row in report["parts"]
    }
    assert taken == {
        "2": ("r.pdf", 3000, {pdf}),
        "3": ("photo.jpg", 6000, {image, big}),
        "4": ("notes.txt", 100, set()),
        "5": (None, 50, {image}),  # an inline image counts only for a rule that wants images
    }
    assert set(report["rules"]) == {pdf, image, big}
    assert "photo.jpg" in shown and image in shown and "Gmail runs the queries" in shown


def test_rules_test_with_options_a_stored_rule_or_nothing(admin: Admin) -> None:
    eml = shlex.quote(str(several_attachments(admin.cwd / "several.eml")))
    rule_id = admin.run("rules add --user-uuid u1 --content-type text/*").stdout.strip()

    def taken(options: str) -> dict[str, list[str]]:
        result = admin.run(f"rules test {eml} {options} --json")
        assert result.exit_code == 0, result.stderr
        return {row["part"]: row["rules"] for row in json.loads(result.stdout)["parts"]}

    assert taken("") == {"2": ["options"], "3": ["options"], "4": ["options"], "5": []}
    assert taken("--max-size 200") == {"2": [], "3": [], "4": ["options"], "5": []}
    assert taken(f"--rule-id {rule_id}") == {"2": [], "3": [], "4": [rule_id], "5": []}
    disabled = admin.run(f"rules test {eml} --filename *.pdf --disabled")
    assert "disabled: it takes nothing" in disabled.stdout
    both = admin.run(f"rules test {eml} --rule-id {rule_id} --filename x")
    assert both.exit_code == 2 and "--rule-id" in error_line(both.stderr)
    bad = admin.run(f"rules test {eml} --content-type nonsense")
    assert bad.exit_code == 2 and "bad rule" in error_line(bad.stderr)
    missing = admin.run(f"rules test {eml} --rule-id 0123456789abcdef01234567")
    assert missing.exit_code == 1 and "no rule" in error_line(missing.stderr)


# -- status ---------------------------------------------------------------------------------


def test_status_shows_workers_states_throttles_failures_and_queues(
    admin: Admin, redis_server: redis.Redis
) -> None:
    now = time.time()
    revoked = {"type": "AuthRevoked", "message": "invalid_grant [revoked]", "at": now - 60}
    missing = {"type": "BadAccount", "message": "email is missing", "at": now - 30}
    throttled = {
        "state": "throttled",
        "throttle_backoff_timestamp": now + 600,
        "next_crawl_at": now + 600,
        "throttle_reason": "over_quota",
        "consecutive_throttles": 2,
        "totals": {"messages": 2, "attachments": 3, "bytes": 500},
    }
    admin.db.crawl_status.insert_many(
        [
            new_status("calm", now) | {"totals": {"messages": 5, "attachments": 7, "bytes": 1000}},
            new_status("slow", now) | throttled,
            new_status("gone", now)
            | {"state": "auth_failed", "last_error": revoked, "next_crawl_at": None},
            new_status("broken", now)
            | {"state": "error", "last_error": missing, "next_crawl_at": now + 300},
            new_status("capped", now) | {"folder_warning": "exactly 1,000 messages"},
        ]
    )
    keys = admin.keys
    redis_server.zadd(keys.workers, {"w-b": now + 30, "w-a": now + 20, "w-dead": now - 5})
    redis_server.rpush(keys.uids("slow"), 5, 6, 7)
    redis_server.sadd(keys.inflight("slow"), 8)
    redis_server.sadd(keys.crawls, "slow")
    redis_server.set(keys.lease("slow"), "w-a")

    report = json.loads(admin.run("status --json").stdout)
    table = admin.run("status").stdout

    states = {"idle": 2, "crawling": 0, "throttled": 1, "auth_failed": 1, "error": 1}
    assert report["accounts_by_state"] == states
    shards = {row["worker"]: row["shard"] for row in report["workers"]}
    assert shards == {"w-a": "0/2", "w-b": "1/2", "w-dead": None}
    assert 20 < max(row["expires_in"] for row in report["workers"]) <= 30
    (slow,) = report["throttled"]
    assert (slow["user_uuid"], slow["reason"], slow["until"]) == ("slow", "over_quota", now + 600)
    assert slow["next_crawl_at"] == now + 600
    assert [row["user_uuid"] for row in report["failing"]] == ["broken", "gone"]  # latest first
    assert report["failing"][1]["last_error"]["type"] == "AuthRevoked"
    assert [row["next_crawl_at"] for row in report["failing"]] == [now + 300, None]
    assert report["queues"] == [{"user_uuid": "slow", "queued": 3, "inflight": 1, "lease": "w-a"}]
    assert report["warnings"] == [["capped", "exactly 1,000 messages"]]
    assert report["totals"] == {
        "accounts": 5,
        "live_workers": 2,
        "queued": 3,
        "inflight": 1,
        "messages": 7,
        "attachments": 10,
        "bytes": 1500,
    }
    shown = ["w-a", "0/2", "expired", slow["until_utc"], f"{now + 600:.0f}", "(in 9m", "over_quota"]
    shown += ["AuthRevoked: invalid_grant [revoked]", "email is missing", "Queues", "w-a"]
    shown += ["Accounts that may be cut short", "exactly 1,000 messages", "next crawl"]
    for text in shown:
        assert text in table, text
    [gone] = [line for line in table.splitlines() if "AuthRevoked" in line]
    assert "not until re-authorized" in gone
    [broken] = [line for line in table.splitlines() if "email is missing" in line]
    assert "(in 4m" in broken or "(in 5m" in broken


def test_status_of_an_empty_system_says_none(admin: Admin) -> None:
    shown = admin.run("status")

    assert shown.exit_code == 0
    for title in ("Workers", "Throttled accounts", "Failing accounts", "Queues"):
        assert f"{title}: none" in shown.stdout


# -- attachments ----------------------------------------------------------------------------

HOSTILE = [
    "../../x",
    "/etc/passwd",
    "C:\\x\\y.pdf",
    "invoice.pdf\x00.exe",
    "n" * 1000 + ".pdf",
    "report.pdf",
    "report.pdf",
    "..",
    None,
]


def store_attachments(admin: Admin, names: list[str | None], user_uuid: str = "u1") -> list[str]:
    """Blobs and attachment documents with these names; their sha256s, in order."""
    blobs = FileBlobStore(admin.blob_dir)
    keys = []
    for index, name in enumerate(names):
        content = f"content {index}".encode()
        with blobs.writer() as writer:
            writer.write(content)
            key = blobs.commit(writer)
        keys.append(key)
        message = {"from": "m@example.com", "subject": f"Subject {index}", "date": None}
        message["from_name"] = "J\u00f6rg M\u00fcller" if index == 2 else None
        admin.db.attachments.insert_one(
            {
                "user_uuid": user_uuid,
                "gm_msgid": index,
                "part": "2",
                "filename": name,
                "content_type": "application/octet-stream",
                "size": len(content),
                "sha256": key,
                "blob": key,
                "saved_at": 1_700_000_000 + index,
                "message": message,
            }
        )
    return keys


def test_export_keeps_hostile_names_inside_the_directory(admin: Admin, tmp_path: Path) -> None:
    keys = store_attachments(admin, HOSTILE)
    never_stored = {"filename": "huge.iso", "blob": None, "sha256": None, "skipped": "too_large"}
    admin.db.attachments.insert_one({"user_uuid": "u1", "gm_msgid": 99, "part": "2"} | never_stored)
    target = tmp_path / "out" / "deeper"
    target.mkdir(parents=True)
    (target / "x").symlink_to(tmp_path / "planted.txt")  # writing through it would escape
    (target / "passwd").write_text("mine")

    result = admin.run("attachments export --user-uuid u1 --json --to", str(target))

    assert result.exit_code == 0, result.stderr
    files = {Path(row["file"]).name: Path(row["file"]) for row in json.loads(result.stdout)}
    long_name = next(name for name in files if name.startswith("nnn"))
    assert files.keys() == {
        "x (2)",
        "passwd (2)",
        "y.pdf",
        "invoice.pdf_.exe",
        long_name,
        "report.pdf",
        "report (2).pdf",
        f"{keys[7]}.bin",
        f"{keys[8]}.bin",
    }
    assert long_name.endswith(".pdf") and len(long_name.encode()) <= 200
    for index, name in enumerate(["x (2)", "passwd (2)", "y.pdf", "invoice.pdf_.exe", long_name]):
        assert files[name].read_bytes() == f"content {index}".encode()
    assert all(path.parent == target and path.is_file() for path in files.values())
    assert sorted(os.listdir(target)) == sorted([*files, "x", "passwd"])
    assert not (tmp_path / "planted.txt").exists() and not (tmp_path / "x").exists()
    assert (target / "passwd").read_text() == "mine"


def test_export_names_each_missing_blob_and_fails(admin: Admin, tmp_path: Path) -> None:
    store_attachments(admin, ["kept.txt"])
    lost = {"filename": "lost.pdf", "blob": "f" * 64, "sha256": "f" * 64, "saved_at": 1}
    admin.db.attachments.insert_one({"user_uuid": "u1", "gm_msgid": 7, "part": "3"} | lost)

    result = admin.run("attachments export --user-uuid u1 --to", str(tmp_path / "o"))

    assert result.exit_code == 1
    assert f"missing blob {'f' * 64} ('lost.pdf')" in result.stderr
    assert "1 attachments of u1 have no blob" in result.stderr
    assert (tmp_path / "o" / "kept.txt").read_bytes() == b"content 0"


def test_export_writes_owner_only_files_and_directories_whatever_the_umask(
    admin: Admin, tmp_path: Path
) -> None:
    store_attachments(admin, ["a.pdf", "b.pdf"])
    (tmp_path / "out").mkdir()
    (tmp_path / "out").chmod(0o755)
    target = tmp_path / "out" / "new" / "deeper"
    permissive = os.umask(0o022)
    try:
        result = admin.run("attachments export --user-uuid u1 --json --to", str(target))
    finally:
        os.umask(permissive)

    assert result.exit_code == 0, result.stderr
    files = [Path(row["file"]) for row in json.loads(result.stdout)]
    assert len(files) == 2
    assert {stat.S_IMODE(path.stat().st_mode) for path in files} == {0o600}
    for made in (target, target.parent):
        assert stat.S_IMODE(made.stat().st_mode) == 0o700, made
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755  # not made: left alone


def test_attachments_list_newest_first(admin: Admin) -> None:
    keys = store_attachments(admin, ["a.pdf", "b.pdf", "c [red].pdf"])
    store_attachments(admin, ["other.pdf"], user_uuid="u2")

    rows = json.loads(admin.run("attachments list --user-uuid u1 --limit 2 --json").stdout)
    table = admin.run("attachments list").stdout

    assert [(row["filename"], row["sha256"]) for row in rows] == [
        ("c [red].pdf", keys[2]),
        ("b.pdf", keys[1]),
    ]
    assert (rows[0]["subject"], rows[0]["from"]) == ("Subject 2", "m@example.com")
    assert (rows[0]["from_name"], rows[1]["from_name"]) == ("J\u00f6rg M\u00fcller", None)
    shown = ("c [red].pdf", keys[2][:12], "Subject 2", "J\u00f6rg M\u00fcller <m@example.com>")
    for text in (*shown, "other.pdf", "2023-11-14 22:13:22 UTC"):
        assert text in table, text


# -- bad configuration ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "env", "says"),
    [
        (
            "accounts list",
            {"CRAWLER_MONGODB_URL": "mongodb://127.0.0.1:{port}/x"},
            "MongoDB at 127.0.0.1:{port} did not answer within 3 s",
        ),
        (
            "status",
            {"CRAWLER_REDIS_URL": "redis://127.0.0.1:{port}/0"},
            "Redis at 127.0.0.1:{port} cannot be used",
        ),
        (ADD_GMAIL.format(user="a"), {"CRAWLER_SECRET_KEY": ""}, "CRAWLER_SECRET_KEY is not set"),
    ],
)
def test_bad_configuration_is_one_line_in_a_real_process(
    admin: Admin, line: str, env: dict[str, str], says: str
) -> None:
    port = str(closed_port())
    started = time.monotonic()

    done = admin.process(line, stdin="token", **{k: v.format(port=port) for k, v in env.items()})

    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert says.format(port=port) in error_line(done.stderr)
    assert time.monotonic() - started < 15  # short timeouts, not pymongo's 30 s
    assert admin.db.accounts.count_documents({}) == 0


@pytest.mark.parametrize(
    ("line", "env", "says"),
    [
        ("accounts list", {"CRAWLER_MONGODB_URL": "http://x"}, "CRAWLER_MONGODB_URL is not usable"),
        ("status", {"CRAWLER_REDIS_URL": "nowhere"}, "CRAWLER_REDIS_URL is not usable"),
        (
            "accounts list",
            {"CRAWLER_IMAP_PORT": "many"},
            "invalid configuration: CRAWLER_IMAP_PORT",
        ),
        (ADD_GMAIL.format(user="a"), {"CRAWLER_SECRET_KEY": "short"}, "not a valid Fernet key"),
        (
            "accounts list",
            {"AIRBRAKE_HOST": "http://api.airbrake.io"},
            "invalid configuration: AIRBRAKE_HOST: Value error, AIRBRAKE_HOST must be https://",
        ),
    ],
)
def test_bad_settings_are_one_line(admin: Admin, line: str, env: dict[str, str], says: str) -> None:
    result = admin.run(line, stdin="token", **env)

    assert result.exit_code == 1 and says in error_line(result.stderr)


@pytest.mark.parametrize("mode", [0o666, 0o664], ids=lambda mode: f"{mode:04o}")
def test_an_env_file_others_can_write_stops_a_real_process_in_one_line(
    admin: Admin, mode: int
) -> None:
    env_file = admin.cwd / ".env"
    env_file.write_text("CRAWLER_IMAP_HOST=imap.attacker.example\n")
    env_file.chmod(mode)

    done = admin.process("accounts list")

    assert done.returncode == 1 and "Traceback" not in done.stderr
    line = error_line(done.stderr)
    assert f"invalid configuration: .env: {env_file} is writable by group or others" in line
    env_file.chmod(0o600)
    assert admin.process("accounts list").returncode == 0  # the same file, private, is read


@pytest.mark.parametrize(
    "line",
    [
        "status",
        *(
            f"accounts {command}"
            for command in ("add", "list", "remove", "authorize", "set-password", "crawl-now")
        ),
        *(f"rules {command}" for command in ("add", "list", "remove", "test", "enable", "disable")),
        *(f"attachments {command}" for command in ("list", "export")),
    ],
)
def test_every_command_has_help(admin: Admin, line: str) -> None:
    shown = admin.run(f"{line} --help")

    assert shown.exit_code == 0 and "Usage:" in shown.stdout
