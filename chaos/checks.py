"""The invariants a run must keep, checked once the fleet has stopped.

Each check returns the violations it found, as sentences naming the account, worker or key.
Times from the fake Gmail's ledger are monotonic; they are put on the crawler's epoch clock with
one offset, taken once (one machine, one clock).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from chaos.deployment import ChaosAccount, Deployment, Proc
from chaos.injector import Injection, Kind
from chaos.mail import Key
from chaos.watcher import EarlyStart, ThrottleWindow
from crawler.blobs import BlobStore
from crawler.keys import Keys
from standins.fakegmail import Fault, FaultKind, SessionSummary

MARGIN = 0.05  # seconds of slack between the ledger's clock and the crawler's timestamps
REASONS = {
    "throttled": FaultKind.THROTTLED,
    "over_quota": FaultKind.OVERQUOTA,
    "too_many_connections": FaultKind.TOO_MANY_CONNECTIONS,
}


@dataclass(frozen=True)
class Storage:
    """Attachments expected (ground truth) and what the attachments collection holds."""

    expected: int
    stored: int
    duplicated: int
    lost: int
    wrong: int


def storage(deployment: Deployment) -> tuple[Storage, list[str]]:
    """Every expected attachment stored exactly once, with the right bytes in its blob."""
    expected = deployment.truth.expected
    documents = list(deployment.db.attachments.find({}, {"_id": 0, "message": 0, "labels": 0}))
    counts = Counter(_key(d) for d in documents)
    violations = []
    lost = sorted(set(expected) - set(counts))
    extra = [key for key in counts if key not in expected]
    wrong = [d for d in documents if expected.get(_key(d), d.get("sha256")) != d.get("sha256")]
    duplicated = sum(n - 1 for n in counts.values()) + sum(counts[key] for key in extra)
    violations += [f"lost: {key}" for key in lost[:20]]
    violations += [f"stored but not expected: {key}" for key in extra[:20]]
    violations += [f"stored {n} times: {key}" for key, n in counts.items() if n > 1][:20]
    violations += [f"wrong sha256: {_key(d)}" for d in wrong[:20]]
    violations += _blobs(deployment.blobs(), documents)
    stored = sum(1 for key in counts if key in expected)
    return Storage(len(expected), stored, duplicated, len(lost), len(wrong)), violations


@dataclass(frozen=True)
class Events:
    """Attachment events in the stream against the records with a blob."""

    records: int  # attachment records with a blob
    seen: int  # attachment events in the stream
    missing: int  # records without an event
    duplicates: int  # events repeated (same id): allowed, delivery is at least once


def events(deployment: Deployment) -> tuple[Events, list[str]]:
    """Every stored attachment has its event, and every event a record with its sha256."""
    client, stream = deployment.store_redis(), Keys(deployment.prefix).events
    sent: dict[str, list[str]] = defaultdict(list)  # record id -> the sha256 of each event
    entries: Any = client.xrange(stream)  # a run's events: hundreds, far under the cap
    for _, fields in entries:
        if fields.get(b"type") == b"attachment":
            sent[fields[b"id"].decode()].append(fields[b"sha256"].decode())
    records = {
        str(d["_id"]): d["sha256"]
        for d in deployment.db.attachments.find({"blob": {"$ne": None}}, {"sha256": 1})
    }
    missing = sorted(set(records) - set(sent))
    violations = [f"attachment record {record} has no event" for record in missing[:20]]
    violations += [
        f"event of {record} names no record, or another sha256"
        for record, digests in sent.items()
        if any(digest != records.get(record) for digest in digests)
    ][:20]
    seen = sum(len(digests) for digests in sent.values())
    return Events(len(records), seen, len(missing), seen - len(sent)), violations


def _key(document: dict[str, Any]) -> Key:
    return (document["user_uuid"], document["gm_msgid"], document["part"])


def _blobs(blobs: BlobStore, documents: Iterable[dict[str, Any]]) -> list[str]:
    violations = []
    for document in documents:
        blob = document.get("blob")
        if not blob or not blobs.exists(blob):
            violations.append(f"no blob for {_key(document)}")
            continue
        with blobs.open(blob) as stream:
            if hashlib.sha256(stream.read()).hexdigest() != document.get("sha256"):
                violations.append(f"blob {blob} does not hold {_key(document)}")
    return violations[:20]


def queues(deployment: Deployment) -> list[str]:
    """Nothing queued or in flight once the fleet stopped, and no lease that never expires.

    A lease may outlive its crawl (its worker was killed, or its release met a Redis outage):
    its TTL ends it, so only a lease without one is wrong.
    """
    client, prefix = deployment.store_redis(), deployment.prefix
    violations = []
    for key in client.scan_iter(match=f"{prefix}*"):
        name = key.decode() if isinstance(key, bytes) else str(key)
        if name.startswith(f"{prefix}lease:"):
            if client.pttl(name) == -1:
                violations.append(f"lease without expiry: {name}")
            continue
        kind = client.type(name)
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        size = {"list": client.llen, "set": client.scard, "hash": client.hlen}.get(kind)
        if name.startswith(f"{prefix}uids:") and size is not None and size(name):
            violations.append(f"{name} still holds {size(name)} UIDs")
    return violations


def statuses(deployment: Deployment) -> list[str]:
    """Every crawlable account idle with its cursor at the top; revoked ones auth_failed."""
    violations = []
    found = {d["user_uuid"]: d for d in deployment.db.crawl_status.find({}, {"_id": 0})}
    for account in deployment.accounts:
        status = found.get(account.user_uuid)
        if status is None:
            violations.append(f"{account.user_uuid} has no crawl_status")
        elif account.revoked:
            violations += _revoked(deployment, account, status)
        else:
            violations += _crawled(account, status)
    return violations


def _crawled(account: ChaosAccount, status: dict[str, Any]) -> list[str]:
    fake = account.fake
    wanted = {
        "state": "idle",
        "uidvalidity": fake.uidvalidity,
        "last_uid": fake.uidnext - 1,
        "last_error": None,
        "consecutive_errors": 0,
        "consecutive_throttles": 0,
        "throttle_reason": None,
    }
    wrong = {
        field: status.get(field) for field, value in wanted.items() if status.get(field) != value
    }
    if status.get("failed_uids"):
        wrong["failed_uids"] = status["failed_uids"]
    return [f"{account.user_uuid} ended with {wrong} (expected {wanted})"] if wrong else []


def _revoked(deployment: Deployment, account: ChaosAccount, status: dict[str, Any]) -> list[str]:
    violations = []
    if status.get("state") != "auth_failed" or not status.get("auth_revoked"):
        violations.append(f"{account.user_uuid} (revoked) ended {status.get('state')}")
    if any(s.authenticated_at is not None for s in account.fake.ledger.sessions):
        violations.append(f"{account.user_uuid} (revoked) logged in to Gmail")
    answers = [
        r.error for r in deployment.oauth.requests if r.refresh_token == account.refresh_token
    ]
    if "invalid_grant" not in answers or answers[-1] != "invalid_grant":
        violations.append(f"{account.user_uuid} (revoked) token requests answered {answers}")
    elif answers.count("invalid_grant") > 1:
        violations.append(f"{account.user_uuid} (revoked) refreshed again after invalid_grant")
    return violations


def sessions(deployment: Deployment) -> tuple[int, list[str]]:
    """At most one session per account at any time, and never above its connection cap.

    Returns the most sessions any account had at once, and the violations.
    """
    violations, most = [], 0
    for account in deployment.accounts:
        ledger = account.fake.ledger
        if ledger.peak_connected > account.fake.max_connections:
            violations.append(f"{account.user_uuid} had {ledger.peak_connected} connections")
        spans = sorted(
            (s.authenticated_at, s.ended_at or time.monotonic(), s.session_id)
            for s in ledger.sessions
            if s.authenticated_at is not None
        )
        most = max(most, _most_at_once(spans))
        for (_, end, first), (start, _, second) in itertools.pairwise(spans):
            if start < end:
                violations.append(
                    f"{account.user_uuid}: session {second} logged in {end - start:.3f}s "
                    f"before session {first} ended"
                )
    return most, violations


def _most_at_once(spans: list[tuple[float, float, str]]) -> int:
    events = sorted([(start, 1) for start, _, _ in spans] + [(end, -1) for _, end, _ in spans])
    most = current = 0
    for _, step in events:
        current += step
        most = max(most, current)
    return most


def throttles(
    deployment: Deployment,
    windows: set[ThrottleWindow],
    armed: list[tuple[ChaosAccount, Fault]],
    days_passed: dict[str, list[float]],
) -> list[str]:
    """No command reached an account inside a backoff; every backoff answers a fault that fired
    (a daily-limit backoff: a daily limit the run brought the account to, ended when its day
    passed); Gmail never locked an account for its daily limit."""
    offset = time.time() - time.monotonic()
    by_user: dict[str, list[ThrottleWindow]] = defaultdict(list)
    for window in windows:
        by_user[window.user_uuid].append(_until_the_day_passed(window, days_passed))
    violations = []
    for account in deployment.accounts:
        mine = by_user.get(account.user_uuid, [])
        for session in account.fake.ledger.sessions:
            violations += _inside(account.user_uuid, session, mine, offset)
        violations += _explained(account, mine, armed, len(days_passed.get(account.user_uuid, [])))
        if account.fake.quota.exceeded:
            violations.append(f"{account.user_uuid} went past Gmail's daily download limit")
    return violations


def _until_the_day_passed(
    window: ThrottleWindow, days_passed: dict[str, list[float]]
) -> ThrottleWindow:
    """A daily-limit backoff lasts until its day passed, not the day the crawler waits for."""
    if window.reason != "daily_limit":
        return window
    ends = [at for at in days_passed.get(window.user_uuid, []) if at > window.start]
    return dataclasses.replace(window, end=min([window.end, *ends]))


def _inside(
    user_uuid: str, session: SessionSummary, windows: list[ThrottleWindow], offset: float
) -> list[str]:
    """One violation per backoff that this session sent commands inside."""
    found = []
    for window in windows:
        inside = [
            (at + offset, _command(line))
            for line, at in zip(session.lines, session.command_times, strict=True)
            if window.start + MARGIN < at + offset < window.end - MARGIN
        ]
        if inside:
            first_at, first = inside[0]
            found.append(
                f"{user_uuid}: session {session.session_id} sent {len(inside)} commands "
                f"(first {first}) {first_at - window.start:.2f}s into a "
                f"{window.end - window.start:.2f}s {window.reason} backoff"
            )
    return found


def _command(line: bytes) -> str:
    words = line.split(b" ", 3)[1:3]
    name = b" ".join(words[:2]) if words[:1] == [b"UID"] else b"".join(words[:1])
    return name.decode(errors="replace").strip()


def _explained(
    account: ChaosAccount,
    windows: list[ThrottleWindow],
    armed: list[tuple[ChaosAccount, Fault]],
    daily_limits: int,
) -> list[str]:
    fired: Counter[str] = Counter(
        reason
        for owner, fault in armed
        if owner is account and fault not in account.fake.faults.active()
        for reason, kind in REASONS.items()
        if fault.kind is kind
    )
    fired["daily_limit"] = daily_limits
    recorded = Counter(window.reason for window in windows)
    return [
        f"{account.user_uuid}: {count} {reason} backoffs, but {fired[reason]} faults of that "
        "kind fired"
        for reason, count in recorded.items()
        if count > fired[reason]
    ]


def daily_limits(injections: Iterable[Injection]) -> list[str]:
    """Every account brought to its daily limit stopped its next crawl there."""
    return [
        f"{injection.target}: brought to its daily download limit at {injection.at:.2f}, but no "
        "crawl stopped there"
        for injection in injections
        if injection.kind is Kind.DAILY_LIMIT and injection.effect and not injection.effect()
    ]


def schedule(early: set[EarlyStart]) -> list[str]:
    """No crawl started before its account was due (`next_crawl_at`, None: never)."""
    return [
        f"{start.user_uuid}: {start.worker} started a crawl at {start.started_at:.2f}, "
        + (
            "after auth_failed (never due)"
            if start.next_crawl_at is None
            else f"{start.next_crawl_at - start.started_at:.2f}s before it was due"
        )
        for start in sorted(early, key=lambda e: (e.user_uuid, e.started_at))
    ]


def processes(procs: list[Proc]) -> list[str]:
    """Stopped workers exited 0; no process died on its own, except one refused at its start.

    A process that starts while Redis or MongoDB is down exits 1 at once with one line naming
    the store (workers/connections.py fails fast by design); its process manager starts it
    again. A running process rides an outage out, so its exit is a violation.
    """
    violations = []
    for proc in procs:
        if proc.signalled is None and proc.exit_code is not None and not refused_start(proc):
            violations.append(f"{proc.name} exited on its own with {proc.exit_code}")
        elif proc.signalled is not None and proc.signalled.name == "SIGTERM" and proc.exit_code:
            violations.append(f"{proc.name} exited {proc.exit_code} after SIGTERM")
    return violations


def refused_start(proc: Proc) -> bool:
    """Whether the process exited at its start because a store did not answer."""
    lines = proc.log.read_text(errors="replace").strip().splitlines()
    store_down = ("cannot be used", "did not answer")
    return (
        proc.exit_code == 1
        and len(lines) == 1
        and lines[0].startswith("error: ")
        and any(words in lines[0] for words in store_down)
    )
