"""The fake Gmail IMAP server: asyncio on loopback, in a daemon thread of its own.

Plain TCP, no TLS: point the client at it with TLS off. Tests drive it in-process
(`with FakeGmail() as gmail: ...`); `serve` runs one from a config file for the command line,
and prints, as its ledger, a line of JSON when a session connects and when it ends
(`session_line`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import signal
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from types import TracebackType
from typing import Any

from standins import tokens
from standins.fakegmail.config import GmailConfig, load_config
from standins.fakegmail.generated import GeneratedAccount
from standins.fakegmail.ledger import Ledger, SessionRecord, SessionSummary
from standins.fakegmail.mailbox import DEFAULT_MAX_CONNECTIONS, Account, Accounts
from standins.fakegmail.output import Output
from standins.fakegmail.session import Session, Shared

_log = logging.getLogger(__name__)
_LINE_LIMIT = 1 << 20
_START_TIMEOUT = 10.0


class FakeGmail:
    """A Gmail IMAP server for tests: accounts, messages, faults and a ledger of the wire."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token_secret: str = tokens.DEFAULT_SECRET,
        clock: Callable[[], float] = time.time,
        on_session: Callable[[SessionSummary], None] | None = None,
    ) -> None:
        """`on_session` is called, in the server's thread, with a snapshot of each session when
        it connects (before the greeting) and when it ends."""
        self.host = host
        self.accounts = Accounts()
        self.ledger = Ledger()
        """Every connection, logged in or not."""
        self.errors: list[BaseException] = []
        """Exceptions that escaped a session: bugs in the fake, for a test to fail on."""
        self._requested_port = port
        self._clock = clock
        self._on_session = on_session
        self._shared = Shared(self.accounts, token_secret, clock)
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._sessions: set[asyncio.Task[None]] = set()

    def __enter__(self) -> FakeGmail:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def port(self) -> int:
        """The port it listens on (chosen by the system when asked for 0)."""
        if self._port is None:
            raise RuntimeError("the server is not running")
        return self._port

    def add_account(
        self,
        email: str,
        *,
        password: str | None = None,
        all_mail_name: str = "[Gmail]/All Mail",
        uidvalidity: int = 1,
        hide_all_mail: bool = False,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> Account:
        """A new account; `password` is its app password for LOGIN (None: XOAUTH2 only)."""
        account = Account(
            email,
            password=password,
            all_mail_name=all_mail_name,
            uidvalidity=uidvalidity,
            hide_all_mail=hide_all_mail,
            max_connections=max_connections,
            clock=self._clock,
        )
        return self.accounts.add(account)

    def add_generated_account(self, email: str, *, count: int, **options: Any) -> GeneratedAccount:
        """A new account of `count` messages made as they are read (generated.py); `options`
        are GeneratedAccount's (seed, first_uid, spacing, attachment_every, password ...)."""
        account = GeneratedAccount(email, count=count, clock=self._clock, **options)
        self.accounts.add(account)
        return account

    def account(self, email: str) -> Account:
        """The account of `email`; KeyError when there is none."""
        account = self.accounts.get(email)
        if account is None:
            raise KeyError(email)
        return account

    def start(self) -> FakeGmail:
        """Listen, in a daemon thread; returns once the port is open."""
        if self._thread is not None:
            raise RuntimeError("the server is already running")
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="fake-gmail", daemon=True
        )
        self._thread.start()
        if not ready.wait(_START_TIMEOUT) or self._port is None:
            self.close()
            raise RuntimeError(
                f"the fake Gmail could not listen on {self.host}:{self._requested_port}"
            )
        return self

    def close(self) -> None:
        """Drop every connection and stop listening."""
        loop, stop, thread = self._loop, self._stop, self._thread
        if loop is not None and stop is not None:
            with suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stop.set)
        if thread is not None:
            thread.join(_START_TIMEOUT)
        self._thread = self._loop = self._stop = None
        self._port = None

    def _run(self, ready: threading.Event) -> None:
        try:
            asyncio.run(self._serve(ready))
        except OSError as error:  # the port is taken, say
            self.errors.append(error)
        finally:
            ready.set()

    async def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(
            self._connection, self.host, self._requested_port, limit=_LINE_LIMIT
        )
        self._port = server.sockets[0].getsockname()[1]
        ready.set()
        async with server:
            await self._stop.wait()
            server.close()
            for task in self._sessions:
                task.cancel()
            await asyncio.gather(*self._sessions, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._sessions.add(task)
        peer_ip, peer_port = writer.get_extra_info("peername")[:2]
        record = SessionRecord(secrets.token_hex(9)[:17], f"{peer_ip}:{peer_port}")
        self.ledger.attach(record)
        session = Session(self._shared, reader, Output(writer, record), record, peer_ip)
        self._report(record)
        try:
            await session.run()
        except asyncio.CancelledError:
            # The server is closing. Ending quietly matters: Python 3.11's stream callback
            # takes a handler task that ends cancelled for a crash and logs it.
            pass
        except Exception as error:  # a bug in the fake: keep it for the test, not the loop
            _log.exception("fake Gmail session %s failed", record.session_id)
            self.errors.append(error)
        finally:
            if task is not None:
                self._sessions.discard(task)
            self._report(record)

    def _report(self, record: SessionRecord) -> None:
        if self._on_session is None:
            return
        try:
            self._on_session(record.summary())
        except Exception as error:  # the caller's bug: kept for the test, the session goes on
            _log.exception("reporting fake Gmail session %s failed", record.session_id)
            self.errors.append(error)


def session_line(summary: SessionSummary) -> str:
    """A session as a line of JSON: its id, whether it `ended` (false: it just connected), the
    account it logged in to (`user`, null until it did), its `commands` by name, `bytes_in`,
    `bytes_out`, `longest_line_out` and the BYE the server ended it with (`last_words`)."""
    words = summary.last_words
    return json.dumps(
        {
            "session": summary.session_id,
            "ended": summary.ended_at is not None,
            "user": summary.user,
            "commands": dict(summary.commands),
            "bytes_in": summary.bytes_in,
            "bytes_out": summary.bytes_out,
            "longest_line_out": summary.longest_line_out,
            "last_words": None if words is None else words.decode("ascii", "replace"),
        }
    )


def serve(config_path: Path | None, *, host: str = "127.0.0.1", port: int = 1143) -> None:
    """Run a fake Gmail described by a config file (config.py) until SIGTERM or Ctrl-C.

    Prints the port it listens on, then a `session_line` when a session connects and when it
    ends."""
    config = load_config(config_path) if config_path else GmailConfig()
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda number, frame: stopped.set())

    def log_session(summary: SessionSummary) -> None:
        print(session_line(summary), flush=True)

    with FakeGmail(host, port, token_secret=config.token_secret, on_session=log_session) as gmail:
        config.populate(gmail, config_path.parent if config_path else Path.cwd())
        print(f"fake Gmail IMAP listening on {host}:{gmail.port}", flush=True)
        with suppress(KeyboardInterrupt):
            stopped.wait()
