"""`CrawlIterator`: one pass over the due accounts of a shard.

For each due account of the shard: take the lease, put back what a dead crawl left in flight,
run the provider's crawler class, and turn the outcome into `crawl_status`. One account's failure
never stops the pass.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import redis
from pymongo import MongoClient
from pymongo.database import Database

from config import Settings, load_settings
from crawler import airbrake, metrics
from crawler.backoff import error_delay, throttle_delay
from crawler.blobs import BlobStore, open_blob_store
from crawler.crawl import CrawlResult, ImapCrawler
from crawler.delegation import DelegatedTokens
from crawler.errors import (
    AuthFailed,
    AuthRevoked,
    BadAccount,
    BadInput,
    BadRule,
    CrawlerError,
    DomainRefused,
    FreshTokenRefused,
    ImapDisabled,
    Interrupted,
    OAuthClientRefused,
    Throttled,
)
from crawler.events import EventStream, crawl_event
from crawler.gmail_crawler import GMAIL_PROVIDERS, GmailCrawler
from crawler.keys import Keys, check_user_uuid
from crawler.lease import Lease, LeaseLost
from crawler.oauth import TokenCipher
from crawler.redis_url import redis_from_url
from crawler.retry import GroundhogDay, RetryDetails
from crawler.rules import Rule, RuleTester, usable_rules
from crawler.scrub import scrub_text
from crawler.store import Store, in_shard
from crawler.store.domains import Refusal
from crawler.store.status import Document, LastError, State
from crawler.uidqueue import UidQueue

log = logging.getLogger(__name__)

REDIS_TIMEOUT = 10.0  # seconds: a Redis that stops answering fails a crawl, never hangs it
# The states whose `crawl` log line carries the error's type and (scrubbed) message.
LOGGED_FAILURES = frozenset({State.ERROR, State.AUTH_FAILED, State.THROTTLED})
EVENT_STATES = LOGGED_FAILURES | {State.IDLE}  # crawl outcomes sent as events
DEFAULT_CRAWLERS: Mapping[str, type[Any]] = {
    "gmail_oauth": GmailCrawler,
    "g_apps_oauth": GmailCrawler,
    "imap_password": ImapCrawler,
}


@dataclass
class PassResult:
    """What one pass did, account by account."""

    outcomes: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> list[str]:
        """Accounts whose crawl ended in `error`."""
        return [user for user, state in self.outcomes.items() if state == "error"]


class CrawlIterator:
    """Crawls every due, unthrottled account of shard `client_id` of `client_count`."""

    def __init__(
        self,
        database: Database[Document] | str,
        rule_tester: type[RuleTester] = RuleTester,
        crawler_map: Mapping[str, type[Any]] | None = None,
        client_id: int = 0,
        client_count: int = 1,
        *,
        settings: Settings | None = None,
        redis_client: redis.Redis | None = None,
        blobs: BlobStore | None = None,
        worker_id: str | None = None,
        clock: Callable[[], float] = time.time,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        if not 0 <= client_id < client_count:
            raise ValueError(f"client_id {client_id} is not in 0..{client_count - 1}")
        self.settings = settings or load_settings()
        self.store = Store(self._database(database))
        self.store.ensure_indexes()
        self.rule_tester = rule_tester
        self.crawler_map = dict(crawler_map or DEFAULT_CRAWLERS)
        self.client_id, self.client_count = client_id, client_count
        self.redis = redis_client or redis_from_url(self.settings.redis_url, REDIS_TIMEOUT)
        self.keys = Keys(self.settings.redis_prefix)
        self._blobs = blobs
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self.clock = clock
        self.should_stop = should_stop
        key = self.settings.secret_key.get_secret_value()
        # Only crawls that touch tokens need the key; they fail clearly without it.
        self.cipher = TokenCipher(key) if key else None
        # When the fleet's wait for a refused OAuth client ends (read once a pass).
        self.oauth_refused_until: float | None = None

    def _database(self, database: Database[Document] | str) -> Database[Document]:
        if isinstance(database, str):
            client: MongoClient[Document] = MongoClient(self.settings.mongodb_url)
            return client[database]
        return database

    @property
    def blobs(self) -> BlobStore:
        """The blob store, opened on first use."""
        if self._blobs is None:
            self._blobs = open_blob_store(self.settings, self.store.db)
        return self._blobs

    @functools.cached_property
    def events(self) -> EventStream:
        """The event stream, `<prefix>events`."""
        return EventStream(self.redis, self.keys, self.settings.events_maxlen, self.blobs.location)

    def iterate(self, concurrency: int = 1) -> PassResult:
        """One pass: crawl every due account of this shard once, `concurrency` at a time.

        A crawl that ends makes room for the next due account at once: a slow account never
        holds up the others. A stop request lets the crawls running end, and starts no more.
        """
        now = self.clock()
        self.store.discover_accounts(now)
        if self.store.resync_due(now, self.settings.resync_interval):
            self.store.resync_accounts(now)
        result = PassResult()
        self.oauth_refused_until = self._oauth_refused_until()  # once a pass, not per crawl
        with ThreadPoolExecutor(concurrency, thread_name_prefix="crawl") as pool:
            running: dict[Future[str], str] = {}
            for status in self.due(now):
                if len(running) >= concurrency:
                    self._collect(running, result, FIRST_COMPLETED)
                if self.should_stop():
                    break
                running[pool.submit(self.crawl_account, status)] = str(status["user_uuid"])
            self._collect(running, result, ALL_COMPLETED)
        return result

    @staticmethod
    def _collect(running: dict[Future[str], str], result: PassResult, until: str) -> None:
        done, _ = wait(running, return_when=until)
        for future in done:
            result.outcomes[running.pop(future)] = future.result()

    def due(self, now: float) -> Iterator[Document]:
        """The due statuses of this shard."""
        for status in self.store.statuses.due(now):
            user_uuid = status.get("user_uuid")
            if isinstance(user_uuid, str) and in_shard(
                user_uuid, self.client_id, self.client_count
            ):
                yield status

    def crawl_account(self, status: Mapping[str, Any]) -> str:
        """Crawl one account under its lease; the state it ends in ('skipped' if leased)."""
        user_uuid = str(status["user_uuid"])
        try:
            check_user_uuid(user_uuid)
        except BadAccount as error:
            return self._finish_error(user_uuid, error)
        lease = Lease(self.redis, self.keys, user_uuid, self.worker_id, self.settings.lease_ttl)
        if not lease.acquire():
            return "skipped"
        try:
            # `status` was read before the lease: another worker may have crawled the account
            # since, and left it throttled, auth_failed or simply done. Only the status read
            # under the lease says whether it is still due, and where its cursor is.
            current = self.store.statuses.of(user_uuid)
            if current is None or not _due(current, self.clock()):
                return "skipped"
            queue = UidQueue(self.redis, self.keys, user_uuid, lease)
            queue.requeue_inflight()
            return self._run(user_uuid, current, queue)
        finally:
            lease.release()

    def _run(self, user_uuid: str, status: Mapping[str, Any], queue: UidQueue) -> str:
        started = time.monotonic()
        until = self.oauth_refused_until
        if until is not None and until > self.clock() and self._uses_oauth(user_uuid):
            self.store.statuses.deferred(user_uuid, until)  # the fleet waits for its client
            return "deferred"
        self.store.statuses.started(user_uuid, self.worker_id, self.clock())
        crawler: Any = None
        failure: dict[str, str] = {}
        try:
            rules = self._rules(user_uuid)
            if rules:  # else every rule of the account is disabled: nothing to look for
                crawler = self._crawler(user_uuid, status, queue, rules)
                self._attempts(user_uuid, crawler, queue)
        except Exception as error:  # a failure ends this account's crawl, never the pass
            state = self._finish_failed(user_uuid, status, error)
            if state in LOGGED_FAILURES:  # the line says why, as `crawler status` does
                message = scrub_text(str(error))[:500]  # as `last_error` holds it: no secret
                failure = {"error_type": type(error).__name__, "error": message}
        else:
            state = self._finish_ok(user_uuid)
        metrics.CRAWLS.labels(state).inc()
        counts = getattr(crawler, "result", None)
        details = {
            "worker": self.worker_id,
            **failure,
            **(dataclasses.asdict(counts) if isinstance(counts, CrawlResult) else {}),
            "duration": round(time.monotonic() - started, 3),
        }
        log.info("crawl %s", state, extra={"user_uuid": user_uuid, "state": state, **details})
        if state in EVENT_STATES:
            self.events.publish([crawl_event(user_uuid, state, self.clock(), details)])
        return state

    def _attempts(self, user_uuid: str, crawler: Any, queue: UidQueue) -> Any:
        """Run the crawl, again after a transient error (reconnecting), within bounds."""

        def put_back_inflight(retry: RetryDetails) -> None:
            log.warning(
                "crawl of %s retried after %s",
                user_uuid,
                type(retry.error).__name__,
                extra={"user_uuid": user_uuid, "attempt": retry.attempt, "error": str(retry.error)},
            )
            queue.requeue_inflight()  # the failed attempt's batch goes back first

        policy = GroundhogDay(
            maximum_retries=self.settings.retry_attempts,
            sleep_time=self.settings.retry_wait,
            max_sleep=30 * self.settings.retry_wait,
            max_time=self.settings.retry_max_time,
            on_retry=(put_back_inflight,),
        )
        return policy.call(crawler.crawl)

    def _crawler(
        self, user_uuid: str, status: Mapping[str, Any], queue: UidQueue, rules: list[Rule]
    ) -> Any:
        account = self.store.account(user_uuid) or {"user_uuid": user_uuid}
        provider = account.get("provider") or "gmail_oauth"
        if not isinstance(provider, str):
            raise BadAccount(f"provider must be a name, not {provider!r:.40}")
        crawler_class = self.crawler_map.get(provider)
        if crawler_class is None:
            raise BadAccount(f"provider {provider!r} has no crawler")
        return crawler_class(
            account=account,
            rules=rules,
            settings=self.settings,
            status=status,
            store=self.store,
            queue=queue,
            blobs=self.blobs,
            cipher=self.cipher,
            tokens=self.cipher and DelegatedTokens(self.settings, self.cipher, clock=self.clock),
            rule_tester=self.rule_tester,
            clock=self.clock,
            should_stop=self.should_stop,
            events=self.events,
        )

    def _rules(self, user_uuid: str) -> list[Rule]:
        """The account's usable rules ([] when all are disabled); BadRule when it has enabled
        rules but none can be used."""
        rules, errors = usable_rules(self.store.enabled_rules(user_uuid), self.settings.max_rules)
        self.store.statuses.rule_errors(user_uuid, errors, merge=False)
        if errors and not rules:
            raise BadRule(f"the account has no usable rule: {errors}")
        return rules

    # -- outcomes -----------------------------------------------------------------------

    def _finish_failed(self, user_uuid: str, status: Mapping[str, Any], error: Exception) -> str:
        """The state a failed crawl ends in; errors that are not the account's data go to
        Airbrake, and a bug is logged with its traceback."""
        if isinstance(error, Throttled):
            return self._finish_throttled(user_uuid, status, error)
        if isinstance(error, Interrupted):
            return self._finish_interrupted(user_uuid)
        if isinstance(error, OAuthClientRefused | DomainRefused):  # no account is at fault
            return self._finish_refused(user_uuid, error)
        if isinstance(error, LeaseLost):  # another worker crawls the account now: its status
            log.warning("crawl of %s stopped: %s", user_uuid, error, extra={"user_uuid": user_uuid})
            return "lease_lost"
        if isinstance(error, AuthFailed):
            if isinstance(error, AuthRevoked):  # once: the account is not crawled again
                self._report(user_uuid, error)
            return self._finish_auth_failed(user_uuid, error)
        if not isinstance(error, CrawlerError):
            log.exception("crawl of %s failed", user_uuid, extra={"user_uuid": user_uuid})
        # Only a person can fix the first two; a refused fresh token is tried again first.
        if not isinstance(error, BadInput | ImapDisabled | FreshTokenRefused):
            self._report(user_uuid, error)
        return self._finish_error(user_uuid, error, status)

    def _oauth_refused_until(self) -> float | None:
        """When the fleet's wait for a refused OAuth client ends, if it waits."""
        left = self.redis.pttl(self.keys.oauth_refused)
        return self.clock() + left / 1000 if isinstance(left, int) and left > 0 else None

    def _uses_oauth(self, user_uuid: str) -> bool:
        account = self.store.account(user_uuid) or {}
        return (account.get("provider") or "gmail_oauth") in GMAIL_PROVIDERS

    def _finish_client_refused(self, user_uuid: str, error: OAuthClientRefused) -> str:
        """Google refuses our OAuth client: no account is at fault, and none can be crawled.
        The whole fleet waits the error backoff (one Redis key), the accounts keep their state
        and are due when it ends, and the error is logged and reported once a day."""
        wait = max(1, round(self.settings.error_backoff))
        self.redis.set(self.keys.oauth_refused, str(error), ex=wait)
        self.oauth_refused_until = self.clock() + wait  # the crawls of this pass wait too
        if self.redis.set(self.keys.oauth_reported, "1", nx=True, ex=86400):
            log.error("Google refuses the OAuth client: %s", error, extra={"error": str(error)})
            self._report(user_uuid, error)
        self.store.statuses.deferred(user_uuid, self.clock() + wait)
        return "deferred"

    def _finish_refused(self, user_uuid: str, error: OAuthClientRefused | DomainRefused) -> str:
        if isinstance(error, DomainRefused):
            return self._finish_domain_refused(user_uuid, error)
        return self._finish_client_refused(user_uuid, error)

    def _finish_domain_refused(self, user_uuid: str, error: DomainRefused) -> str:
        """Google refuses a Workspace domain's service account: none of its accounts is at
        fault. The domain records why and until when (CRAWLER_DOMAIN_REFUSED_BACKOFF), its
        accounts keep their state and wait for it, and the error is logged and reported once a
        day per domain."""
        until = error.until
        if until is None:  # Google said so just now
            now = self.clock()
            until = now + self.settings.domain_refused_backoff
            refusal: Refusal = {"message": error.message, "at": now, "until": until}
            self.store.domains.refused(error.domain, refusal)
            if self.redis.set(self.keys.domain_reported(error.domain), "1", nx=True, ex=86400):
                log.error("Google refuses a domain: %s", error, extra={"domain": error.domain})
                self._report(user_uuid, error)
        self.store.statuses.deferred(user_uuid, until)
        return "deferred"

    def _report(self, user_uuid: str, error: Exception) -> None:
        shard = f"{self.client_id}/{self.client_count}"
        context = {"user_uuid": user_uuid, "worker": self.worker_id, "shard": shard}
        airbrake.report(error, {**context, "component": "worker"})

    def _finish_ok(self, user_uuid: str) -> str:
        now = self.clock()
        self.store.statuses.finished(user_uuid, now, now + self.settings.crawl_interval)
        return State.IDLE

    def _finish_interrupted(self, user_uuid: str) -> str:
        self.store.statuses.interrupted(user_uuid, self.clock())
        return "interrupted"

    def _finish_throttled(self, user_uuid: str, status: Mapping[str, Any], error: Throttled) -> str:
        now = self.clock()
        consecutive = int(status.get("consecutive_throttles") or 0)
        until = error.until  # a limit of our own knows when it ends, and grows no backoff
        if until is None:
            consecutive += 1
            until = now + throttle_delay(error, consecutive, self.settings)
        record = _record_error(error, now)
        self.store.statuses.throttled(user_uuid, error.reason, consecutive, until, record)
        return State.THROTTLED

    def _finish_auth_failed(self, user_uuid: str, error: AuthFailed) -> str:
        revoked = isinstance(error, AuthRevoked)
        self.store.statuses.auth_failed(
            user_uuid, _record_error(error, self.clock()), revoked=revoked
        )
        return State.AUTH_FAILED

    def _finish_error(
        self, user_uuid: str, error: Exception, status: Mapping[str, Any] | None = None
    ) -> str:
        now = self.clock()
        consecutive = int((status or {}).get("consecutive_errors") or 0) + 1
        delay = error_delay(consecutive, self.settings)
        if isinstance(error, ImapDisabled):  # turned off by a person: no sooner than this
            delay = max(delay, self.settings.imap_disabled_backoff)
        next_crawl_at = now + delay
        self.store.statuses.failed(user_uuid, _record_error(error, now), consecutive, next_crawl_at)
        return State.ERROR


def _due(status: Mapping[str, Any], now: float) -> bool:
    """Whether a crawl_status is due by `now` (None: only re-authorizing makes it due)."""
    next_crawl_at = status.get("next_crawl_at")
    return isinstance(next_crawl_at, int | float) and next_crawl_at <= now


def _record_error(error: Exception, now: float) -> LastError:
    """Count the error by class; the `last_error` document for it."""
    metrics.ERRORS.labels(type(error).__name__).inc()
    message = scrub_text(str(error))[:500]  # an error's text may quote a secret
    return {"type": type(error).__name__, "message": message, "at": now}
