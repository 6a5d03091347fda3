"""`crawler worker --once` as operators run it: a process of its own, its settings in its
environment, and (when asked) its peak RSS, read by a wrapper whose only child it is."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CRAWLER = [sys.executable, "-c", "from workers.cli import main; main()"]
"""The `crawler` command, run by this interpreter."""
WORKER_ONCE = ["worker", "--once", "--client-id", "0", "--client-count", "1"]
_PEAK_RSS = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[1:])\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)\n"
    "sys.exit(code)\n"
)


def worker_env(
    *,
    mongodb_url: str,
    redis_prefix: str,
    imap_port: int,
    token_url: str,
    secret_key: str,
    blob_dir: Path,
    **settings: str,
) -> dict[str, str]:
    """The environment of a worker against stand-ins on loopback; `settings` are more
    `CRAWLER_*` variables, by name."""
    return {
        **os.environ,
        "CRAWLER_MONGODB_URL": mongodb_url,
        "CRAWLER_REDIS_PREFIX": redis_prefix,
        "CRAWLER_IMAP_HOST": "127.0.0.1",
        "CRAWLER_IMAP_PORT": str(imap_port),
        "CRAWLER_IMAP_TLS": "false",
        "CRAWLER_OAUTH_TOKEN_URL": token_url,
        "CRAWLER_SECRET_KEY": secret_key,
        "CRAWLER_BLOB_DIR": str(blob_dir),
        **settings,
    }


def run_worker_once(
    env: dict[str, str], *, timeout: float = 150
) -> tuple[subprocess.CompletedProcess[bytes], int]:
    """One pass of a worker process; what it did, and its peak RSS in bytes."""
    worker = [*CRAWLER, *WORKER_ONCE]
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, *worker],
        check=False,
        env=env,
        capture_output=True,
        timeout=timeout,
    )
    lines = done.stdout.split()
    return done, int(lines[-1]) if lines else 0
