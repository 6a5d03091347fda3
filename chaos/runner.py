"""Scenarios and the run: start everything, inject the schedule, let the fleet settle, check.

The schedule comes from the seed: every kind of fault once, in a shuffled order, then kinds
drawn by weight; targets and pauses come from the same rng. The processes' own timing is not
seeded (the operating system schedules them), so two runs with one seed inject the same faults
into the same accounts, not at the same instructions.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis
from pymongo.errors import PyMongoError
from rich.console import Console

from chaos import checks, report
from chaos.deployment import Deployment
from chaos.injector import Injector, Kind
from chaos.servers import RedisServer
from chaos.watcher import Watcher

PREFIX = "chaos:"
BLOB_STORES = {"s3": "S3 (moto)", "file": "files"}
READY_TIMEOUT = 60.0  # seconds for the first workers to heartbeat
STOP_TIMEOUT = 30.0
MAX_RECOVERY_ROWS = 15  # more disruptions than this: the summary by kind only
WEIGHTS = {
    Kind.THROTTLED: 2.0,
    Kind.OVERQUOTA: 1.5,
    Kind.TOO_MANY_CONNECTIONS: 1.5,
    Kind.BYE_SYSTEM_ERROR: 2.0,
    Kind.RESET: 2.0,
    Kind.TRUNCATED: 2.0,
    Kind.SLOW: 1.5,
    Kind.DRIP: 1.0,
    Kind.FLOOD: 1.0,
    Kind.TOKEN_EXPIRED: 1.5,
    Kind.SESSION_EXPIRED: 1.0,
    Kind.DAILY_LIMIT: 1.0,
    Kind.TOKEN_5XX: 1.5,
    Kind.SIGKILL: 1.0,
    Kind.SIGTERM: 1.0,
    Kind.REDIS_RESTART: 0.5,
    Kind.MONGO_RESTART: 0.5,
    Kind.NEW_MAIL: 3.0,
    Kind.UIDVALIDITY: 1.0,
}


@dataclass(frozen=True)
class Scenario:
    """The size of a run."""

    name: str
    accounts: int
    revoked: int
    messages: tuple[int, int]  # corpus messages per account at the start (a range)
    workers: int
    rounds: int  # faults injected
    gap: tuple[float, float]  # seconds between two faults (a range)
    settle: float  # seconds the fleet has to converge once the faults stop
    blob_store: str  # "s3" (a fake S3, moto's server) or "file"


BOUNDED = Scenario("bounded", 12, 1, (3, 6), 3, 40, (0.4, 1.2), 60.0, "s3")
LONG = Scenario("long", 30, 2, (4, 10), 4, 400, (0.4, 1.6), 120.0, "file")


@dataclass
class Result:
    """What a run found."""

    seed: int
    scenario: Scenario
    seconds: float
    violations: list[str]
    tables: str
    workdir: Path
    storage: checks.Storage
    events: checks.Events
    injected: Counter[Kind] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        """No check was violated."""
        return not self.violations


def schedule(rng: random.Random, rounds: int) -> list[Kind]:
    """Every kind once (shuffled), then kinds drawn by weight, `rounds` in all."""
    first = list(Kind)
    rng.shuffle(first)
    kinds, weights = list(WEIGHTS), list(WEIGHTS.values())
    return (first + rng.choices(kinds, weights, k=max(0, rounds - len(first))))[:rounds]


def run(scenario: Scenario, seed: int, console: Console, workdir: Path | None = None) -> Result:
    """One chaos run; its tables and violations."""
    started = time.time()
    workdir = workdir or Path(tempfile.mkdtemp(prefix=f"chaos-{scenario.name}-"))
    console.print(f"chaos: {scenario.name} run, seed {seed}, work directory {workdir}")
    redis_server = RedisServer(workdir / "redis")
    redis_server.start()
    try:
        deployment = Deployment(workdir, redis_server.url, PREFIX, scenario.blob_store)
        with deployment.running():
            steps = _Run(
                scenario,
                seed,
                console,
                deployment=deployment,
                redis_server=redis_server,
                started=started,
            )
            return steps.go()
    finally:
        redis_server.stop()


class _Run:
    """The steps of one run over a running deployment."""

    def __init__(
        self,
        scenario: Scenario,
        seed: int,
        console: Console,
        *,
        deployment: Deployment,
        redis_server: RedisServer,
        started: float,
    ) -> None:
        self.scenario, self.seed, self.console = scenario, seed, console
        self.deployment = deployment
        self.rng = random.Random(seed)  # noqa: S311  # a reproducible schedule, not secrecy
        self.injector = Injector(deployment, redis_server, self.rng)
        self.watcher = Watcher(lambda: deployment.db.crawl_status)
        self.started = started
        self.notes: list[str] = []

    def go(self) -> Result:
        scenario, fleet = self.scenario, self.deployment.processes()
        self.deployment.add_accounts(
            scenario.accounts, scenario.revoked, scenario.messages, self.rng.getrandbits(32)
        )
        self.watcher.start()
        fleet.start("monitor")
        for _ in range(scenario.workers):
            fleet.start("worker")
        self._wait(lambda: len(self.injector.live_worker_ids()) >= scenario.workers, READY_TIMEOUT)
        for kind in schedule(self.rng, scenario.rounds):
            self._pause(self.rng.uniform(*scenario.gap))
            self.injector.inject(kind)
            self._say(kind)
        self.injector.finish()
        self._say_plain("faults stopped; waiting for the fleet to settle")
        if not self._wait(self._converged, scenario.settle):
            self.notes.append(f"the fleet did not settle within {scenario.settle:.0f}s")
        fleet.stop(STOP_TIMEOUT)
        self.watcher.stop()
        return self._result()

    def _result(self) -> Result:
        deployment = self.deployment
        windows, marks, early = self.watcher.snapshot()
        storage, violations = checks.storage(deployment)
        events, missing_events = checks.events(deployment)
        violations += missing_events
        most, overlaps = checks.sessions(deployment)
        violations += checks.queues(deployment)
        violations += checks.statuses(deployment)
        violations += overlaps
        violations += checks.throttles(
            deployment, windows, self.injector.armed, self.injector.days_passed
        )
        violations += checks.schedule(early)
        violations += checks.daily_limits(self.injector.injections)
        procs = deployment.processes().procs
        violations += checks.processes(procs)
        violations += [f"the fake Gmail failed: {error!r}" for error in deployment.gmail.errors]
        violations += self.notes
        outcomes = report.crawl_outcomes(deployment.workdir / "logs")
        recoveries = report.recoveries(self.injector.disruptions, marks)
        tables = [
            report.faults_table(self.injector.injections),
            report.outcome_table(
                outcomes,
                storage,
                most,
                len(windows),
                events=events,
                refused_starts=sum(1 for p in procs if checks.refused_start(p)),
                violations=len(violations),
            ),
            report.recovery_summary(recoveries),
        ]
        if len(recoveries) <= MAX_RECOVERY_ROWS:
            tables.append(report.recovery_table(recoveries, self.started))
        scenario = self.scenario
        heading = (
            f"chaos {scenario.name}: seed {self.seed}, {scenario.accounts} accounts "
            f"({scenario.revoked} revoked), {scenario.workers} workers and a monitor, "
            f"{scenario.rounds} faults, blobs in {BLOB_STORES[scenario.blob_store]}, events on, "
            f"{time.time() - self.started:.0f}s"
        )
        return Result(
            self.seed,
            self.scenario,
            time.time() - self.started,
            violations,
            heading + "\n\n" + report.render(tables),
            deployment.workdir,
            storage,
            events,
            Counter(injection.kind for injection in self.injector.injections),
        )

    def _converged(self) -> bool:
        deployment = self.deployment
        stored = {
            (d["user_uuid"], d["gm_msgid"], d["part"])
            for d in deployment.db.attachments.find({}, {"user_uuid": 1, "gm_msgid": 1, "part": 1})
        }
        if not set(deployment.truth.expected) <= stored or checks.statuses(deployment):
            return False
        return not checks.queues(deployment)

    def _pause(self, seconds: float) -> None:
        """Sleep, restarting (as a process manager) any process that ended on its own."""
        deadline = time.monotonic() + seconds
        while True:
            self._restart_dead()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(0.1, left))

    def _wait(self, done: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._restart_dead()
            try:
                if done():
                    return True
            except (PyMongoError, redis.RedisError) as error:  # a store restarting: ask again
                self._say_plain(f"(check failed: {type(error).__name__})")
            time.sleep(0.3)
        return False

    def _restart_dead(self) -> None:
        fleet = self.deployment.processes()
        for proc in fleet.reap():
            self._say_plain(f"{proc.name} exited on its own ({proc.exit_code}): restarted")
            fleet.start(proc.role)

    def _say(self, kind: Kind) -> None:
        injection = self.injector.injections[-1]
        self._say_plain(f"{kind.value:<22} {injection.target}")

    def _say_plain(self, text: str) -> None:
        self.console.print(f"{time.time() - self.started:7.1f}s  {text}", markup=False)
