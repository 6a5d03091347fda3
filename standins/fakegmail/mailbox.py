"""Accounts and their messages: UIDs, X-GM-MSGID / X-GM-THRID, labels, flags, INTERNALDATE.

An account holds one list of messages in UID order (the All Mail numbering, which every folder
shares; see folders.py). Tests change an account from their own thread while sessions read it
from the server's thread: every change and every read goes through the account's lock, and a
`StoredMessage` is only ever changed by replacing its fields.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property

from standins.fakegmail.faults import Faults
from standins.fakegmail.folders import Folder, folder_table
from standins.fakegmail.ledger import Ledger, SessionRecord
from standins.fakegmail.message import FakeMessage
from standins.fakegmail.quota import DailyQuota

DEFAULT_MAX_CONNECTIONS = 15
_MSGID_SEQUENCE_BITS = 20


@dataclass(eq=False)
class StoredMessage:
    """One message in an account. `uid` changes only when the UIDVALIDITY does."""

    message: FakeMessage
    uid: int
    gm_msgid: int
    gm_thrid: int
    internaldate: datetime
    labels: frozenset[str]
    flags: frozenset[str]
    described_as: bytes | None = None  # a BODYSTRUCTURE Gmail is known to garble, as it sends it

    # A message never changes, and computing these costs about a millisecond each: metadata
    # FETCHes of thousands of messages (benchmarks) ask for them again and again.
    @cached_property
    def envelope(self) -> bytes:
        """The ENVELOPE of the message."""
        return self.message.envelope()

    @cached_property
    def bodystructure(self) -> bytes:
        """The BODYSTRUCTURE of the message."""
        return self.described_as or self.message.bodystructure()


class Account:
    """One Gmail account: its messages, folders, faults and ledger. Thread-safe."""

    def __init__(
        self,
        email: str,
        *,
        password: str | None = None,
        all_mail_name: str = "[Gmail]/All Mail",
        uidvalidity: int = 1,
        hide_all_mail: bool = False,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        clock: Callable[[], float] = time.time,
        daily_limit: int | None = None,
    ) -> None:
        self.email = email
        self.password = password
        self.all_mail_name = all_mail_name
        self.hide_all_mail = hide_all_mail
        self.max_connections = max_connections
        self.faults = Faults()
        self.ledger = Ledger()
        self.quota = DailyQuota(clock, daily_limit)
        """Bytes sent in a rolling day; past `quota.limit` the account is locked (quota.py)."""
        self._clock = clock
        self._lock = threading.RLock()
        self._uidvalidity = uidvalidity
        self._messages: dict[int, StoredMessage] = {}
        self._uidnext = 1
        self._modseq = 1
        self._labels: set[str] = set()
        self._msgid_sequence = itertools.count()

    def __repr__(self) -> str:
        return f"Account({self.email!r}, {len(self._messages)} messages)"

    # -- messages ---------------------------------------------------------------------

    def add_message(
        self,
        raw: bytes | FakeMessage,
        *,
        labels: Iterable[str] = (),
        flags: Iterable[str] = (),
        internaldate: datetime | None = None,
        thread_of: StoredMessage | None = None,
        described_as: bytes | None = None,
    ) -> StoredMessage:
        """Deliver a message (into All Mail, and the folders of its `labels`: `\\Inbox`, ...).

        `internaldate` defaults to now; a naive datetime is UTC. `thread_of` puts the message
        in that message's thread (its X-GM-THRID); otherwise it starts a thread of its own.
        `described_as` is the BODYSTRUCTURE to send instead of the message's own: Gmail garbles
        some (a multipart without parts as `("RELATED" NIL ("ATTACHMENT" NIL) NIL)`, an attached
        message without its envelope and body: jstedfast/MailKit#371, #59), and what triggers
        it is not known, so a test names the message and what Gmail says of it.
        """
        message = raw if isinstance(raw, FakeMessage) else FakeMessage(raw)
        when = internaldate or datetime.fromtimestamp(self._clock(), UTC)
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        with self._lock:
            gm_msgid = self._new_msgid(when)
            stored = StoredMessage(
                message=message,
                uid=self._uidnext,
                gm_msgid=gm_msgid,
                gm_thrid=thread_of.gm_thrid if thread_of else gm_msgid,
                internaldate=when,
                labels=frozenset(labels),
                flags=frozenset(flags),
                described_as=described_as,
            )
            self._messages[stored.uid] = stored
            self._uidnext += 1
            self._labels.update(stored.labels)
            self._modseq += 1
            return stored

    def messages(self) -> list[StoredMessage]:
        """Every message, in UID order."""
        with self._lock:
            return list(self._messages.values())

    def message(self, uid: int) -> StoredMessage | None:
        """The message with `uid`, if any."""
        with self._lock:
            return self._messages.get(uid)

    def set_labels(self, stored: StoredMessage, labels: Iterable[str]) -> None:
        """Replace the labels of a message (moving it between folders)."""
        with self._lock:
            stored.labels = frozenset(labels)
            self._labels.update(stored.labels)
            self._modseq += 1

    def set_flags(self, stored: StoredMessage, flags: Iterable[str]) -> None:
        """Replace the flags of a message (`\\Seen`, `\\Flagged`, ...)."""
        with self._lock:
            stored.flags = frozenset(flags)
            self._modseq += 1

    def create_label(self, label: str) -> None:
        """A user label (a folder) that may hold no message yet."""
        with self._lock:
            self._labels.add(label)

    # -- numbering --------------------------------------------------------------------

    @property
    def uidvalidity(self) -> int:
        """The UIDVALIDITY every folder of the account reports."""
        with self._lock:
            return self._uidvalidity

    @property
    def uidnext(self) -> int:
        """The UID the next message will get."""
        with self._lock:
            return self._uidnext

    @property
    def highestmodseq(self) -> int:
        """Grows with every change to the account's messages."""
        with self._lock:
            return self._modseq

    def skip_uids(self, count: int) -> None:
        """Leave `count` UIDs unused before the next message, as mail deleted long ago does:
        sparse UIDs, or UIDs that start in the millions."""
        if count < 0:
            raise ValueError("count >= 0")
        with self._lock:
            self._uidnext += count

    def set_uidvalidity(self, uidvalidity: int) -> None:
        """A new UIDVALIDITY: messages are renumbered from 1 in their order (between sessions).

        X-GM-MSGID and X-GM-THRID stay, as on Gmail: they are the stable identity.
        """
        with self._lock:
            self._uidvalidity = uidvalidity
            renumbered = enumerate(self._messages.values(), start=1)
            self._messages = {}
            for uid, stored in renumbered:
                stored.uid = uid
                self._messages[uid] = stored
            self._uidnext = len(self._messages) + 1
            self._modseq += 1

    # -- folders and sessions ---------------------------------------------------------

    def folders(self) -> list[Folder]:
        """The folders LIST shows."""
        with self._lock:
            user_labels = [label for label in self._labels if not label.startswith("\\")]
        return folder_table(
            self.all_mail_name, hide_all_mail=self.hide_all_mail, user_labels=user_labels
        )

    def uids(self, folder: Folder, *, above: int = 0) -> list[int]:
        """The UIDs in `folder` above `above`, in order."""
        found = []
        with self._lock:
            # From the newest down: a session asks for new mail before every command.
            for uid in reversed(self._messages):
                if uid <= above:
                    break
                if folder.holds(self._messages[uid].labels):
                    found.append(uid)
        return found[::-1]

    def admit(self, record: SessionRecord) -> bool:
        """Count a session as logged in, unless `max_connections` already are."""
        return self.ledger.admit(record, self.email, self.max_connections)

    def now(self) -> float:
        """The server clock (epoch seconds)."""
        return self._clock()

    def _new_msgid(self, when: datetime) -> int:
        # Gmail's ids grow with time: milliseconds in the high bits, a sequence in the low ones.
        millis = max(int(when.timestamp() * 1000), 0)
        sequence = next(self._msgid_sequence) % (1 << _MSGID_SEQUENCE_BITS)
        return (millis << _MSGID_SEQUENCE_BITS) | sequence


class Accounts:
    """The accounts a server knows, by email (case-insensitive). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_email: dict[str, Account] = {}

    def add(self, account: Account) -> Account:
        """Register `account`; ValueError when its email is taken."""
        with self._lock:
            key = account.email.lower()
            if key in self._by_email:
                raise ValueError(f"account {account.email} exists")
            self._by_email[key] = account
        return account

    def get(self, email: str) -> Account | None:
        """The account of `email`, if any."""
        with self._lock:
            return self._by_email.get(email.lower())

    def __iter__(self) -> Iterator[Account]:
        with self._lock:
            return iter(list(self._by_email.values()))
