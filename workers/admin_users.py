"""The one answer every operator command gives for a user_uuid it does not know: `no account U`.

A command that acts on an account needs the account (`require_account`). A command that only
reads what is stored under a user_uuid (rules, attachments) also takes one whose account was
removed while its rules or attachments stayed (`require_known`). Either way an unknown user_uuid
ends the command with one line and exit code 1, before it changes or makes anything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn

from crawler.store import Document
from workers.admin_context import Operator, fail


def no_account(user_uuid: str) -> NoReturn:
    """End the command: there is no such account."""
    fail(f"no account {user_uuid}")


def require_account(ops: Operator, user_uuid: str) -> Document:
    """The account's document; the command ends with `no account U` when there is none."""
    account = ops.store.account(user_uuid)
    if account is None:
        no_account(user_uuid)
    return account


def require_known(ops: Operator, user_uuid: str, stored: Callable[[str], bool]) -> None:
    """End the command with `no account U` unless the account exists or `stored(U)` says
    something of it is still stored."""
    if ops.store.account(user_uuid) is None and not stored(user_uuid):
        no_account(user_uuid)
