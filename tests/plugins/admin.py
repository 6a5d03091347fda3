"""The operator commands under test: one test's configuration and database (`Admin`, the
`admin` fixture), and how a command is run: in this process through typer's runner, as a
process of its own, or with the consent flow played in a browser against the fake endpoints."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymongo
import pytest
import redis
import requests
import typer
from cryptography.fernet import Fernet
from pydantic import SecretStr
from typer.testing import CliRunner, Result

from config import Settings
from crawler.iterate import CrawlIterator
from crawler.keys import Keys
from crawler.oauth import TokenCipher
from standins.embedded_mongo import EmbeddedMongo
from standins.fakegmail import FakeGmail
from standins.fakeoauth import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, FakeTokenEndpoint
from tests.conftest import REDIS_URL
from workers.admin import register

KEY = Fernet.generate_key().decode()
APP = typer.Typer(pretty_exceptions_enable=False)
register(APP)
# A real process runs the commands registered the way `crawler` registers them.
ENTRY = (
    "import typer; from workers.admin import register; "
    "app = typer.Typer(pretty_exceptions_enable=False); register(app); app()"
)

ADD_GMAIL = "accounts add {user}@example.com --user-uuid {user} --refresh-token-stdin --no-verify"
ADD_IMAP = (
    "accounts add {user}@example.com --user-uuid {user} --provider imap_password --password-stdin"
)


class Admin:
    """One test's configuration and database, and two ways to run a command against them."""

    def __init__(self, mongo: EmbeddedMongo, database: Any, prefix: str, tmp_path: Path) -> None:
        self.db = database
        self.keys = Keys(prefix)
        self.blob_dir = tmp_path / "blobs"
        self.cwd = tmp_path
        self.env = {
            "CRAWLER_MONGODB_URL": f"{mongo.uri}/{database.name}",
            "CRAWLER_REDIS_URL": REDIS_URL,
            "CRAWLER_REDIS_PREFIX": prefix,
            "CRAWLER_SECRET_KEY": KEY,
            "CRAWLER_BLOB_STORE": "file",
            "CRAWLER_BLOB_DIR": str(self.blob_dir),
            "COLUMNS": "220",  # rich tables wrap at the terminal's width
        }

    def run(self, line: str, *args: str, stdin: str | None = None, **env: str) -> Result:
        """The command `line` (split as a shell would) and `args`, in this process."""
        return CliRunner().invoke(
            APP,
            [*shlex.split(line), *args],
            input=stdin,
            env=self.env | env,
            catch_exceptions=False,
        )

    def process(
        self, line: str, *args: str, stdin: str = "", **env: str
    ) -> subprocess.CompletedProcess[str]:
        """The command `line` (split as a shell would) and `args`, as a process of its own."""
        return subprocess.run(
            [sys.executable, "-c", ENTRY, *shlex.split(line), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=os.environ | self.env | env,
            cwd=self.cwd,  # no stray .env file is read
            timeout=30,
            check=False,
        )

    def iterator(
        self, gmail: FakeGmail, oauth: FakeTokenEndpoint, server: redis.Redis
    ) -> CrawlIterator:
        """A CrawlIterator over what the CLI stored, crawling `gmail` with tokens from `oauth`."""
        settings = self.settings(
            imap_port=gmail.port,
            oauth_token_url=oauth.url,
            oauth_client_id=DEFAULT_CLIENT_ID,
            oauth_client_secret=DEFAULT_CLIENT_SECRET,
        )
        return CrawlIterator(self.db, settings=settings, redis_client=server)

    def settings(self, **fields: Any) -> Settings:
        """Settings for a crawl of what the CLI stored."""
        return Settings(
            secret_key=SecretStr(KEY),
            blob_dir=self.blob_dir,
            redis_prefix=self.keys.prefix,
            imap_host="127.0.0.1",
            imap_tls=False,
            imap_timeout=10,
            backoff_jitter=0,
            retry_wait=0,
            **fields,
        )


@pytest.fixture
def admin(
    embedded_mongo: EmbeddedMongo,
    embedded_mongo_client: pymongo.MongoClient[dict[str, Any]],
    redis_prefix: str,
    tmp_path: Path,
) -> Iterator[Admin]:
    name = f"test_{uuid.uuid4().hex[:16]}"
    yield Admin(embedded_mongo, embedded_mongo_client[name], redis_prefix, tmp_path)
    embedded_mongo_client.drop_database(name)


def error_line(stderr: str) -> str:
    """The one line a failed command printed; fails on a traceback or on more lines."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def cipher() -> TokenCipher:
    return TokenCipher(KEY)


def oauth_env(oauth: FakeTokenEndpoint) -> dict[str, str]:
    """The settings that point a command at the fake endpoints, with the fake's OAuth client."""
    return {
        "CRAWLER_OAUTH_AUTH_URL": oauth.consent_url,
        "CRAWLER_OAUTH_TOKEN_URL": oauth.url,
        "CRAWLER_OAUTH_CLIENT_ID": DEFAULT_CLIENT_ID,
        "CRAWLER_OAUTH_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
    }


def consent_flow_in_browser(
    admin: Admin, oauth: FakeTokenEndpoint, line: str
) -> subprocess.CompletedProcess[str]:
    """The command `line`, which runs the consent flow with --no-browser, as a process of its
    own; the test plays the browser: it opens the printed URL on the fake consent page."""
    with subprocess.Popen(
        [sys.executable, "-c", ENTRY, *shlex.split(line)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ | admin.env | oauth_env(oauth),
        cwd=admin.cwd,
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        shown = []
        for line_shown in process.stdout:
            shown.append(line_shown)
            if line_shown.startswith("http"):
                break
        if not shown or not shown[-1].startswith("http"):
            pytest.fail(f"no consent URL: {''.join(shown)}{process.communicate(timeout=30)}")
        page = requests.get(shown[-1].strip(), timeout=10)  # redirected to the listener
        assert (page.status_code, "close this window" in page.text) == (200, page.ok)
        stdout, stderr = process.communicate(timeout=30)
        return subprocess.CompletedProcess(
            process.args, process.returncode, "".join(shown) + stdout, stderr
        )
