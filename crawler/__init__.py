"""The crawler library: everything needed to crawl one Gmail account, and the stores it writes."""
