"""GroundhogDay: attempts, callbacks, what is retried, the time bound, backoff, hooks."""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import Callable, Iterator
from typing import Any, assert_type

import pytest

from crawler.errors import (
    AuthFailed,
    AuthRevoked,
    BadRule,
    Interrupted,
    OverQuota,
    PartialFetch,
    Throttled,
    Transient,
)
from crawler.retry import (
    EXPONENTIAL,
    LINEAR,
    Backoff,
    GroundhogDay,
    RetryDetails,
    is_testing,
    set_testing,
)

pytestmark = pytest.mark.unit


class FakeClock:
    """A clock that moves only when slept on, or when a test moves it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Flaky:
    """A call that raises each of `errors` in turn, then returns `value`; it records its calls."""

    def __init__(self, *errors: BaseException, value: str = "stored") -> None:
        self.errors = list(errors)
        self.value = value
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, *args: Any) -> str:
        self.calls.append(args)
        if self.errors:
            raise self.errors.pop(0)
        return self.value


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def policy(clock: FakeClock) -> Callable[..., GroundhogDay]:
    """GroundhogDay on the fake clock, without jitter unless asked."""

    def make(**options: Any) -> GroundhogDay:
        return GroundhogDay(**{"sleep": clock.sleep, "clock": clock, "jitter": 0, **options})

    return make


@pytest.fixture
def testing() -> Iterator[None]:
    set_testing(True)
    try:
        yield
    finally:
        set_testing(False)


def transients(count: int) -> list[Transient]:
    return [Transient(f"t{n}") for n in range(1, count + 1)]


# -- attempts ---------------------------------------------------------------------------------


def test_the_defaults_make_four_attempts_with_three_doubling_sleeps(clock: FakeClock) -> None:
    errors = transients(4)
    fetch = Flaky(*errors)

    with pytest.raises(Transient) as raised:
        GroundhogDay(sleep=clock.sleep, clock=clock, jitter=0).call(fetch)

    assert len(fetch.calls) == 4
    assert clock.slept == pytest.approx([1.7, 3.4, 6.8])
    assert raised.value is errors[-1]


@pytest.mark.parametrize("attempts", [1, 2, 5])
def test_maximum_retries_counts_attempts(
    policy: Callable[..., GroundhogDay], clock: FakeClock, attempts: int
) -> None:
    fetch = Flaky(*transients(10))

    with pytest.raises(Transient, match=f"^t{attempts}$"):
        policy(maximum_retries=attempts).call(fetch)

    assert len(fetch.calls) == attempts
    assert len(clock.slept) == attempts - 1


def test_success_after_failures_returns_the_value(policy: Callable[..., GroundhogDay]) -> None:
    fetch = Flaky(*transients(2), value="the attachment")

    @policy()
    def download(uid: int, *, part: str) -> str:
        return fetch(uid, part)

    assert download(7, part="2.1") == "the attachment"
    assert fetch.calls == [(7, "2.1")] * 3


def test_the_raised_exception_is_the_last_one(policy: Callable[..., GroundhogDay]) -> None:
    errors = [Transient("first"), PartialFetch("second"), Transient("third")]

    with pytest.raises(Transient) as raised:
        policy(maximum_retries=3).call(Flaky(*errors))

    assert raised.value is errors[2]


# -- callbacks --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "failures", "events", "outcome"),
    [
        pytest.param(
            {},
            4,
            [
                "exception t1",
                "exception t2",
                "exception t3",
                "notify t3",
                "exception t4",
                "maximum t4",
            ],
            "t4",
            id="every-attempt-fails",
        ),
        pytest.param({}, 1, ["exception t1"], "stored", id="second-attempt-succeeds"),
        pytest.param(
            {},
            3,
            ["exception t1", "exception t2", "exception t3", "notify t3"],
            "stored",
            id="last-attempt-succeeds",
        ),
        pytest.param({}, 0, [], "stored", id="first-attempt-succeeds"),
        pytest.param(
            {"notification_threshold": 1},
            2,
            ["exception t1", "notify t1", "exception t2"],
            "stored",
            id="notified-on-the-first-failure",
        ),
        pytest.param(
            {"notification_threshold": 5},
            4,
            ["exception t1", "exception t2", "exception t3", "exception t4", "maximum t4"],
            "t4",
            id="threshold-beyond-the-attempts",
        ),
        pytest.param(
            {"maximum_retries": 1},
            4,
            ["exception t1", "maximum t1"],
            "t1",
            id="a-single-attempt",
        ),
        pytest.param(
            {"notification_threshold": 4},
            4,
            [
                "exception t1",
                "exception t2",
                "exception t3",
                "exception t4",
                "notify t4",
                "maximum t4",
            ],
            "t4",
            id="notified-on-the-last-failure-before-the-maximum",
        ),
    ],
)
def test_callbacks_order_and_counts(
    policy: Callable[..., GroundhogDay],
    options: dict[str, Any],
    failures: int,
    events: list[str],
    outcome: str,
) -> None:
    seen: list[str] = []

    def recorder(kind: str) -> Callable[[Exception], None]:
        return lambda error: seen.append(f"{kind} {error}")

    retrying = policy(
        exception_callback=recorder("exception"),
        notification_callback=recorder("notify"),
        maximum_retry_callback=recorder("maximum"),
        **options,
    )
    try:
        result = retrying.call(Flaky(*transients(failures)))
    except Transient as error:
        result = str(error)

    assert (seen, result) == (events, outcome)


class Mailbox:
    """A class whose retried method names its callbacks, as groundhogday's users wrote them."""

    def __init__(self, *errors: Exception) -> None:
        self.fetch_attempts = Flaky(*errors)
        self.events: list[str] = []

    @GroundhogDay(
        maximum_retries=3,
        environment="test",
        exception_callback="log_failure",
        notification_callback="tell_someone",
        notification_threshold=2,
        maximum_retry_callback="give_up",
    )
    def fetch(self, uid: int) -> str:
        """Fetch one message."""
        return self.fetch_attempts(uid)

    def log_failure(self, error: Exception) -> None:
        self.events.append(f"failed: {error}")

    def tell_someone(self, error: Exception) -> None:
        self.events.append(f"notified: {error}")

    def give_up(self, error: Exception) -> None:
        self.events.append(f"gave up: {error}")


def test_callback_names_resolve_on_the_instance() -> None:
    failing, recovering = Mailbox(*transients(3)), Mailbox(Transient("t1"))

    with pytest.raises(Transient, match="t3"):
        failing.fetch(1)
    assert recovering.fetch(2) == "stored"

    assert failing.events == [
        "failed: t1",
        "failed: t2",
        "notified: t2",
        "failed: t3",
        "gave up: t3",
    ]
    assert recovering.events == ["failed: t1"]
    assert failing.fetch_attempts.calls == [(1,)] * 3


def test_a_decorated_method_keeps_its_name_doc_and_signature() -> None:
    assert Mailbox.fetch.__name__ == "fetch"
    assert Mailbox.fetch.__doc__ == "Fetch one message."
    assert list(inspect.signature(Mailbox.fetch).parameters) == ["self", "uid"]


def test_an_unknown_callback_name_fails_before_the_first_attempt(
    policy: Callable[..., GroundhogDay],
) -> None:
    fetch = Flaky(Transient("t1"))

    with pytest.raises(AttributeError, match="no_such_method"):
        policy(exception_callback="no_such_method").call(fetch, Mailbox())

    assert fetch.calls == []


@pytest.mark.parametrize(
    ("args", "message"),
    [((), "has no instance"), ((Mailbox(),), "not callable")],
    ids=["no-instance", "not-a-method"],
)
def test_a_callback_name_must_name_a_method(
    policy: Callable[..., GroundhogDay], args: tuple[object, ...], message: str
) -> None:
    fetch = Flaky()

    with pytest.raises(TypeError, match=message):
        policy(maximum_retry_callback="events").call(fetch, *args)

    assert fetch.calls == []


# -- what is retried --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        AuthFailed("AUTHENTICATIONFAILED"),
        AuthRevoked("invalid_grant"),
        BadRule("no such field"),
        Throttled("THROTTLED"),
        OverQuota("OVERQUOTA"),
        Interrupted("shutting down"),
        ValueError("a bug"),
        KeyboardInterrupt(),
    ],
    ids=type,
)
def test_errors_not_worth_another_attempt_are_raised_at_once(
    policy: Callable[..., GroundhogDay], clock: FakeClock, error: BaseException
) -> None:
    fetch = Flaky(error)
    seen: list[Exception] = []

    with pytest.raises(type(error)) as raised:
        policy(exception_callback=seen.append, maximum_retry_callback=seen.append).call(fetch)

    assert raised.value is error
    assert (len(fetch.calls), clock.slept, seen) == (1, [], [])


def test_never_retry_wins_over_a_broad_retry_on(policy: Callable[..., GroundhogDay]) -> None:
    broad = policy(retry_on=Exception)
    fetch = Flaky(ValueError("retried"), AuthFailed("not retried"))

    with pytest.raises(AuthFailed):
        broad.call(fetch)

    assert len(fetch.calls) == 2
    assert broad.retryable(OverQuota()) is False


def test_retry_on_and_never_retry_can_be_named(policy: Callable[..., GroundhogDay]) -> None:
    custom = policy(retry_on=(Transient, ConnectionError), never_retry=PartialFetch)

    assert custom.retryable(ConnectionResetError())
    assert custom.retryable(Transient())
    assert not custom.retryable(PartialFetch())
    assert custom.retryable(Throttled()) is False  # not in retry_on


# -- the time bound ---------------------------------------------------------------------------


def test_no_attempt_starts_and_no_sleep_runs_past_max_time(
    policy: Callable[..., GroundhogDay], clock: FakeClock
) -> None:
    starts: list[float] = []
    exhausted: list[Exception] = []

    def slow_fetch() -> None:
        starts.append(clock.now)
        clock.now += 50  # each attempt takes 50 s to fail
        raise Transient(f"at {starts[-1]:g}")

    retrying = policy(
        maximum_retries=100,
        backoff=LINEAR,
        sleep_time=100,
        max_sleep=1000,
        max_time=300,
        maximum_retry_callback=exhausted.append,
    )
    with pytest.raises(Transient, match="at 300"):
        retrying.call(slow_fetch)

    # The second sleep is cut from 200 s to the 100 s left before the deadline.
    assert (starts, clock.slept) == ([0, 150, 300], [100, 100])
    assert [str(error) for error in exhausted] == ["at 300"]


def test_an_attempt_longer_than_max_time_is_the_only_one(
    policy: Callable[..., GroundhogDay], clock: FakeClock
) -> None:
    def stuck_fetch() -> None:
        clock.now += 400
        raise Transient("timed out")

    with pytest.raises(Transient):
        policy(max_time=300).call(stuck_fetch)

    assert clock.slept == []


# -- backoff ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "sleeps"),
    [
        ({"backoff": LINEAR}, [1.7, 3.4, 5.1, 6.8, 8.5]),
        ({"backoff": EXPONENTIAL}, [1.7, 3.4, 6.8, 13.6, 27.2]),
        ({"backoff": EXPONENTIAL, "max_sleep": 10}, [1.7, 3.4, 6.8, 10, 10]),
        ({"backoff": LINEAR, "max_sleep": 4}, [1.7, 3.4, 4, 4, 4]),
        ({"backoff": EXPONENTIAL, "sleep_time": 0}, [0, 0, 0, 0, 0]),
        ({"backoff": 0, "sleep_time": 2}, [2, 4, 6, 8, 10]),  # groundhogday's LINEAR
    ],
    ids=["linear", "exponential", "exponential-capped", "linear-capped", "zero", "int-value"],
)
def test_backoff_sequences_without_jitter(
    policy: Callable[..., GroundhogDay],
    clock: FakeClock,
    options: dict[str, Any],
    sleeps: list[float],
) -> None:
    retrying = policy(**{"maximum_retries": 6, "sleep_time": 1.7, **options})

    with pytest.raises(Transient):
        retrying.call(Flaky(*transients(6)))

    assert clock.slept == pytest.approx(sleeps)
    assert [retrying.backoff_after(n) for n in range(1, 6)] == pytest.approx(sleeps)


def test_a_huge_attempt_count_stays_at_the_cap() -> None:
    assert GroundhogDay(max_sleep=60).backoff_after(5000) == 60


@pytest.mark.parametrize("backoff", [LINEAR, EXPONENTIAL])
def test_jitter_takes_at_most_its_share_off_each_sleep(
    policy: Callable[..., GroundhogDay], clock: FakeClock, backoff: Backoff
) -> None:
    retrying = policy(maximum_retries=5, backoff=backoff, jitter=0.25, max_sleep=5)
    for _ in range(100):
        with pytest.raises(Transient):
            retrying.call(Flaky(*transients(5)))

    per_call = [clock.slept[n : n + 4] for n in range(0, len(clock.slept), 4)]
    for n, sleeps in enumerate(zip(*per_call, strict=True), start=1):
        full = retrying.backoff_after(n)
        assert all(0.75 * full <= sleep <= full for sleep in sleeps)
        assert max(sleeps) - min(sleeps) > 0.1 * full  # spread out, not one value


# -- testing switch and hooks -----------------------------------------------------------------


def test_set_testing_turns_sleeps_off(testing: None, clock: FakeClock) -> None:
    details: list[RetryDetails] = []
    retrying = GroundhogDay(sleep=clock.sleep, jitter=0, on_retry=(details.append,))

    assert is_testing()
    with pytest.raises(Transient):
        retrying.call(Flaky(*transients(4)))

    assert clock.slept == []
    assert [detail.sleep for detail in details] == pytest.approx([1.7, 3.4, 6.8])


def test_the_test_environment_turns_sleeps_off(clock: FakeClock) -> None:
    fetch = Flaky(*transients(3))

    assert GroundhogDay(environment="test", sleep=clock.sleep).call(fetch) == "stored"

    assert (len(fetch.calls), clock.slept) == (4, [])
    assert not is_testing()


def test_on_retry_hooks_receive_a_frozen_record_before_each_sleep(
    policy: Callable[..., GroundhogDay], clock: FakeClock
) -> None:
    errors = transients(3)
    details: list[RetryDetails] = []

    raised = list(errors)

    def fetch() -> str:
        clock.now += 1  # each attempt takes a second
        if errors:
            raise errors.pop(0)
        return "stored"

    assert policy(on_retry=(details.append,), backoff=LINEAR, sleep_time=2).call(fetch) == "stored"

    assert [(d.attempt, d.error, d.sleep, d.elapsed) for d in details] == [
        (1, raised[0], 2, 1),
        (2, raised[1], 4, 4),
        (3, raised[2], 6, 9),
    ]
    assert details[0].name == f"{__name__}.{fetch.__qualname__}"
    with pytest.raises(dataclasses.FrozenInstanceError):
        details[0].sleep = 0  # type: ignore[misc]  # the record is frozen; this must fail


def test_a_retry_is_logged_without_the_error_message(
    policy: Callable[..., GroundhogDay], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="crawler.retry"):
        policy(maximum_retries=2).call(Flaky(Transient("token ya29.secret")))

    [record] = caplog.records
    assert "Transient" in record.getMessage()
    assert "attempt 1 of 2" in record.getMessage()
    assert "ya29" not in record.getMessage()


# -- the API's shape --------------------------------------------------------------------------


def test_the_decorated_function_keeps_its_types(policy: Callable[..., GroundhogDay]) -> None:
    @policy()
    def size(uid: int, *, encoded: bool = False) -> int:
        return uid * (2 if encoded else 1)

    assert_type(size(3, encoded=True), int)  # checked by mypy
    assert size(3, encoded=True) == 6
    assert policy().call(size, 4) == 4


@pytest.mark.parametrize(
    "options",
    [
        {"maximum_retries": 0},
        {"notification_threshold": 0},
        {"sleep_time": -1},
        {"max_sleep": -1},
        {"jitter": 1},
        {"jitter": -0.1},
        {"max_time": 0},
        {"backoff": 2},
    ],
    ids=str,
)
def test_an_unusable_policy_is_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        GroundhogDay(**options)


def test_async_functions_are_refused() -> None:
    async def fetch() -> None:
        """Not retried by a synchronous policy."""

    with pytest.raises(TypeError, match="async"):
        GroundhogDay()(fetch)
