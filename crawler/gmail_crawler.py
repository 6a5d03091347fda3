"""`GmailCrawler`: how a Gmail account differs from any IMAP one.

The crawl is `ImapCrawler`'s; Gmail adds four things. It logs in with XOAUTH2 (an access token
from the account's refresh token, or for `g_apps_oauth` from its Workspace domain's service
account, crawler/delegation.py; refreshed once when the cached one is refused), on the
configured Gmail server, which must offer X-GM-EXT-1. It crawls All Mail, found by its `\\All`
flag since its name is localized. Each rule's candidates come from an `X-GM-RAW` search.
And each message carries X-GM-MSGID, X-GM-THRID and X-GM-LABELS, the first of which is its
identity.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress
from typing import Any, NoReturn

from crawler.crawl import ImapCrawler
from crawler.delegation import DelegatedTokens
from crawler.errors import (
    AuthFailed,
    AuthRevoked,
    BadAccount,
    ConfigError,
    DomainRefused,
    FreshTokenRefused,
    ProtocolError,
    WebLoginRequired,
)
from crawler.gmail.session import ImapSession, Mailbox
from crawler.oauth import MISSING_KEY
from crawler.rules import Rule
from crawler.store.domains import PROVIDER as DOMAIN_PROVIDER

GMAIL_PROVIDERS = frozenset({"gmail_oauth", "g_apps_oauth"})  # the providers crawled as Gmail
AUTH_REFUSALS = 3  # logins in a row whose fresh token Gmail refused before the account fails
# Gmail's IMAP settings can limit a folder to this many messages (Gmail API ImapSettings,
# `maxFolderSize`): IMAP then shows only the newest, and All Mail looks exactly that full.
FOLDER_SIZE_LIMITS = frozenset({1_000, 2_000, 5_000, 10_000})


class GmailCrawler(ImapCrawler):
    """Crawls one Gmail account (`gmail_oauth`, `g_apps_oauth`); raises `Throttled` (or a
    subclass) when Gmail says to back off."""

    gmail_items = True

    def _server(self) -> tuple[str, int, bool]:
        return self.settings.imap_host, self.settings.imap_port, self.settings.imap_tls

    def _authenticate(self, session: ImapSession) -> None:
        email = self._email()
        session.require("X-GM-EXT-1")
        oauth = self.account.get("oauth")
        if self._delegated() and oauth is None:
            oauth = {}  # no token yet: the domain's service account mints one
        if not isinstance(oauth, Mapping):
            raise BadAccount("oauth is missing: authorize the account first")
        if self.tokens is None:
            raise ConfigError(MISSING_KEY)
        # After Gmail ended a session with its token, the stored one is that token: refresh.
        cached = None if self.session_expired else self.tokens.cached(oauth)
        token = cached.token if cached else self._refresh(oauth)
        try:
            session.xoauth2(email, token)
        except (AuthRevoked, WebLoginRequired):
            raise
        except AuthFailed as refused:
            if cached is None:
                self._refused(refused)
            token = self._refresh(oauth)  # the cached token was refused: a fresh one, once
            try:
                session.xoauth2(email, token)
            except (AuthRevoked, WebLoginRequired):
                raise
            except AuthFailed as refused_again:
                self._refused(refused_again)
        if self.status.get("auth_refusals"):
            self.store.statuses.recorded(self.user_uuid, auth_refusals=0)

    def _refused(self, error: AuthFailed) -> NoReturn:
        """Gmail refused a token the endpoint had just issued. Once is no proof that the grant
        is revoked (Google's systems do not always agree at once): the account is tried again
        after the error backoff, and is `auth_failed` only after AUTH_REFUSALS in a row."""
        refusals = int(self.status.get("auth_refusals") or 0) + 1
        self.store.statuses.recorded(self.user_uuid, auth_refusals=refusals)
        if refusals >= AUTH_REFUSALS:
            raise error
        raise FreshTokenRefused(
            f"Gmail refused a token just issued ({refusals} of {AUTH_REFUSALS} in a row before "
            f"the account is auth_failed): {error}"
        ) from None

    def _refresh(self, oauth: Mapping[str, Any]) -> str:
        if self.tokens is None:
            raise ConfigError(MISSING_KEY)
        if self._delegated():
            domain = self._domain()
            delegated = self.tokens
            if not isinstance(delegated, DelegatedTokens):  # a caller's own token source
                delegated = DelegatedTokens(self.settings, self._cipher(), clock=self.clock)
            access = delegated.token(domain, self._email())
            if domain.get("refused"):
                self.store.domains.accepted(str(domain["domain"]))
        else:
            access = self.tokens.refresh(oauth)
        self.store.save_oauth(self.user_uuid, self.tokens.encrypted(access))
        return access.token

    def _delegated(self) -> bool:
        """Whether the account's tokens come from its Workspace domain's service account."""
        return self.account.get("provider") == DOMAIN_PROVIDER

    def _domain(self) -> Mapping[str, Any]:
        """The account's Workspace domain; DomainRefused while Google refuses its service
        account (no request is made until the wait is over)."""
        name = str(self.account.get("domain") or self._email().rpartition("@")[2]).lower()
        domain = self.store.domains.of(name)
        if domain is None:
            raise BadAccount(
                f"no service account for the Workspace domain {name}: `crawler domains add {name}`"
            )
        refused = domain.get("refused")
        if isinstance(refused, Mapping) and float(refused.get("until") or 0) > self.clock():
            raise DomainRefused(name, str(refused.get("message")), float(refused["until"]))
        return domain

    def _examine(self, session: ImapSession) -> Mailbox:
        """EXAMINE All Mail under the name it had last time, without a LIST; LIST when that
        name is gone (renamed with Gmail's language, hidden from IMAP) or names a folder of
        another UIDVALIDITY (another folder took it), and remember the name LIST gives."""
        known, mailbox = self.status.get("all_mail"), None
        if isinstance(known, str) and known:
            with suppress(ProtocolError):  # NO: no such folder any more
                mailbox = session.examine(known)
            if mailbox is not None and mailbox.uidvalidity == self.status.get("uidvalidity"):
                return mailbox
        name = session.all_mail()
        if name == known and mailbox is not None:  # All Mail's own UIDVALIDITY changed
            return mailbox
        self.status["all_mail"] = name
        self.store.statuses.recorded(self.user_uuid, all_mail=name)
        return session.examine(name)

    def _search_query(self, rule: Rule) -> str | None:
        return rule.search_query

    def _examined(self, mailbox: Mailbox) -> None:
        warning = None
        if mailbox.exists in FOLDER_SIZE_LIMITS:
            warning = (
                f"All Mail shows exactly {mailbox.exists:,} messages, one of the folder size "
                "limits of Gmail's IMAP settings: older mail may be hidden from IMAP (Gmail "
                "settings, Forwarding and POP/IMAP, Folder size limits: do not limit)"
            )
        if warning != self.status.get("folder_warning"):
            self.status["folder_warning"] = warning
            self.store.statuses.recorded(self.user_uuid, folder_warning=warning)
