"""`crawler domains`: Google Workspace domains crawled through domain-wide delegation.

A domain's administrator grants our service account domain-wide delegation once; `domains add`
stores the service account's JSON key (encrypted with CRAWLER_SECRET_KEY) and checks it by
minting a token for a user of the domain; `domains sync` reads the domain's directory and adds
every active user as a `g_apps_oauth` account with a rule, none of which needs a refresh token.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from bson import ObjectId

from config import Settings
from crawler import directory
from crawler.delegation import DIRECTORY_SCOPE, DelegatedTokens, ServiceAccountKey
from crawler.errors import AuthRevoked, BadInput, DomainRefused
from crawler.oauth import IMAP_SCOPE, TokenCipher
from crawler.store import Document
from crawler.store.domains import PROVIDER
from workers.admin_context import (
    JsonOption,
    MongoUrlOption,
    Operator,
    fail,
    operator,
    operator_command,
)
from workers.admin_output import console, print_json, table, timestamp
from workers.admin_rules import (
    ContentTypeOption,
    FilenameOption,
    MaxSizeOption,
    MinSizeOption,
    QueryOption,
    RuleOptions,
)

_DOMAIN = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
_SHOWN_GONE = 20  # accounts named in the summary of a sync, at most

app = typer.Typer(
    help="Google Workspace domains crawled with a service account (domain-wide delegation).",
    no_args_is_help=True,
)

DomainArgument = Annotated[str, typer.Argument(help="The Workspace domain, e.g. example.com.")]


def _domain_name(domain: str) -> str:
    name = domain.strip().lower()
    if not _DOMAIN.fullmatch(name):
        raise BadInput(f"{domain!r} is not a domain name")
    return name


def _in_domain(email: str, domain: str, option: str) -> str:
    address = email.strip().lower()
    if address.rpartition("@")[2] != domain or not address.partition("@")[0]:
        raise BadInput(f"{option} {email!r} is not an address of {domain}")
    return address


@app.command("add")
@operator_command
def add(
    domain: DomainArgument,
    *,
    service_account_file: Annotated[
        str,
        typer.Option(help="The service account's JSON key file; - reads it from standard input."),
    ],
    admin: Annotated[
        str, typer.Option(help="An administrator of the domain: `domains sync` reads as them.")
    ],
    check_user: Annotated[
        str | None,
        typer.Option(help="Check the key with a token for this user (default: --admin)."),
    ] = None,
    check: Annotated[
        bool, typer.Option(help="Check the key with Google before storing it.")
    ] = True,
    mongodb_url: MongoUrlOption = None,
) -> None:
    """Store (or rotate) a domain's service account key, checked with Google first.

    crawler domains add example.com --service-account-file key.json --admin it@example.com

    When Google says the domain has not granted the delegation yet, the key is stored and the
    grant to make in the Admin console is printed (exit code 1).
    """
    name = _domain_name(domain)
    admin = _in_domain(admin, name, "--admin")
    user = _in_domain(check_user or admin, name, "--check-user")
    key = ServiceAccountKey.parse(_read_key_file(service_account_file))
    with operator(mongodb_url) as ops:
        refused = store_key(ops, name, key, admin, user if check else None)
    typer.echo(f"stored the service account {key.client_email} (key {key.key_id}) for {name}")
    if refused is not None:
        fail(f"{refused.message}; its accounts wait until it is granted (crawler domains check)")


def store_key(
    ops: Operator, name: str, key: ServiceAccountKey, admin: str, check_user: str | None
) -> DomainRefused | None:
    """Store `key` as domain `name`'s, first checked with a token for `check_user` (None: not
    checked); the refusal when Google says the delegation is missing (the key is stored)."""
    cipher = ops.cipher()
    fields = key.document(name, admin, cipher)
    refused = _check(ops.settings, cipher, fields, check_user) if check_user else None
    ops.store.domains.saved(name, fields, time.time())
    return refused


def _read_key_file(path: str) -> bytes:
    try:
        return sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as error:
        raise BadInput(f"cannot read the key file: {error.strerror or error}") from None


def _check(
    settings: Settings, cipher: TokenCipher, domain: Document, user: str
) -> DomainRefused | None:
    """Mint a token for `user` with the domain's key. A missing delegation is returned (the key
    is good, the administrator has a step to take); anything else that is wrong raises."""
    tokens = DelegatedTokens(settings, cipher)
    try:
        tokens.token(domain, user, IMAP_SCOPE)
    except DomainRefused as refused:
        if refused.code == "unauthorized_client":
            return refused
        raise
    except AuthRevoked as error:
        raise BadInput(f"{error}: name a user of the domain with --check-user") from None
    return None


@app.command("check")
@operator_command
def check_domain(
    domain: DomainArgument,
    *,
    user: Annotated[
        str | None, typer.Option(help="Mint a token for this user (default: the admin).")
    ] = None,
    mongodb_url: MongoUrlOption = None,
) -> None:
    """Check a domain's key with Google again; when it works, its accounts are crawled at once.

    Run it once the administrator has granted the delegation, instead of waiting for
    CRAWLER_DOMAIN_REFUSED_BACKOFF to end.
    """
    name = _domain_name(domain)
    with operator(mongodb_url) as ops:
        document = _stored(ops, name)
        who = _in_domain(user or str(document.get("admin")), name, "--user")
        refused = _check(ops.settings, ops.cipher(), document, who)
        if refused is not None:
            fail(refused.message)
        ops.store.domains.accepted(name)
        now = time.time()
        due = sum(
            ops.store.statuses.crawl_now(u, now) for _, u in ops.store.domains.account_emails(name)
        )
    typer.echo(f"{name}: Google accepts the service account; {due} accounts due now")


def _stored(ops: Operator, name: str) -> Document:
    document = ops.store.domains.of(name)
    if document is None:
        fail(f"no domain {name} (crawler domains add)")
    return document


@app.command("list")
@operator_command
def list_domains(as_json: JsonOption = False, mongodb_url: MongoUrlOption = None) -> None:
    """List the domains: service account, administrator, accounts, and any refusal by Google."""
    with operator(mongodb_url) as ops:
        rows = [
            {
                "domain": d["domain"],
                "client_email": d.get("client_email"),
                "client_id": d.get("client_id"),
                "key_id": d.get("key_id"),
                "admin": d.get("admin"),
                "accounts": sum(1 for _ in ops.store.domains.account_emails(d["domain"])),
                "synced_at": d.get("synced_at"),
                "refused": d.get("refused"),
            }
            for d in ops.store.domains.all()
        ]
    if as_json:
        print_json(rows)
        return
    columns = ("domain", "service account", "client id", "admin", "accounts", "synced", "refused")
    shown = [
        (
            row["domain"],
            row["client_email"],
            row["client_id"],
            row["admin"],
            row["accounts"],
            timestamp(row["synced_at"]),
            (row["refused"] or {}).get("message"),
        )
        for row in rows
    ]
    console().print(table("Domains", columns, shown))


@app.command("remove")
@operator_command
def remove(domain: DomainArgument, mongodb_url: MongoUrlOption = None) -> None:
    """Forget a domain's service account (its accounts stay, and fail until it is back)."""
    name = _domain_name(domain)
    with operator(mongodb_url) as ops:
        if not ops.store.domains.removed(name):
            fail(f"no domain {name}")
    typer.echo(f"removed {name}")


@app.command("sync")
@operator_command
def sync(
    domain: DomainArgument,
    *,
    query: QueryOption = None,
    filename: FilenameOption = None,
    content_type: ContentTypeOption = None,
    min_size: MinSizeOption = None,
    max_size: MaxSizeOption = None,
    prune: Annotated[
        bool, typer.Option(help="Remove the accounts of users gone, suspended or archived.")
    ] = False,
    mongodb_url: MongoUrlOption = None,
) -> None:
    """Add every active user of the domain's directory as a g_apps_oauth account, with a rule.

    The rule options are those of `crawler rules add`; none keeps every attachment. Users
    already added are left alone, so it can run again and again (from cron, say).

    crawler domains sync example.com --content-type application/pdf
    """
    name = _domain_name(domain)
    options = RuleOptions(query, filename, content_type, min_size, max_size)
    options.rule("check", "check")  # a bad rule fails before the directory is read
    with operator(mongodb_url) as ops:
        synced = sync_domain(ops, name, options, prune=prune)
    for line in synced.lines():
        typer.echo(line)


@dataclass(frozen=True)
class Synced:
    """What a sync of a domain's directory found and did."""

    domain: str
    users: int  # in the directory
    inactive: int  # suspended or archived
    added: int
    back: int  # accounts auth_failed (their user was gone) whose user is active again
    there: int  # active users with an account already
    gone: list[str]  # addresses of the accounts whose user is gone or inactive
    pruned: bool  # and those accounts were removed, with their rules

    def lines(self) -> list[str]:
        """The summary `crawler domains sync` prints."""
        lines = [
            f"{self.domain}: {self.users} users in the directory ({self.inactive} suspended or "
            f"archived), {self.added} accounts added, {self.there} there already"
            + (f" ({self.back} crawled again: their users are back)" if self.back else "")
        ]
        if self.gone:
            listed = ", ".join(self.gone[:_SHOWN_GONE])
            listed += " ..." if len(self.gone) > _SHOWN_GONE else ""
            what = "removed" if self.pruned else "no longer active (--prune removes them)"
            lines.append(f"{len(self.gone)} accounts {what}: {listed}")
        return lines


def sync_domain(ops: Operator, name: str, options: RuleOptions, *, prune: bool) -> Synced:
    """Read domain `name`'s directory as its administrator; add an account (with a rule from
    `options`) for each active user without one; make those whose user is back due again;
    with `prune`, remove the accounts of users gone, suspended or archived, and their rules."""
    document = _stored(ops, name)
    tokens = DelegatedTokens(ops.settings, ops.cipher())
    token = tokens.token(document, str(document.get("admin")), DIRECTORY_SCOPE).token
    users = list(directory.users(ops.settings, name, token))
    known = list(ops.store.domains.account_emails(name))
    active = {_user_uuid(user): user for user in users if user.active}
    emails = {user.email for user in active.values()}
    ours = {uuid for _, uuid in known} | {email for email, _ in known}
    added = sum(
        _add_account(ops, name, user.email, user_uuid, options)
        for user_uuid, user in sorted(active.items())
        if user_uuid not in ours and user.email not in ours
    )
    now = time.time()
    back = sum(
        ops.store.statuses.reauthorized(user_uuid, now)
        for email, user_uuid in known
        if user_uuid in active or email in emails
    )
    gone = sorted((e, u) for e, u in known if u not in active and e not in emails)
    if prune:
        for _, user_uuid in gone:
            ops.store.remove_account(user_uuid)
            ops.store.remove_rules(user_uuid)
    ops.store.domains.synced(name, now)
    inactive = len(users) - len(active)
    there = len(active) - added
    return Synced(name, len(users), inactive, added, back, there, [e for e, _ in gone], prune)


def _user_uuid(user: directory.DirectoryUser) -> str:
    """A synced account's user_uuid: the user's Google id, which outlives a renamed address."""
    return f"google:{user.id}"


def _add_account(
    ops: Operator, domain: str, email: str, user_uuid: str, options: RuleOptions
) -> int:
    account = {"user_uuid": user_uuid, "email": email, "provider": PROVIDER, "domain": domain}
    if not ops.store.add_account(account):
        return 0  # the user_uuid is taken: added before under another address
    rule, _ = options.rule(ObjectId(), user_uuid)
    ops.store.add_rule(rule)
    return 1
