"""The `crawler` command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Find and save the attachments in many Gmail accounts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

HostOption = Annotated[str, typer.Option(help="Address to listen on (loopback by default).")]
ConfigOption = Annotated[
    Path | None, typer.Option(help="JSON file describing the fake's state.", exists=True)
]


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
