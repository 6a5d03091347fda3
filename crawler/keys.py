"""Every Redis key name the crawler uses, in one place.

The braces are literal Redis Cluster hash tags: all keys of one account hash to one slot, so the
multi-key atomic steps (claim, ack, requeue, lease) work unchanged on a cluster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from crawler.errors import BadAccount

# A user_uuid lands inside a hash tag: braces, whitespace or control bytes would move the slot
# or split the key, so only a conservative alphabet is allowed, and only so many characters.
MAX_USER_UUID_LENGTH = 128
_USER_UUID = re.compile(r"[A-Za-z0-9._@+=:-]+")
_SHOWN = 64  # characters of a refused value an error message quotes


def check_user_uuid(user_uuid: object) -> str:
    """The user_uuid if it is safe inside a Redis key, else BadAccount naming it."""
    if isinstance(user_uuid, str) and len(user_uuid) > MAX_USER_UUID_LENGTH:
        raise BadAccount(
            f"user_uuid {user_uuid[:_SHOWN]!r}... is {len(user_uuid):,} characters long"
            f" (at most {MAX_USER_UUID_LENGTH})"
        )
    if not isinstance(user_uuid, str) or not _USER_UUID.fullmatch(user_uuid):
        shown = repr(user_uuid)
        shown = shown if len(shown) <= _SHOWN else f"{shown[:_SHOWN]}..."
        raise BadAccount(f"user_uuid {shown} is not a usable id (letters, digits, ._@+=:-)")
    return user_uuid


@dataclass(frozen=True)
class Keys:
    """Key names under one prefix (default `crawler:`)."""

    prefix: str = "crawler:"

    def uids(self, user_uuid: str) -> str:
        """List of UIDs still to process for the account."""
        return f"{self.prefix}uids:{{{check_user_uuid(user_uuid)}}}"

    def inflight(self, user_uuid: str) -> str:
        """UIDs claimed by a crawl; a UID leaves only after its attachments are stored."""
        return f"{self.uids(user_uuid)}:inflight"

    def rule_hits(self, user_uuid: str) -> str:
        """Hash of UID -> indices of the rule groups (`rule_groups`) whose search found it."""
        return f"{self.uids(user_uuid)}:rules"

    def rule_groups(self, user_uuid: str) -> str:
        """Hash of group index -> ids of the rules of the group, while UIDs are pending."""
        return f"{self.uids(user_uuid)}:groups"

    def lease(self, user_uuid: str) -> str:
        """The worker id holding the account's crawl, with a TTL."""
        return f"{self.prefix}lease:{{{check_user_uuid(user_uuid)}}}"

    @property
    def workers(self) -> str:
        """Sorted set of live workers scored by heartbeat expiry."""
        return f"{self.prefix}workers"

    @property
    def crawls(self) -> str:
        """Set of accounts with a queue in Redis, which the monitor watches."""
        return f"{self.prefix}crawls"

    @property
    def events(self) -> str:
        """Stream of attachment and crawl events (`crawler.events`)."""
        return f"{self.prefix}events"

    @property
    def monitor_lock(self) -> str:
        """`SET NX EX` lock so that one monitor acts per interval."""
        return f"{self.prefix}monitor:lock"

    def domain_reported(self, domain: str) -> str:
        """Set, for a day, once a refused Workspace domain was reported."""
        return f"{self.prefix}domain:reported:{domain}"

    @property
    def oauth_refused(self) -> str:
        """Set while Google refuses our OAuth client (`invalid_client` ...): why, with a TTL.
        No Gmail account of the fleet is crawled meanwhile."""
        return f"{self.prefix}oauth:refused"

    @property
    def oauth_reported(self) -> str:
        """`SET NX EX`: the refused OAuth client was reported, once a day while it lasts."""
        return f"{self.prefix}oauth:reported"
