"""`GmailCrawler`: how a Gmail account differs from any IMAP one.

The crawl is `ImapCrawler`'s; Gmail adds four things. It logs in with XOAUTH2 (an access token
from the account's refresh token, refreshed once when the cached one is refused), on the
configured Gmail server, which must offer X-GM-EXT-1. It crawls All Mail, found by its `\\All`
flag since its name is localized. Each rule's candidates come from an `X-GM-RAW` search.
And each message carries X-GM-MSGID, X-GM-THRID and X-GM-LABELS, the first of which is its
identity.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crawler.crawl import ImapCrawler
from crawler.errors import AuthFailed, AuthRevoked, BadAccount, ConfigError, WebLoginRequired
from crawler.gmail.session import ImapSession
from crawler.oauth import MISSING_KEY
from crawler.rules import Rule

GMAIL_PROVIDERS = frozenset({"gmail_oauth", "g_apps_oauth"})  # the providers crawled as Gmail


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
        if not isinstance(oauth, Mapping):
            raise BadAccount("oauth is missing: authorize the account first")
        if self.tokens is None:
            raise ConfigError(MISSING_KEY)
        cached = self.tokens.cached(oauth)
        token = cached.token if cached else self._refresh(oauth)
        try:
            session.xoauth2(email, token)
        except (AuthRevoked, WebLoginRequired):
            raise
        except AuthFailed:
            if cached is None:
                raise
            session.xoauth2(email, self._refresh(oauth))  # the cached token was refused: once

    def _refresh(self, oauth: Mapping[str, Any]) -> str:
        if self.tokens is None:
            raise ConfigError(MISSING_KEY)
        access = self.tokens.refresh(oauth)
        self.store.save_oauth(self.user_uuid, self.tokens.encrypted(access))
        return access.token

    def _folder(self, session: ImapSession) -> str:
        return session.all_mail()

    def _search_query(self, rule: Rule) -> str | None:
        return rule.search_query
