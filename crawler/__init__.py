"""The crawler library: everything needed to crawl one Gmail account, and the stores it writes."""

from crawler.crawl import GmailCrawler
from crawler.iterate import CrawlIterator
from crawler.rules import RuleTester

__all__ = ["CrawlIterator", "GmailCrawler", "RuleTester"]
