"""`crawler demo`: the crawler on an embedded default, start to finish, in a few seconds.

Everything runs in this one process: a fake Gmail holding mailboxes
filled from the fixture corpus, the fake token endpoint, the fake Admin SDK Directory API, the
embedded MongoDB stand-in, two real `Worker`s on static shards 0/2 and 1/2, and a real `Monitor`
checking every second. Redis is the one on CRAWLER_REDIS_URL, under a key prefix of the demo's
own that is deleted at the end; when nothing answers there, the demo says so in one line and runs
on the embedded Redis stand-in (fakeredis, with Lua for the crawler's scripts) instead.

Four accounts have a refresh token: one ordinary, one that Gmail throttles midway, one whose
access token has expired and is refreshed from the fake token endpoint, one whose grant was
revoked. The others are the users of a Google Workspace domain, corp.example, crawled through
domain-wide delegation: the fake token endpoint makes its service account, the domain's
administrator grants it the mail and directory scopes, and the fake directory lists three users,
one of them suspended. The domain is set up as the operator commands do it (their functions, on
the demo's stores and fakes): `crawler domains add` checks the service account's key with the fake
token endpoint and stores it, and `crawler domains sync` adds the directory's two active users as
`g_apps_oauth` accounts with a rule, skipping the suspended one. The workers crawl those two with
access tokens minted from the domain's key: no refresh token is stored or asked for.

A progress bar per account follows `crawl_status` and the account's UID queue while the workers
crawl. The clock the crawler sees is simulated: when nothing is left to crawl, it jumps to the end
of the next backoff, so the throttled account's five-minute backoff passes at once. The fake
Gmail waits a few milliseconds before each answer, so that the bars move at a visible pace. The
attachments go to var/demo/blobs, or to the S3 bucket that CRAWLER_BLOB_STORE=s3 configures. At
the end a table shows how each account ended and where the attachments are, and the event stream
is tailed; the exit code is 0 when every account ended as its story says.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import redis
from cryptography.fernet import Fernet
from redis.exceptions import RedisClusterException
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from config import Settings, load_settings
from crawler.delegation import DIRECTORY_SCOPE, JWT_BEARER, ServiceAccountKey
from crawler.errors import ConfigError, CrawlerError
from crawler.iterate import PassResult
from crawler.keys import Keys
from crawler.oauth import IMAP_SCOPE, TokenCipher
from crawler.redis_url import redis_from_url
from crawler.store.admin import AdminStore
from crawler.store.status import Document
from standins import tokens
from standins.embedded_mongo import EmbeddedMongo
from standins.embedded_redis import EmbeddedRedis
from standins.fakedirectory import FakeDirectory
from standins.fakegmail import FakeGmail, Fault, FaultKind
from standins.fakeoauth import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, FakeTokenEndpoint
from workers.admin_context import Operator
from workers.admin_domains import store_key, sync_domain
from workers.admin_events import event_lines
from workers.admin_rules import RuleOptions
from workers.connections import mongo_client, redis_client, where
from workers.monitor import Check, Monitor
from workers.worker import Worker

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "messages"
BLOB_DIR = Path("var/demo/blobs")
DATABASE = "demo"
DOMAIN = "corp.example"  # the Workspace domain crawled through domain-wide delegation
SHARDS = 2
MAX_PASSES = 10
GMAIL_LATENCY = 0.01  # seconds before each answer of the fake Gmail
REFRESH_EVERY = 0.1  # seconds between progress updates while the workers crawl
TAIL_EVENTS = 3  # events the demo prints at the end
PIPE_WIDTH = 160  # columns of the output when it is not a terminal (a log, CI)
REDIS_PROBE_TIMEOUT = 1.0  # seconds to wait for the Redis of CRAWLER_REDIS_URL to answer
TABLE_COLUMNS = (
    "account",
    "story",
    "provider",
    "refresh\ntoken",
    "state",
    "attachments\nsaved",
    "bytes",
    "IMAP\ncommands",
    "token\nrequests",
    "throttled",
)


@dataclass(frozen=True)
class Ending:
    """How an account ended, as the table shows it."""

    state: str | None  # None: there is no account (the sync skipped the user)
    provider: str | None
    refresh_token: bool  # whether the account holds one
    auth_revoked: bool
    throttled: bool
    token_requests: int  # of the crawl: refreshes, or assertions of the domain's service account
    attachments: int

    def shown_refresh_token(self) -> str:
        """Whether the account holds a refresh token, in the table's words."""
        if self.provider is None:
            return "-"
        return "stored" if self.refresh_token else "none"


@dataclass(frozen=True)
class DemoAccount:
    """One account of the demo and what happens to it.

    An account with a refresh token is added by the demo as user_uuid `name`; a user of DOMAIN
    (`delegated`) is added by `crawler domains sync`, which names its user_uuid.
    """

    name: str
    story: str
    token_ttl: float = 3600.0  # seconds the stored access token has left (negative: expired)
    revoked: bool = False
    throttled: bool = False
    delegated: bool = False  # a user of DOMAIN: synced from its directory, no refresh token
    admin: bool = False  # DOMAIN's administrator, as whom `crawler domains sync` reads
    suspended: bool = False  # suspended in DOMAIN's directory: the sync skips the user

    @property
    def email(self) -> str:
        """The account's address: in DOMAIN for a user of the domain."""
        return f"{self.name}@{DOMAIN if self.delegated else 'example.com'}"

    @property
    def refresh_token(self) -> str | None:
        """The account's refresh token, as the fake token endpoint knows it; None for a user
        of DOMAIN, whose tokens the domain's service account mints."""
        return None if self.delegated else f"1//demo-{self.name}"

    def expected(self) -> Ending:
        """How the account ends if its story holds."""
        if self.suspended:
            return Ending(None, None, False, False, False, 0, 0)
        return Ending(
            state="auth_failed" if self.revoked else "idle",
            provider="g_apps_oauth" if self.delegated else "gmail_oauth",
            refresh_token=not self.delegated,
            auth_revoked=self.revoked,
            throttled=self.throttled,
            # an expired token is refreshed (or refused) once; a user of DOMAIN gets one token
            token_requests=1 if self.delegated or self.token_ttl < 0 else 0,
            attachments=0 if self.revoked else corpus_attachments(),
        )


ACCOUNTS = (
    DemoAccount("alice", "crawled"),
    DemoAccount("bob", "throttled midway, resumed", throttled=True),
    DemoAccount("carol", "token expired, refreshed", token_ttl=-60),
    DemoAccount("dave", "grant revoked", token_ttl=-60, revoked=True),
    DemoAccount("erin", "Workspace admin, synced", delegated=True, admin=True),
    DemoAccount("frank", "Workspace user, synced", delegated=True),
    DemoAccount("grace", "suspended: sync skips her", delegated=True, suspended=True),
)
DOMAIN_ADMIN = next(account.email for account in ACCOUNTS if account.admin)


class SetupFailed(CrawlerError):
    """An operator command that sets up the demo failed."""


@cache
def corpus_attachments() -> int:
    """How many attachments the corpus's sidecars list: what a full crawl saves."""
    sidecars = sorted(CORPUS.glob("*.json"))
    return sum(len(json.loads(path.read_text("utf-8"))["attachments"]) for path in sidecars)


class SimulatedClock:
    """Time as the crawler sees it; the demo moves it forward to the next backoff's end."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class RecordingMonitor(Monitor):
    """The monitor, keeping what each check it acted on did, for the summary."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.checks: list[Check] = []

    def check(self) -> Check:
        result = super().check()
        if result.acted:
            self.checks.append(result)
        return result

    def summary(self) -> str:
        """One line: what the checks found."""
        requeued = sum(sum(check.requeued.values()) for check in self.checks)
        dead = sum(check.dead_workers for check in self.checks)
        stalled = sum(len(check.stalled) for check in self.checks)
        return (
            f"Monitor: {len(self.checks)} checks; {requeued} abandoned UIDs requeued, "
            f"{dead} dead workers, {stalled} stalled crawls."
        )


def run(console: Console | None = None) -> bool:
    """Run the demo; True when every account ended as its story says."""
    console = console or _console()
    try:
        with _world(console) as world:
            _crawl(world, console)
            _report(world, console)
            return world.as_expected()
    except (ConfigError, SetupFailed) as error:  # Redis is missing or unusable; a setup failed
        console.print(f"demo: {error}", style="red", markup=False)
        return False


def _console() -> Console:
    """The terminal as it is; elsewhere, wide enough that the table's rows do not wrap."""
    console = Console()
    return console if console.is_terminal else Console(width=max(console.width, PIPE_WIDTH))


def _crawl(world: _World, console: Console) -> None:
    """Pass after pass of both workers, with the bars, until no backoff is left to wait for."""
    progress = Progress(
        TextColumn("{task.description:<18}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("messages, {task.fields[attachments]:>3} attachments"),
        TextColumn("{task.fields[state]}"),
        console=console,
    )
    with progress, _running(world.monitor):
        bars = _Bars(progress, world)
        for _ in range(MAX_PASSES):
            started = world.clock.now
            results = world.crawl_pass(bars.refresh)
            bars.refresh()
            for line in _pass_lines(started, results):
                progress.console.print(line)
            woken = world.advance()
            if woken is None:
                return
            progress.console.print(
                f"The simulated clock jumps to {_clock_time(woken)}, when the backoff ends."
            )


def _report(world: _World, console: Console) -> None:
    console.print(world.table())
    console.print(world.monitor.summary())
    console.print(
        f"Attachments: {world.blob_count()} distinct files (content-addressed by sha256) in "
        f"{_blobs_place(world.settings)}; their records were in the embedded MongoDB.",
        markup=False,
    )
    _tail_events(world, console)
    console.print(
        "The crawler's clock was simulated: backoffs passed at once. "
        f"The fake Gmail waited {GMAIL_LATENCY * 1000:.0f} ms before each answer."
    )


def _blobs_place(settings: Settings) -> str:
    """Where the demo's blobs went: the S3 bucket configured, or its directory."""
    if settings.blob_store == "s3":
        return f"s3://{settings.s3_bucket}/{settings.s3_prefix} at {settings.s3_endpoint_url}"
    return str(settings.blob_dir.resolve())


def _tail_events(world: _World, console: Console) -> None:
    """How many events the crawl sent, and the last ones, as `crawler events tail` prints them."""
    stream = world.keys.events
    entries: Any = world.redis.xrange(stream)
    kinds = Counter(fields[b"type"].decode() for _, fields in entries)
    console.print(
        f"Events: {kinds['attachment']} attachment events and {kinds['crawl']} crawl events on "
        f"the Redis Stream {stream}; the last {TAIL_EVENTS}, as `crawler events tail` prints "
        "them:",
        markup=False,
        highlight=False,
    )
    for line in event_lines(entries[-TAIL_EVENTS:]):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


@contextmanager
def _running(monitor: Monitor) -> Iterator[None]:
    """The monitor's own loop, in a thread, while the block runs."""
    thread = threading.Thread(target=monitor.run, name="demo-monitor", daemon=True)
    thread.start()
    try:
        yield
    finally:
        monitor.stopping.set()
        thread.join()


class _World:
    """The fakes, the stores, the workers and the monitor of one demo."""

    def __init__(
        self,
        gmail: FakeGmail,
        oauth: FakeTokenEndpoint,
        directory: FakeDirectory,
        mongo: EmbeddedMongo,
        console: Console,
        *,
        redis_url: str | None,
    ) -> None:
        self.gmail, self.oauth = gmail, oauth
        self.clock = SimulatedClock()
        oauth.clock = self.clock  # Google checks an assertion's times on the crawler's clock
        self.settings = _settings(gmail, oauth, directory, mongo, redis_url)
        self.keys = Keys(self.settings.redis_prefix)
        self.redis = redis_client(self.settings.redis_url)
        self.mongo = mongo_client(mongo.uri)
        self.store = AdminStore(self.mongo[DATABASE])
        self.cipher = TokenCipher(self.settings.secret_key.get_secret_value())
        for account in ACCOUNTS:
            self._add(account)
        self._add_domain(console)
        self.user_uuids = {
            str(account["email"]): str(account["user_uuid"])
            for account in self.store.accounts.find({}, {"email": 1, "user_uuid": 1})
        }
        self.setup_requests = len(oauth.requests)  # token requests before the crawl
        self.workers = [self._worker(shard) for shard in range(SHARDS)]
        self.monitor = RecordingMonitor(
            self.settings, self.store.db, self.redis, monitor_id="demo-monitor", clock=self.clock
        )

    def _worker(self, shard: int) -> Worker:
        shard_settings = self.settings.model_copy(
            update={"worker_id": f"demo-worker-{shard}", "client_id": shard, "client_count": SHARDS}
        )
        return Worker(shard_settings, self.store.db, self.redis, clock=self.clock)

    def _add(self, account: DemoAccount) -> None:
        """The account's mailbox, filled from the corpus; and, but for a user of DOMAIN (the
        sync adds those), the account with its refresh token, and a rule."""
        fake = self.gmail.add_account(account.email)
        fake.faults.latency = GMAIL_LATENCY
        for path in sorted(CORPUS.glob("*.eml")):
            fake.add_message(path.read_bytes(), labels=["\\Inbox"])
        if account.throttled:  # [THROTTLED] about halfway through the corpus's UID FETCHes
            fake.faults.add(
                Fault(FaultKind.THROTTLED, commands={"UID FETCH"}, after_commands=15, times=1)
            )
        if account.refresh_token is None:
            self.oauth.add_domain_user(
                account.email, is_admin=account.admin, suspended=account.suspended
            )
            return
        self.oauth.add_grant(account.refresh_token, account.email)
        if account.revoked:
            self.oauth.revoke(account.refresh_token)
        expires_at = self.clock.now + account.token_ttl
        self.store.add_account(
            tokens.gmail_account(
                self.cipher, account.name, account.email, account.refresh_token, expires_at
            )
        )
        self.store.add_rule({"user_uuid": account.name})

    def _add_domain(self, console: Console) -> None:
        """DOMAIN's service account, made by the fake token endpoint and granted the delegation
        by the domain's administrator; its key stored and checked, and its directory synced,
        as `crawler domains add` and `crawler domains sync` do."""
        key_file = self.oauth.new_service_account(project_id="crawler-demo")
        self.oauth.delegate(DOMAIN, key_file["client_id"], [IMAP_SCOPE, DIRECTORY_SCOPE])
        key = ServiceAccountKey.parse(json.dumps(key_file).encode())
        ops = Operator(self.settings)
        try:
            say = f"$ crawler domains add {DOMAIN} --service-account-file key.json --admin"
            console.print(f"{say} {DOMAIN_ADMIN}", style="bold", markup=False)
            refused = store_key(ops, DOMAIN, key, DOMAIN_ADMIN, DOMAIN_ADMIN)
            if refused is not None:
                raise SetupFailed(refused.message)
            console.print(f"stored the service account {key.client_email}", markup=False)
            console.print(f"$ crawler domains sync {DOMAIN}", style="bold", markup=False)
            for line in sync_domain(ops, DOMAIN, RuleOptions(), prune=False).lines():
                console.print(line, markup=False, highlight=False)
        except CrawlerError as error:
            raise SetupFailed(f"the Workspace domain {DOMAIN}: {error}") from None
        finally:
            ops.close()

    def crawl_pass(self, while_crawling: Callable[[], None]) -> list[tuple[Worker, PassResult]]:
        """One pass of every worker, at once; `while_crawling` is called as they go."""
        with ThreadPoolExecutor(len(self.workers), thread_name_prefix="demo-worker") as pool:
            passes = [pool.submit(worker.run_pass) for worker in self.workers]
            while wait(passes, timeout=REFRESH_EVERY).not_done:
                while_crawling()
            results = [done.result() for done in passes]
        return list(zip(self.workers, results, strict=True))

    def advance(self) -> float | None:
        """Jump to the end of the next backoff; None when nothing is left to wait for."""
        waiting = [
            float(status["next_crawl_at"])
            for status in self.store.statuses.collection.find(
                {"state": {"$in": ["throttled", "error"]}}
            )
            if status.get("next_crawl_at") is not None
        ]
        if not waiting:
            return None
        woken = max(self.clock.now, min(waiting)) + 1
        for worker in self.workers:  # a waiting worker keeps heartbeating (Worker.pause)
            worker.membership.heartbeat(woken)
        self.clock.now = woken
        return woken

    def statuses(self) -> dict[str, Document]:
        """Every account's `crawl_status`, by user_uuid."""
        return {
            str(status["user_uuid"]): status for status in self.store.statuses.collection.find({})
        }

    def remaining(self, user_uuid: str) -> int:
        """UIDs of the account still queued or in flight."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.llen(self.keys.uids(user_uuid))
            pipe.scard(self.keys.inflight(user_uuid))
            queued, inflight = pipe.execute()
        return int(queued) + int(inflight)

    def imap_commands(self, account: DemoAccount) -> int:
        """Commands the fake Gmail received for the account."""
        return sum(self.gmail.account(account.email).ledger.commands.values())

    def token_requests(self, account: DemoAccount) -> int:
        """The account's refreshes; or, for a user of DOMAIN, the assertions the crawl made
        for it (not those of the operator commands before it)."""
        if account.refresh_token is not None:
            return self.oauth.refresh_count(account.refresh_token)
        crawl = self.oauth.requests[self.setup_requests :]
        return sum(1 for r in crawl if r.grant_type == JWT_BEARER and r.subject == account.email)

    def crawled(self) -> list[tuple[DemoAccount, str]]:
        """The accounts there are (a user the sync skipped has none), with their user_uuids."""
        return [
            (account, self.user_uuids[account.email])
            for account in ACCOUNTS
            if account.email in self.user_uuids
        ]

    def ending(self, account: DemoAccount, statuses: Mapping[str, Document]) -> Ending:
        """How the account ended."""
        user_uuid = self.user_uuids.get(account.email)
        stored = self.store.account(user_uuid) if user_uuid is not None else None
        if stored is None:
            return Ending(None, None, False, False, False, self.token_requests(account), 0)
        status = statuses.get(str(user_uuid), {})
        return Ending(
            state=status.get("state"),
            provider=stored.get("provider"),
            refresh_token=bool((stored.get("oauth") or {}).get("refresh_token")),
            auth_revoked=bool(status.get("auth_revoked")),
            throttled=bool(status.get("throttle_backoff_timestamp")),
            token_requests=self.token_requests(account),
            attachments=int((status.get("totals") or {}).get("attachments", 0)),
        )

    def blob_count(self) -> int:
        """Distinct blobs the attachments of this demo are stored in."""
        return len(self.store.attachments.distinct("blob"))

    def table(self) -> Table:
        """How each account ended."""
        table = Table(title="Demo: how each account ended (the clock was simulated)")
        for column in TABLE_COLUMNS:
            table.add_column(column, no_wrap=column == "account")
        statuses = self.statuses()
        for account in ACCOUNTS:
            ending = self.ending(account, statuses)
            status = statuses.get(self.user_uuids.get(account.email, ""), {})
            totals = status.get("totals") or {}
            table.add_row(
                account.email,
                account.story,
                ending.provider or "-",
                ending.shown_refresh_token(),
                ending.state or "no account",
                str(ending.attachments),
                str(totals.get("bytes", 0)),
                str(self.imap_commands(account)),
                str(ending.token_requests),
                throttled_cell(status),
            )
        return table

    def as_expected(self) -> bool:
        """Whether every account ended as its story says."""
        statuses = self.statuses()
        return all(self.ending(account, statuses) == account.expected() for account in ACCOUNTS)

    def close(self) -> None:
        """Delete the demo's Redis keys (only its own prefix) and close the clients."""
        keys = list(self.redis.scan_iter(match=f"{self.settings.redis_prefix}*"))
        if keys:
            self.redis.delete(*keys)
        self.redis.close()
        self.mongo.close()


class _Bars:
    """A progress bar per account, from `crawl_status` and the account's UID queue."""

    def __init__(self, progress: Progress, world: _World) -> None:
        self.progress, self.world = progress, world
        self.tasks = {
            user_uuid: progress.add_task(
                account.email, total=None, attachments=0, state="waiting for a worker"
            )
            for account, user_uuid in world.crawled()
        }

    def refresh(self) -> None:
        """Bring every bar up to date."""
        statuses = self.world.statuses()
        for user_uuid, task in self.tasks.items():
            status = statuses.get(user_uuid, {})
            totals = status.get("totals") or {}
            done = int(totals.get("messages", 0))
            total = done + self.world.remaining(user_uuid)
            known = total or status.get("last_finished_at") is not None
            self.progress.update(
                task,
                completed=done,
                total=total if known else None,  # None: unknown until the search has run
                attachments=int(totals.get("attachments", 0)),
                state=_describe(status),
            )


def _describe(status: Mapping[str, Any]) -> str:
    """What a bar says about its account."""
    state = status.get("state")
    until = status.get("throttle_backoff_timestamp") or 0
    if status.get("last_started_at") is None:
        return "waiting for a worker"
    if state == "crawling":
        return f"crawling on {status.get('worker')}"
    if state == "throttled":
        return f"throttled until {_clock_time(until)}"
    if state == "auth_failed" and status.get("auth_revoked"):
        return "auth_failed: grant revoked"
    if state == "idle" and until:
        return f"idle, resumed after a throttle until {_clock_time(until)}"
    return str(state)


def throttled_cell(status: Mapping[str, Any]) -> str:
    """The table's `throttled` cell: until when, while the account is throttled; that it was,
    and until when, once it is not (its last backoff is kept); "-" if it never was."""
    until = status.get("throttle_backoff_timestamp") or 0
    if not until:
        return "-"
    if status.get("state") == "throttled":
        return f"until {_clock_time(until)}"
    return f"was, until {_clock_time(until)}"


def _pass_lines(started: float, results: list[tuple[Worker, PassResult]]) -> Iterator[str]:
    """A line per worker of a pass: its shard and how each account it crawled ended."""
    for worker, result in results:
        shard = f"{worker.settings.client_id}/{worker.settings.client_count}"
        crawled = ", ".join(f"{user} {state}" for user, state in sorted(result.outcomes.items()))
        crawled = crawled or "nothing due"
        yield f"{_clock_time(started)} {worker.worker_id} (shard {shard}): {crawled}"


def _clock_time(timestamp: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(timestamp))


def _settings(
    gmail: FakeGmail,
    oauth: FakeTokenEndpoint,
    directory: FakeDirectory,
    mongo: EmbeddedMongo,
    redis_url: str | None,
) -> Settings:
    settings = load_settings(
        redis_url=redis_url,  # None: the one CRAWLER_REDIS_URL names
        mongodb_url=f"{mongo.uri}/{DATABASE}",
        imap_host="127.0.0.1",
        imap_port=gmail.port,
        imap_tls=False,
        oauth_token_url=oauth.url,
        oauth_client_id=DEFAULT_CLIENT_ID,
        oauth_client_secret=DEFAULT_CLIENT_SECRET,
        directory_url=directory.root_url,
        secret_key=Fernet.generate_key().decode(),
        redis_prefix=f"demo:{uuid.uuid4().hex[:8]}:",
        retry_wait=0.1,
        monitor_interval=1.0,
        fetch_batch=5,  # several batches per account: the bars move, a throttle lands midway
    )
    # The S3 bucket that CRAWLER_BLOB_STORE=s3 configures (a local S3 server: MinIO,
    # `crawler fake-s3`), else files under var/demo/blobs.
    if settings.blob_store == "s3":
        return settings
    return settings.model_copy(update={"blob_store": "file", "blob_dir": BLOB_DIR})


@contextmanager
def _world(console: Console) -> Iterator[_World]:
    with ExitStack() as stack:
        redis_url = stack.enter_context(_redis(console))
        gmail = stack.enter_context(FakeGmail())
        oauth = stack.enter_context(FakeTokenEndpoint())
        directory = stack.enter_context(FakeDirectory.for_endpoint(oauth))
        mongo = stack.enter_context(EmbeddedMongo())
        world = _World(gmail, oauth, directory, mongo, console, redis_url=redis_url)
        stack.callback(world.close)
        yield world


@contextmanager
def _redis(console: Console) -> Iterator[str | None]:
    """None when a Redis answers at CRAWLER_REDIS_URL; else, saying so in one line, the URL of
    an embedded Redis (fakeredis) that runs while the block does."""
    url = load_settings().redis_url
    if redis_answers(url):
        yield None
        return
    with EmbeddedRedis() as embedded:
        console.print(
            f"No Redis answers at {where(url)} (CRAWLER_REDIS_URL): the demo runs on an "
            "embedded Redis (fakeredis) instead.",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        yield embedded.url


def redis_answers(url: str) -> bool:
    """False when nothing answers at `url`: nothing listens there, or not in time.

    Anything else (a Redis that answers with an error, a URL that is not usable) counts as an
    answer: connecting then reports it, rather than the demo hiding it behind a stand-in.
    """
    try:
        client = redis_from_url(url, REDIS_PROBE_TIMEOUT)
    except ValueError:
        return True
    except (redis.RedisError, RedisClusterException):  # a cluster client connects at once
        return False
    try:
        client.ping()
    except redis.AuthenticationError:  # a Redis that wants a password: it answered
        return True
    except (redis.ConnectionError, redis.TimeoutError):
        return False
    except redis.RedisError:
        return True
    finally:
        client.close()
    return True
