"""`crawler accounts`: add, list, remove and re-authorize the accounts the crawler reads (a new
grant for Gmail, a new password for IMAP).

A `gmail_oauth` account's refresh token comes from the consent flow (`--authorize`, as
`accounts authorize` runs it) or from standard input, where it is checked with one refresh at
the token endpoint before it is stored (unless `--no-verify`): a token Google refuses is never
stored, and the access token the check got is kept for the first crawl. A `g_apps_oauth`
account has no token of its own: its Workspace domain's service account mints them, so its
domain must be known first (`crawler domains add`).

Secrets come from standard input only, never from an argument (which `ps` and shell history
show), and are stored Fernet-encrypted with CRAWLER_SECRET_KEY. Nothing here prints one.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, NoReturn

import typer

from config import Settings
from crawler.errors import (
    AuthFailed,
    AuthRevoked,
    BadAccount,
    BadInput,
    ConfigError,
    OAuthClientRefused,
    Transient,
)
from crawler.gmail_crawler import GMAIL_PROVIDERS
from crawler.keys import check_user_uuid
from crawler.oauth import TokenCipher, TokenSource
from crawler.store import Document
from workers.admin_consent import consent_flow, require_oauth_client
from workers.admin_context import (
    JsonOption,
    MongoUrlOption,
    Operator,
    fail,
    operator,
    operator_command,
)
from workers.admin_crawl_now import crawl_now
from workers.admin_output import console, next_crawl, print_json, printable, table
from workers.admin_users import no_account, require_account

MAX_SECRET = 64 * 1024  # characters read from standard input, at most
_EMAIL = re.compile(r"[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

app = typer.Typer(
    help="Add, list, remove and re-authorize the accounts to crawl, and crawl one at once.",
    no_args_is_help=True,
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
NoVerifyFlag = Annotated[
    bool,
    typer.Option(
        "--no-verify",
        help="Store the refresh token from standard input without checking it with Google.",
    ),
]
NoBrowserFlag = Annotated[
    bool, typer.Option("--no-browser", help="Print the consent URL; do not open a browser.")
]
TimeoutOption = Annotated[
    float, typer.Option(help="Seconds to wait for the consent in the browser.", min=1)
]


@app.command("add")
@operator_command
def add(
    email: Annotated[str, typer.Argument(help="The mailbox address.")],
    *,
    user_uuid: Annotated[str, typer.Option(help="The account's user_uuid (its rules use it).")],
    provider: Annotated[Provider, typer.Option(help="How to sign in.")] = Provider.gmail_oauth,
    refresh_token_stdin: RefreshTokenFlag = False,
    consent: Annotated[
        bool,
        typer.Option(
            "--authorize",
            help="Get the refresh token with the consent flow, as `accounts authorize` does.",
        ),
    ] = False,
    no_verify: NoVerifyFlag = False,
    no_browser: NoBrowserFlag = False,
    timeout: TimeoutOption = 300,
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
    """Store an account: Gmail with an OAuth2 refresh token, a Google Workspace user through
    its domain's service account, or any IMAP server with a password.

    Gmail, the consent flow in a browser (needs CRAWLER_OAUTH_CLIENT_ID and _SECRET):
    crawler accounts add EMAIL --user-uuid U --authorize [--no-browser] [--timeout S]

    Gmail, a refresh token you hold, checked with Google first unless --no-verify:
    crawler accounts add EMAIL --user-uuid U --refresh-token-stdin [--no-verify] < token

    Workspace, tokens from the domain's service account (crawler domains add DOMAIN first):
    crawler accounts add EMAIL --user-uuid U --provider g_apps_oauth

    IMAP:   crawler accounts add EMAIL --user-uuid U --provider imap_password --password-stdin
    --imap-host H [--imap-port P] [--no-imap-tls] [--username NAME] [--folder F] < password

    Nothing is crawled until the account has a rule (crawler rules add --user-uuid U).
    """
    check_user_uuid(user_uuid)
    if not _EMAIL.fullmatch(email):
        raise BadAccount(f"{email!r} is not a mailbox address")
    imap = ImapOptions(imap_host, imap_port, imap_tls, username, folder)
    grant = Grant(refresh_token_stdin, not no_verify, no_browser, timeout)
    _check_sign_in(provider, grant, consent, password_stdin, imap)
    document: Document = {"user_uuid": user_uuid, "email": email, "provider": provider.value}
    if provider is Provider.imap_password:
        document |= imap.fields()
    with operator(mongodb_url) as ops:
        if provider is Provider.g_apps_oauth:
            document["domain"] = _workspace_domain(ops, email)
            how = f": its tokens come from the service account of {document['domain']}"
        elif provider is Provider.imap_password:
            cipher = ops.cipher()  # before reading a secret: a missing key fails first
            document["password"] = cipher.encrypt(_secret("password"))
            how = ""
        else:
            ops.cipher()  # before anything else: a missing key fails first
            grant.require_client(ops.settings)
            if ops.store.account(user_uuid) is not None:  # before a consent it would waste
                _exists(user_uuid)
            document["oauth"] = grant.oauth(ops, user_uuid, email)
            how = grant.outcome()
        if not ops.store.add_account(document):
            _exists(user_uuid)
        has_rule = bool(ops.store.find_rules(user_uuid, 1))
    typer.echo(f"added {provider.value} account {email} ({user_uuid}){how}")
    if not has_rule:
        typer.echo(
            "no rule yet: nothing is crawled until one is added "
            f"(crawler rules add --user-uuid {user_uuid} ...)"
        )


def _exists(user_uuid: str) -> NoReturn:
    fail(f"an account with user_uuid {user_uuid} exists already (see accounts authorize)")


def _workspace_domain(ops: Operator, email: str) -> str:
    """The Workspace domain of `email` (lowercased), which must have a service account."""
    domain = email.rpartition("@")[2].lower()
    if ops.store.domains.of(domain) is None:
        fail(
            f"no service account for the Workspace domain {domain}: "
            f"run `crawler domains add {domain}` first"
        )
    return domain


@dataclass(frozen=True)
class Grant:
    """Where a Gmail account's refresh token comes from, as the command line says: standard
    input (`from_stdin`, checked with Google when `verify`), else the consent flow in a browser
    (`no_browser`, `timeout`). `accounts add` and `accounts authorize` both get it here."""

    from_stdin: bool
    verify: bool
    no_browser: bool
    timeout: float

    def check(self) -> None:
        """BadInput for --no-verify without a token to check."""
        if not self.verify and not self.from_stdin:
            raise BadInput(
                "--no-verify is for --refresh-token-stdin: a token from the consent flow "
                "comes from Google itself"
            )

    def require_client(self, settings: Settings) -> None:
        """ConfigError, before a secret is read or a port opened, when what comes next needs
        the OAuth client and it is not configured."""
        if not self.from_stdin:
            require_oauth_client(settings, "the consent flow")
        elif self.verify:
            require_oauth_client(
                settings, "checking the refresh token with Google (--no-verify skips it)"
            )

    def oauth(self, ops: Operator, user_uuid: str, email: str) -> Document:
        """The `oauth` fields to store, encrypted: the refresh token, and the access token its
        check got (else none yet, so that the first crawl refreshes one)."""
        cipher = ops.cipher()
        if not self.from_stdin:
            refresh_token = consent_flow(ops.settings, email, self.no_browser, self.timeout)
            return _oauth(cipher.encrypt(refresh_token))  # straight from Google: not checked
        oauth = _oauth(cipher.encrypt(_secret("refresh token")))
        if self.verify:
            oauth |= _checked(ops.settings, cipher, oauth, f"{user_uuid} ({printable(email)})")
        return oauth

    def outcome(self) -> str:
        """What became of the token, for the line that reports it."""
        if not self.from_stdin:
            return ""
        if self.verify:
            return ": Google accepted its refresh token"
        return ": its refresh token was not checked (the first crawl will)"


def _checked(settings: Settings, cipher: TokenCipher, oauth: Document, who: str) -> Document:
    """The encrypted access token (and expires_at) that one refresh with `oauth`'s refresh token
    gets; BadInput when Google refuses the token, an error saying why when it cannot be checked.
    No message names the token."""
    tokens = TokenSource(settings, cipher)
    try:
        access = tokens.refresh(oauth)
    except AuthRevoked:
        raise BadInput(
            f"{who}: the refresh token was refused by Google (invalid_grant): it is expired, "
            "revoked or not a refresh token; nothing was stored"
        ) from None
    except AuthFailed as error:
        raise BadInput(
            f"{who}: the refresh token was refused by Google ({error}); nothing was stored"
        ) from None
    except OAuthClientRefused as error:
        raise ConfigError(
            f"{who}: the refresh token could not be checked: {error}; nothing was stored"
        ) from None
    except Transient as error:
        raise Transient(
            f"{who}: the refresh token could not be checked: {error}; nothing was stored: "
            "try again, or store it unchecked with --no-verify"
        ) from None
    return tokens.encrypted(access)


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


def _check_sign_in(
    provider: Provider, grant: Grant, consent: bool, password: bool, imap: ImapOptions
) -> None:
    """gmail_oauth signs in with a refresh token (from standard input or the consent flow),
    g_apps_oauth with its domain's service account, imap_password with a password and a
    server."""
    gmail_only = grant.from_stdin or consent or not grant.verify
    if provider is Provider.imap_password:
        if gmail_only:
            raise BadInput(
                "--refresh-token-stdin, --authorize and --no-verify are for gmail_oauth "
                "accounts, not imap_password"
            )
        if not password:
            raise BadInput("an imap_password account needs --password-stdin")
        return
    if password or imap.given():
        raise BadInput(
            "--password-stdin, --imap-host, --username and --folder are for "
            "--provider imap_password"
        )
    if provider is Provider.g_apps_oauth:
        if gmail_only:
            raise BadInput(
                "a g_apps_oauth account takes no --refresh-token-stdin, --authorize or "
                "--no-verify: its tokens come from its Workspace domain's service account"
            )
        return
    if grant.from_stdin and consent:
        raise BadInput("give --refresh-token-stdin or --authorize, not both")
    if not grant.from_stdin and not consent:
        raise BadInput(
            "a gmail_oauth account needs --refresh-token-stdin (a refresh token you hold) "
            "or --authorize (the consent flow in a browser)"
        )
    grant.check()


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
    """List the accounts by user_uuid (never a token or password): rules, crawl state and the
    next crawl."""
    with operator(mongodb_url) as ops:
        accounts = ops.store.account_summaries(limit)
        user_uuids = [str(account.get("user_uuid")) for account in accounts]
        schedules = ops.store.schedules_of(user_uuids)
        rules = ops.store.rule_counts(user_uuids)
    rows: list[dict[str, Any]] = []
    for account, user_uuid in zip(accounts, user_uuids, strict=True):
        schedule = schedules.get(user_uuid, {})
        count, enabled = rules.get(user_uuid, (0, 0))
        rows.append(
            {
                "email": account.get("email"),
                "user_uuid": account.get("user_uuid"),
                "provider": account.get("provider") or Provider.gmail_oauth.value,
                "rules": count,
                "enabled_rules": enabled,
                "state": schedule.get("state"),
                "next_crawl_at": schedule.get("next_crawl_at"),
            }
        )
    if as_json:
        print_json(rows)
        return
    now = time.time()
    columns = ("email", "user_uuid", "provider", "rules", "state", "next crawl")
    cells = [
        (
            row["email"],
            row["user_uuid"],
            row["provider"],
            _rules_cell(row["rules"], row["enabled_rules"]),
            *_schedule_cells(row, now),
        )
        for row in rows
    ]
    console().print(table("Accounts", columns, cells))


def _rules_cell(count: int, enabled: int) -> str:
    return str(count) if count == enabled else f"{count} ({count - enabled} disabled)"


def _schedule_cells(row: dict[str, Any], now: float) -> tuple[str, str]:
    """The state and next crawl an operator reads: an account is crawled only once it has an
    enabled rule, and workers give it a crawl status at their next pass."""
    if not row["rules"]:
        return "no rule", "-"
    if not row["enabled_rules"]:
        return "no enabled rule", "-"
    if row["state"] is None:
        return "new", "due now"
    return str(row["state"]), next_crawl(row["state"], row["next_crawl_at"], now)


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
            no_account(user_uuid)
    typer.echo(f"removed account {user_uuid} and its crawl status")


@app.command("authorize")
@operator_command
def authorize(
    user_uuid: UserUuidArgument,
    *,
    refresh_token_stdin: RefreshTokenFlag = False,
    no_verify: NoVerifyFlag = False,
    no_browser: NoBrowserFlag = False,
    timeout: TimeoutOption = 300,
    mongodb_url: MongoUrlOption = None,
) -> None:
    """Authorize a gmail_oauth account again: the consent flow in a browser, or a refresh token
    on stdin (checked with Google first, unless --no-verify).

    The consent flow prints (and opens) Google's consent page for the account, waits for the
    redirect to a loopback port, and exchanges the code for a refresh token; it needs
    CRAWLER_OAUTH_CLIENT_ID and CRAWLER_OAUTH_CLIENT_SECRET. The old tokens are replaced, and an
    account in auth_failed comes back: idle, due now, its error cleared. A new account gets its
    first token with `crawler accounts add EMAIL --user-uuid U --authorize`.
    """
    grant = Grant(refresh_token_stdin, not no_verify, no_browser, timeout)
    with operator(mongodb_url) as ops:
        ops.cipher()  # a missing key fails first
        account = require_account(ops, user_uuid)
        provider = str(account.get("provider") or Provider.gmail_oauth.value)
        email = str(account.get("email"))
        if provider == Provider.g_apps_oauth.value:
            domain = printable(account.get("domain") or email.rpartition("@")[2].lower())
            raise BadInput(
                f"{user_uuid} is a g_apps_oauth account: its tokens come from the service "
                f"account of its Workspace domain {domain}, not from a refresh token, so there "
                f"is nothing to authorize (crawler domains add {domain} sets that service account)"
            )
        if provider not in GMAIL_PROVIDERS:
            raise BadInput(f"{user_uuid} is an {provider} account: it has no refresh token")
        grant.check()
        grant.require_client(ops.settings)
        ops.store.save_oauth(user_uuid, grant.oauth(ops, user_uuid, email))
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
        account = require_account(ops, user_uuid)
        provider = str(account.get("provider") or Provider.gmail_oauth.value)
        if provider in GMAIL_PROVIDERS:
            raise BadInput(
                f"{user_uuid} is a {provider} account: it has no password; "
                f"re-authorize it with: crawler accounts authorize {user_uuid}"
            )
        if provider != Provider.imap_password.value:
            raise BadInput(f"{user_uuid} is a {provider!r:.40} account, not imap_password")
        if not ops.store.save_password(user_uuid, cipher.encrypt(_secret("password"))):
            no_account(user_uuid)  # removed meanwhile
        revived = ops.store.statuses.reauthorized(user_uuid, time.time())
    typer.echo(
        f"set the password of {user_uuid}"
        + (": it was auth_failed and is due now" if revived else "")
    )


app.command("crawl-now")(crawl_now)
