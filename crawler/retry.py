"""GroundhogDay: retry a call that failed for a transient reason, bounded, with callbacks.

The API of the `groundhogday` package, built on tenacity::

    @GroundhogDay(maximum_retries=4, sleep_time=1.7, backoff=EXPONENTIAL,
                  exception_callback="log_failure", maximum_retry_callback=report)
    def fetch(self, uid: int) -> bytes: ...

    GroundhogDay(maximum_retries=3).call(fetch, uid)  # the same, without decorating

Kept from groundhogday: `maximum_retries` counts attempts (4 attempts, 3 sleeps);
`exception_callback(error)` runs on every failure that is retried, `notification_callback(error)`
once, on the `notification_threshold`-th failure, `maximum_retry_callback(error)` after the last
one, and then the last exception is raised. A callback is a callable, or the name of a method
looked up on the call's first positional argument (`self` when a method is decorated).

Where we deliberately differ:

- Only errors that are worth another attempt are retried: `retry_on` (default
  `crawler.errors.Transient`), and never `never_retry` (default `AuthFailed`, `BadInput`,
  `Throttled`, `Interrupted`), which wins even over a `retry_on` that includes it. Such an error
  is raised at once, from the first attempt, without callbacks: it is the caller's to handle.
  groundhogday retried every `Exception`.
- EXPONENTIAL doubles: 1.7, 3.4, 6.8 s from `sleep_time=1.7`, capped at `max_sleep`.
  groundhogday squared the sleep on every retry (2.89, 8.35, 69.7 s from 1.7, and shrinking to
  nothing from a `sleep_time` under 1). LINEAR sleeps `sleep_time * attempt` (1.7, 3.4, 5.1 s),
  where groundhogday slept `sleep_time` every time.
- Jitter: each sleep loses a random share of up to `jitter` (default 0.2), as the crawler's other
  backoffs do, so calls that failed together do not retry together.
- Bounded in time as well as attempts: no attempt starts, and no sleep runs, past `max_time`
  seconds after the first attempt started (default 300).
- Callbacks named by string are looked up with `getattr` on any instance, before the first
  attempt, and a name that does not resolve fails the call at once. groundhogday searched the
  instance's members with Python 2 introspection and silently skipped a name it did not find.
- Always called with parentheses: `@GroundhogDay()`, not `@GroundhogDay`.
- No sleeping in tests: `environment="test"` on one decorator, or `set_testing(True)` for the
  whole process, turns sleeps off (attempts, callbacks and hooks run as usual).
- Hooks: each function in `on_retry` receives a frozen `RetryDetails` before every sleep.
"""

from __future__ import annotations

import enum
import functools
import inspect
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn, ParamSpec, TypeAlias, TypeVar, cast

import tenacity

from crawler.errors import AuthFailed, BadInput, Interrupted, Throttled, Transient

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

Callback: TypeAlias = Callable[[Exception], object] | str
"""A callable that receives the exception, or the name of a method of the call's instance."""
ErrorClasses: TypeAlias = type[Exception] | tuple[type[Exception], ...]

TEST_ENVIRONMENT = "test"
NEVER_RETRY: tuple[type[Exception], ...] = (AuthFailed, BadInput, Throttled, Interrupted)
"""Errors another attempt cannot fix, or must not try: a refused login, bad input, a throttle
(backing off is the iterator's job) and a shutdown."""

_RANDOM = random.Random()  # noqa: S311  # jitter needs spread, not secrecy
_TESTING = threading.Event()
# The cap is reached long before this many doublings; past about 1,000 a float overflows.
_MAX_DOUBLINGS = 64


class Backoff(enum.IntEnum):
    """How the sleep grows between attempts (the values are groundhogday's)."""

    LINEAR = 0
    EXPONENTIAL = 1


LINEAR = Backoff.LINEAR
EXPONENTIAL = Backoff.EXPONENTIAL


def set_testing(testing: bool) -> None:
    """Turn sleeps between attempts off (True) or back on (False) in this whole process."""
    if testing:
        _TESTING.set()
    else:
        _TESTING.clear()


def is_testing() -> bool:
    """Whether `set_testing(True)` is in force."""
    return _TESTING.is_set()


@dataclass(frozen=True, slots=True)
class RetryDetails:
    """What an `on_retry` hook learns about a failed attempt, before the sleep that follows it."""

    name: str  # the retried function, as module.qualname
    attempt: int  # the attempt that failed, 1 for the first
    error: Exception
    sleep: float  # seconds until the next attempt (not slept while testing)
    elapsed: float  # seconds since the first attempt started


@dataclass(frozen=True, kw_only=True)
class GroundhogDay:
    """A retry policy: decorate with `@GroundhogDay(...)`, or run one call with `.call`.

    `sleep` and `clock` are there for tests; `environment="test"` turns sleeps off.
    """

    maximum_retries: int = 4
    sleep_time: float = 1.7
    backoff: Backoff = EXPONENTIAL
    max_sleep: float = 60.0
    jitter: float = 0.2
    max_time: float = 300.0
    retry_on: ErrorClasses = (Transient,)
    never_retry: ErrorClasses = NEVER_RETRY
    exception_callback: Callback | None = None
    notification_callback: Callback | None = None
    notification_threshold: int = 3
    maximum_retry_callback: Callback | None = None
    on_retry: tuple[Callable[[RetryDetails], object], ...] = ()
    environment: str | None = None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        Backoff(self.backoff)  # a ValueError names an unknown backoff
        for valid, requirement in (
            (self.maximum_retries >= 1, "maximum_retries (attempts) must be at least 1"),
            (self.notification_threshold >= 1, "notification_threshold must be at least 1"),
            (self.sleep_time >= 0 and self.max_sleep >= 0, "sleeps cannot be negative"),
            (0 <= self.jitter < 1, "jitter is a share of the sleep: from 0 up to, not with, 1"),
            (self.max_time > 0, "max_time must be positive"),
        ):
            if not valid:
                raise ValueError(requirement)

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        """`func`, retried by this policy; its signature and return type unchanged."""
        if inspect.iscoroutinefunction(func):
            raise TypeError(f"GroundhogDay retries plain calls; {func.__qualname__} is async")

        @functools.wraps(func)
        def retried(*args: P.args, **kwargs: P.kwargs) -> R:
            return self.call(func, *args, **kwargs)

        return retried

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """`fn(*args, **kwargs)`, retried by this policy; the last error if every attempt fails."""
        return _Run(self, fn, args).retrying()(fn, *args, **kwargs)

    def retryable(self, error: BaseException) -> bool:
        """Whether `error` is worth another attempt under this policy."""
        return isinstance(error, self.retry_on) and not isinstance(error, self.never_retry)

    def backoff_after(self, failures: int) -> float:
        """The sleep after the `failures`-th failed attempt: capped, before jitter."""
        if self.backoff == Backoff.LINEAR:
            delay = self.sleep_time * failures
        else:
            delay = self.sleep_time * 2.0 ** min(failures - 1, _MAX_DOUBLINGS)
        return min(delay, self.max_sleep)

    def sleeps(self) -> bool:
        """Whether this policy really sleeps between attempts now (not while testing)."""
        return self.environment != TEST_ENVIRONMENT and not is_testing()


class _Run:
    """One call's retries: its callbacks resolved on its instance, its clock started."""

    def __init__(self, policy: GroundhogDay, fn: Callable[..., object], args: tuple[object, ...]):
        self.policy = policy
        self.name = f"{fn.__module__}.{getattr(fn, '__qualname__', repr(fn))}"
        self.exception_callback = _resolve(policy.exception_callback, args)
        self.notification_callback = _resolve(policy.notification_callback, args)
        self.maximum_retry_callback = _resolve(policy.maximum_retry_callback, args)
        self.started = policy.clock()

    def retrying(self) -> tenacity.Retrying:
        return tenacity.Retrying(
            retry=tenacity.retry_if_exception(self.policy.retryable),
            stop=self.stop,
            wait=self.wait,
            sleep=self.policy.sleep if self.policy.sleeps() else _no_sleep,
            after=self.failed,
            before_sleep=self.before_sleep,
            retry_error_callback=self.exhausted,
        )

    def elapsed(self) -> float:
        return self.policy.clock() - self.started

    def stop(self, state: tenacity.RetryCallState) -> bool:
        out_of_attempts = state.attempt_number >= self.policy.maximum_retries
        return out_of_attempts or self.elapsed() >= self.policy.max_time

    def wait(self, state: tenacity.RetryCallState) -> float:
        jittered = self.policy.backoff_after(state.attempt_number) * (
            1 - self.policy.jitter * _RANDOM.random()
        )
        # A sleep ends by the deadline, so the next attempt still starts within max_time.
        return max(0.0, min(jittered, self.policy.max_time - self.elapsed()))

    def failed(self, state: tenacity.RetryCallState) -> None:
        error = _failure(state)
        self.exception_callback(error)
        if state.attempt_number == self.policy.notification_threshold:
            self.notification_callback(error)

    def before_sleep(self, state: tenacity.RetryCallState) -> None:
        details = RetryDetails(
            name=self.name,
            attempt=state.attempt_number,
            error=_failure(state),
            # tenacity sets next_action, with the sleep it is about to take, before this hook.
            sleep=cast(tenacity.RetryAction, state.next_action).sleep,
            elapsed=self.elapsed(),
        )
        # The type and attempt only: an error's message may carry a token.
        log.warning(
            "%s failed with %s (attempt %d of %d); next attempt in %.1f s",
            details.name,
            type(details.error).__name__,
            details.attempt,
            self.policy.maximum_retries,
            details.sleep,
        )
        for hook in self.policy.on_retry:
            hook(details)

    def exhausted(self, state: tenacity.RetryCallState) -> NoReturn:
        error = _failure(state)
        self.maximum_retry_callback(error)
        raise error


def _resolve(callback: Callback | None, args: tuple[object, ...]) -> Callable[[Exception], object]:
    """The callable for `callback`: itself, a method of the call's instance, or a no-op."""
    if callback is None:
        return _ignore
    if callable(callback):
        return callback
    if not args:
        raise TypeError(f"callback {callback!r} names a method, but the call has no instance")
    method: object = getattr(args[0], callback)
    if not callable(method):
        raise TypeError(f"callback {callback!r} of {type(args[0]).__name__} is not callable")
    return cast(Callable[[Exception], object], method)


def _failure(state: tenacity.RetryCallState) -> Exception:
    # Only an attempt that raised a retryable Exception reaches the hooks that ask.
    return cast(Exception, state.outcome and state.outcome.exception())


def _ignore(error: Exception) -> None:
    """The callback that was not given."""


def _no_sleep(seconds: float) -> None:
    """Sleeping, while testing."""
