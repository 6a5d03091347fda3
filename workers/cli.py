"""The `crawler` command line."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Annotated

import typer

from config import load_settings

app = typer.Typer(
    help="Find and save the attachments in many Gmail accounts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

HostOption = Annotated[str, typer.Option(help="Address to listen on (loopback by default).")]
ConfigOption = Annotated[
    Path | None, typer.Option(help="JSON file describing the fake's state.", exists=True)
]


ShardOption = Annotated[int | None, typer.Option(help="Static shard (else automatic membership).")]


MetricsOption = Annotated[
    int | None, typer.Option(help="Serve Prometheus metrics on this port (/metrics).")
]


def _metrics(port: int | None) -> None:
    if port is not None:
        from crawler.metrics import serve

        serve(port)


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")


@app.command()
def worker(
    *,
    once: Annotated[
        bool, typer.Option("--once", help="One pass; exit 1 if a crawl failed.")
    ] = False,
    burst: Annotated[bool, typer.Option("--burst", help="Run until nothing is due.")] = False,
    client_id: ShardOption = None,
    client_count: ShardOption = None,
    concurrency: Annotated[int | None, typer.Option(help="Account crawls at once.")] = None,
    metrics_port: MetricsOption = None,
) -> None:
    """Crawl this worker's shard of the accounts, pass after pass."""
    from workers.worker import Worker, connect

    _logging()
    settings = load_settings(
        client_id=client_id, client_count=client_count, concurrency=concurrency
    )
    database, redis_client = connect(settings)
    process = Worker(settings, database, redis_client)
    process.install_signal_handlers()
    raise typer.Exit(process.run(once=once, burst=burst))


@app.command()
def monitor(
    once: Annotated[bool, typer.Option("--once", help="One check, then exit.")] = False,
    metrics_port: MetricsOption = None,
) -> None:
    """Watch the crawls in Redis and make sure each one completes."""
    from workers.monitor import Monitor
    from workers.worker import connect

    _logging()
    _metrics(metrics_port)
    settings = load_settings()
    database, redis_client = connect(settings)
    process = Monitor(settings, database, redis_client)
    if once:
        process.check()
        return
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: process.stopping.set())
    process.run()


@app.command("fake-gmail")
def fake_gmail(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 1143,
    config: ConfigOption = None,
    host: HostOption = "127.0.0.1",
) -> None:
    """Run the fake Gmail IMAP server (for tests, the demo and benchmarks)."""
    from crawler.testing.fakegmail import serve

    serve(config, host=host, port=port)


@app.command("fake-oauth")
def fake_oauth(
    config: Annotated[
        Path,
        typer.Option(help="JSON file: client id and secret, grants, revoked tokens.", exists=True),
    ],
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8085,
    host: HostOption = "127.0.0.1",
) -> None:
    """Run the fake Google OAuth2 token endpoint."""
    from crawler.testing.fakeoauth import serve

    serve(host, port, config)


@app.command("embedded-mongo")
def embedded_mongo(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 27017,
    host: HostOption = "127.0.0.1",
) -> None:
    """Run the embedded MongoDB stand-in (mongomock behind MongoDB's wire protocol)."""
    from crawler.testing.embedded_mongo import serve

    serve(host=host, port=port)


@app.command()
def demo() -> None:
    """Crawl four fake Gmail accounts (one throttled, one refreshed, one revoked) end to end."""
    from workers.demo import run

    if not run():
        raise typer.Exit(1)


def main() -> None:
    """Entry point of the `crawler` executable."""
    app()
