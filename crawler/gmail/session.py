"""One IMAP session with one account: connect, authenticate, find the folder, search, fetch.

Read-only by construction: EXAMINE, never SELECT, and BODY.PEEK only. Every IMAPClient call goes
through `_call`, which turns what the wire tap saw (and socket failures) into the error taxonomy.
"""

from __future__ import annotations

import imaplib
import re
import socket
import ssl
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar

from imapclient import exceptions as imap_errors
from imapclient import imap_utf7
from imapclient.imapclient import _literal as ImapLiteral  # "send as a literal": no public name
from imapclient.response_types import Envelope

from crawler.errors import (
    AccountUnavailable,
    BadAccount,
    BadRule,
    CrawlerError,
    ProtocolError,
    Transient,
)
from crawler.gmail.wire import DEFAULT_BUDGET, LiteralSink, TappedIMAPClient, WireTap

T = TypeVar("T")
try:
    _VERSION = version("gmail-attachment-crawler")
except PackageNotFoundError:  # run from a source tree that is not installed
    _VERSION = "0+unknown"
# What ID tells the server (RFC 2971): Google asks clients to name themselves and a contact.
CLIENT_ID = {"name": "gmail-attachment-crawler", "version": _VERSION}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# RFC 3501 ATOM-CHAR: printable ASCII but the atom-specials `(){%*"\]` and space.
_ATOM = re.compile(r"[!#$&'+,\-./0-9:;<=>?@A-Z\[^_`a-z|}~]+")
METADATA_ITEMS = ("ENVELOPE", "BODYSTRUCTURE", "RFC822.SIZE", "INTERNALDATE")
GMAIL_ITEMS = ("X-GM-MSGID", "X-GM-THRID", "X-GM-LABELS")
# What an answer may carry, beyond DEFAULT_BUDGET: a UID in a SEARCH answer (10 digits and a
# space, with room to spare); one message's metadata (its BODYSTRUCTURE, envelope, labels); the
# FETCH line around a message's requested sections.
SEARCH_BYTES_PER_MESSAGE = 16
# UIDs one search covers: at most 50,000 hits of 10 digits and a space, 550,000 bytes, well
# under the 1,000,000 bytes imaplib allows a line.
SEARCH_WINDOW = 50_000
METADATA_BYTES_PER_MESSAGE = 2**18
ANSWER_BYTES_PER_MESSAGE = 2**12


@dataclass(frozen=True)
class Mailbox:
    """What EXAMINE says about the folder."""

    name: str
    uidvalidity: int
    uidnext: int
    exists: int


@dataclass(frozen=True)
class MessageMeta:
    """One message's metadata from the batch FETCH."""

    uid: int
    gm_msgid: int | None
    gm_thrid: int | None
    labels: tuple[str, ...]
    envelope: Envelope | None
    bodystructure: Any
    size: int
    internaldate: datetime | None


class ImapSession:
    """A read-only IMAP session over a tapped IMAPClient."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: bool,
        timeout: float,
        max_literal: int,
        ca_file: str | None = None,
        min_rate: int = 2**14,
        contact: str | None = None,
    ) -> None:
        self.tap = WireTap(max_literal=max_literal, timeout=timeout, min_rate=min_rate)
        self.exists = 0  # messages in the folder EXAMINE opened: what a search may name
        self.identity = CLIENT_ID | ({"contact": contact} if contact else {})  # sent as ID
        self.broken = False  # set once the connection is out of step: no command goes on it
        # Certificates are always verified; `ca_file` adds authorities to the system's.
        context = ssl.create_default_context() if tls else None
        if context is not None and ca_file:
            context.load_verify_locations(cafile=ca_file)
        self.client: TappedIMAPClient = self._call(
            "connect", lambda: TappedIMAPClient(self.tap, host, port, context, timeout)
        )

    @property
    def throttled(self) -> bool:
        """Whether Gmail appended [THROTTLED] to any reply so far."""
        return self.tap.throttled

    # -- authentication -----------------------------------------------------------------

    def xoauth2(self, email: str, access_token: str) -> None:
        """AUTHENTICATE XOAUTH2 with a bearer token."""
        self._call("authenticate", lambda: self.client.oauth2_login(email, access_token))
        self._keep_capabilities()
        self._identify()

    def login(self, user: str, password: str) -> None:
        """LOGIN with an app password (generic IMAP accounts)."""
        if _CONTROL.search(user) or _CONTROL.search(password):
            # A line break would end LOGIN early and make the rest a command of its own.
            raise BadAccount("the IMAP user name or password contains a control character")
        # imaplib quotes the password but sends the user name as is, where a space or `{5}`
        # would be IMAP syntax: quote it here.
        quoted = '"' + user.replace("\\", "\\\\").replace('"', '\\"') + '"'
        self._call("login", lambda: self.client.login(quoted, password))
        self._keep_capabilities()
        self._identify()

    def _keep_capabilities(self) -> None:
        """Keep the capabilities the server sent with its login answer (Gmail sends them
        untagged, Dovecot as a response code): the next command would drop them, and IMAPClient
        would then ask with a CAPABILITY command of its own."""
        if "CAPABILITY" in self.client._imap.untagged_responses:  # sent: no command needed
            self._call("capability", self.client.capabilities)

    def _identify(self) -> None:
        """Say who we are with one ID command (RFC 2971), as Google asks of clients, when the
        server offers ID. The answer is read within the default budget and ignored; a NO or
        BAD costs nothing more, a connection lost on the way fails as any command's would."""
        if not self._call("capability", lambda: self.client.has_capability("ID")):
            return
        try:
            self._call("id", lambda: self.client.id_(self.identity))
        except (ProtocolError, Transient):
            if self.broken:
                raise

    def require(self, capability: str) -> None:
        """ProtocolError unless the server announced `capability`."""
        if not self._call("capability", lambda: self.client.has_capability(capability)):
            raise ProtocolError(f"the server does not offer {capability}: is this Gmail?")

    # -- folders ------------------------------------------------------------------------

    def all_mail(self) -> str:
        """The name of All Mail, found by its `\\All` special-use flag (names are localized)."""
        folders = self._call("list", self.client.list_folders)
        for flags, _, name in folders:
            if b"\\All" in flags:
                return str(name)
        raise AccountUnavailable(
            "All Mail is hidden from IMAP: in Gmail settings, Labels, tick 'Show in IMAP' "
            "for All Mail"
        )

    def examine(self, folder: str) -> Mailbox:
        """EXAMINE (read-only) `folder`."""
        data = self._call("examine", lambda: self.client.select_folder(folder, readonly=True))
        try:
            mailbox = Mailbox(
                name=folder,
                uidvalidity=int(data[b"UIDVALIDITY"]),
                uidnext=int(data.get(b"UIDNEXT", 0)),
                exists=int(data[b"EXISTS"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ProtocolError(f"EXAMINE {folder!r} lacks {error}") from None
        self.exists = max(mailbox.exists, 0)
        return mailbox

    # -- search and fetch ---------------------------------------------------------------

    def search(self, gmail_query: str | None, above_uid: int, uidnext: int = 0) -> list[int]:
        """UIDs above `above_uid` and below `uidnext` that the X-GM-RAW query finds (every UID
        when None), in order.

        Gmail answers a search with one `* SEARCH` line holding every hit, and imaplib refuses a
        line over 1,000,000 bytes, so the search goes in `UID low:high` windows of at most
        SEARCH_WINDOW UIDs, whose answer stays under 550,000 bytes however dense the hits. A
        window never holds more messages than the folder, so a folder of at most SEARCH_WINDOW
        messages is searched in one command however sparse its UIDs. Never `n:*`, which always
        names the highest UID and would reach past `uidnext`. Without `uidnext` (a server that
        does not send UIDNEXT) the folder's highest UID, asked for first, ends the windows.
        """
        if gmail_query is not None and _CONTROL.search(gmail_query):
            raise BadRule("query contains a control character")
        top = uidnext - 1 if uidnext > 0 else self._highest_uid()
        width = SEARCH_WINDOW if self.exists > SEARCH_WINDOW else max(top - above_uid, 1)
        found: list[int] = []
        low = above_uid + 1
        while low <= top:
            high = min(low + width - 1, top)
            found += self._search_window(gmail_query, low, high)
            low = high + 1
        return found

    def _search_window(self, gmail_query: str | None, low: int, high: int) -> list[int]:
        """The UIDs from `low` to `high` that the query finds: one UID SEARCH, whose budget is
        what the most hits the window can hold may take."""
        criteria: list[str | bytes] = ["UID", f"{low}:{high}"]
        if gmail_query is not None:
            criteria += ["X-GM-RAW", _astring(gmail_query)]
        most = min(high - low + 1, max(self.exists, 1))
        found = self._call(
            "search",
            lambda: self.client.search(criteria, charset="UTF-8" if gmail_query else None),
            budget=SEARCH_BYTES_PER_MESSAGE * most + DEFAULT_BUDGET,
        )
        return sorted({uid for uid in found if low <= uid <= high})

    def _highest_uid(self) -> int:
        """The highest UID in the folder (0 when empty): `UID SEARCH UID *`, one UID."""
        found = self._call("search", lambda: self.client.search(["UID", "*"]))
        return max(found, default=0)

    def present(self, uids: Sequence[int]) -> set[int]:
        """Which of `uids` the folder still holds (one UID SEARCH)."""
        wanted = set(uids)
        criteria = ["UID", ",".join(map(str, sorted(wanted)))]
        budget = SEARCH_BYTES_PER_MESSAGE * len(wanted) + DEFAULT_BUDGET
        return (
            set(self._call("search", lambda: self.client.search(criteria), budget=budget)) & wanted
        )

    def metadata(self, uids: Sequence[int], *, gmail: bool) -> dict[int, MessageMeta]:
        """Metadata of `uids` in one UID FETCH."""
        items = [*METADATA_ITEMS, *(GMAIL_ITEMS if gmail else ())]
        budget = METADATA_BYTES_PER_MESSAGE * len(uids) + DEFAULT_BUDGET
        response = self._call("fetch", lambda: self.client.fetch(list(uids), items), budget=budget)
        try:
            return {uid: _meta(uid, data) for uid, data in response.items() if uid in set(uids)}
        except (KeyError, TypeError, ValueError) as error:
            raise ProtocolError(f"FETCH answer lacks {error}") from None

    def fetch(
        self,
        uids: Sequence[int],
        items: Sequence[str],
        *,
        expected: int,
        sink: LiteralSink | None = None,
    ) -> dict[int, dict[bytes, Any]]:
        """A raw UID FETCH of `items` (BODY.PEEK sections) for `uids`, whose answer may carry
        `expected` bytes of data (and the lines around it); the literal that `sink` marks goes
        to it as it arrives, and its item's value is then empty."""
        self.tap.sink = sink
        budget = expected + ANSWER_BYTES_PER_MESSAGE * len(uids) + DEFAULT_BUDGET
        try:
            return dict(
                self._call(
                    "fetch", lambda: self.client.fetch(list(uids), list(items)), budget=budget
                )
            )
        finally:
            self.tap.sink = None

    def cut(self) -> None:
        """End the connection at once, from any thread: a read under way fails, and no command
        goes on it any more."""
        self.broken = True
        with suppress(OSError):
            self.client.socket().shutdown(socket.SHUT_RDWR)

    def logout(self) -> None:
        """LOGOUT, and close the socket even when the connection is already gone."""
        try:
            with suppress(imaplib.IMAP4.error, OSError, ValueError):
                self.client.logout()
        finally:
            with suppress(imaplib.IMAP4.error, OSError, ValueError):
                self.client.shutdown()

    # -- error translation --------------------------------------------------------------

    def _call(self, operation: str, action: Callable[[], T], *, budget: int = 0) -> T:
        if self.broken:
            raise Transient(f"{operation}: the connection is out of step after an earlier error")
        self.tap.reset_signal()
        self.tap.expect(budget or DEFAULT_BUDGET)
        try:
            return action()
        except CrawlerError:
            self.broken = self.broken or self.tap.out_of_step  # e.g. the lease lost mid-answer
            raise
        except ssl.SSLCertVerificationError as error:  # retrying cannot make it trusted
            raise self._error(ProtocolError, operation, error) from None
        except imaplib.IMAP4.abort as error:
            self.broken = True
            raise self._error(Transient, operation, error) from None
        except (imaplib.IMAP4.error, imap_errors.ProtocolError) as error:
            raise self._error(ProtocolError, operation, error) from None
        except (OSError, EOFError) as error:  # socket.timeout and ssl.SSLError are OSErrors
            self.broken = True
            raise self._error(Transient, operation, error) from None
        except (ValueError, RecursionError, IndexError) as error:  # IMAPClient's parser gave up
            raise self._error(ProtocolError, operation, error) from None
        finally:
            self.tap.end_command()

    def _error(self, default: type[CrawlerError], operation: str, error: Exception) -> CrawlerError:
        kind = self.tap.signal or default
        detail = self.tap.signal_line or f"{type(error).__name__}: {str(error)[:200]}"
        return kind(f"{operation}: {detail}")


def _astring(value: str) -> str | bytes:
    """`value` as one IMAP argument whose every byte is data.

    IMAPClient quotes a string only when it has a space, quote or backslash, and sends any other
    as a bare atom, where `{5}` would announce a literal and `(a)` open a list. So only a true
    atom goes as is; anything else is marked a literal, which IMAPClient sends as a quoted
    string (when it has a space, quote or backslash) or as a literal.
    """
    return value if _ATOM.fullmatch(value) else ImapLiteral(value.encode())


def _meta(uid: int, data: dict[bytes, Any]) -> MessageMeta:
    labels = tuple(_label(label) for label in data.get(b"X-GM-LABELS", ()))
    return MessageMeta(
        uid=uid,
        gm_msgid=_optional_int(data.get(b"X-GM-MSGID")),
        gm_thrid=_optional_int(data.get(b"X-GM-THRID")),
        labels=labels,
        envelope=data.get(b"ENVELOPE"),
        bodystructure=data[b"BODYSTRUCTURE"],
        size=int(data.get(b"RFC822.SIZE", 0)),
        internaldate=data.get(b"INTERNALDATE"),
    )


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _label(value: Any) -> str:
    """A label as users name it: Gmail sends non-ASCII labels in modified UTF-7."""
    raw = value if isinstance(value, bytes) else str(value).encode("ascii", "replace")
    try:
        return str(imap_utf7.decode(raw))
    except (UnicodeError, ValueError):
        return raw.decode("ascii", "replace")
