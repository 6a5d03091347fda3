"""pytest fixture: a private Dovecot IMAP server on loopback, its mailboxes filled from .eml bytes.

Dovecot is the reference IMAP server that the fake Gmail is compared with. Each server runs from a
throwaway directory of its own (config, sockets, log, passwd-file, maildirs); nothing of the
system's Dovecot is read or touched. `dovecot` is one server for the whole session: tests keep
apart by user name. Each user has a passwd-file of its own, which Dovecot opens at that user's
first login, so `add_user` takes effect at once (a shared passwd-file is re-read at most once a
second). Failed logins are not penalised, so tests of bad passwords stay fast.

Dovecot runs rootless. Run as root, its login processes refuse to start and it refuses mail access
as UID 0, so under root every Dovecot process runs as `nobody`, which is given the directory.
It stops with SIGKILL to its whole process group: its data is throwaway, and a polite SIGTERM
costs a second or more (ten while a client is still logged in).
"""

from __future__ import annotations

import contextlib
import email.parser
import email.utils
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import string
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import pytest

from tests.conftest import require

DOVECOT_BINARY = Path("/usr/sbin/dovecot")
ROOTLESS_USER = "nobody"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
POLL_INTERVAL = 0.02
GREETING_TIMEOUT = 0.25  # Dovecot greets in milliseconds; a silent listener is not Dovecot
LOG_TAIL_LINES = 30
# Within Dovecot's default auth_username_chars; also keeps names safe as maildir paths.
USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]*")
# Dovecot numbers new maildir files in the order of the time stamp that starts their names.
FIRST_MAILDIR_STAMP = 1_000_000_000

CONFIG = string.Template("""\
base_dir = $root/run
state_dir = $root/state
log_path = $root/dovecot.log
protocols = imap
listen = $host
ssl = no
disable_plaintext_auth = no
default_internal_user = $user
default_internal_group = $group
default_login_user = $user
mail_location = maildir:$root/mail/%u
# Refusals wait for the next half-second check instead of the default two seconds.
auth_failure_delay = 0
passdb {
  driver = passwd-file
  args = $root/users/%u
}
userdb {
  driver = passwd-file
  args = $root/users/%u
  default_fields = uid=$uid gid=$gid
}
# chroot needs root: off for every service that has one by default.
service imap-login {
  chroot =
  inet_listener imap {
    address = $host
    port = $port
  }
  inet_listener imaps {
    port = 0
  }
}
service anvil {
  chroot =
  # No socket for auth penalties: each failed login from an IP would delay the next by seconds.
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
""")


class DovecotError(RuntimeError):
    """Dovecot did not start or stop; the message carries the end of its log."""


@dataclass(frozen=True)
class _Identity:
    """The user and group every Dovecot process runs as."""

    user: str
    group: str
    uid: int
    gid: int

    @classmethod
    def for_this_process(cls) -> _Identity:
        """The current user, or `nobody` when that is root."""
        entry = pwd.getpwnam(ROOTLESS_USER) if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
        return cls(entry.pw_name, grp.getgrgid(entry.pw_gid).gr_name, entry.pw_uid, entry.pw_gid)

    @property
    def is_other_user(self) -> bool:
        return self.uid != os.geteuid()


class Dovecot:
    """A Dovecot serving IMAP on `host:port` while started; port 0 picks a free port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port or _free_port(host)
        self._identity = _Identity.for_this_process()
        self._root = Path(tempfile.mkdtemp(prefix="dovecot-"))
        self._users: set[str] = set()
        self._users_lock = threading.Lock()
        self._master: subprocess.Popen[bytes] | None = None
        self._group: int | None = None

    @property
    def log_path(self) -> Path:
        """Dovecot's log, where every error of its processes goes."""
        return self._root / "dovecot.log"

    def start(self) -> None:
        """Write the config, start Dovecot and wait until it greets on its port."""
        config = self._root / "dovecot.conf"
        config.write_text(self._config())
        self.log_path.touch()
        directories = [self._root / name for name in ("run", "state", "mail", "users")]
        for directory in directories:
            directory.mkdir()
        self._give_away(self._root, config, self.log_path, *directories)
        identity, drop = self._identity, self._identity.is_other_user
        with self.log_path.open("ab") as log:  # early fatal errors go to stderr, not the log
            self._master = subprocess.Popen(
                [str(DOVECOT_BINARY), "-F", "-c", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # its own process group, killed as one at the end
                user=identity.uid if drop else None,
                group=identity.gid if drop else None,
                extra_groups=[] if drop else None,
            )
        self._group = self._master.pid
        self._await_greeting()

    def stop(self) -> None:
        """Kill every Dovecot process and remove its directory; idempotent."""
        self._kill()
        shutil.rmtree(self._root, ignore_errors=True)

    def live_processes(self) -> list[int]:
        """The pids of this Dovecot's processes that still run (zombies not counted)."""
        return [] if self._group is None else _live_group_members(self._group)

    def add_user(self, name: str, password: str, messages: Sequence[bytes] = ()) -> None:
        """A user whose INBOX holds `messages`, with UIDs 1, 2, ... in the order given."""
        _check_field("user name", name, USERNAME)
        _check_field("password", password, re.compile(r"[^:\s]+"))
        with self._users_lock:
            if name in self._users:
                raise ValueError(f"user {name!r} exists already on this Dovecot")
            self._users.add(name)
            self._write_maildir(name, messages)
            self._write_passwd_file(name, password)

    def __enter__(self) -> Dovecot:
        try:
            self.start()
        except BaseException:
            self._kill()  # the directory stays, for its log
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _kill(self) -> None:
        master, self._master = self._master, None
        if master is not None:
            _kill_group(master)

    def _config(self) -> str:
        identity = self._identity
        return CONFIG.substitute(
            root=self._root,
            host=self.host,
            port=self.port,
            user=identity.user,
            group=identity.group,
            uid=identity.uid,
            gid=identity.gid,
        )

    def _give_away(self, *paths: Path) -> None:
        """Hand files to the user Dovecot runs as, when that is not us."""
        if self._identity.is_other_user:
            for path in paths:
                os.chown(path, self._identity.uid, self._identity.gid)

    def _write_maildir(self, name: str, messages: Sequence[bytes]) -> None:
        maildir = self._root / "mail" / name
        subdirectories = [maildir / sub for sub in ("cur", "new", "tmp")]
        for directory in subdirectories:
            directory.mkdir(parents=True)
        self._give_away(maildir, *subdirectories)
        for index, raw in enumerate(messages):
            path = maildir / "cur" / f"{FIRST_MAILDIR_STAMP + index}.M{index}.fixture:2,"
            path.write_bytes(raw)
            received_at = _date_header(raw)
            if received_at is not None:  # maildir's INTERNALDATE is the file's mtime
                os.utime(path, (received_at, received_at))
            self._give_away(path)

    def _write_passwd_file(self, name: str, password: str) -> None:
        """The user's own passwd-file, complete before Dovecot can see it."""
        staged = self._root / f"passwd-{name}.new"  # outside users/, where no user can be
        staged.write_text(f"{name}:{{PLAIN}}{password}::::::\n")
        self._give_away(staged)
        staged.replace(self._root / "users" / name)

    def _await_greeting(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._master is None or self._master.poll() is not None:
                raise DovecotError(self._failure("Dovecot exited while starting"))
            if _greets(self.host, self.port):
                return
            time.sleep(POLL_INTERVAL)
        raise DovecotError(self._failure(f"Dovecot did not greet within {START_TIMEOUT:.0f} s"))

    def _failure(self, what: str) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError as error:
            lines = [f"(no log: {error})"]
        tail = "\n".join(lines[-LOG_TAIL_LINES:])
        return f"{what} on {self.host}:{self.port}; its log, {self.log_path}, ends with:\n{tail}"


def _check_field(what: str, value: str, pattern: re.Pattern[str]) -> None:
    if not pattern.fullmatch(value):
        raise ValueError(f"{what} {value!r} does not fit a Dovecot passwd-file")


def _date_header(raw: bytes) -> float | None:
    """The message's Date header as epoch seconds, if it has a readable one."""
    date = email.parser.BytesHeaderParser().parsebytes(raw).get("Date")
    if date is None:
        return None
    try:
        return email.utils.parsedate_to_datetime(str(date)).timestamp()
    except (TypeError, ValueError):  # parsedate_to_datetime raises either on a bad date
        return None


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def _greets(host: str, port: int) -> bool:
    """Whether an IMAP server answers on the port with an OK greeting."""
    try:
        with socket.create_connection((host, port), timeout=GREETING_TIMEOUT) as connection:
            return connection.recv(256).startswith(b"* OK")
    except OSError:
        return False


def _kill_group(master: subprocess.Popen[bytes]) -> None:
    """Kill the master and its children, and wait until none of them runs."""
    with contextlib.suppress(ProcessLookupError):  # the whole group had exited already
        os.killpg(master.pid, signal.SIGKILL)
    master.wait(timeout=STOP_TIMEOUT)
    deadline = time.monotonic() + STOP_TIMEOUT
    while left := _live_group_members(master.pid):
        if time.monotonic() > deadline:
            raise DovecotError(f"Dovecot processes {left} survived SIGKILL")
        time.sleep(POLL_INTERVAL)


def _live_group_members(group: int) -> list[int]:
    """Processes of a process group that have not exited (zombies wait for init to reap them)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited while we looked
        # Fields after the parenthesised command (which may hold spaces): state, ppid, pgrp.
        state, _, pgrp = stat.rpartition(")")[2].split()[:3]
        if int(pgrp) == group and state not in {"Z", "X"}:
            members.append(int(entry.name))
    return members


def require_dovecot() -> None:
    """Skip here (fail in CI) when Dovecot is not installed."""
    require(os.access(DOVECOT_BINARY, os.X_OK), f"Dovecot ({DOVECOT_BINARY})")


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """One Dovecot for the session; each test adds users of its own with `add_user`."""
    require_dovecot()
    with Dovecot() as server:
        yield server
