"""The faults a run injects, one method per kind, each choosing its target with the run's rng.

Gmail's failures are the fake Gmail's programmable faults (standins/fakegmail/faults.py), each armed
once on an account that is given new mail at the same moment, so that the crawl the fault waits for
comes soon. TCP resets, slow responses (held past the crawler's socket timeout), dripping answers
and floods come from the hostile front in front of the fake (standins/imapfront.py). Tokens expire
by swapping in an access token that Gmail refuses while the database still calls it valid; the token
endpoint fails with 5xx. Workers are killed (SIGKILL) or stopped (SIGTERM) and replaced, as a
process manager would; Redis and the embedded MongoDB are restarted with their data.
"""

from __future__ import annotations

import contextlib
import enum
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pymongo.errors import PyMongoError

from chaos.deployment import SETTINGS, ChaosAccount, Deployment, Proc
from chaos.mail import corpus, fresh_message
from chaos.servers import RedisServer
from crawler import daily
from crawler.store.status import StatusBook
from standins import tokens
from standins.fakegmail import Fault, FaultKind
from standins.fakeoauth import FakeTokenEndpoint
from standins.imapfront import Stall

SLOW_DELAY = 3.2  # seconds an answer is held: past the crawler's socket timeout (2 s)
SLOW_WINDOW = 0.3  # seconds, from the first answer held, during which answers are held
SLOW_WAIT = 8.0  # seconds a stall waits for the account's next answer
DRIP_INTERVAL = 0.02  # seconds between two bytes of a dripping server's answers
DRIP_WINDOW = 8.0  # seconds an account's answers drip
FLOOD_SIZE = 2**28  # bytes of a flood, made as it is sent: the crawler hangs up long before
STORE_DOWN = 1.0  # seconds Redis or MongoDB stays down in a restart
BUSY_WAIT = 5.0  # seconds to wait for a worker that holds a crawl, to kill that one
REPLACE_AFTER = 0.5  # seconds before a killed worker's replacement starts
DAILY_WAIT = 30.0  # seconds to wait for the crawl that meets the daily limit
DAY = (1.0, 3.0)  # seconds a daily-limit backoff lasts before its day "passes" (a range)


class Kind(enum.StrEnum):
    """The kinds of fault, in the order of the report."""

    THROTTLED = "[THROTTLED]"
    OVERQUOTA = "BYE [OVERQUOTA]"
    TOO_MANY_CONNECTIONS = "too many connections"
    BYE_SYSTEM_ERROR = "BYE System Error"
    RESET = "connection reset"
    TRUNCATED = "truncated literal"
    SLOW = "slow response"
    DRIP = "dripping server"
    FLOOD = "flooding server"
    TOKEN_EXPIRED = "token expired"  # noqa: S105  # a fault's name, not a secret
    SESSION_EXPIRED = "session ended with its token"
    DAILY_LIMIT = "daily download limit"
    TOKEN_5XX = "token endpoint 5xx"  # noqa: S105  # a fault's name, not a secret
    SIGKILL = "worker SIGKILL"
    SIGTERM = "worker SIGTERM"
    REDIS_RESTART = "Redis restart"
    MONGO_RESTART = "MongoDB restart"
    NEW_MAIL = "new mail"
    UIDVALIDITY = "UIDVALIDITY change"


Effect = Callable[[], bool]
"""Whether an injected fault took effect (asked at the end of the run)."""
Outcome = tuple[str, Effect | None]
"""The target of an injection, and how to tell whether it took effect (None: it always does)."""


@dataclass
class Injection:
    """One fault injected: when, into what, and how to tell whether it took effect."""

    kind: Kind
    at: float
    target: str
    effect: Effect | None = None


@dataclass
class Disruption:
    """A kill or a store restart, for the recovery times."""

    kind: Kind
    at: float  # when the process died or the store went down
    up_at: float  # when the store was back (= at for a kill)
    victim: str = ""
    held: list[str] = field(default_factory=list)  # accounts whose lease the victim held


class Injector:
    """Injects faults of every kind into one deployment."""

    def __init__(
        self, deployment: Deployment, redis: RedisServer | None, rng: random.Random
    ) -> None:
        self.deployment = deployment
        self.redis_server = redis
        self.rng = rng
        self.injections: list[Injection] = []
        self.disruptions: list[Disruption] = []
        self.armed: list[tuple[ChaosAccount, Fault]] = []
        self._threads: list[threading.Thread] = []
        self._redis_restarts = 0
        self._failures_injected = 0
        self.days_passed: dict[str, list[float]] = {}
        """Per account, when a daily-limit backoff was ended as a day passing would end it."""

    def inject(self, kind: Kind) -> None:
        """Inject one fault of `kind`."""
        action = {
            Kind.THROTTLED: lambda: self._gmail(self._fetch_fault(FaultKind.THROTTLED)),
            Kind.OVERQUOTA: lambda: self._gmail(self._fetch_fault(FaultKind.OVERQUOTA)),
            Kind.TOO_MANY_CONNECTIONS: self._too_many_connections,
            Kind.BYE_SYSTEM_ERROR: lambda: self._gmail(
                self._fetch_fault(FaultKind.BYE_SYSTEM_ERROR)
            ),
            Kind.RESET: self._reset,
            Kind.TRUNCATED: self._truncated,
            Kind.SLOW: self._slow,
            Kind.DRIP: self._drip,
            Kind.FLOOD: self._flood,
            Kind.TOKEN_EXPIRED: self._token_expired,
            Kind.SESSION_EXPIRED: lambda: self._gmail(self._fetch_fault(FaultKind.SESSION_EXPIRED)),
            Kind.DAILY_LIMIT: self._daily_limit,
            Kind.TOKEN_5XX: self._token_5xx,
            Kind.SIGKILL: lambda: self._stop_worker(signal.SIGKILL),
            Kind.SIGTERM: lambda: self._stop_worker(signal.SIGTERM),
            Kind.REDIS_RESTART: self._redis_restart,
            Kind.MONGO_RESTART: self._mongo_restart,
            Kind.NEW_MAIL: self._new_mail,
            Kind.UIDVALIDITY: self._uidvalidity,
        }[kind]
        target, effect = action()
        self.injections.append(Injection(kind, time.time(), target, effect))

    def finish(self) -> None:
        """Wait for slow windows still open."""
        for thread in self._threads:
            thread.join()

    # -- Gmail --------------------------------------------------------------------------

    def _fetch_fault(self, kind: FaultKind, after_bytes: int | None = None) -> Fault:
        # New mail makes at least two UID FETCHes (metadata, then the parts): fire on either.
        return Fault(
            kind,
            commands=frozenset({"UID FETCH"}),
            after_commands=self.rng.randint(0, 1),
            after_bytes=after_bytes,
            times=1,
        )

    def _gmail(self, fault: Fault) -> Outcome:
        account = self._account()
        account.fake.faults.add(fault)  # before the mail, so the crawl that fetches it meets it
        self.armed.append((account, fault))
        self._deliver(account)
        return account.user_uuid, lambda: fault not in account.fake.faults.active()

    def _truncated(self) -> Outcome:
        # Cut inside the first UID FETCH answer: the metadata, or the parts right after it.
        fault = Fault(
            FaultKind.DISCONNECT,
            commands=frozenset({"UID FETCH"}),
            after_bytes=self.rng.randint(100, 2_000),
            times=1,
        )
        return self._gmail(fault)

    def _too_many_connections(self) -> Outcome:
        account = self._account()
        fault = Fault(FaultKind.TOO_MANY_CONNECTIONS, times=1, challenge=self.rng.random() < 0.5)
        account.fake.faults.add(fault)
        self.armed.append((account, fault))
        return account.user_uuid, lambda: fault not in account.fake.faults.active()

    def _reset(self) -> Outcome:
        account = self._account()
        self._deliver(account)
        reset = self.deployment.network().reset_next(account.email, self.rng.randint(3, 12))
        return account.user_uuid, reset.done.is_set

    def _slow(self) -> Outcome:
        account = self._account()
        self._deliver(account)
        proxy = self.deployment.network()
        stall = proxy.stall(account.email, SLOW_DELAY, SLOW_WINDOW)
        thread = threading.Thread(target=self._end_stall, args=(account.email, stall), daemon=True)
        thread.start()
        self._threads.append(thread)
        return account.user_uuid, stall.met.is_set

    def _drip(self) -> Outcome:
        # A byte every 20 ms, far within the socket timeout: only the command's deadline
        # (CRAWLER_IMAP_MIN_RATE) ends the crawl, and its lease must hold meanwhile.
        account = self._account()
        self._deliver(account)
        proxy = self.deployment.network()
        drip = proxy.drip(account.email, DRIP_INTERVAL)
        ending = threading.Timer(DRIP_WINDOW, proxy.undrip, args=(account.email,))
        ending.start()
        self._threads.append(ending)
        return account.user_uuid, drip.met.is_set

    def _flood(self) -> Outcome:
        # Lines or literals nobody asked for, before the account's next answer.
        account = self._account()
        self._deliver(account)
        kind = self.rng.choice(["lines", "literals"])
        flood = self.deployment.network().flood(account.email, kind, FLOOD_SIZE)
        return account.user_uuid, flood.done.is_set

    def _end_stall(self, email: str, stall: Stall) -> None:
        # Only answers that leave within the window are held: the LOGOUT that follows a
        # timeout is answered after it, so every session ends (on both sides) before the
        # crawler reconnects.
        if stall.met.wait(SLOW_WAIT):
            time.sleep(SLOW_WINDOW + SLOW_DELAY)
        self.deployment.network().unstall(email)

    def _daily_limit(self) -> Outcome:
        # Earlier today the account downloaded all but half a download command's budget of the
        # crawler's limit: its next crawl must stop before a batch. Gmail's own limit is twice
        # the crawler's, as in production, and it counted the same bytes. The account is one not
        # crawling nor due in the next second, so that no crawl began with an older count.
        account = self._resting() or self._account()
        limit = int(SETTINGS["CRAWLER_DAILY_DOWNLOAD_LIMIT"])
        used = limit - int(SETTINGS["CRAWLER_DOWNLOAD_BUDGET"]) // 2
        since = time.time()
        StatusBook(self.deployment.db).downloaded(
            account.user_uuid, (daily.hour_of(since), used, ())
        )
        account.fake.quota.limit = 2 * limit
        account.fake.quota.spend(used)
        fresh = fresh_message(self.rng, account.email)  # with attachments, for a batch to stop
        self.deployment.truth.deliver_new(account.fake, account.user_uuid, fresh)
        met = threading.Event()
        day = self.rng.uniform(*DAY)
        thread = threading.Thread(
            target=self._pass_the_day, args=(account, since, day, met), daemon=True
        )
        thread.start()
        self._threads.append(thread)
        return account.user_uuid, met.is_set

    def _resting(self) -> ChaosAccount | None:
        query = {"state": {"$ne": "crawling"}, "next_crawl_at": {"$gt": time.time() + 1.0}}
        try:
            found = self.deployment.db.crawl_status.find(query, {"user_uuid": 1})
            resting = {d["user_uuid"] for d in found}
        except PyMongoError:  # MongoDB restarting: any account will do
            return None
        candidates = [a for a in self.deployment.crawlable() if a.user_uuid in resting]
        return self.rng.choice(candidates) if candidates else None

    def _pass_the_day(
        self, account: ChaosAccount, since: float, day: float, met: threading.Event
    ) -> None:
        """Once a crawl of the account stopped at the daily limit (or the wait is over), wait
        `day` seconds, then end its backoff as the day passing would: the count forgotten, the
        account due at once. When that was is kept for the checks."""
        statuses = StatusBook(self.deployment.db)
        deadline = time.monotonic() + DAILY_WAIT
        while time.monotonic() < deadline and not met.is_set():
            with contextlib.suppress(PyMongoError):  # MongoDB restarting: ask again
                status = statuses.of(account.user_uuid) or {}
                if _stopped_at_the_daily_limit(status, since):
                    met.set()
            time.sleep(0.1)
        time.sleep(day)
        self.days_passed.setdefault(account.user_uuid, []).append(time.time())
        for _ in range(50):  # through a MongoDB restart
            try:
                statuses.download_forgotten(account.user_uuid)
                statuses.crawl_now(account.user_uuid, time.time())
                return
            except PyMongoError:
                time.sleep(0.2)

    # -- tokens -------------------------------------------------------------------------

    def _token_expired(self) -> Outcome:
        account = self._account()
        # Gmail refuses this token, while `expires_at` says it is good for ten minutes.
        refused = tokens.issue(account.email, time.time() - 1)
        at = time.time()
        self.deployment.db.accounts.update_one(
            {"user_uuid": account.user_uuid},
            {
                "$set": {
                    "oauth.access_token": self.deployment.cipher.encrypt(refused),
                    "oauth.expires_at": time.time() + 600,
                }
            },
        )
        return account.user_uuid, lambda: _refused_login_since(account, at)

    def _token_5xx(self) -> Outcome:
        count, status = self.rng.randint(1, 3), self.rng.choice((500, 502, 503))
        oauth = self.deployment.oauth
        oauth.fail_next(count, status)
        self._failures_injected += count
        injected = self._failures_injected
        # Failures are answered in order: this one took effect once all so far were answered.
        return f"next {count}: {status}", lambda: _failures_answered(oauth) >= injected

    # -- processes and stores -----------------------------------------------------------

    def _stop_worker(self, how: signal.Signals) -> Outcome:
        fleet = self.deployment.processes()
        deadline = time.monotonic() + BUSY_WAIT
        while True:  # a worker in the middle of a crawl, if one comes along soon
            holders = self._lease_holders()
            ready = [p for p in fleet.workers() if p.name in self.live_worker_ids()]
            busy = [p for p in ready if p.name in holders.values()]
            if busy or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        if not ready:
            return "(no worker ready)", None
        victim: Proc = self.rng.choice(sorted(busy or ready, key=lambda p: p.name))
        held = sorted(user for user, holder in holders.items() if holder == victim.name)
        fleet.send(victim, how)
        at = time.time()
        kind = Kind.SIGKILL if how is signal.SIGKILL else Kind.SIGTERM
        self.disruptions.append(Disruption(kind, at, at, victim.name, held))
        if how is signal.SIGKILL:
            time.sleep(REPLACE_AFTER)
        fleet.start("worker")
        return victim.name, None

    def _redis_restart(self) -> Outcome:
        if self.redis_server is None:
            return "(not a private server)", None
        self._redis_restarts += 1
        how = signal.SIGKILL if self._redis_restarts % 2 == 0 else signal.SIGTERM
        at = time.time()
        self.redis_server.restart(how, STORE_DOWN)
        self.disruptions.append(Disruption(Kind.REDIS_RESTART, at, time.time()))
        return how.name, None

    def _mongo_restart(self) -> Outcome:
        at = time.time()
        self.deployment.restart_mongo(STORE_DOWN)
        self.disruptions.append(Disruption(Kind.MONGO_RESTART, at, time.time()))
        return "embedded", None

    # -- mailboxes ----------------------------------------------------------------------

    def _new_mail(self) -> Outcome:
        account = self._account()
        for _ in range(self.rng.randint(1, 3)):
            self._deliver(account)
        return account.user_uuid, None

    def _uidvalidity(self) -> Outcome:
        crawling = {
            d["user_uuid"]
            for d in self.deployment.db.crawl_status.find({"state": "crawling"}, {"user_uuid": 1})
        }
        candidates = [a for a in self.deployment.crawlable() if a.user_uuid in crawling]
        account = self.rng.choice(candidates) if candidates else self._account()
        account.fake.set_uidvalidity(account.fake.uidvalidity + 1)
        return account.user_uuid, None

    # -- helpers ------------------------------------------------------------------------

    def _account(self) -> ChaosAccount:
        return self.rng.choice(self.deployment.crawlable())

    def _deliver(self, account: ChaosAccount) -> None:
        truth = self.deployment.truth
        if self.rng.random() < 0.5:
            truth.deliver_corpus(account.fake, account.user_uuid, self.rng.choice(corpus()))
        else:
            truth.deliver_new(
                account.fake, account.user_uuid, fresh_message(self.rng, account.email)
            )

    def _lease_holders(self) -> dict[str, str]:
        client, prefix = self.deployment.store_redis(), self.deployment.prefix
        holders = {}
        for key in client.scan_iter(match=f"{prefix}lease:*"):
            holder = client.get(key)
            name = key.decode() if isinstance(key, bytes) else str(key)
            if holder is not None:
                user = name[len(prefix) + len("lease:") :].strip("{}")
                holders[user] = holder.decode() if isinstance(holder, bytes) else str(holder)
        return holders

    def live_worker_ids(self) -> set[str]:
        """Ids of the workers whose heartbeat is current."""
        client, keys = self.deployment.store_redis(), self.deployment.keys
        members = client.zrangebyscore(keys.workers, time.time(), "+inf")
        return {m.decode() if isinstance(m, bytes) else str(m) for m in members}


def _refused_login_since(account: ChaosAccount, at: float) -> bool:
    """Whether Gmail refused a login of the account after `at` (the swapped token met Gmail):
    a session that logged in only at its second AUTHENTICATE, or never."""
    offset = time.time() - time.monotonic()
    for session in account.fake.ledger.sessions:
        if session.started_at + offset < at - 1:
            continue
        logins = sum(1 for line in session.lines if line.split(b" ", 2)[1:2] == [b"AUTHENTICATE"])
        if logins > 1 or (logins == 1 and session.authenticated_at is None):
            return True
    return False


def _stopped_at_the_daily_limit(status: dict[str, object], since: float) -> bool:
    finished = status.get("last_finished_at")
    return (
        status.get("state") == "throttled"
        and status.get("throttle_reason") == "daily_limit"
        and isinstance(finished, float | int)
        and finished >= since
    )


def _failures_answered(oauth: FakeTokenEndpoint) -> int:
    return sum(1 for request in oauth.requests if request.status >= 500)
