"""The crawler library: everything needed to crawl one Gmail account, and the stores it writes.

The crawlers, the iterator and the rule tester load when first asked for (`from crawler import
CrawlIterator`), so that a module such as `crawler.errors` loads without pymongo, redis,
imapclient or pybrake.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crawler.crawl import ImapCrawler
    from crawler.gmail_crawler import GmailCrawler
    from crawler.iterate import CrawlIterator
    from crawler.rules import RuleTester

__all__ = ["CrawlIterator", "GmailCrawler", "ImapCrawler", "RuleTester"]

# Each public name and the module it comes from, imported on first use.
_LAZY = {
    "CrawlIterator": "crawler.iterate",
    "GmailCrawler": "crawler.gmail_crawler",
    "ImapCrawler": "crawler.crawl",
    "RuleTester": "crawler.rules",
}


def __getattr__(name: str) -> object:
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups find it without coming here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
