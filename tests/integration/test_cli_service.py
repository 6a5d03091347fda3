"""`crawler worker` and `crawler monitor` with bad configuration: one clear line, a non-zero
exit, never a traceback."""

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from cryptography.fernet import Fernet

from standins.embedded_mongo import EmbeddedMongo

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

KEY = Fernet.generate_key().decode()


def crawler(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CRAWLER_", "HONCHO_"))}
    return subprocess.run(
        [sys.executable, "-c", "from workers.cli import main; main()", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.fixture(scope="module")
def mongo_url() -> Iterator[str]:
    with EmbeddedMongo() as mongo:
        yield f"{mongo.uri}/cli_service"


@pytest.mark.parametrize("command", ["worker", "monitor"])
@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"CRAWLER_REDIS_URL": "redis://127.0.0.1:1/0"}, "Redis at 127.0.0.1:1 cannot be used"),
        ({"CRAWLER_REDIS_URL": "http://nowhere"}, "CRAWLER_REDIS_URL is not usable"),
        ({"CRAWLER_MONGODB_URL": "mongodb://"}, "CRAWLER_MONGODB_URL is not usable"),
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
