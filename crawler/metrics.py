"""Prometheus metrics: counters that workers bump, gauges that the monitor sets from the stores.

A worker sets `crawler_live_workers` too, at each of its heartbeats, from the membership it
reads; `workers.health` serves the registry on a process's metrics port.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

REGISTRY = CollectorRegistry()

CRAWLS = Counter(
    "crawler_crawls", "Account crawls by how they ended", ["outcome"], registry=REGISTRY
)
ATTACHMENTS = Counter("crawler_attachments_saved", "Attachments stored", registry=REGISTRY)
ATTACHMENT_BYTES = Counter(
    "crawler_attachment_bytes", "Bytes of attachments stored", registry=REGISTRY
)
ERRORS = Counter(
    "crawler_errors", "Crawls that ended in an error, by error class", ["error"], registry=REGISTRY
)
ACCOUNTS = Gauge("crawler_accounts", "Accounts by crawl_status state", ["state"], registry=REGISTRY)
THROTTLED = Gauge(
    "crawler_throttled_accounts", "Accounts backing off Gmail's throttling now", registry=REGISTRY
)
QUEUE = Gauge("crawler_queue_uids", "UIDs waiting or in flight", ["where"], registry=REGISTRY)
WORKERS = Gauge("crawler_live_workers", "Workers with a live heartbeat", registry=REGISTRY)
