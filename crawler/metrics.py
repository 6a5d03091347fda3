"""Prometheus metrics: counters that workers bump, gauges that the monitor sets from the stores."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

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


def serve(port: int, host: str = "0.0.0.0") -> None:  # noqa: S104  # Prometheus scrapes from outside
    """Expose the metrics on http://host:port/metrics, in a daemon thread."""
    start_http_server(port, addr=host, registry=REGISTRY)
