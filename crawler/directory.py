"""The users of a Google Workspace domain, from the Admin SDK Directory API (`users.list`).

`crawler domains sync` reads them as the domain's administrator (an access token minted for
them by the domain's service account, scope `admin.directory.user.readonly`), a page of up to
500 at a time: `GET {CRAWLER_DIRECTORY_URL}/admin/directory/v1/users?domain=D&maxResults=500`
then `&pageToken=...` while the answer has a `nextPageToken`. Each request is bounded like the
token endpoint's (crawler/oauth.py `Peer`): CRAWLER_OAUTH_TIMEOUT in all, no redirect, at most
MAX_PAGE bytes; and a directory that pages for ever stops at MAX_PAGES.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import requests

from config import Settings
from crawler.errors import AuthFailed, Transient
from crawler.oauth import Peer, bounded_session, check_endpoint

PAGE_SIZE = 500  # users a page, Google's most
MAX_PAGE = 8 * 2**20  # bytes of one page, at most; 500 users take about 1 MiB
MAX_PAGES = 2_000  # a million users


@dataclass(frozen=True)
class DirectoryUser:
    """One user of the domain, as `crawler domains sync` needs it."""

    id: str
    email: str
    suspended: bool
    archived: bool

    @property
    def active(self) -> bool:
        """Neither suspended nor archived: a mailbox to crawl."""
        return not (self.suspended or self.archived)


def users(
    settings: Settings, domain: str, token: str, http: requests.Session | None = None
) -> Iterator[DirectoryUser]:
    """Every user of `domain`, page after page; AuthFailed when the Directory API refuses the
    token, Transient when it cannot be had or reads wrong."""
    base = settings.directory_url.rstrip("/")
    check_endpoint("CRAWLER_DIRECTORY_URL", base)
    url = f"{base}/admin/directory/v1/users"
    session = bounded_session(settings, http, base)
    peer = Peer("Directory API", url, settings.oauth_timeout, MAX_PAGE)
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    page_token: str | None = None
    for _ in range(MAX_PAGES):
        params = {"domain": domain, "maxResults": str(PAGE_SIZE)}
        if page_token:
            params["pageToken"] = page_token
        answer = peer.request(session, "GET", params=params, headers=headers)
        if answer.status in (401, 403):
            raise AuthFailed(
                f"the Directory API refused the administrator's token (HTTP {answer.status}): "
                "check the domain's administrator (--admin) and that the delegation grants "
                "https://www.googleapis.com/auth/admin.directory.user.readonly"
            )
        fields = answer.fields()
        if answer.status != 200 or fields is None:
            raise Transient(f"the Directory API answered HTTP {answer.status}, {answer.media_type}")
        yield from _users(fields)
        page_token = fields.get("nextPageToken")
        if not page_token:
            return
        if not isinstance(page_token, str):
            raise Transient("the Directory API answered an unreadable nextPageToken")
    raise Transient(f"the Directory API gave more than {MAX_PAGES} pages of {PAGE_SIZE} users")


def _users(page: Mapping[str, Any]) -> Iterator[DirectoryUser]:
    found = page.get("users", [])
    if not isinstance(found, list):
        raise Transient("the Directory API answered a page whose users are not a list")
    for entry in found:
        if not isinstance(entry, dict):
            continue
        email, user_id = entry.get("primaryEmail"), entry.get("id")
        if isinstance(email, str) and "@" in email and isinstance(user_id, str | int):
            suspended, archived = entry.get("suspended") is True, entry.get("archived") is True
            yield DirectoryUser(str(user_id), email.lower(), suspended, archived)
