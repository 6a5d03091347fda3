"""`crawler worker` and `crawler monitor` with bad configuration: one clear line, a non-zero
exit, never a traceback. Nothing wrong is taken quietly: a misspelt variable, a MongoDB URL
without a database, a CRAWLER_SECRET_KEY that opens none of the stored tokens."""

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from pymongo import MongoClient
from pymongo.collection import Collection

from crawler.oauth import TokenCipher
from standins.embedded_mongo import EmbeddedMongo
from standins.fakegmail import FakeGmail

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

KEY = Fernet.generate_key().decode()


def crawler(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return crawler_in(None, *args, **env)


def crawler_in(cwd: Path | None, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`crawler *args` in the directory `cwd`, its environment `env` and no other CRAWLER_*."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CRAWLER_", "HONCHO_"))}
    return subprocess.run(
        [sys.executable, "-c", "from workers.cli import main; main()", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=cwd,
    )


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def mongo_url() -> Iterator[str]:
    with EmbeddedMongo() as mongo:
        yield f"{mongo.uri}/cli_service"


@pytest.mark.parametrize("command", ["worker", "monitor"])
@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"CRAWLER_REDIS_URL": "redis://127.0.0.1:1/0"}, "Redis at 127.0.0.1:1 cannot be used"),
        (
            {"CRAWLER_REDIS_URL": "http://nowhere"},
            "CRAWLER_REDIS_URL is not usable: it must start with one of redis://, rediss://, "
            "unix://, redis+cluster://, rediss+cluster://, not http://",
        ),
        ({"CRAWLER_MONGODB_URL": "http://nowhere/db"}, "CRAWLER_MONGODB_URL is not usable"),
        (
            {"CRAWLER_MONGODB_URL": "mongodb://127.0.0.1:27017"},
            "invalid configuration: CRAWLER_MONGODB_URL: the URL names no database: put its "
            "name after the hosts, as in mongodb://127.0.0.1:27017/crawler",
        ),
        (
            {"CRAWLER_CONCURENCY": "8"},
            "invalid configuration: environment: CRAWLER_CONCURENCY is not a setting; "
            "did you mean CRAWLER_CONCURRENCY?",
        ),
        ({"CRAWLER_HEARTBEAT_TTL": "0"}, "invalid configuration: CRAWLER_HEARTBEAT_TTL"),
        ({"CRAWLER_LOG_FORMAT": "xml"}, "invalid configuration: CRAWLER_LOG_FORMAT"),
    ],
)
def test_bad_configuration_is_one_line(
    mongo_url: str, command: str, env: dict[str, str], says: str
) -> None:
    done = crawler(
        command, "--once", **{"CRAWLER_MONGODB_URL": mongo_url, "CRAWLER_SECRET_KEY": KEY, **env}
    )
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("error: ") and says in done.stderr


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"CRAWLER_SECRET_KEY": ""}, "CRAWLER_SECRET_KEY is not set"),
        ({"CRAWLER_SECRET_KEY": "short"}, "CRAWLER_SECRET_KEY is not a valid Fernet key"),
        ({"CRAWLER_CLIENT_COUNT": "2"}, "CRAWLER_CLIENT_COUNT needs CRAWLER_CLIENT_ID"),
        ({"CRAWLER_CLIENT_COUNT": "2", "CRAWLER_CLIENT_ID": "2"}, "client id 2 is not in 0..1"),
    ],
)
def test_a_worker_needs_a_key_and_a_sound_shard(
    mongo_url: str, env: dict[str, str], says: str
) -> None:
    done = crawler(
        "worker", "--once", **{"CRAWLER_MONGODB_URL": mongo_url, "CRAWLER_SECRET_KEY": KEY, **env}
    )
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1, done.stderr
    assert says in done.stderr


def test_a_sound_configuration_runs_a_pass(mongo_url: str, redis_prefix: str) -> None:
    env = {"CRAWLER_MONGODB_URL": mongo_url, "CRAWLER_SECRET_KEY": KEY}
    env |= {"CRAWLER_REDIS_PREFIX": redis_prefix, "CRAWLER_LOG_FORMAT": "json"}
    done = crawler("worker", "--once", **env)
    assert done.returncode == 0, done.stderr
    [line] = [json.loads(line) for line in done.stderr.splitlines() if '"pass"' in line]
    assert (line["crawled"], line["failed"], line["shard"]) == (0, 0, "0/1")


@pytest.mark.parametrize("line", ["status", "demo", "accounts list", "worker --once"])
def test_a_misspelt_variable_stops_every_command_in_one_line(line: str, tmp_path: Path) -> None:
    done = crawler_in(tmp_path, *line.split(), CRAWLER_CONCURENCY="8")

    assert done.returncode == 1
    assert done.stderr == (
        "error: invalid configuration: environment: CRAWLER_CONCURENCY is not a setting; "
        "did you mean CRAWLER_CONCURRENCY?\n"
    )


def test_the_line_counts_the_problems_it_does_not_show(tmp_path: Path) -> None:
    done = crawler_in(tmp_path, "status", CRAWLER_CONCURENCY="8", CRAWLER_LOGLEVEL="DEBUG")

    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("error: invalid configuration: environment: CRAWLER_CONCURENCY")
    assert done.stderr.endswith("did you mean CRAWLER_CONCURRENCY? (and 1 more)\n")


def test_a_misspelt_variable_in_the_env_file_stops_a_command_in_one_line(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("CRAWLER_SECRET_KEY=x\nCRAWLER_LOG_LEVL=DEBUG\n")
    env_file.chmod(0o600)

    done = crawler_in(tmp_path, "status")

    assert done.returncode == 1
    assert done.stderr == (
        "error: invalid configuration: .env: CRAWLER_LOG_LEVL is not a setting; "
        "did you mean CRAWLER_LOG_LEVEL?\n"
    )


@pytest.mark.parametrize(
    ("options", "env", "says"),
    [
        (
            ["--mongodb-url", "mongodb://127.0.0.1:27017"],
            {},
            "error: invalid configuration: --mongodb-url: the URL names no database",
        ),
        (
            ["--mongodb-url", "mongodb://127.0.0.1:{closed}/crawler"],
            {"CRAWLER_MONGODB_URL": "mongodb://127.0.0.1:27017/crawler"},
            "error: MongoDB at 127.0.0.1:{closed} did not answer within 3 s (check --mongodb-url)",
        ),
        (
            [],
            {"CRAWLER_MONGODB_URL": "mongodb://127.0.0.1:{closed}/crawler"},
            "(check CRAWLER_MONGODB_URL)",
        ),
        (
            ["--redis-url", "redis://127.0.0.1:{closed}/0", "--mongodb-url", "{mongo}"],
            {},
            "error: Redis at 127.0.0.1:{closed} cannot be used",
        ),
        (
            ["--redis-url", "cluster://127.0.0.1:6379", "--mongodb-url", "{mongo}"],
            {},
            "error: --redis-url is not usable: it must start with one of redis://, rediss://, "
            "unix://, redis+cluster://, rediss+cluster://, not cluster://",
        ),
    ],
)
def test_a_store_error_names_where_its_url_came_from(
    mongo_url: str, options: list[str], env: dict[str, str], says: str
) -> None:
    closed = str(closed_port())
    options = [option.format(closed=closed, mongo=mongo_url) for option in options]
    env = {name: value.format(closed=closed) for name, value in env.items()}

    done = crawler("status", *options, CRAWLER_SECRET_KEY=KEY, **env)

    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert says.format(closed=closed) in done.stderr
    if "--redis-url" in options and "cannot be used" in says:
        assert done.stderr.rstrip().endswith("(check --redis-url)")


# -- CRAWLER_SECRET_KEY opens the stored tokens ---------------------------------------------


@pytest.fixture
def accounts(mongo_url: str) -> Iterator[Collection[dict[str, Any]]]:
    """The `accounts` collection of the worker's database, emptied after the test."""
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_url)
    collection = client.get_default_database()["accounts"]
    yield collection
    collection.delete_many({})
    client.get_default_database()["rules"].delete_many({})
    client.get_default_database()["crawl_status"].delete_many({})
    client.close()


def add_account(
    accounts: Collection[dict[str, Any]], user_uuid: str, key: str, *, rule: bool = False
) -> None:
    cipher = TokenCipher(key)
    tokens = {"refresh_token": cipher.encrypt("1//refresh"), "access_token": cipher.encrypt("a")}
    accounts.insert_one(
        {"user_uuid": user_uuid, "email": f"{user_uuid}@example.com", "oauth": tokens}
    )
    if rule:
        accounts.database["rules"].insert_one({"user_uuid": user_uuid})


def test_a_worker_refuses_a_key_that_opens_none_of_the_stored_tokens(
    mongo_url: str, redis_prefix: str, accounts: Collection[dict[str, Any]]
) -> None:
    other = Fernet.generate_key().decode()
    for number in range(3):
        add_account(accounts, f"u{number}", other, rule=True)

    done = crawler(
        "worker",
        "--once",
        CRAWLER_MONGODB_URL=mongo_url,
        CRAWLER_SECRET_KEY=KEY,
        CRAWLER_REDIS_PREFIX=redis_prefix,
    )

    assert done.returncode == 1
    assert done.stderr == (
        "error: CRAWLER_SECRET_KEY opens none of the 6 stored tokens sampled: "
        "it is not the key they were encrypted with\n"
    )
    assert accounts.database["crawl_status"].count_documents({}) == 0  # nothing was crawled


def test_a_token_the_key_does_not_open_among_others_is_that_account_s_error(
    mongo_url: str, redis_prefix: str, accounts: Collection[dict[str, Any]]
) -> None:
    """The worker runs; the account fails alone, and its log line says why."""
    for number in range(3):
        add_account(accounts, f"good{number}", KEY)  # no rule: not crawled, only sampled
    add_account(accounts, "stray", Fernet.generate_key().decode(), rule=True)

    with FakeGmail() as gmail:
        gmail.add_account("stray@example.com")
        done = crawler(
            "worker",
            "--once",
            CRAWLER_MONGODB_URL=mongo_url,
            CRAWLER_SECRET_KEY=KEY,
            CRAWLER_REDIS_PREFIX=redis_prefix,
            CRAWLER_IMAP_HOST="127.0.0.1",
            CRAWLER_IMAP_PORT=str(gmail.port),
            CRAWLER_IMAP_TLS="false",
            CRAWLER_LOG_FORMAT="json",
        )

    assert done.returncode == 1  # `--once` after a failed crawl
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    [crawled] = [line for line in lines if line["event"].startswith("crawl ") and "state" in line]
    assert (crawled["event"], crawled["user_uuid"]) == ("crawl error", "stray")
    assert crawled["error_type"] == "BadAccount"
    assert "cannot be decrypted with CRAWLER_SECRET_KEY (wrong key?)" in crawled["error"]
    [passed] = [line for line in lines if line["event"] == "pass"]
    assert (passed["crawled"], passed["failed"]) == (1, 1)
