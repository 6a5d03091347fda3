"""The selected folder: SELECT, EXAMINE, CLOSE / UNSELECT, and the session's view of it.

A session sees the folder's messages as they were at SELECT plus the mail that arrived since
(new UIDs are appended, so sequence numbers never shift under the client). Labels changed by a
test after SELECT do not move messages in or out of an open view; select again to see them.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from standins.fakegmail import texts
from standins.fakegmail.folders import Folder, find
from standins.fakegmail.protocol import Command, ParseError, SequenceSet, as_bytes

if TYPE_CHECKING:
    from standins.fakegmail.mailbox import Account
    from standins.fakegmail.session import Session

FLAGS = b"\\Answered \\Flagged \\Draft \\Deleted \\Seen $NotPhishing $Phishing"


@dataclass
class Selection:
    """A session's view of its selected folder: UIDs by sequence number (1-based)."""

    folder: Folder
    readonly: bool
    uids: list[int] = field(default_factory=list)

    @property
    def largest_uid(self) -> int:
        """The highest UID in view (what `*` means in a UID set); 0 when empty."""
        return self.uids[-1] if self.uids else 0

    def pick(self, numbers: SequenceSet, *, by_uid: bool) -> list[tuple[int, int]]:
        """The (sequence number, UID) pairs a sequence set (or UID set) names, in order."""
        positions: set[int] = set()
        for low, high in numbers.resolve(self.largest_uid if by_uid else len(self.uids)):
            if by_uid:  # UIDs grow with the sequence number: find the range by bisection
                positions.update(range(bisect_left(self.uids, low), bisect_right(self.uids, high)))
            else:
                positions.update(range(low - 1, min(high, len(self.uids))))
        return [(index + 1, self.uids[index]) for index in sorted(positions)]

    def refresh(self, account: Account) -> bool:
        """Append mail that arrived since; whether there was any."""
        arrived = account.uids(self.folder, above=self.largest_uid)
        self.uids.extend(arrived)
        return bool(arrived)


async def select(session: Session, command: Command) -> bytes:
    """SELECT folder: read-write, so BODY[] marks messages \\Seen."""
    return await _open(session, command, readonly=False)


async def examine(session: Session, command: Command) -> bytes:
    """EXAMINE folder: read-only."""
    return await _open(session, command, readonly=True)


async def close(session: Session, command: Command) -> bytes:
    """CLOSE / UNSELECT: back to the authenticated state (nothing is ever expunged)."""
    session.selection = None
    return texts.UNSELECTED


async def _open(session: Session, command: Command, *, readonly: bool) -> bytes:
    # A second argument may carry SELECT parameters such as (CONDSTORE); they change nothing.
    if not 1 <= len(command.args) <= 2:
        raise ParseError("SELECT takes a folder")
    account = session.logged_in_account
    wire_name = as_bytes(command.args[0])
    session.selection = None
    folder = find(account.folders(), wire_name)
    if folder is None:
        return texts.NO_MAILBOX % wire_name
    view = Selection(folder, readonly, account.uids(folder))
    permanent = b"" if readonly else FLAGS + b" \\*"
    for line in (
        b"* FLAGS (%s)" % FLAGS,
        b"* OK [PERMANENTFLAGS (%s)] Flags permitted." % permanent,
        b"* OK [UIDVALIDITY %d] UIDs valid." % account.uidvalidity,
        b"* %d EXISTS" % len(view.uids),
        b"* 0 RECENT",
        b"* OK [UIDNEXT %d] Predicted next UID." % account.uidnext,
        b"* OK [HIGHESTMODSEQ %d]" % account.highestmodseq,
    ):
        await session.output.line(line)
    session.selection = view
    return texts.SELECTED % (b"READ-ONLY" if readonly else b"READ-WRITE", wire_name)
