"""A big mailbox made up as it is read: `GeneratedAccount`, beside the ordinary `Account`.

Its messages are never stored as bytes: each is made from the account's seed and its index when a
session asks for it, so an account of 200,000 messages costs a few megabytes. UIDs may start high
and leave gaps (`first_uid`, `spacing`: the mean distance between UIDs), as on a Gmail account
whose mail was deleted over the years. Most messages are plain notes shared by a few templates
(parsed once); one in `attachment_every` on average carries a small PNG made from the seed, so
that `has:attachment` finds a small share. Every message is in All Mail and INBOX.

Good enough for SEARCH (UID sets, X-GM-RAW, flags), FETCH of metadata and BODY parts, and the
ledger; it cannot take new mail, labels, flags or a new UIDVALIDITY.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from standins.fakegmail.folders import Folder
from standins.fakegmail.mailbox import DEFAULT_MAX_CONNECTIONS, Account, StoredMessage
from standins.fakegmail.message import FakeMessage

LABELS = frozenset({"\\Inbox"})
_TEMPLATES = 16  # distinct plain notes
_START = datetime(2015, 1, 1, tzinfo=UTC)
_MSGID_SEQUENCE_BITS = 20
_PNG = b"\x89PNG\r\n\x1a\n"


class _Template:
    """A parsed message with its ENVELOPE and BODYSTRUCTURE rendered once."""

    def __init__(self, raw: bytes) -> None:
        self.message = FakeMessage(raw)
        self.envelope = self.message.envelope()
        self.bodystructure = self.message.bodystructure()


@dataclass(eq=False)
class _GeneratedMessage(StoredMessage):
    template: _Template | None = None

    @property  # read from the template, never computed again
    def envelope(self) -> bytes:
        """The ENVELOPE of the template."""
        assert self.template is not None
        return self.template.envelope

    @property
    def bodystructure(self) -> bytes:
        """The BODYSTRUCTURE of the template."""
        assert self.template is not None
        return self.template.bodystructure


class GeneratedAccount(Account):
    """An account of `count` messages made from `seed` as they are read. Thread-safe."""

    def __init__(
        self,
        email: str,
        *,
        count: int,
        seed: int = 0,
        first_uid: int = 1,
        spacing: int = 1,
        attachment_every: int = 1000,
        password: str | None = None,
        all_mail_name: str = "[Gmail]/All Mail",
        uidvalidity: int = 1,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if count < 0 or first_uid < 1 or spacing < 1 or attachment_every < 1:
            raise ValueError("count >= 0, first_uid >= 1, spacing >= 1, attachment_every >= 1")
        super().__init__(
            email,
            password=password,
            all_mail_name=all_mail_name,
            uidvalidity=uidvalidity,
            max_connections=max_connections,
            clock=clock,
        )
        self.count = count
        self.seed = seed
        self.first_uid = first_uid
        self.spacing = spacing
        self.attachment_every = attachment_every
        if self.uid_of(count - 1) >= 2**32 - 1:
            raise ValueError("UIDs are 32-bit")
        self._templates = [_Template(_note(seed, n)) for n in range(_TEMPLATES)]
        self._attached = lru_cache(maxsize=256)(self._make_attached)

    def __repr__(self) -> str:
        return f"GeneratedAccount({self.email!r}, {self.count} messages)"

    # -- numbering --------------------------------------------------------------------

    def uid_of(self, index: int) -> int:
        """The UID of the message at `index` (0-based): rising, with gaps below `spacing`."""
        return self.first_uid + index * self.spacing + self._mix(index, b"gap") % self.spacing

    def index_of(self, uid: int) -> int | None:
        """The index of the message with `uid`, if there is one."""
        index = (uid - self.first_uid) // self.spacing
        if 0 <= index < self.count and self.uid_of(index) == uid:
            return index
        return None

    def has_attachment(self, index: int) -> bool:
        """Whether the message at `index` carries a PNG."""
        return self._mix(index, b"attachment") % self.attachment_every == 0

    def attachment_uids(self) -> list[int]:
        """The UIDs of the messages with a PNG, in order."""
        return [self.uid_of(i) for i in range(self.count) if self.has_attachment(i)]

    @property
    def uidnext(self) -> int:
        """One above the highest UID."""
        return self.uid_of(self.count - 1) + 1 if self.count else self.first_uid

    # -- what sessions read -----------------------------------------------------------

    def messages(self) -> list[StoredMessage]:
        """Every message, in UID order (made one by one: costly for a big account)."""
        return [self._stored(i) for i in range(self.count)]

    def message(self, uid: int) -> StoredMessage | None:
        """The message with `uid`, made now."""
        index = self.index_of(uid)
        return None if index is None else self._stored(index)

    def uids(self, folder: Folder, *, above: int = 0) -> list[int]:
        """The UIDs in `folder` above `above`, in order."""
        if not folder.holds(LABELS):
            return []
        start = max((above - self.first_uid) // self.spacing, 0)
        while start < self.count and self.uid_of(start) <= above:
            start += 1
        return [self.uid_of(i) for i in range(start, self.count)]

    # -- what it cannot do ------------------------------------------------------------

    def add_message(self, *args: object, **kwargs: object) -> StoredMessage:
        """Not for a generated account."""
        raise NotImplementedError("a generated account takes no new mail")

    def set_labels(self, stored: StoredMessage, labels: Iterable[str]) -> None:
        """Not for a generated account."""
        raise NotImplementedError("a generated account keeps its labels")

    def set_flags(self, stored: StoredMessage, flags: Iterable[str]) -> None:
        """Not kept: a generated message is made anew each time it is read."""

    def set_uidvalidity(self, uidvalidity: int) -> None:
        """Not for a generated account."""
        raise NotImplementedError("a generated account keeps its UIDs")

    def skip_uids(self, count: int) -> None:
        """Not for a generated account: `first_uid` and `spacing` make its gaps."""
        raise NotImplementedError("a generated account makes its gaps with spacing")

    # -- making messages --------------------------------------------------------------

    def _stored(self, index: int) -> StoredMessage:
        if self.has_attachment(index):
            template = self._attached(index)
        else:
            template = self._templates[self._mix(index, b"note") % _TEMPLATES]
        when = _START + timedelta(minutes=index)
        msgid = (int(when.timestamp() * 1000) << _MSGID_SEQUENCE_BITS) | (
            index % (1 << _MSGID_SEQUENCE_BITS)
        )
        return _GeneratedMessage(
            message=template.message,
            uid=self.uid_of(index),
            gm_msgid=msgid,
            gm_thrid=msgid,
            internaldate=when,
            labels=LABELS,
            flags=frozenset({"\\Seen"}),
            template=template,
        )

    def _make_attached(self, index: int) -> _Template:
        data = _PNG + hashlib.sha256(b"%d:%d:png" % (self.seed, index)).digest() * 32
        return _Template(_with_png(self.uid_of(index), data))

    def _mix(self, index: int, what: bytes) -> int:
        digest = hashlib.blake2b(b"%d:%d:%s" % (self.seed, index, what), digest_size=8).digest()
        return int.from_bytes(digest, "big")


def _note(seed: int, n: int) -> bytes:
    return (
        b"From: Sender %d <sender%d@example.com>\r\n"
        b"To: owner@example.com\r\n"
        b"Subject: Note %d of seed %d\r\n"
        b"Date: Thu, 01 Jan 2015 00:00:00 +0000\r\n"
        b"Message-ID: <note-%d-%d@example.com>\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"\r\n"
        b"Nothing attached to note %d.\r\n" % (n, n, n, seed, seed, n, n)
    )


def _with_png(uid: int, data: bytes) -> bytes:
    encoded = base64.encodebytes(data).replace(b"\n", b"\r\n")
    return (
        b"From: Camera <camera@example.com>\r\n"
        b"To: owner@example.com\r\n"
        b"Subject: Photo %d\r\n"
        b"Date: Thu, 01 Jan 2015 00:00:00 +0000\r\n"
        b"Message-ID: <photo-%d@example.com>\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n'
        b"\r\n"
        b"--b%d\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"\r\n"
        b"A photo.\r\n"
        b"--b%d\r\n"
        b'Content-Type: image/png; name="photo-%d.png"\r\n'
        b'Content-Disposition: attachment; filename="photo-%d.png"\r\n'
        b"Content-Transfer-Encoding: base64\r\n"
        b"\r\n"
        b"%s"
        b"--b%d--\r\n" % (uid, uid, uid, uid, uid, uid, uid, encoded, uid)
    )
