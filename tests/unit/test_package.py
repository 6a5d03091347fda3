"""The `crawler` package: its public names load on first use, and `crawler.errors` loads alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import crawler
import crawler.iterate
import crawler.rules
from crawler import CrawlIterator, RuleTester

pytestmark = pytest.mark.unit

ROOT = Path(__file__).parents[2]
HEAVY = "('pymongo','redis','imapclient','pybrake')"


def test_importing_the_errors_loads_no_client_library() -> None:
    code = f"import crawler.errors, sys; print(sorted(m for m in {HEAVY} if m in sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"


def test_the_public_names_come_from_their_modules() -> None:
    assert CrawlIterator is crawler.iterate.CrawlIterator
    assert RuleTester is crawler.rules.RuleTester


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchName"):
        crawler.NoSuchName  # noqa: B018
