"""LIST, XLIST and STATUS: what folders an account has and what is in them.

LIST gives RFC 6154 special-use flags (`\\All`, `\\Sent`, `\\Junk`, ...) and accepts the
LIST-EXTENDED forms `LIST (SPECIAL-USE) "" "*"` and `... RETURN (...)` (attributes are always
returned). XLIST gives Gmail's older flags (`\\AllMail`, `\\Spam`, `\\Starred`, `\\Inbox`) and
writes INBOX as `Inbox`, as Gmail did.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from standins.fakegmail import texts
from standins.fakegmail.folders import Folder, find, flags, pattern_matches
from standins.fakegmail.protocol import Command, ParseError, as_atom, as_bytes
from standins.fakegmail.wire import nstring

if TYPE_CHECKING:
    from standins.fakegmail.mailbox import Account
    from standins.fakegmail.session import Session

_STATUS_ITEMS = ("MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ")


async def list_folders(session: Session, command: Command) -> bytes:
    """LIST [(selection options)] reference pattern [RETURN (options)]."""
    return await _list(session, command, xlist=False)


async def xlist_folders(session: Session, command: Command) -> bytes:
    """XLIST reference pattern."""
    return await _list(session, command, xlist=True)


async def status(session: Session, command: Command) -> bytes:
    """STATUS folder (items): counts without selecting."""
    account = session.logged_in_account
    if len(command.args) != 2 or not isinstance(command.args[1], tuple):
        raise ParseError("STATUS takes a folder and a list of items")
    wire_name = as_bytes(command.args[0])
    folder = find(account.folders(), wire_name)
    if folder is None:
        return texts.NO_MAILBOX % wire_name
    values = _status_values(account, folder)
    items = [as_atom(item) for item in command.args[1]]
    if not items or not set(items) <= set(_STATUS_ITEMS):
        raise ParseError("unknown STATUS item")
    rendered = b" ".join(b"%s %d" % (item.encode(), values[item]) for item in items)
    await session.output.line(b"* STATUS %s (%s)" % (nstring(folder.wire_name), rendered))
    return texts.SUCCESS


async def _list(session: Session, command: Command, *, xlist: bool) -> bytes:
    account = session.logged_in_account
    args = list(command.args)
    special_use_only = False
    options = args[0] if args else None
    if not xlist and isinstance(options, tuple):  # LIST-EXTENDED selection options
        special_use_only = "SPECIAL-USE" in {as_atom(option) for option in options}
        del args[0]
    if not xlist and len(args) == 4 and as_atom(args[2]) == "RETURN":
        del args[2:]
    if len(args) != 2:
        raise ParseError("LIST takes a reference and a pattern")
    reference, pattern = as_bytes(args[0]), as_bytes(args[1])
    verb = b"XLIST" if xlist else b"LIST"
    if not pattern:  # the hierarchy delimiter query
        await session.output.line(b'* %s (\\Noselect) "/" ""' % verb)
        return texts.SUCCESS
    folders = account.folders()
    for folder in folders:
        if not pattern_matches(reference + pattern, folder):
            continue
        if special_use_only and not folder.special_use:
            continue
        attributes = " ".join(flags(folder, folders, xlist=xlist)).encode()
        name = b"Inbox" if xlist and folder.name == "INBOX" else folder.wire_name
        await session.output.line(b'* %s (%s) "/" %s' % (verb, attributes, nstring(name)))
    return texts.SUCCESS


def _status_values(account: Account, folder: Folder) -> dict[str, int]:
    uids = account.uids(folder)
    unseen = [uid for uid in uids if (m := account.message(uid)) and "\\Seen" not in m.flags]
    return {
        "MESSAGES": len(uids),
        "RECENT": 0,
        "UIDNEXT": account.uidnext,
        "UIDVALIDITY": account.uidvalidity,
        "UNSEEN": len(unseen),
        "HIGHESTMODSEQ": account.highestmodseq,
    }
