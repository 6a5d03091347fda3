"""`crawler accounts`: add, list, remove and re-authorize the accounts the crawler reads (a new
grant for Gmail, a new password for IMAP).

Secrets come from standard input only, never from an argument (which `ps` and shell history
show), and are stored Fernet-encrypted with CRAWLER_SECRET_KEY. Nothing here prints one.
"""

from __future__ import annotations

import re
import sys
import time
import webbrowser
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

import typer

from config import Settings
from crawler.errors import BadAccount, BadInput
from crawler.gmail_crawler import GMAIL_PROVIDERS
from crawler.keys import check_user_uuid
from crawler.oauth import Consent
from crawler.store import Document
from workers.admin_consent import LoopbackRedirect
from workers.admin_context import JsonOption, MongoUrlOption, fail, operator, operator_command
from workers.admin_output import console, print_json, table

MAX_SECRET = 64 * 1024  # characters read from standard input, at most
_EMAIL = re.compile(r"[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

app = typer.Typer(
    help="Add, list, remove and re-authorize the accounts to crawl.", no_args_is_help=True
)


class Provider(StrEnum):
    """How the crawler signs in to an account."""

    gmail_oauth = "gmail_oauth"
    g_apps_oauth = "g_apps_oauth"
    imap_password = "imap_password"  # noqa: S105 - the name of a provider, not a password


UserUuidArgument = Annotated[str, typer.Argument(help="The account's user_uuid.")]
RefreshTokenFlag = Annotated[
    bool,
    typer.Option(
        "--refresh-token-stdin", help="Read the OAuth2 refresh token from standard input."
    ),
]
PasswordFlag = Annotated[
    bool,
    typer.Option("--password-stdin", help="Read the IMAP password from standard input."),
]


@app.command("add")
@operator_command
def add(
    email: Annotated[str, typer.Argument(help="The mailbox address.")],
    *,
    user_uuid: Annotated[str, typer.Option(help="The account's user_uuid (its rules use it).")],
    provider: Annotated[Provider, typer.Option(help="How to sign in.")] = Provider.gmail_oauth,
    refresh_token_stdin: RefreshTokenFlag = False,
    password_stdin: PasswordFlag = False,
    imap_host: Annotated[str | None, typer.Option(help="IMAP server (imap_password).")] = None,
    imap_port: Annotated[int, typer.Option(min=1, max=65535, help="IMAP port.")] = 993,
    imap_tls: Annotated[bool, typer.Option(help="TLS to the IMAP server.")] = True,
    username: Annotated[
        str | None, typer.Option(help="IMAP login name (default: EMAIL).", show_default=False)
    ] = None,
    folder: Annotated[str | None, typer.Option(help="IMAP folder (default: INBOX).")] = None,
    mongodb_url: MongoUrlOption = None,
) -> None:
    """Store an account: Gmail with an OAuth2 refresh token, or any IMAP server with a password.

    Gmail:  crawler accounts add EMAIL --user-uuid U --refresh-token-stdin < token

    IMAP:   crawler accounts add EMAIL --user-uuid U --provider imap_password --password-stdin
    --imap-host H [--imap-port P] [--no-imap-tls] [--username NAME] [--folder F] < password
    """
    check_user_uuid(user_uuid)
    if not _EMAIL.fullmatch(email):
        raise BadAccount(f"{email!r} is not a mailbox address")
    imap = ImapOptions(imap_host, imap_port, imap_tls, username, folder)
    gmail = provider.value in GMAIL_PROVIDERS
    _check_sign_in(gmail, refresh_token_stdin, password_stdin, imap)
    document: Document = {"user_uuid": user_uuid, "email": email, "provider": provider.value}
    if not gmail:
        document |= imap.fields()
    with operator(mongodb_url) as ops:
        cipher = ops.cipher()  # before reading a secret: a missing key fails first
        if gmail:
            document["oauth"] = _oauth(cipher.encrypt(_secret("refresh token")))
        else:
            document["password"] = cipher.encrypt(_secret("password"))
        if not ops.store.add_account(document):
            fail(f"an account with user_uuid {user_uuid} exists already (see accounts authorize)")
    typer.echo(f"added {provider.value} account {email} ({user_uuid})")


@dataclass(frozen=True)
class ImapOptions:
    """Where an imap_password account's mail is, as given on the command line."""

    host: str | None
    port: int
    tls: bool
    username: str | None
    folder: str | None

    def given(self) -> bool:
        """Whether an option only an IMAP account takes was given."""
        return any(value is not None for value in (self.host, self.username, self.folder))

    def fields(self) -> Document:
        """`imap` {host, port, tls}, and `username` and `folder` when given."""
        if not self.host or _CONTROL.search(self.host) or " " in self.host:
            raise BadInput("an imap_password account needs --imap-host (a host name or address)")
        fields: Document = {"imap": {"host": self.host, "port": self.port, "tls": self.tls}}
        for name in ("username", "folder"):
            value = getattr(self, name)
            if value is None:
                continue
            if not value or _CONTROL.search(value):
                # The crawler sends both to the IMAP server: no CR, LF or NUL may reach it.
                raise BadInput(f"--{name} must be non-empty text without control characters")
            fields[name] = value
        return fields


def _check_sign_in(gmail: bool, token: bool, password: bool, imap: ImapOptions) -> None:
    """Gmail signs in with a refresh token, an IMAP account with a password and a server."""
    if gmail and (password or imap.given()):
        raise BadInput(
            "--password-stdin, --imap-host, --username and --folder are for "
            "--provider imap_password"
        )
    if gmail and not token:
        raise BadInput("a Gmail account needs --refresh-token-stdin")
    if not gmail and token:
        raise BadInput("--refresh-token-stdin is for Gmail accounts, not imap_password")
    if not gmail and not password:
        raise BadInput("an imap_password account needs --password-stdin")


def _oauth(refresh_token: str) -> Document:
    """A fresh `oauth`: no access token yet, so the first crawl refreshes one."""
    return {"refresh_token": refresh_token, "access_token": "", "expires_at": 0}


def _secret(what: str) -> str:
    """One line of standard input: a secret is never an argument."""
    if sys.stdin.isatty():
        typer.echo(f"Type the {what}, then Enter and Ctrl-D:", err=True)
    text = sys.stdin.read(MAX_SECRET + 1)
    if len(text) > MAX_SECRET:
        raise BadInput(f"the {what} on standard input is longer than {MAX_SECRET} characters")
    secret = text.strip("\r\n")
    if not secret:
        raise BadInput(f"no {what} on standard input")
    if _CONTROL.search(secret):
        raise BadInput(f"the {what} on standard input must be one line of text")
    return secret


@app.command("list")
@operator_command
def list_accounts(
    limit: Annotated[int, typer.Option(min=1, help="Rows at most.")] = 200,
    as_json: JsonOption = False,
    mongodb_url: MongoUrlOption = None,
) -> None:
    """List the accounts by user_uuid (never a token or password) with their crawl state."""
    with operator(mongodb_url) as ops:
        accounts = ops.store.account_summaries(limit)
        states = ops.store.states_of([str(account.get("user_uuid")) for account in accounts])
    rows = [
        {
            "email": account.get("email"),
            "user_uuid": account.get("user_uuid"),
            "provider": account.get("provider") or Provider.gmail_oauth.value,
            "state": states.get(str(account.get("user_uuid"))),
        }
        for account in accounts
    ]
    if as_json:
        print_json(rows)
        return
    columns = ("email", "user_uuid", "provider", "state")
    console().print(table("Accounts", columns, [row.values() for row in rows]))


@app.command("remove")
@operator_command
def remove(user_uuid: UserUuidArgument, mongodb_url: MongoUrlOption = None) -> None:
    """Remove an account and its crawl status.

    Only those: its rules, stored attachments and queued UIDs stay. While it has enabled
    rules, a worker finds the account again and records an error for it (no account), so
    remove its rules too (crawler rules list --user-uuid U; crawler rules remove ID).
    """
    with operator(mongodb_url) as ops:
        if not ops.store.remove_account(user_uuid):
            fail(f"no account with user_uuid {user_uuid}")
    typer.echo(f"removed account {user_uuid} and its crawl status")


@app.command("authorize")
@operator_command
def authorize(
    user_uuid: UserUuidArgument,
    refresh_token_stdin: RefreshTokenFlag = False,
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="Print the consent URL; do not open a browser.")
    ] = False,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the consent in the browser.", min=1)
    ] = 300,
    mongodb_url: MongoUrlOption = None,
) -> None:
    """Re-authorize a Gmail account: the consent flow in a browser, or a refresh token on stdin.

    The consent flow prints (and opens) Google's consent page for the account, waits for the
    redirect to a loopback port, and exchanges the code for a refresh token. The old tokens are
    replaced, and an account in auth_failed comes back: idle, due now, its error cleared.
    """
    with operator(mongodb_url) as ops:
        cipher = ops.cipher()
        account = ops.store.account(user_uuid)
        if account is None:
            fail(f"no account with user_uuid {user_uuid}")
        provider = str(account.get("provider") or Provider.gmail_oauth.value)
        if provider not in GMAIL_PROVIDERS:
            raise BadInput(f"{user_uuid} is an {provider} account: it has no refresh token")
        if refresh_token_stdin:
            refresh_token = _secret("refresh token")
        else:
            refresh_token = _consent(ops.settings, str(account.get("email")), no_browser, timeout)
        ops.store.save_oauth(user_uuid, _oauth(cipher.encrypt(refresh_token)))
        revived = ops.store.statuses.reauthorized(user_uuid, time.time())
    typer.echo(
        f"authorized {user_uuid}" + (": it was auth_failed and is due now" if revived else "")
    )


@app.command("set-password")
@operator_command
def set_password(
    user_uuid: UserUuidArgument,
    password_stdin: PasswordFlag = False,
    mongodb_url: MongoUrlOption = None,
) -> None:
    """Replace an imap_password account's password, read from standard input.

    crawler accounts set-password U --password-stdin < password-file

    The password is stored encrypted with CRAWLER_SECRET_KEY, and an account in auth_failed
    (its server refused the old one) comes back: idle, due now, its error cleared. A Gmail
    account has no password: re-authorize it with `crawler accounts authorize`.
    """
    if not password_stdin:
        raise BadInput("the new password is read from standard input only: give --password-stdin")
    with operator(mongodb_url) as ops:
        cipher = ops.cipher()  # before reading a secret: a missing key fails first
        account = ops.store.account(user_uuid)
        if account is None:
            fail(f"no account with user_uuid {user_uuid}")
        provider = str(account.get("provider") or Provider.gmail_oauth.value)
        if provider in GMAIL_PROVIDERS:
            raise BadInput(
                f"{user_uuid} is a {provider} account: it has no password; "
                f"re-authorize it with: crawler accounts authorize {user_uuid}"
            )
        if provider != Provider.imap_password.value:
            raise BadInput(f"{user_uuid} is a {provider!r:.40} account, not imap_password")
        if not ops.store.save_password(user_uuid, cipher.encrypt(_secret("password"))):
            fail(f"no imap_password account with user_uuid {user_uuid}")  # removed meanwhile
        revived = ops.store.statuses.reauthorized(user_uuid, time.time())
    typer.echo(
        f"set the password of {user_uuid}"
        + (": it was auth_failed and is due now" if revived else "")
    )


def _consent(settings: Settings, email: str, no_browser: bool, timeout: float) -> str:
    """A refresh token for `email` from the installed-app consent flow."""
    with LoopbackRedirect() as redirect:
        consent = Consent(settings, redirect.uri, login_hint=email)
        typer.echo(f"Open this page signed in as {email}, and allow access:\n{consent.url}")
        if not no_browser:
            webbrowser.open(consent.url)
        return consent.refresh_token(redirect.wait(timeout))
