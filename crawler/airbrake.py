"""Exception reports to Airbrake: scrubbed of secrets, each error of an account once per window.

`configure(settings)` sets up the process-wide reporter from the AIRBRAKE_* settings, and
`report(error, context)` sends through it. Without a project id and key reporting is off: no
notifier is built, no thread started, nothing sent. The notifier sends error notices only, from
the reporting thread: pybrake's remote config, performance, query and queue stats and backlog are
all off, so it never talks to any host but AIRBRAKE_HOST. Every notice passes through
`crawler.scrub.scrub`.
`RetryWithAirbrake` retries a callable (crawler.retry's GroundhogDay) and reports the error that
is left when the retries run out.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Hashable, Mapping
from typing import Any, ParamSpec, TypeVar

import pybrake

from config import Settings
from crawler.retry import GroundhogDay
from crawler.scrub import scrub, scrub_text

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_WINDOW = 3600.0
DEFAULT_HOST = "https://api.airbrake.io"
MAX_FINGERPRINTS = 10_000  # errors remembered for the window; the oldest are forgotten first
_MAX_FINGERPRINT_MESSAGE = 500
_VARIABLE = re.compile(r"0x[0-9a-f]+|\d+", re.I)  # ids, counts, addresses: not part of an error


def fingerprint(error: BaseException, context: Mapping[str, Any]) -> tuple[str, str | None, str]:
    """What makes two reports the same error: its type, the account, the message less numbers."""
    kind = f"{type(error).__module__}.{type(error).__qualname__}"
    user_uuid = context.get("user_uuid")
    message = " ".join(_VARIABLE.sub("#", scrub_text(str(error))).split())
    return kind, None if user_uuid is None else str(user_uuid), message[:_MAX_FINGERPRINT_MESSAGE]


class OncePerWindow:
    """Lets each key through once per `window` seconds of `clock`."""

    def __init__(self, window: float, clock: Callable[[], float]) -> None:
        self.window = window
        self.clock = clock
        self._lock = threading.Lock()
        self._seen: OrderedDict[Hashable, float] = OrderedDict()  # oldest first

    def first(self, key: Hashable) -> bool:
        """True when `key` was not let through within the window; it is then let through now."""
        now = self.clock()
        with self._lock:
            while self._seen and (
                next(iter(self._seen.values())) <= now - self.window
                or len(self._seen) >= MAX_FINGERPRINTS
            ):
                self._seen.popitem(last=False)
            if key in self._seen:
                return False
            self._seen[key] = now
            return True


def build_notifier(
    *, project_id: int, project_key: str, host: str, environment: str
) -> pybrake.Notifier:
    """A pybrake notifier that sends error notices to `host` only, with no background work."""
    return pybrake.Notifier(
        project_id=project_id,
        project_key=project_key,
        host=host.rstrip("/"),
        environment=environment,
        remote_config=False,
        performance_stats=False,
        query_stats=False,
        queue_stats=False,
        backlog_enabled=False,
    )


def _merged(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """`base` updated with `extra`, mappings in both merged rather than replaced."""
    merged = dict(base)
    for key, value in extra.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = _merged(current, value)
        else:
            merged[key] = value
    return merged


def notice_context(context: Mapping[str, Any]) -> dict[str, Any]:
    """Airbrake context fields for a report's `context`: all of it, and the account as the user."""
    fields: dict[str, Any] = {"severity": "error"}
    if context.get("user_uuid") is not None:
        fields["user"] = {"id": str(context["user_uuid"])}
    return _merged(fields, context)


class Reporter:
    """Sends exceptions to Airbrake through `notifier`, or nothing when it is None.

    Each error of an account goes once per `window` seconds of `clock` (see `fingerprint`);
    `secrets` are configured values (keys, client secrets) filtered wherever they appear.
    """

    def __init__(
        self,
        notifier: pybrake.Notifier | None = None,
        *,
        window: float = DEFAULT_WINDOW,
        clock: Callable[[], float] = time.monotonic,
        secrets: Collection[str] = (),
    ) -> None:
        self.notifier = notifier
        self._window = OncePerWindow(window, clock)
        self._secrets = tuple(secrets)
        self._lock = threading.Lock()
        if notifier is not None:
            notifier.add_filter(lambda notice: scrub(notice, self._secrets))

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        window: float = DEFAULT_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> Reporter:
        """A reporter for the AIRBRAKE_* settings: one that reports nothing without id and key."""
        project_key = settings.airbrake_project_key.get_secret_value()
        if settings.airbrake_project_id is None or not project_key:
            return cls(window=window, clock=clock)
        secrets = (
            project_key,
            settings.oauth_client_secret.get_secret_value(),
            settings.secret_key.get_secret_value(),
        )
        return cls(
            build_notifier(
                project_id=settings.airbrake_project_id,
                project_key=project_key,
                host=settings.airbrake_host,
                environment=settings.airbrake_environment,
            ),
            window=window,
            clock=clock,
            secrets=secrets,
        )

    @property
    def enabled(self) -> bool:
        """Whether reports are sent at all."""
        return self.notifier is not None

    def report(self, error: BaseException, context: Mapping[str, Any]) -> str | None:
        """Send `error` with `context` (user_uuid, shard, worker...) unless sent within the window.

        Returns the notice id Airbrake gave, or None: reporting off, already reported within the
        window, or refused. A failure to report is logged and never raised: reporting one failure
        must not become another.
        """
        if self.notifier is None:
            return None
        try:
            return self._send(self.notifier, error, context)
        except Exception as failure:  # pybrake raises on some answers (a 429 without JSON)
            kind = type(error).__name__
            log.warning("Airbrake report of %s failed: %s", kind, scrub_text(repr(failure)))
            return None

    def _send(
        self, notifier: pybrake.Notifier, error: BaseException, context: Mapping[str, Any]
    ) -> str | None:
        if not self._window.first(fingerprint(error, context)):
            return None
        with self._lock:  # building a notice updates state that pybrake shares between notices
            notice = notifier.build_notice(error)
            notice["context"] = _merged(notice["context"], notice_context(context))
            sent = notifier.send_notice_sync(notice)
        if "id" not in sent:
            refusal = scrub_text(str(sent.get("error")))
            log.warning("Airbrake did not take the report of %s: %s", type(error).__name__, refusal)
            return None
        return str(sent["id"])

    def close(self) -> None:
        """Release the notifier's resources."""
        if self.notifier is not None:
            self.notifier.close()


_process_reporter = Reporter()


def configure(
    settings: Settings,
    *,
    window: float = DEFAULT_WINDOW,
    clock: Callable[[], float] = time.monotonic,
) -> Reporter:
    """Set up the process-wide reporter from the AIRBRAKE_* settings, and return it."""
    global _process_reporter  # noqa: PLW0603  # one reporter per process, set up at start-up
    _process_reporter.close()
    _process_reporter = Reporter.from_settings(settings, window=window, clock=clock)
    return _process_reporter


def current() -> Reporter:
    """The process-wide reporter (one that reports nothing until `configure`)."""
    return _process_reporter


def report(error: BaseException, context: Mapping[str, Any]) -> str | None:
    """Report `error` with `context` through the process-wide reporter; see `Reporter.report`."""
    return _process_reporter.report(error, context)


class RetryWithAirbrake:
    """A retry decorator (GroundhogDay) that reports to Airbrake when the retries run out.

    `name` and `version` go into the notice context as `notifier.name` and `version`, `url` as
    `url`, `environment_name` as `environment`. With `api_key` (the project key) and
    `project_id` it reports to that project at `host`; without them, through the process-wide
    reporter. Every other keyword argument is GroundhogDay's, but `maximum_retry_callback`:
    that is the report.
    """

    def __init__(
        self,
        *,
        name: str,
        version: str,
        url: str = "",
        environment_name: str | None = None,
        api_key: str | None = None,
        project_id: int | None = None,
        host: str = DEFAULT_HOST,
        window: float = DEFAULT_WINDOW,
        clock: Callable[[], float] = time.monotonic,
        **retry: Any,
    ) -> None:
        if bool(api_key) != (project_id is not None):
            raise ValueError("RetryWithAirbrake takes api_key and project_id together, or neither")
        if "maximum_retry_callback" in retry:
            raise TypeError("RetryWithAirbrake reports when the retries run out; it takes no other")
        self.policy = GroundhogDay(**retry)  # a bad retry argument fails here, not at the call
        self._reporter: Reporter | None = None
        if api_key and project_id is not None:
            self._reporter = Reporter(
                build_notifier(
                    project_id=project_id,
                    project_key=api_key,
                    host=host,
                    environment=environment_name or "production",
                ),
                window=window,
                clock=clock,
                secrets=(api_key,),
            )
        self.context: dict[str, Any] = {"notifier": {"name": name}, "version": version}
        if url:
            self.context["url"] = url
        if environment_name:
            self.context["environment"] = environment_name

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        """`func`, retried, with the error left after the last retry reported."""
        context = {**self.context, "action": f"{func.__module__}.{func.__qualname__}"}

        def exhausted(error: BaseException) -> None:
            (self._reporter or current()).report(error, context)

        return dataclasses.replace(self.policy, maximum_retry_callback=exhausted)(func)
