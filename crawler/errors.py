"""The exception taxonomy: every failure the crawler names, and how the iterator treats it.

The iterator catches these by class: `Throttled` (and its subclasses) becomes a backoff,
`AuthFailed` becomes `auth_failed`, `Transient` is retried, `BadInput` fails one item and the
crawl goes on, anything else is an `error` with a retry delay.
"""

from __future__ import annotations


class CrawlerError(Exception):
    """Base of every error the crawler raises on purpose."""


class Throttled(CrawlerError):
    """Gmail asked us to slow down; stop this account and back off."""

    reason = "throttled"


class OverQuota(Throttled):
    """The account exceeded Gmail's command or bandwidth limits; back off for hours."""

    reason = "over_quota"


class TooManyConnections(Throttled):
    """The account already has as many IMAP sessions as Gmail allows."""

    reason = "too_many_connections"


class AuthFailed(CrawlerError):
    """The credentials were refused; a fresh access token may fix it."""


class AuthRevoked(AuthFailed):
    """The grant is revoked or expired: only the user can fix it, so never retry."""


class WebLoginRequired(AuthFailed):
    """Gmail wants the user to log in through a browser before IMAP works again."""


class AccountUnavailable(CrawlerError):
    """The account is disabled, unknown to Gmail, or has hidden All Mail from IMAP."""


class Interrupted(CrawlerError):
    """The worker is shutting down: the crawl stopped between batches, its queue kept."""


class Stalled(CrawlerError):
    """A crawl made no progress for CRAWLER_STALL_AFTER seconds (reported by the monitor)."""


class Transient(CrawlerError):
    """A dropped session, timeout or server error: reconnect and retry, bounded."""


class PartialFetch(Transient):
    """Gmail could not FETCH some of the requested messages."""


class ProtocolError(CrawlerError):
    """The server said something that is not the IMAP we expect: contained to this account."""


class ServerFault(ProtocolError):
    """The server, not a message, is at fault (it served none of several messages): the
    command is not narrowed to one UID at a time, and the crawl is retried later."""


class BadInput(CrawlerError):
    """A malformed rule, account or message: fails that one item, with the reason."""


class BadRule(BadInput):
    """A rule that cannot be used; the message names the rule and the reason."""


class BadAccount(BadInput):
    """An account document that cannot be crawled; the message names the field."""


class ConfigError(CrawlerError):
    """The configuration cannot work (missing key, unreachable store); one clear line."""
