"""Structured logs: one line per event, as key=value pairs or JSON, and never a secret.

`configure(settings)` routes every standard-library logger of the process through one
structlog formatter, so the crawler's modules keep plain `logging` calls and pass their fields
as `extra`. Each line carries a timestamp, level, logger and event; the text of every message
and exception goes through `crawler.scrub`, which filters tokens, keys and passwords.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from config import Settings
from crawler.scrub import scrub_text


def configure(settings: Settings) -> None:
    """Send the process's log records to stderr in the configured format and level."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(settings.log_format))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)


def formatter(log_format: str) -> logging.Formatter:
    """A formatter of standard-library records as JSON (`json`) or key=value pairs."""
    renderer: Processor = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if log_format == "json"
        else structlog.processors.LogfmtRenderer(key_order=["ts", "level", "logger", "event"])
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _scrub,
            renderer,
        ],
    )


def _scrub(_: WrappedLogger, __: str, event: EventDict) -> MutableMapping[str, Any]:
    return {
        key: scrub_text(value) if isinstance(value, str) else value for key, value in event.items()
    }
