"""The test session's Redis where none answers at CRAWLER_REDIS_URL: a pytest run of its own
starts a private `redis-server` and stops it at the end; without the binary, the Redis tests skip
with one line, and in CI they fail."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
A_REDIS_TEST = "tests/integration/test_redis_fixture.py"
REDIS_TESTS = (A_REDIS_TEST, "tests/integration/test_lease.py")
PRIVATE = re.compile(r"^redis: a private redis-server at redis://127\.0\.0\.1:(\d+)/0 ", re.M)


def closed_port() -> int:
    with socket.socket() as probe:  # free a moment ago; nothing listens there
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def session(
    tmp_path: Path, *tests: str, ci: bool = False, redis_server: bool = True
) -> tuple[int, str]:
    """A pytest run of `tests` with nothing at CRAWLER_REDIS_URL: its exit code and output."""
    env = {name: value for name, value in os.environ.items() if name != "CI"}
    env["CRAWLER_REDIS_URL"] = f"redis://127.0.0.1:{closed_port()}/0"
    if ci:
        env["CI"] = "true"
    if not redis_server:
        env["PATH"] = str(tmp_path)  # an empty directory: no redis-server to start
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *tests],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr


def test_a_private_redis_server_serves_the_session_and_stops_with_it(tmp_path: Path) -> None:
    code, output = session(tmp_path, A_REDIS_TEST)
    assert code == 0, output
    assert "1 passed" in output
    found = PRIVATE.search(output)
    assert found, output
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", int(found[1])), timeout=5),
    ):
        pass  # stopped with the session


def test_without_redis_server_the_redis_tests_skip_with_one_line(tmp_path: Path) -> None:
    code, output = session(tmp_path, *REDIS_TESTS, redis_server=False)
    assert code == 0, output
    skipped = re.search(r"(\d+) skipped", output)
    assert skipped and int(skipped[1]) > 1, output
    [line] = [line for line in output.splitlines() if line.startswith("SKIPPED")]
    assert line.startswith(f"SKIPPED [{skipped[1]}] tests/conftest.py: Redis (none answers at")
    assert "no redis-server on PATH" in line
    assert line.endswith("is not available here")


def test_in_ci_no_redis_at_all_fails(tmp_path: Path) -> None:
    code, output = session(tmp_path, A_REDIS_TEST, ci=True, redis_server=False)
    assert code == 1, output
    assert "is required in CI but is not available" in output
