"""The folders an account shows over IMAP: label views, their special-use flags, name lookup.

Gmail folders are views over one set of messages: INBOX is the `\\Inbox` label, each user label
is a folder, `[Gmail]/All Mail` holds everything but Spam and Trash, and `[Gmail]` itself cannot
be selected. Every folder shows a message under the same UID, its All Mail UID (Gmail numbers
each folder apart; one numbering keeps the fake simple and every folder's UIDs consistent).
Localized names: the `[Gmail]` prefix is taken from the All Mail name (`[Google Mail]/Alle
Nachrichten` puts the other system folders under `[Google Mail]/`, with English names).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from standins.fakegmail import mutf7

HIDDEN_FROM_ALL_MAIL = frozenset({"\\Spam", "\\Trash"})

# Folder name under the [Gmail] prefix, label, LIST special-use flag, XLIST flag.
_SYSTEM_FOLDERS = (
    ("Drafts", "\\Draft", "\\Drafts", "\\Drafts"),
    ("Important", "\\Important", "\\Important", "\\Important"),
    ("Sent Mail", "\\Sent", "\\Sent", "\\Sent"),
    ("Spam", "\\Spam", "\\Junk", "\\Spam"),
    ("Starred", "\\Starred", "\\Flagged", "\\Starred"),
    ("Trash", "\\Trash", "\\Trash", "\\Trash"),
)


@dataclass(frozen=True)
class Folder:
    """One folder: the label it shows (None: All Mail) and the flags LIST and XLIST give it."""

    name: str
    label: str | None
    special_use: str | None = None
    xlist_flag: str | None = None
    selectable: bool = True

    def holds(self, labels: Collection[str]) -> bool:
        """Whether a message with `labels` is in this folder."""
        if not self.selectable:
            return False
        if self.label is None:
            return not HIDDEN_FROM_ALL_MAIL.intersection(labels)
        return self.label in labels

    @property
    def wire_name(self) -> bytes:
        """The name as IMAP writes it (modified UTF-7)."""
        return mutf7.encode(self.name)


def folder_table(
    all_mail_name: str, *, hide_all_mail: bool, user_labels: Iterable[str]
) -> list[Folder]:
    """Every folder of an account, INBOX first, then by name as Gmail lists them."""
    prefix = all_mail_name.rpartition("/")[0] or "[Gmail]"
    folders = [Folder("INBOX", "\\Inbox", xlist_flag="\\Inbox")]
    folders += [Folder(label, label) for label in set(user_labels)]
    folders.append(Folder(prefix, None, selectable=False))
    if not hide_all_mail:
        folders.append(Folder(all_mail_name, None, "\\All", "\\AllMail"))
    folders += [
        Folder(f"{prefix}/{name}", label, special_use, xlist_flag)
        for name, label, special_use, xlist_flag in _SYSTEM_FOLDERS
    ]
    return sorted(folders, key=lambda folder: (folder.name != "INBOX", folder.name))


def find(folders: Iterable[Folder], wire_name: bytes) -> Folder | None:
    """The selectable folder a client names (modified UTF-7; INBOX in any case)."""
    try:
        name = mutf7.decode(wire_name)
    except ValueError:
        return None
    if name.upper() == "INBOX":
        name = "INBOX"
    return next((f for f in folders if f.name == name and f.selectable), None)


def flags(folder: Folder, folders: Collection[Folder], *, xlist: bool) -> list[str]:
    """The name attributes of `folder` in a LIST (or XLIST) answer, sorted as Gmail sorts them."""
    has_children = any(other.name.startswith(folder.name + "/") for other in folders)
    found = ["\\HasChildren" if has_children else "\\HasNoChildren"]
    if not folder.selectable:
        found.append("\\Noselect")
    use = folder.xlist_flag if xlist else folder.special_use
    if use:
        found.append(use)
    return sorted(found)


def pattern_matches(pattern: bytes, folder: Folder) -> bool:
    """Whether a LIST pattern (reference and mailbox joined) matches `folder`.

    `*` matches anything, `%` anything but the hierarchy delimiter `/`; INBOX in any case.
    """
    regex = "".join(
        ".*" if char == "*" else "[^/]*" if char == "%" else re.escape(char)
        for char in pattern.decode("ascii", "replace")
    )
    name = folder.wire_name.decode("ascii")
    flags_ = re.IGNORECASE if folder.name == "INBOX" else 0
    return re.fullmatch(regex, name, flags_) is not None
