"""The `crawler` command line."""

from __future__ import annotations

import importlib.util
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from config import Settings, load_settings
from crawler.oauth import TokenCipher
from workers.admin import register as register_operator_commands
from workers.admin_context import fail, operator_command
from workers.connections import connect
from workers.membership import static_shard

if TYPE_CHECKING:
    from workers.health import Liveness

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
    int | None,
    typer.Option(
        help="Serve Prometheus metrics (/metrics) and a health check (/healthz) on this port "
        "(0: any free port, logged)."
    ),
]

DISTRIBUTION = "gmail-attachment-crawler"
STANDINS_EXTRA = f"{DISTRIBUTION}[standins]"
# The stand-ins' package and what the `standins` extra installs for it (pyproject.toml): lupa is
# fakeredis's `lua` extra, which runs the crawler's scripts on the embedded Redis; flask is moto's
# `server` extra, which serves `fake-s3`.
STANDINS_MODULES = (
    "standins",
    "mongomock",
    "mockupdb",
    "sortedcontainers",
    "fakeredis",
    "lupa",
    "moto",
    "flask",
)


def _print_version(wanted: bool) -> None:
    if not wanted:
        return
    try:
        typer.echo(f"{DISTRIBUTION} {installed_version(DISTRIBUTION)}")
    except PackageNotFoundError:
        fail(f"{DISTRIBUTION} is not installed (pip install -e .): its version is unknown")
    raise typer.Exit


@app.callback()
def _options(
    *,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Find and save the attachments in many Gmail accounts."""


@contextmanager
def standins_needed(command: str) -> Iterator[None]:
    """Import a stand-in inside: without the `standins` extra, `command` ends with one line
    naming it, not a traceback."""
    # The whole extra, even for a stand-in that would run without part of it: each of these
    # commands then works, or fails, the same way.
    for name in STANDINS_MODULES:
        if importlib.util.find_spec(name) is None:
            _no_standins(command, name)
    try:
        yield
    except ModuleNotFoundError as error:
        if (error.name or "").partition(".")[0] not in STANDINS_MODULES:
            raise
        _no_standins(command, error.name or "")


def _no_standins(command: str, module: str) -> NoReturn:
    fail(
        f"crawler {command} runs on the stand-ins, which need the `standins` extra "
        f"(no module named {module}): pip install '{STANDINS_EXTRA}'"
    )


def _start(settings: Settings, metrics_port: int | None, liveness: Liveness) -> None:
    """What a service process sets up first: logs, error reports, metrics and health check."""
    from crawler import airbrake, logs

    logs.configure(settings)
    airbrake.configure(settings)
    if metrics_port is not None:
        from workers.health import serve

        serve(metrics_port, liveness)


@app.command()
@operator_command
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
    from workers.health import Liveness, worker_limit
    from workers.worker import Worker

    settings = load_settings(
        client_id=client_id, client_count=client_count, concurrency=concurrency
    )
    # Bad configuration fails here, as one line: the shard, and the key every crawl needs.
    static_shard(settings)
    TokenCipher(settings.secret_key.get_secret_value())
    liveness = Liveness("worker", worker_limit(settings))
    _start(settings, metrics_port, liveness)
    process = Worker(settings, *connect(settings), liveness=liveness)
    process.install_signal_handlers()
    raise typer.Exit(process.run(once=once, burst=burst))


@app.command()
@operator_command
def monitor(
    *,
    once: Annotated[bool, typer.Option("--once", help="One check, then exit.")] = False,
    metrics_port: MetricsOption = None,
) -> None:
    """Watch the crawls in Redis and make sure each one completes."""
    from workers.health import Liveness, monitor_limit
    from workers.monitor import Monitor

    settings = load_settings()
    liveness = Liveness("monitor", monitor_limit(settings))
    _start(settings, metrics_port, liveness)
    process = Monitor(settings, *connect(settings), liveness=liveness)
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
    """Run the fake Gmail IMAP server (for tests, the demo and benchmarks).

    Needs the `standins` extra.
    """
    with standins_needed("fake-gmail"):
        from standins.fakegmail import serve

    serve(config, host=host, port=port)


@app.command("fake-oauth")
def fake_oauth(
    config: Annotated[
        Path,
        typer.Option(
            help="JSON file: client id and secret, grants, revoked tokens, service accounts, "
            "Workspace domains.",
            exists=True,
        ),
    ],
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8085,
    host: HostOption = "127.0.0.1",
) -> None:
    """Run the fake Google OAuth2 token endpoint.

    Needs the `standins` extra.
    """
    with standins_needed("fake-oauth"):
        from standins.fakeoauth import serve

    serve(host, port, config)


@app.command("fake-directory")
def fake_directory(
    config: Annotated[
        Path,
        typer.Option(help="The fake token endpoint's JSON file (its domains).", exists=True),
    ],
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8086,
    host: HostOption = "127.0.0.1",
) -> None:
    """Run the fake Google Admin SDK Directory API (users.list) of the fake token endpoint's
    Workspace domains.

    Needs the `standins` extra.
    """
    with standins_needed("fake-directory"):
        from standins.fakedirectory import serve

    serve(host, port, config)


@app.command("fake-s3")
def fake_s3(
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 9000,
    host: HostOption = "127.0.0.1",
) -> None:
    """Run a fake S3 (moto's server, a process of its own) for CRAWLER_BLOB_STORE=s3; prints
    its endpoint (CRAWLER_S3_ENDPOINT_URL) and serves until SIGTERM or Ctrl-C.

    Needs the `standins` extra.
    """
    with standins_needed("fake-s3"):
        from standins.s3 import serve

    serve(host, port)


@app.command("embedded-mongo")
def embedded_mongo(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 27017,
    host: HostOption = "127.0.0.1",
) -> None:
    """Run the embedded MongoDB stand-in (mongomock behind MongoDB's wire protocol).

    Needs the `standins` extra.
    """
    with standins_needed("embedded-mongo"):
        from standins.embedded_mongo import serve

    serve(host=host, port=port)


@app.command("embedded-redis")
def embedded_redis(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 6379,
    host: HostOption = "127.0.0.1",
) -> None:
    """Run the embedded Redis stand-in (fakeredis, with Lua, behind Redis's protocol).

    For Procfile.dev where no Redis server is installed; it serves until SIGTERM.

    Needs the `standins` extra.
    """
    with standins_needed("embedded-redis"):
        from standins.embedded_redis import serve

    serve(host=host, port=port)


@app.command()
@operator_command
def demo() -> None:
    """Crawl fake Gmail accounts end to end: four with refresh tokens (one throttled, one
    refreshed, one revoked) and a Workspace domain's, through domain-wide delegation. On the
    Redis of CRAWLER_REDIS_URL, or on an embedded one (fakeredis) when nothing answers there.

    Needs the `standins` extra.
    """
    with standins_needed("demo"):
        from workers.demo import run

    if not run():
        raise typer.Exit(1)


register_operator_commands(app)


def main() -> None:
    """Entry point of the `crawler` executable."""
    app()
