"""One client connection: reads commands in order, keeps the session's state, dispatches them.

Commands are answered one after the other in the order they arrive, so a client may pipeline
several without waiting. Each handler writes its untagged responses and returns its completion
(`OK ...`, `NO ...`); the session puts the tag in front, and the ` [THROTTLED]` suffix when a
fault says so. Before a command runs in a selected folder, mail that arrived since the last
command is announced with `* n EXISTS`. `ID` is answered as Gmail answers it, in any state
(docs/gmail-facts.md).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from standins.fakegmail import auth, fetch, listing, search, selection, texts
from standins.fakegmail.faults import FaultKind, FaultTracker
from standins.fakegmail.ledger import SessionRecord
from standins.fakegmail.mailbox import Account, Accounts
from standins.fakegmail.output import Output, SessionEnd
from standins.fakegmail.protocol import (
    Command,
    ParseError,
    eight_bit_without_charset,
    literal_marker,
    parse_command,
)

MAX_LITERAL = 1 << 20
_BYE = {
    FaultKind.OVERQUOTA: texts.BYE_OVERQUOTA,
    FaultKind.BYE_SYSTEM_ERROR: texts.BYE_SYSTEM_ERROR,
    FaultKind.SESSION_EXPIRED: texts.BYE_SESSION_EXPIRED,
}


class Needs(enum.Enum):
    """The state a command needs."""

    ANY = enum.auto()
    NO_LOGIN = enum.auto()
    LOGIN = enum.auto()
    SELECTED = enum.auto()


Handler = Callable[["Session", Command], Awaitable[bytes]]


@dataclass(frozen=True)
class Route:
    """A command's handler and the state it needs."""

    handler: Handler
    needs: Needs


@dataclass(frozen=True)
class Shared:
    """What every session of one fake Gmail shares."""

    accounts: Accounts
    token_secret: str
    clock: Callable[[], float]


class Session:
    """The state of one connection and its command loop."""

    def __init__(
        self,
        shared: Shared,
        reader: asyncio.StreamReader,
        output: Output,
        record: SessionRecord,
        peer_ip: str,
    ) -> None:
        self.shared = shared
        self.reader = reader
        self.output = output
        self.record = record
        self.peer_ip = peer_ip
        self.account: Account | None = None
        self.selection: selection.Selection | None = None
        self.logging_out = False
        self.token_expires_at: float | None = None  # an XOAUTH2 session ends with its token

    @property
    def session_id(self) -> bytes:
        """Gmail's id for this session, as in the greeting."""
        return self.record.session_id.encode()

    @property
    def logged_in_account(self) -> Account:
        """The account of a session that logged in (what routes that need a login use)."""
        if self.account is None:
            raise RuntimeError("routes that need a login only run after one")
        return self.account

    @property
    def selected(self) -> selection.Selection:
        """The selected folder (what routes that need one use)."""
        if self.selection is None:
            raise RuntimeError("routes that need a selected folder only run with one")
        return self.selection

    async def run(self) -> None:
        """Greet, then answer commands until LOGOUT, a fault or the client goes away."""
        try:
            await self.output.line(
                b"* OK Gimap ready for requests from %s %s"
                % (self.peer_ip.encode(), self.session_id)
            )
            while (raw := await self._read_command()) is not None:
                await self._execute(raw)
        except SessionEnd as end:
            self.record.ended()
            if end.fault and end.fault.kind in _BYE:
                await self.output.last_words(_BYE[end.fault.kind])
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self.record.ended()
            await self.output.close()

    async def read_line(self) -> bytes:
        """One line from the client (a continuation); SessionEnd when the client went away."""
        line = await self._line()
        if line is None:
            raise SessionEnd
        return line

    async def logged_in(self, account: Account) -> None:
        """The login succeeded: the account's faults apply from now on."""
        self.account = account
        self.output.tracker = FaultTracker(account.faults, account.quota)
        await self.output.line(b"* CAPABILITY " + texts.CAPABILITIES_AFTER_AUTH)

    async def _read_command(self) -> bytes | None:
        parts: list[bytes] = []
        while True:
            line = await self._line()
            if line is None:
                return None
            parts.append(line)
            marker = literal_marker(line)
            if marker is None:
                return b"".join(parts)
            if marker.size > MAX_LITERAL:
                raise SessionEnd
            if marker.synchronizing:
                await self.output.line(texts.CONTINUE_LITERAL)
            parts.append(await self.reader.readexactly(marker.size))
            self.record.received(marker.size)

    async def _line(self) -> bytes | None:
        try:
            line = await self.reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as eof:
            self.record.received(len(eof.partial))
            return None
        self.record.received(len(line))
        return line

    async def _execute(self, raw: bytes) -> None:
        try:
            command = parse_command(raw)
        except ParseError as error:
            self.record.command(None, raw)
            if error.tag is None:
                await self.output.line(texts.BAD_TAG % self.session_id)
            else:
                await self.output.line(error.tag.encode() + b" " + texts.BAD_SYNTAX)
            return
        self.record.command(command.name, raw)
        if self.token_expires_at is not None and self.shared.clock() >= self.token_expires_at:
            await self.output.last_words(texts.BYE_SESSION_EXPIRED)
            raise SessionEnd
        reply = await self._run(command)
        tracker = self.output.tracker
        if reply.startswith(b"OK") and tracker and (throttle := tracker.throttle()):
            await asyncio.sleep(throttle.slowdown)
            reply += texts.THROTTLED_SUFFIX
        await self.output.line(command.tag.encode() + b" " + reply)
        if self.logging_out:
            raise SessionEnd

    async def _run(self, command: Command) -> bytes:
        route = ROUTES.get(command.name)
        if route is None:
            return texts.BAD_SYNTAX
        if not self._allows(route.needs):
            return texts.BAD_STATE
        tracker = self.output.tracker
        if tracker:
            fault = tracker.command(command.name)
            if fault and fault.kind is FaultKind.SYSTEM_ERROR:
                return texts.SYSTEM_ERROR
            if fault:
                raise SessionEnd(fault)
            await asyncio.sleep(tracker.faults.latency)
        if self.account and self.selection and self.selection.refresh(self.account):
            await self.output.line(b"* %d EXISTS" % len(self.selection.uids))
        try:
            return await route.handler(self, command)
        except ParseError:
            return texts.BAD_SYNTAX

    def _allows(self, needs: Needs) -> bool:
        if needs is Needs.NO_LOGIN:
            return self.account is None
        if needs is Needs.LOGIN:
            return self.account is not None
        if needs is Needs.SELECTED:
            return self.selection is not None
        return True


async def _capability(session: Session, command: Command) -> bytes:
    listed = texts.CAPABILITIES_AFTER_AUTH if session.account else texts.CAPABILITIES_BEFORE_AUTH
    await session.output.line(b"* CAPABILITY " + listed)
    return texts.CAPABILITY_DONE % session.session_id


async def _success(session: Session, command: Command) -> bytes:
    return texts.SUCCESS


async def _id(session: Session, command: Command) -> bytes:
    await session.output.line(texts.ID_RESPONSE % session.peer_ip.encode())
    return texts.SUCCESS


async def _search(session: Session, command: Command) -> bytes:
    if eight_bit_without_charset(command.args):
        raise ParseError("8-bit bytes in a quoted string, or without CHARSET UTF-8")
    return await search.search(session, command)


async def _namespace(session: Session, command: Command) -> bytes:
    await session.output.line(texts.NAMESPACE_RESPONSE)
    return texts.SUCCESS


async def _logout(session: Session, command: Command) -> bytes:
    # The session ends before the client reads a word (imaplib stops at the BYE): a client that
    # reconnects at once never sees its two sessions overlap in the ledger.
    session.record.ended()
    await session.output.line(texts.LOGOUT_BYE)
    session.logging_out = True
    return texts.LOGOUT_DONE


ROUTES: dict[str, Route] = {
    "CAPABILITY": Route(_capability, Needs.ANY),
    "NOOP": Route(_success, Needs.ANY),
    "ID": Route(_id, Needs.ANY),
    "LOGOUT": Route(_logout, Needs.ANY),
    "AUTHENTICATE": Route(auth.authenticate, Needs.NO_LOGIN),
    "LOGIN": Route(auth.login, Needs.NO_LOGIN),
    "NAMESPACE": Route(_namespace, Needs.LOGIN),
    "LIST": Route(listing.list_folders, Needs.LOGIN),
    "XLIST": Route(listing.xlist_folders, Needs.LOGIN),
    "STATUS": Route(listing.status, Needs.LOGIN),
    "SELECT": Route(selection.select, Needs.LOGIN),
    "EXAMINE": Route(selection.examine, Needs.LOGIN),
    "CLOSE": Route(selection.close, Needs.SELECTED),
    "UNSELECT": Route(selection.close, Needs.SELECTED),
    "CHECK": Route(_success, Needs.SELECTED),
    "SEARCH": Route(_search, Needs.SELECTED),
    "UID SEARCH": Route(_search, Needs.SELECTED),
    "FETCH": Route(fetch.fetch, Needs.SELECTED),
    "UID FETCH": Route(fetch.fetch, Needs.SELECTED),
}
