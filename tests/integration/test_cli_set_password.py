"""`crawler accounts set-password`: an imap_password account gets a new password and, when its
server refused the old one, comes back from auth_failed; Gmail accounts are pointed to
`authorize`."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import redis

from crawler.iterate import CrawlIterator
from crawler.oauth import TokenCipher
from crawler.store.status import new_status
from tests.plugins.admin import ADD_GMAIL, ADD_IMAP, KEY, Admin, error_line
from tests.plugins.dovecot import Dovecot
from tests.plugins.fakes import build_message

pytestmark = pytest.mark.integration


def password_of(admin: Admin, user_uuid: str) -> str:
    raw = admin.db.accounts.find_one({"user_uuid": user_uuid})
    return TokenCipher(KEY).decrypt(raw["password"], "password")


def test_set_password_replaces_it_encrypted_and_brings_an_auth_failed_account_back(
    admin: Admin,
) -> None:
    admin.run(ADD_IMAP.format(user="b") + " --imap-host h", stdin="old-password")
    error = {"type": "AuthFailed", "message": "AUTHENTICATIONFAILED", "at": 5.0}
    failed = {"state": "auth_failed", "next_crawl_at": None, "last_error": error}
    admin.db.crawl_status.insert_one(new_status("b", 0) | failed | {"auth_revoked": False})
    before = time.time()

    done = admin.process("accounts set-password b --password-stdin", stdin="new SECRET pw\n")

    assert done.returncode == 0, done.stderr
    assert "due now" in done.stdout and "SECRET" not in done.stdout + done.stderr
    assert password_of(admin, "b") == "new SECRET pw"
    raw = admin.db.accounts.find_one({"user_uuid": "b"})
    assert "SECRET" not in json.dumps(raw, default=str)
    status = admin.db.crawl_status.find_one({"user_uuid": "b"})
    assert (status["state"], status["last_error"]) == ("idle", None)
    assert before <= status["next_crawl_at"] <= time.time()


def test_set_password_leaves_a_healthy_account_s_status_alone(admin: Admin) -> None:
    admin.run(ADD_IMAP.format(user="b") + " --imap-host h", stdin="old")
    admin.db.crawl_status.insert_one(new_status("b", 0) | {"state": "throttled"})

    done = admin.run("accounts set-password b --password-stdin", stdin="new")

    assert done.exit_code == 0 and "due now" not in done.stdout
    assert password_of(admin, "b") == "new"
    assert admin.db.crawl_status.find_one({"user_uuid": "b"})["state"] == "throttled"


def test_set_password_refuses_unknown_gmail_and_flagless_in_one_line(admin: Admin) -> None:
    admin.run(ADD_GMAIL.format(user="g"), stdin="refresh-token")
    admin.run(ADD_IMAP.format(user="b") + " --imap-host h", stdin="old")
    oauth_before = admin.db.accounts.find_one({"user_uuid": "g"})["oauth"]

    unknown = admin.run("accounts set-password nobody --password-stdin", stdin="pw")
    gmail = admin.run("accounts set-password g --password-stdin", stdin="pw")
    no_flag = admin.run("accounts set-password b", stdin="pw")
    empty = admin.run("accounts set-password b --password-stdin", stdin="\n")
    two_lines = admin.run("accounts set-password b --password-stdin", stdin="a\nb\n")

    assert unknown.exit_code == 1 and "no account" in error_line(unknown.stderr)
    assert gmail.exit_code == 2
    assert "crawler accounts authorize g" in error_line(gmail.stderr)
    assert no_flag.exit_code == 2 and "--password-stdin" in error_line(no_flag.stderr)
    assert empty.exit_code == 2 and "no password" in error_line(empty.stderr)
    assert two_lines.exit_code == 2 and "one line" in error_line(two_lines.stderr)
    gmail_account = admin.db.accounts.find_one({"user_uuid": "g"})
    assert "password" not in gmail_account and gmail_account["oauth"] == oauth_before
    assert password_of(admin, "b") == "old"


def test_set_password_has_help(admin: Admin) -> None:
    shown = admin.run("accounts set-password --help")

    assert shown.exit_code == 0 and "--password-stdin" in shown.stdout


def test_an_account_refused_by_its_server_is_crawled_after_set_password(
    admin: Admin, dovecot: Dovecot, redis_server: redis.Redis
) -> None:
    user = f"u{uuid.uuid4().hex[:10]}"
    dovecot.add_user(user, "app-password", [build_message(attachments={"a.txt": b"on dovecot"})])
    server = f"--imap-host {dovecot.host} --imap-port {dovecot.port} --no-imap-tls"
    line = f"{ADD_IMAP.format(user=user)} --username {user} {server}"
    assert admin.run(line, stdin="a-wrong-password\n").exit_code == 0
    admin.run(f"rules add --user-uuid {user}")
    iterator = CrawlIterator(admin.db, settings=admin.settings(), redis_client=redis_server)
    assert iterator.iterate().outcomes == {user: "auth_failed"}
    assert iterator.iterate().outcomes == {}  # parked: not due again by itself

    done = admin.run(f"accounts set-password {user} --password-stdin", stdin="app-password\n")

    assert done.exit_code == 0 and "due now" in done.stdout, done.stderr
    assert iterator.iterate().outcomes == {user: "idle"}
    out = admin.cwd / "out"
    assert admin.run(f"attachments export --user-uuid {user} --to", str(out)).exit_code == 0
    assert (out / "a.txt").read_bytes() == b"on dovecot"
