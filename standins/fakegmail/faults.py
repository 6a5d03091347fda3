"""Programmable failures for one account, each written with Gmail's own words (texts.py).

A `Fault` says what goes wrong and when; `Faults` holds an account's faults (thread-safe, so a
test can add one while sessions run); `FaultTracker` applies them to one session.

When a fault fires:
- Login faults (`LOGIN_OVERQUOTA`, `TOO_MANY_CONNECTIONS`, `INVALID_TOKEN`, `LOOKUP_FAILED`,
  `WEB_LOGIN`, `IMAP_DISABLED`, `IMAP_DISABLED_DOMAIN`) fire on a login whose credentials are
  right. `IMAP_DISABLED` is IMAP turned off by the user in Gmail settings, `IMAP_DISABLED_DOMAIN`
  by a Workspace administrator: Gmail's words for both are in docs/gmail-facts.md, with where
  they were seen.
- Every other fault watches the commands after login that match `commands` (all of them when
  empty). It is armed once `after_commands` matching commands went by and the session is
  `after_seconds` old; an armed fault fires at the next matching command:
  - `OVERQUOTA`, `BYE_SYSTEM_ERROR`, `SESSION_EXPIRED` send their `* BYE` and close;
    `DISCONNECT` closes without a word. With `after_bytes` they fire instead in the middle of
    a matching response once the session sent that many bytes of armed matching responses
    (cutting a FETCH literal short).
  - `SYSTEM_ERROR` answers `NO System Error (Failure)` instead of running the command.
  - `THROTTLED` appends ` [THROTTLED]` to the tagged OK after waiting `slowdown` seconds.
  - `PARTIAL_FETCH` withholds the data of `uids` from a (UID) FETCH that asks for them, sends
    the rest, then `NO Some messages could not be FETCHed (Failure)`.
Counters are per session; `times` (None: no limit) is shared by the account's sessions, so a
fault with `times=1` fires once and a reconnecting client then recovers.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Collection
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar

from pydantic import ConfigDict

from standins.fakegmail.quota import DailyQuota
from standins.fakegmail.texts import DEFAULT_WEB_LOGIN_URL


class FaultKind(StrEnum):
    """What goes wrong."""

    THROTTLED = "throttled"
    OVERQUOTA = "overquota"
    BYE_SYSTEM_ERROR = "bye_system_error"
    SESSION_EXPIRED = "session_expired"
    DISCONNECT = "disconnect"
    SYSTEM_ERROR = "system_error"
    PARTIAL_FETCH = "partial_fetch"
    LOGIN_OVERQUOTA = "login_overquota"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    INVALID_TOKEN = "invalid_token"  # noqa: S105  # the name of a fault, not a secret
    LOOKUP_FAILED = "lookup_failed"
    WEB_LOGIN = "web_login"
    IMAP_DISABLED = "imap_disabled"
    IMAP_DISABLED_DOMAIN = "imap_disabled_domain"


LOGIN_KINDS = frozenset(
    {
        FaultKind.LOGIN_OVERQUOTA,
        FaultKind.TOO_MANY_CONNECTIONS,
        FaultKind.INVALID_TOKEN,
        FaultKind.LOOKUP_FAILED,
        FaultKind.WEB_LOGIN,
        FaultKind.IMAP_DISABLED,
        FaultKind.IMAP_DISABLED_DOMAIN,
    }
)
CLOSING_KINDS = frozenset(
    {
        FaultKind.OVERQUOTA,
        FaultKind.BYE_SYSTEM_ERROR,
        FaultKind.SESSION_EXPIRED,
        FaultKind.DISCONNECT,
    }
)


@dataclass(frozen=True, eq=False)
class Fault:
    """One failure to inject; see the module docstring for when it fires.

    `commands` are names as the ledger counts them (`UID FETCH`, `EXAMINE`); `times` is how
    often it fires in all (None: every time); `url` is WEB_LOGIN's; `challenge=False` makes
    INVALID_TOKEN and TOO_MANY_CONNECTIONS answer NO at once, without the 400 challenge
    (Gmail does either).
    """

    # Config files (config.py) load faults with pydantic: a misspelt field must be an error.
    __pydantic_config__: ClassVar[ConfigDict] = ConfigDict(extra="forbid")

    kind: FaultKind
    commands: AbstractSet[str] = frozenset()
    after_commands: int = 0
    after_bytes: int | None = None
    after_seconds: float | None = None
    times: int | None = None
    uids: AbstractSet[int] = frozenset()
    slowdown: float = 0.0
    url: str = DEFAULT_WEB_LOGIN_URL
    challenge: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", FaultKind(self.kind))
        object.__setattr__(
            self, "commands", frozenset(" ".join(c.upper().split()) for c in self.commands)
        )
        object.__setattr__(self, "uids", frozenset(self.uids))
        if self.after_bytes is not None and self.kind not in CLOSING_KINDS:
            raise ValueError(
                f"after_bytes only applies to {sorted(k.value for k in CLOSING_KINDS)}"
            )
        if (self.kind is FaultKind.PARTIAL_FETCH) != bool(self.uids):
            raise ValueError("uids go with partial_fetch, and partial_fetch needs uids")

    def watches(self, command: str) -> bool:
        """Whether `command` counts towards this fault."""
        return self.kind not in LOGIN_KINDS and (not self.commands or command in self.commands)


class Faults:
    """The faults programmed for one account, plus its latency and bandwidth cap."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._remaining: dict[Fault, int | None] = {}
        self._fired: Counter[FaultKind] = Counter()
        self.latency = 0.0
        """Seconds added before the response to every command (a round trip)."""
        self.bandwidth: int | None = None
        """Bytes per second the server writes at most; None for no cap."""

    def add(self, fault: Fault) -> Fault:
        """Program `fault`; returns it (to remove it later)."""
        with self._lock:
            self._remaining[fault] = fault.times
        return fault

    def remove(self, fault: Fault) -> None:
        """Stop `fault` firing."""
        with self._lock:
            self._remaining.pop(fault, None)

    def clear(self) -> None:
        """Remove every fault and the latency and bandwidth cap; keep the fired counts."""
        with self._lock:
            self._remaining.clear()
        self.latency, self.bandwidth = 0.0, None

    def fired(self, kind: FaultKind | None = None) -> int:
        """How many times faults (of `kind`) fired."""
        with self._lock:
            return self._fired[kind] if kind else self._fired.total()

    def active(self) -> list[Fault]:
        """The faults that may still fire, in the order they were added."""
        with self._lock:
            return [fault for fault, left in self._remaining.items() if left != 0]

    def consume(self, fault: Fault) -> bool:
        """Fire `fault` once if it may still fire; False when it ran out or was removed."""
        with self._lock:
            if fault not in self._remaining or self._remaining[fault] == 0:
                return False
            left = self._remaining[fault]
            if left is not None:
                self._remaining[fault] = left - 1
            self._fired[fault.kind] += 1
            return True

    def take_login(self) -> Fault | None:
        """The login fault that fires on this login, if any."""
        for fault in self.active():
            if fault.kind in LOGIN_KINDS and self.consume(fault):
                return fault
        return None


# What an account past its daily download limit (quota.py) answers: BYE [OVERQUOTA], then the
# login's NO [ALERT] while it is locked.
DAILY_LIMIT = Fault(FaultKind.OVERQUOTA)
DAILY_LIMIT_LOGIN = Fault(FaultKind.LOGIN_OVERQUOTA)


@dataclass
class FaultTracker:
    """Applies an account's faults to one session after its login."""

    faults: Faults
    quota: DailyQuota | None = None
    started_at: float = field(default_factory=time.monotonic)
    _seen: Counter[Fault] = field(default_factory=Counter)
    _bytes: Counter[Fault] = field(default_factory=Counter)
    _command: str = ""

    def command(self, name: str) -> Fault | None:
        """A command starts: count it; the closing or SYSTEM_ERROR fault that fires now, if any."""
        self._command = name
        if self.quota is not None and self.quota.locked():
            return DAILY_LIMIT
        for fault in self.faults.active():
            if fault.watches(name):
                self._seen[fault] += 1
        for fault in self._armed():
            firing = fault.kind in CLOSING_KINDS or fault.kind is FaultKind.SYSTEM_ERROR
            if firing and fault.after_bytes is None and self.faults.consume(fault):
                return fault
        return None

    def cut(self, size: int) -> tuple[int, Fault] | None:
        """Whether a closing fault fires within the next `size` bytes: how many to send first."""
        left = self.quota.left() if self.quota is not None else None
        if self.quota is not None and left is not None and left < size:
            self.quota.spend(left)  # up to the daily limit, then Gmail's BYE [OVERQUOTA]
            self.quota.exceed()
            return left, DAILY_LIMIT
        for fault in self._armed():
            if fault.after_bytes is None:
                continue
            budget = max(fault.after_bytes - self._bytes[fault], 0)
            if budget < size and self.faults.consume(fault):
                return budget, fault
        return None

    def sent(self, size: int) -> None:
        """`size` bytes of the current command's response went out."""
        if self.quota is not None:
            self.quota.spend(size)
        for fault in self._armed():
            if fault.after_bytes is not None:
                self._bytes[fault] += size

    def throttle(self) -> Fault | None:
        """The THROTTLED fault that marks the current command's OK, if any."""
        return self._fire(FaultKind.THROTTLED)

    def withheld(self, uids: Collection[int]) -> frozenset[int]:
        """The UIDs among `uids` whose FETCH data a PARTIAL_FETCH fault withholds."""
        for fault in self._armed():
            hit = frozenset(uids) & frozenset(fault.uids)
            if fault.kind is FaultKind.PARTIAL_FETCH and hit and self.faults.consume(fault):
                return hit
        return frozenset()

    def _fire(self, kind: FaultKind) -> Fault | None:
        for fault in self._armed():
            if fault.kind is kind and self.faults.consume(fault):
                return fault
        return None

    def _armed(self) -> list[Fault]:
        age = time.monotonic() - self.started_at
        return [
            fault
            for fault in self.faults.active()
            if fault.watches(self._command)
            and self._seen[fault] > fault.after_commands
            and age >= (fault.after_seconds or 0.0)
        ]
