"""The servers a contender runs against, each giving every run a fresh mailbox of the same mail.

- `FakeGmailServer`: the fake Gmail, at a latency per command (0 or 50 ms); a run's wire counts
  come from its account's ledger.
- `DovecotServer`: a real Dovecot holding the messages in a maildir; a run's wire counts come from
  a counting proxy (proxy.py) in front of it, one per run.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Protocol

from bench.child import Job
from bench.mailbox import Mail
from bench.proxy import CountingProxy, Wire
from standins import tokens
from standins.fakegmail import Account, FakeGmail, FakeMessage
from tests.plugins.dovecot import FIRST_MAILDIR_STAMP, Dovecot

PASSWORD = "bench-app-password"  # the benchmark accounts' own password
ALL_MAIL = "[Gmail]/All Mail"


class Mailbox(Protocol):
    """One account holding the benchmark's mail, for one contender run."""

    def job(self, out: Path, state: Path) -> Job:
        """The job that points a contender here."""
        ...

    def deliver(self, mails: Sequence[Mail]) -> None:
        """New mail arrives."""
        ...

    def wire(self) -> Wire:
        """What crossed the wire since the last reset."""
        ...

    def reset(self) -> None:
        """Count from zero."""
        ...

    def close(self) -> None:
        """Give back what the mailbox holds."""
        ...


class Server(Protocol):
    """Where contenders run: a name for the tables and fresh mailboxes."""

    name: str

    def mailbox(self, label: str, mails: Sequence[Mail]) -> Mailbox:
        """A new account holding `mails`."""
        ...


class _Prepared:
    """A message parsed once for every fake account that holds it.

    Gmail has its indexes ready before anyone asks; the fake computes its search facts
    (`has:attachment` parses the whole message) and renders ENVELOPE and BODYSTRUCTURE on first
    use. Done here, that work stays out of every contender's measured time.
    """

    def __init__(self, mail: Mail) -> None:
        self.mail = mail
        self.message = FakeMessage(mail.raw)
        self.envelope = self.message.envelope()
        self.bodystructure = self.message.bodystructure()
        assert isinstance(self.message.has_attachment, bool)  # computed now, cached


class FakeGmailServer:
    """The fake Gmail at `latency` seconds per command."""

    def __init__(
        self, gmail: FakeGmail, latency: float, prepared: dict[int, _Prepared] | None = None
    ) -> None:
        self.gmail = gmail
        self.latency = latency
        self.name = f"fake Gmail {latency * 1000:.0f} ms"
        self._prepared = {} if prepared is None else prepared  # may be shared by servers

    def mailbox(self, label: str, mails: Sequence[Mail]) -> FakeMailbox:
        account = self.gmail.add_account(f"{label}@bench.example", password=PASSWORD)
        mailbox = FakeMailbox(self, account)
        mailbox.deliver(mails)
        account.faults.latency = self.latency
        return mailbox

    def prepared(self, mail: Mail) -> _Prepared:
        """The parsed message, parsed once however many accounts hold it."""
        if mail.index not in self._prepared:
            self._prepared[mail.index] = _Prepared(mail)
        return self._prepared[mail.index]


class FakeMailbox:
    """One fake Gmail account."""

    def __init__(self, server: FakeGmailServer, account: Account) -> None:
        self.server = server
        self.account = account

    def job(self, out: Path, state: Path) -> Job:
        email = self.account.email
        return Job(
            host=self.server.gmail.host,
            port=self.server.gmail.port,
            user=email,
            password=PASSWORD,
            folder=ALL_MAIL,
            gmail=True,
            token=tokens.issue(email, time.time() + 86_400),
            out=str(out),
            state=str(state),
        )

    def deliver(self, mails: Sequence[Mail]) -> None:
        for mail in mails:
            prepared = self.server.prepared(mail)
            stored = self.account.add_message(
                prepared.message, labels=["\\Inbox"], internaldate=mail.date
            )
            # StoredMessage caches these per account: hand it the ones rendered once.
            stored.__dict__.update(envelope=prepared.envelope, bodystructure=prepared.bodystructure)

    def wire(self) -> Wire:
        ledger = self.account.ledger
        return Wire(ledger.commands.total(), ledger.bytes_in, ledger.bytes_out)

    def reset(self) -> None:
        self.account.ledger.reset()

    def close(self) -> None:
        """Fake accounts cannot be removed; they hold references to shared messages only."""


class DovecotServer:
    """A real Dovecot; each run's user gets hard links to one stored copy of every message."""

    name = "Dovecot"

    def __init__(self, dovecot: Dovecot, stack: ExitStack) -> None:
        self.dovecot = dovecot
        self.stack = stack
        self.store = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-mail-")))

    def mailbox(self, label: str, mails: Sequence[Mail]) -> DovecotMailbox:
        self.dovecot.add_user(label, PASSWORD)
        mailbox = DovecotMailbox(self, label)
        mailbox.deliver(mails)
        return mailbox

    def stored(self, mail: Mail) -> Path:
        """The one stored copy of a message, readable by Dovecot's user, its mtime its date."""
        path = self.store / f"{mail.index:07d}.eml"
        if not path.exists():
            path.write_bytes(mail.raw)
            stamp = mail.date.timestamp()
            os.utime(path, (stamp, stamp))  # a maildir message's INTERNALDATE is its mtime
            path.chmod(0o644)
        return path

    def maildir(self, user: str) -> Path:
        """Where Dovecot keeps the user's INBOX (the fixture's layout)."""
        return Path(self.dovecot.log_path).parent / "mail" / user


class DovecotMailbox:
    """One Dovecot user behind a counting proxy of its own."""

    def __init__(self, server: DovecotServer, user: str) -> None:
        self.server = server
        self.user = user
        self.proxy = CountingProxy((server.dovecot.host, server.dovecot.port)).__enter__()
        self.delivered = 0

    def job(self, out: Path, state: Path) -> Job:
        return Job(
            host=self.proxy.host,
            port=self.proxy.port,
            user=self.user,
            password=PASSWORD,
            folder="INBOX",
            gmail=False,
            out=str(out),
            state=str(state),
        )

    def deliver(self, mails: Sequence[Mail]) -> None:
        # Dovecot numbers new files in the order of the time stamp that starts their names.
        cur = self.server.maildir(self.user) / "cur"
        for mail in mails:
            number = self.delivered
            name = f"{FIRST_MAILDIR_STAMP + number}.M{number}.bench:2,"
            os.link(self.server.stored(mail), cur / name)
            self.delivered += 1

    def wire(self) -> Wire:
        return self.proxy.wire()

    def reset(self) -> None:
        self.proxy.reset()

    def close(self) -> None:
        self.proxy.__exit__(None, None, None)
