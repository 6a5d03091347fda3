"""`crawler fake-gmail` as a process of its own, beside the worker processes of an e2e test.

    with fake_gmail_process({"accounts": [{"email": EMAIL, ...}]}, tmp_path) as gmail:
        ...a worker against 127.0.0.1:gmail.port...
        gmail.sessions(EMAIL)  # what the fake logged of each session of that account

The config (standins/fakegmail/config.py) is written to `gmail.json` in the folder given, so the
paths of its messages are relative to that folder. The fake listens on a port the system picks,
which it announces; its output goes to `fake-gmail.log` there. It prints a line of JSON when a
session connects and when it ends (`standins.fakegmail.server.session_line`): its ledger, as a
test reads it across processes. The test fails, with the fake's output, if the fake exits before
the end, or if a session crashed inside it.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.plugins.workers import CRAWLER

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
_LISTENING = re.compile(r"^fake Gmail IMAP listening on \S+:(\d+)$", re.MULTILINE)


class GmailProcess:
    """A running `crawler fake-gmail`: its port, its output, the sessions it logged."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.log = log
        self.port = 0
        """The port it listens on, once `wait_listening` returned."""

    def wait_listening(self) -> None:
        """Wait until the fake announces its port (it listens then)."""
        deadline = time.monotonic() + START_TIMEOUT
        while not (listening := _LISTENING.search(self.output())):
            self.check_running()
            if time.monotonic() > deadline:
                pytest.fail(f"the fake Gmail did not listen within {START_TIMEOUT} s")
            time.sleep(0.02)
        self.port = int(listening[1])

    def output(self) -> str:
        """Everything the fake wrote so far, stdout and stderr."""
        return self.log.read_text(encoding="utf-8", errors="replace")

    def sessions(self, user: str | None = None, *, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The sessions that ended, oldest first (those that logged in to `user`'s account, if
        given), once every session that connected has ended: ask when no client is left."""
        deadline = time.monotonic() + timeout
        while True:
            complete = self.output().split("\n")[:-1]  # the last line may be half written
            lines = [json.loads(line) for line in complete if line.startswith("{")]
            ended = [line for line in lines if line["ended"]]
            if {line["session"] for line in lines} == {line["session"] for line in ended}:
                return [line for line in ended if user is None or line["user"] == user]
            self.check_running()
            if time.monotonic() > deadline:
                pytest.fail(f"a session did not end within {timeout} s:\n{self.output()[-3000:]}")
            time.sleep(0.02)

    def check_running(self) -> None:
        """Fail the test, with the fake's output, if the fake exited."""
        code = self.process.poll()
        if code is not None:
            pytest.fail(f"the fake Gmail exited with {code}:\n{self.output()[-3000:]}")

    def check_sound(self) -> None:
        """Fail the test if the fake exited or a session crashed inside it (a bug in the fake,
        which logs its traceback)."""
        self.check_running()
        if "Traceback" in self.output():
            pytest.fail(f"a session crashed in the fake Gmail:\n{self.output()[-3000:]}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not end within STOP_TIMEOUT."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def fake_gmail_process(config: dict[str, Any], folder: Path) -> Iterator[GmailProcess]:
    """`crawler fake-gmail` running `config` until the end of the block; see the module."""
    path = folder / "gmail.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    log = folder / "fake-gmail.log"
    command = [*CRAWLER, "fake-gmail", "--port", "0", "--config", str(path)]
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    gmail = GmailProcess(process, log)
    try:
        gmail.wait_listening()
        yield gmail
        gmail.check_sound()
    finally:
        gmail.stop()
