"""The metrics port of `crawler worker` and `crawler monitor` processes, as an orchestrator and
Prometheus see it: `/healthz` 200 while the loop moves and 503 once it stops, `/metrics` with the
live workers, 404 elsewhere."""

import http.client
import json
import re
import subprocess
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from standins.fakegmail import FakeGmail
from tests.e2e.test_service import Service, running_service
from tests.plugins.fakes import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture
def service(fake_gmail: FakeGmail, redis_prefix: str, tmp_path: Path) -> Iterator[Service]:
    with running_service(fake_gmail, redis_prefix, tmp_path) as deployment:
        deployment.env["CRAWLER_LOG_FORMAT"] = "json"
        yield deployment


def metrics_port(service: Service, process: subprocess.Popen[bytes]) -> int:
    """The port the process announced (`--metrics-port 0`)."""
    command = str(process.args[3])  # type: ignore[index]  # after python -c "..."
    log = service.logs / f"{command}-{service.processes.index(process)}.log"
    found: list[int] = []

    def announced() -> bool:
        assert process.poll() is None, service.output()
        for line in log.read_text().splitlines():
            if line.startswith("{") and "serving /metrics and /healthz" in line:
                found.append(int(json.loads(line)["port"]))
                return True
        return False

    eventually(announced, timeout=30)
    return found[0]


def get(port: int, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def healthz(port: int) -> tuple[int, dict[str, Any]]:
    status, body = get(port, "/healthz")
    return status, json.loads(body)


def live_workers(port: int) -> float:
    status, body = get(port, "/metrics")
    assert status == 200
    found = re.search(rb"^crawler_live_workers (\S+)$", body, re.MULTILINE)
    assert found, body
    return float(found[1])


def healthy(port: int) -> bool:
    return healthz(port)[0] == 200


def counts_both_workers(port: int) -> bool:
    return live_workers(port) == 2


def test_running_workers_and_monitor_are_healthy_and_count_the_live_workers(
    service: Service,
) -> None:
    service.add_accounts(4)
    workers = [service.start("worker", "--metrics-port", "0", worker_id=f"w{n}") for n in range(2)]
    monitor = service.start("monitor", "--metrics-port", "0")
    ports = [metrics_port(service, process) for process in [*workers, monitor]]

    for port, component in zip(ports, ["worker", "worker", "monitor"], strict=True):
        eventually(partial(healthy, port), timeout=30)
        status, body = healthz(port)
        assert (status, body["status"], body["component"]) == (200, "ok", component)
        eventually(partial(counts_both_workers, port), timeout=30)
        for path in ("/", "/other", "/metrics/", "/healthz/x"):
            assert get(port, path)[0] == 404

    eventually(service.done, timeout=60)
    assert all(healthy(port) for port in ports)  # idle, between passes: still alive
    service.stop()
    assert [process.returncode for process in [*workers, monitor]] == [0, 0, 0]


def test_a_worker_whose_crawl_stops_moving_answers_503(service: Service) -> None:
    service.add_accounts(1)
    service.gmail.account("user0@example.com").faults.latency = 20  # every command hangs 20 s
    # No progress for 1 s: the crawl is stalled; limit max(1, 1) + 1 = 2 s.
    service.env |= {
        "CRAWLER_STALL_AFTER": "1",
        "CRAWLER_HEARTBEAT_TTL": "1",
        "CRAWLER_RETRY_MAX_TIME": "1",
    }
    worker = service.start("worker", "--metrics-port", "0", worker_id="w0")
    port = metrics_port(service, worker)

    eventually(partial(healthy, port), timeout=30)  # the loop started
    eventually(lambda: healthz(port)[0] == 503, timeout=30)

    status, body = healthz(port)
    assert (status, body["component"], body["limit_s"]) == (503, "worker", 2)
    assert body["last"] == "crawl started or batch ended"
    assert re.fullmatch(
        r"last progress \(crawl started or batch ended\) \d+ s ago, limit 2 s", body["reason"]
    )
    assert service.db.crawl_status.find_one({"user_uuid": "user-0"})["state"] == "crawling"
    assert live_workers(port) == 1  # its heartbeat goes on: no sign of life for /healthz
