"""The browser side of `crawler accounts authorize`: a one-shot loopback redirect listener.

Google's installed-app flow sends the browser back to `http://127.0.0.1:<port>/` with the
code in the query. `LoopbackRedirect` listens on a free loopback port for that one request,
answers the browser with a short page, and hands the query to the caller. Only the path it
gave out counts: a stray request (a favicon, a scan) is answered 404 and ignored.
"""

from __future__ import annotations

import secrets
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import TracebackType

from crawler.errors import AuthFailed

DONE_PAGE = b"<!doctype html><title>crawler</title><p>Done: you can close this window.</p>\n"


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
