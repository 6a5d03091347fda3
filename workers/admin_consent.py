"""The browser side of `crawler accounts authorize` and `crawler accounts add --authorize`.

`consent_flow` runs Google's installed-app flow for one account: it prints (and opens) the
consent page, waits for the browser's redirect, and exchanges the code for a refresh token.
Google sends the browser back to `http://127.0.0.1:<port>/` with the code in the query.
`LoopbackRedirect` listens on a free loopback port for that one request, answers the browser
with a short page, and hands the query to the caller. Only the path it gave out counts: a stray
request (a favicon, a scan) is answered 404 and ignored.

`require_oauth_client` is what runs first: without the OAuth client's id and secret the flow
(and a refresh token's check) cannot work, so it fails before a port is opened or a URL shown.
"""

from __future__ import annotations

import secrets
import threading
import urllib.parse
import webbrowser
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import TracebackType

import typer

from config import Settings
from crawler.errors import AuthFailed, ConfigError
from crawler.oauth import Consent

DONE_PAGE = b"<!doctype html><title>crawler</title><p>Done: you can close this window.</p>\n"


def require_oauth_client(settings: Settings, needed_by: str) -> None:
    """ConfigError naming CRAWLER_OAUTH_CLIENT_ID and/or CRAWLER_OAUTH_CLIENT_SECRET when unset:
    `needed_by` (what the command was about to do) cannot work without them."""
    given = {
        "CRAWLER_OAUTH_CLIENT_ID": settings.oauth_client_id,
        "CRAWLER_OAUTH_CLIENT_SECRET": settings.oauth_client_secret.get_secret_value(),
    }
    missing = [name for name, value in given.items() if not value.strip()]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise ConfigError(
            f"{' and '.join(missing)} {verb} not set: {needed_by} needs the OAuth client's id "
            "and secret (README, Setting up Google)"
        )


def consent_flow(settings: Settings, email: str, no_browser: bool, timeout: float) -> str:
    """A refresh token for `email` from the installed-app consent flow: its page printed (and
    opened unless `no_browser`), the redirect awaited for `timeout` seconds, the code exchanged."""
    require_oauth_client(settings, "the consent flow")
    with LoopbackRedirect() as redirect:
        consent = Consent(settings, redirect.uri, login_hint=email)
        typer.echo(f"Open this page signed in as {email}, and allow access:\n{consent.url}")
        if not no_browser:
            webbrowser.open(consent.url)
        return consent.refresh_token(redirect.wait(timeout))


class LoopbackRedirect:
    """Waits for the consent redirect on 127.0.0.1 (a context manager)."""

    def __init__(self) -> None:
        self.path = f"/{secrets.token_urlsafe(8)}"
        self._arrived = threading.Event()
        self._query: dict[str, str] = {}
        self._server = HTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def uri(self) -> str:
        """The redirect URI to give the consent page."""
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.path}"

    def wait(self, timeout: float) -> dict[str, str]:
        """The redirect's query; AuthFailed when no redirect came within `timeout` seconds."""
        if not self._arrived.wait(timeout):
            raise AuthFailed(f"no answer from the browser within {timeout:g} s: start again")
        return self._query

    def __enter__(self) -> LoopbackRedirect:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                if path != listener.path or listener._arrived.is_set():
                    self.send_error(404)
                    return
                listener._query = dict(urllib.parse.parse_qsl(query))
                listener._arrived.set()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(DONE_PAGE)))
                self.end_headers()
                self.wfile.write(DONE_PAGE)

            def log_message(self, format: str, *args: object) -> None:
                pass  # the query holds the code: never logged

        return Handler
