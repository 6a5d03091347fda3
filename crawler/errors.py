"""The exception taxonomy: every failure the crawler names, and how the iterator treats it.

The iterator catches these by class: `Throttled` (and its subclasses) becomes a backoff,
`AuthFailed` becomes `auth_failed`, `Transient` is retried, `BadInput` fails one item and the
crawl goes on, anything else is an `error` with a retry delay.
"""

from __future__ import annotations

from typing import ClassVar


class CrawlerError(Exception):
    """Base of every error the crawler raises on purpose."""


class Throttled(CrawlerError):
    """Gmail asked us to slow down; stop this account and back off."""

    reason = "throttled"
    until: float | None = None  # when the backoff ends, if the error knows (else it grows)


class OverQuota(Throttled):
    """The account exceeded Gmail's command or bandwidth limits; back off for hours."""

    reason = "over_quota"


class DailyLimit(Throttled):
    """The next batch could pass CRAWLER_DAILY_DOWNLOAD_LIMIT: the crawl stops under Gmail's
    daily download limit and resumes at `until`, when enough of the last 24 h has passed."""

    reason = "daily_limit"

    def __init__(self, message: str, until: float) -> None:
        super().__init__(message)
        self.until = until


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


class ImapDisabled(AccountUnavailable):
    """IMAP is turned off for the account: by the user in Gmail settings (`by` "user"), or for
    the account's Google Workspace domain by its administrator (`by` "domain"). Only a person
    can fix it, so the account is retried rarely and nothing is reported as a fault.

    Made, like every error the session raises, from Gmail's line; its text says who turned IMAP
    off and what to do, then quotes Gmail.
    """

    ADVICE: ClassVar[dict[str, str]] = {
        "user": (
            "IMAP is disabled by the user: in Gmail settings, 'Forwarding and POP/IMAP', "
            "choose 'Enable IMAP'"
        ),
        "domain": (
            "IMAP is disabled for the account's Google Workspace domain by its administrator: "
            "ask them to allow IMAP access (Admin console, Apps, Google Workspace, Gmail, "
            "End User Access)"
        ),
    }

    @property
    def by(self) -> str:
        """Who turned IMAP off: "domain" (a Workspace administrator) or "user"."""
        return "domain" if "for your domain" in super().__str__().lower() else "user"

    def __str__(self) -> str:
        said = super().__str__()
        return f"{self.ADVICE[self.by]}; Gmail said: {said}" if said else self.ADVICE[self.by]


class Interrupted(CrawlerError):
    """The worker is shutting down: the crawl stopped between batches, its queue kept."""


class Stalled(CrawlerError):
    """A crawl made no progress for CRAWLER_STALL_AFTER seconds (reported by the monitor)."""


class Transient(CrawlerError):
    """A dropped session, timeout or server error: reconnect and retry, bounded."""


class SessionExpired(Transient):
    """Gmail ended the session with the access token it logged in with: log in again with a
    fresh one and go on, within the same crawl."""


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


class FreshTokenRefused(AccountUnavailable):
    """Gmail refused an access token the endpoint had just issued: no proof the grant is
    revoked. Tried again after the error backoff; `auth_failed` after several in a row."""


class OAuthClientRefused(ConfigError):
    """Google refuses our OAuth client (`invalid_client`, `unauthorized_client`,
    `deleted_client` ...): no account is at fault, and none can be crawled until it is fixed."""


class DomainRefused(CrawlerError):
    """Google refuses a Workspace domain's service account (domain-wide delegation not granted,
    its key deleted or wrong): no account of the domain is at fault, and none can be crawled
    until an administrator fixes it. Its accounts wait; the domain records why."""

    def __init__(
        self, domain: str, message: str, until: float | None = None, *, code: str | None = None
    ) -> None:
        super().__init__(f"{domain}: {message}")
        self.domain = domain
        self.message = message
        self.until = until  # when its accounts try again, if the domain already says
        self.code = code  # Google's OAuth error code, when Google refused just now
