"""`crawler status --watch` as a process of its own: it refreshes until SIGINT (Ctrl-C), then
exits 0 without a traceback; on a pipe each refresh follows the last, on a terminal (a pty) the
view is redrawn in place."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO

import pytest
import redis

from crawler.store.status import new_status
from tests.plugins.admin import ENTRY, Admin, closed_port, error_line

pytestmark = pytest.mark.integration

HEADER = "crawler status at "
DEADLINE = 20.0
# A shell's background job inherits SIGINT ignored; the process under test takes it as Ctrl-C.
CTRL_C = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "


class Output:
    """What a process writes, read by a thread as it comes."""

    def __init__(self, stream: IO[bytes] | int) -> None:
        self.chunks: list[bytes] = []
        self._stream = stream
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            try:
                if isinstance(self._stream, int):
                    chunk = os.read(self._stream, 65536)
                else:
                    chunk = self._stream.read1(65536)  # type: ignore[attr-defined]
            except OSError:  # a pty whose other end closed
                return
            if not chunk:
                return
            self.chunks.append(chunk)

    @property
    def text(self) -> str:
        return b"".join(self.chunks).decode(errors="replace")

    def wait_for(self, ready: Callable[[str], bool]) -> None:
        deadline = time.monotonic() + DEADLINE
        while not ready(self.text):
            if time.monotonic() > deadline:
                pytest.fail(f"the view never showed what was awaited:\n{self.text[-3000:]}")
            time.sleep(0.05)

    def finish(self) -> None:
        self._thread.join(timeout=DEADLINE)


@contextmanager
def watching(
    admin: Admin, stdout: int, *, interval: str = "0.3"
) -> Iterator[subprocess.Popen[bytes]]:
    """`crawler status --watch` running; stopped with SIGINT if the test has not stopped it."""
    env = os.environ | admin.env | {"LINES": "80"}
    with subprocess.Popen(
        [sys.executable, "-c", CTRL_C + ENTRY, "status", "--watch", "--interval", interval],
        stdout=stdout,
        stderr=subprocess.PIPE,
        env=env,
        cwd=admin.cwd,
    ) as process:
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=DEADLINE)


def a_crawl_starts(admin: Admin, server: redis.Redis) -> None:
    """An account crawled by `w-watched`, with UIDs queued and in flight."""
    running = {"state": "crawling", "worker": "w-watched", "last_started_at": time.time()}
    admin.db.crawl_status.insert_one(new_status("watched-account", 0) | running)
    server.rpush(admin.keys.uids("watched-account"), 1, 2, 3)
    server.sadd(admin.keys.inflight("watched-account"), 4)


def stopped(process: subprocess.Popen[bytes]) -> tuple[int, str]:
    """SIGINT, as Ctrl-C sends it; the exit code and what went to stderr."""
    process.send_signal(signal.SIGINT)
    assert process.stderr is not None
    stderr = process.stderr.read().decode()
    return process.wait(timeout=DEADLINE), stderr


def test_watch_on_a_pipe_prints_each_refresh_until_ctrl_c(
    admin: Admin, redis_server: redis.Redis
) -> None:
    with watching(admin, subprocess.PIPE) as process:
        assert process.stdout is not None
        output = Output(process.stdout)
        output.wait_for(lambda text: "Crawls running: none" in text)

        a_crawl_starts(admin, redis_server)
        output.wait_for(lambda text: "watched-account" in text.split(HEADER)[-2])

        code, stderr = stopped(process)
        output.finish()

    assert (code, stderr) == (0, "")
    frames = output.text.split(HEADER)[1:]
    assert len(frames) >= 3
    assert "watched-account" not in frames[0]
    running = [line for frame in frames for line in frame.splitlines() if "watched-account" in line]
    assert running and all("w-watched" in line and "0/4" in line for line in running)


def test_watch_on_a_terminal_redraws_in_place_until_ctrl_c(
    admin: Admin, redis_server: redis.Redis
) -> None:
    main, terminal = pty.openpty()
    try:
        with watching(admin, terminal) as process:
            os.close(terminal)
            terminal = -1
            output = Output(main)
            output.wait_for(lambda text: text.count(HEADER) >= 1)
            a_crawl_starts(admin, redis_server)
            output.wait_for(lambda text: "watched-account" in text)
            output.wait_for(lambda text: text.count(HEADER) >= 3)

            code, stderr = stopped(process)
            output.finish()
    finally:
        os.close(main)
        if terminal != -1:
            os.close(terminal)

    assert (code, stderr) == (0, "")
    assert "\x1b[2K" in output.text  # lines erased to draw the view again, in place
    assert "Traceback" not in output.text and "Aborted" not in output.text


def test_watch_ends_on_sigterm_and_gives_the_terminal_its_cursor_back(admin: Admin) -> None:
    main, terminal = pty.openpty()
    try:
        with watching(admin, terminal) as process:
            os.close(terminal)
            terminal = -1
            output = Output(main)
            output.wait_for(lambda text: text.count(HEADER) >= 2)

            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=DEADLINE)
            output.finish()
    finally:
        os.close(main)
        if terminal != -1:
            os.close(terminal)

    assert code == 0
    assert "\x1b[?25l" in output.text  # the cursor was hidden while the view ran
    assert output.text.rstrip().endswith("\x1b[?25h")  # and shown again at the end


def test_watch_fails_in_one_line_when_a_store_is_unreachable_at_the_start(admin: Admin) -> None:
    port = closed_port()

    done = admin.process(
        "status --watch --interval 0.3", CRAWLER_REDIS_URL=f"redis://127.0.0.1:{port}/0"
    )

    assert done.returncode == 1 and done.stdout == ""
    assert f"Redis at 127.0.0.1:{port} cannot be used" in error_line(done.stderr)


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("status --interval 5", "--interval is for --watch"),
        ("status --watch --json", "--watch shows a live view: it prints no JSON"),
    ],
)
def test_watch_options_that_do_not_go_together_are_refused(
    admin: Admin, line: str, says: str
) -> None:
    refused = admin.run(line)

    assert refused.exit_code == 2 and says in error_line(refused.stderr)
