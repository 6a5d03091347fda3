"""A Workspace domain from end to end, every part a process of its own: the fake token endpoint
and the fake Directory API (`crawler fake-oauth`, `crawler fake-directory`, one config), the
fake Gmail (`crawler fake-gmail`), `crawler domains add` and `crawler domains sync` as an
operator runs them, then `crawler worker --once`. The domain's active users are crawled, and no
account holds a refresh token."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from pymongo import MongoClient

from crawler.delegation import DIRECTORY_SCOPE
from crawler.oauth import IMAP_SCOPE
from standins import tokens
from standins.embedded_mongo import EmbeddedMongo
from standins.workspace import GOOGLE_TOKEN_URL, new_key, service_account_key_file
from tests.plugins.fakes import build_message
from tests.plugins.gmail_process import fake_gmail_process
from tests.plugins.workers import CRAWLER, run_worker_once, worker_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

DOMAIN = "corp.example"
ADMIN = f"it@{DOMAIN}"
SERVICE_ACCOUNT = "crawler@corp-project.iam.gserviceaccount.com"
CLIENT_ID = "100000000000000000042"
KEY_ID = "e2e-key-1"
MAILBOXES = {"ann": b"%PDF-1.4 ann\n" * 30, "bob": b"%PDF-1.4 bob\n" * 30}


def workspace_config(public_key: str) -> dict[str, Any]:
    users = [{"email": ADMIN, "is_admin": True}, {"email": f"carl@{DOMAIN}", "suspended": True}]
    users += [{"email": f"{name}@{DOMAIN}"} for name in MAILBOXES]
    return {
        "token_secret": tokens.DEFAULT_SECRET,
        "service_accounts": [
            {"client_email": SERVICE_ACCOUNT, "client_id": CLIENT_ID, "keys": {KEY_ID: public_key}}
        ],
        "domains": {
            DOMAIN: {"users": users, "delegations": {CLIENT_ID: [IMAP_SCOPE, DIRECTORY_SCOPE]}}
        },
    }


@contextmanager
def serving(command: str, config: Path) -> Iterator[str]:
    """`crawler <command> --port 0 --config <config>` until the end; the URL it announces."""
    process = subprocess.Popen(
        [*CRAWLER, command, "--port", "0", "--config", str(config)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        if process.stdout:
            process.stdout.close()


def gmail_config(folder: Path) -> dict[str, Any]:
    accounts = [{"email": ADMIN}]
    for name, data in MAILBOXES.items():
        path = folder / f"{name}.eml"
        path.write_bytes(build_message(f"{name}'s minutes", attachments={f"{name}.pdf": data}))
        accounts.append({"email": f"{name}@{DOMAIN}", "messages": [{"path": path.name}]})
    return {"accounts": accounts}


def crawler(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*CRAWLER, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done


def test_a_domain_added_and_synced_by_the_cli_is_crawled_by_a_worker_process(
    redis_prefix: str, tmp_path: Path
) -> None:
    private_key, public_key = new_key()
    config = tmp_path / "workspace.json"
    config.write_text(json.dumps(workspace_config(public_key)))
    key_file = tmp_path / "key.json"
    key_file.write_text(
        json.dumps(
            service_account_key_file(
                SERVICE_ACCOUNT,
                CLIENT_ID,
                KEY_ID,
                private_key,
                project_id="corp-project",
                token_uri=GOOGLE_TOKEN_URL,  # as Google's key files say: the crawler's setting wins
            )
        )
    )
    name = f"domain_{os.getpid()}_{int(time.time() * 1000)}"
    with (
        serving("fake-oauth", config) as token_url,
        serving("fake-directory", config) as users_url,
        fake_gmail_process(gmail_config(tmp_path), tmp_path) as gmail,
        EmbeddedMongo() as mongo,
    ):
        env = worker_env(
            mongodb_url=f"{mongo.uri}/{name}",
            redis_prefix=redis_prefix,
            imap_port=gmail.port,
            token_url=token_url,
            secret_key=Fernet.generate_key().decode(),
            blob_dir=tmp_path / "blobs",
            CRAWLER_DIRECTORY_URL=users_url.partition("/admin/")[0],
        )
        added = crawler(
            env, "domains", "add", DOMAIN, "--service-account-file", str(key_file), "--admin", ADMIN
        )
        synced = crawler(env, "domains", "sync", DOMAIN, "--filename", "*.pdf")
        done, _ = run_worker_once(env, timeout=60)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        client: MongoClient[Any] = MongoClient(mongo.uri)
        try:
            db = client[name]
            accounts = list(db.accounts.find())
            states = {d["user_uuid"]: d["state"] for d in db.crawl_status.find()}
            stored = sorted(doc["filename"] for doc in db.attachments.find())
        finally:
            client.close()

    assert f"stored the service account {SERVICE_ACCOUNT}" in added.stdout
    assert "4 users in the directory (1 suspended or archived), 3 accounts added" in synced.stdout
    assert sorted(a["email"] for a in accounts) == sorted(
        [ADMIN, "ann@corp.example", "bob@corp.example"]
    )
    assert all("refresh_token" not in a.get("oauth", {}) for a in accounts)
    assert set(states.values()) == {"idle"} and len(states) == 3
    assert stored == ["ann.pdf", "bob.pdf"]
    logged_in = {session["user"] for session in gmail.sessions()}
    assert f"carl@{DOMAIN}" not in logged_in
