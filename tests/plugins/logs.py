"""pytest fixture `log_lines`: every log record of the test's process, as the service writes it."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from crawler import logs


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Every record of the process, at DEBUG, as the JSON lines the service writes."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.formatter("json"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)
