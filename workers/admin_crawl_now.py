"""`crawler accounts crawl-now U`: make an account due at once, whatever its state but
`auth_failed`, its backoff cleared (`StatusBook.crawl_now`, the transition written for it).

An account being crawled is left alone and said to be; an `auth_failed` one waits for new
credentials, and the command says which command gives them. A crawl takes nothing without an
enabled rule, so an account without one is refused, naming the command that adds or enables one.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from crawler.store import Document
from crawler.store.status import State
from workers.admin_context import MongoUrlOption, Operator, fail, operator, operator_command
from workers.admin_output import printable, relative, timestamp
from workers.admin_users import require_account

ATTEMPTS = 3  # reads of the state, when a worker changes it between the read and the write


@operator_command
def crawl_now(
    user_uuid: Annotated[str, typer.Argument(help="The account's user_uuid.")],
    mongodb_url: MongoUrlOption = None,
) -> None:
    """Crawl an account at once: due now, its backoff cleared, whatever its state but auth_failed.

    A throttled account, or one in error, is due at once with its backoff and its throttles
    and errors in a row cleared; a worker of its shard crawls it at its next pass. An account
    being crawled is left alone. An auth_failed account needs new credentials first (crawler
    accounts authorize U; set-password for imap_password).
    """
    with operator(mongodb_url) as ops:
        account = require_account(ops, user_uuid)
        _require_enabled_rule(ops, user_uuid)
        lines = _crawl_now(ops, account, user_uuid)
    for line in lines:
        typer.echo(line)


def _require_enabled_rule(ops: Operator, user_uuid: str) -> None:
    rules, enabled = ops.store.rule_counts([user_uuid]).get(user_uuid, (0, 0))
    if not rules:
        fail(
            f"{user_uuid} has no rule: a crawl would take nothing; add one first "
            f"(crawler rules add --user-uuid {user_uuid})"
        )
    if not enabled:
        fail(
            f"{user_uuid} has no enabled rule: a crawl would take nothing; enable one first "
            f"(crawler rules list --user-uuid {user_uuid}; crawler rules enable ID)"
        )


def _crawl_now(ops: Operator, account: Document, user_uuid: str) -> list[str]:
    """What became of the account, as lines to print; the command fails for auth_failed."""
    for _ in range(ATTEMPTS):
        now = time.time()
        before = ops.store.statuses.of(user_uuid)
        if before is None:
            ops.store.ensure_indexes()  # the unique index keeps a worker's status and ours one
            if ops.store.statuses.created([user_uuid], now):
                return [f"{user_uuid} is due now: a worker of its shard crawls it at its next pass"]
            continue  # a worker gave it a status meanwhile
        state = before.get("state")
        if state == State.CRAWLING:
            since = before.get("last_started_at")
            return [
                f"{user_uuid} is being crawled now, by {printable(before.get('worker'))} "
                f"since {timestamp(since)} ({relative(since, now)})"
            ]
        if state == State.AUTH_FAILED:
            fail(_auth_failed(account, before, user_uuid))
        if ops.store.statuses.crawl_now(user_uuid, now):
            was = _was(before, now)
            return [
                f"{user_uuid} is due now: a worker of its shard crawls it at its next pass; {was}",
                *_notes(ops, account, before, now),
            ]
    fail(f"the crawl state of {user_uuid} kept changing: try again")


def _was(before: Document, now: float) -> str:
    """What crawl-now changed: the backoff it cleared, or the wait it ended."""
    state = before.get("state")
    when = before.get("next_crawl_at")
    if state == State.THROTTLED:
        reason = printable(before.get("throttle_reason") or "throttled")
        return f"it was throttled ({reason}) until {timestamp(when)}: backoff cleared"
    if state == State.ERROR:
        error = before.get("last_error")
        kind = printable(error.get("type")) if isinstance(error, dict) else "an error"
        return f"it was in error ({kind}), to be retried {relative(when, now)}: backoff cleared"
    if isinstance(when, int | float) and when > now:
        return f"it was {printable(state)}, its next crawl {relative(when, now)}"
    return "it was due already"


def _notes(ops: Operator, account: Document, before: Document, now: float) -> list[str]:
    """What may stop the crawl again, for all that it is due."""
    notes = []
    if before.get("throttle_reason") == "daily_limit" and before.get("state") == State.THROTTLED:
        notes.append(
            "note: it had reached CRAWLER_DAILY_DOWNLOAD_LIMIT: the crawl stops again before a "
            "batch could pass it, until enough of the rolling 24 h has passed"
        )
    domain = account.get("domain")
    if account.get("provider") == "g_apps_oauth" and isinstance(domain, str):
        document = ops.store.domains.of(domain) or {}
        refused: Any = document.get("refused")
        until = refused.get("until") if isinstance(refused, dict) else None
        if isinstance(until, int | float) and until > now:
            notes.append(
                f"note: Google refuses the service account of {domain} until "
                f"{timestamp(until)}: the account waits for it (crawler domains check {domain} "
                "once it is fixed)"
            )
    return notes


def _auth_failed(account: Document, status: Document, user_uuid: str) -> str:
    """Why an auth_failed account is not crawled, and the command that brings it back."""
    error = status.get("last_error")
    why = f" ({printable(error.get('type'))})" if isinstance(error, dict) else ""
    provider = account.get("provider") or "gmail_oauth"
    if provider == "imap_password":
        return (
            f"{user_uuid} is auth_failed: its IMAP server refused its password{why}; it is "
            f"crawled at once after: crawler accounts set-password {user_uuid} --password-stdin"
        )
    if provider == "g_apps_oauth":
        domain = printable(account.get("domain") or "its domain")
        return (
            f"{user_uuid} is auth_failed: Google refused it{why}; it is crawled at once after "
            f"crawler domains sync {domain}, if its user is active in the domain's directory"
        )
    return (
        f"{user_uuid} is auth_failed: Google refused its grant{why}; it is crawled at once "
        f"after: crawler accounts authorize {user_uuid}"
    )
