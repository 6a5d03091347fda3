"""The operator commands of `crawler`: `status`, `accounts`, `rules`, `attachments`,
`domains` and `events`.

Each group lives in a module of its own (`admin_status`, `admin_accounts`, `admin_rules`,
`admin_attachments`, `admin_domains`, `admin_events`); `admin_context` (settings, connections,
errors) and `admin_output` (tables, JSON) hold what they share. `register` adds them all to an app.
"""

from __future__ import annotations

import typer

from workers import admin_accounts, admin_attachments, admin_domains, admin_events, admin_rules
from workers.admin_status import status


def register(app: typer.Typer) -> None:
    """Add `status`, `accounts`, `rules`, `attachments`, `domains` and `events` to the `crawler`
    app."""
    app.command()(status)
    app.add_typer(admin_accounts.app, name="accounts")
    app.add_typer(admin_rules.app, name="rules")
    app.add_typer(admin_attachments.app, name="attachments")
    app.add_typer(admin_domains.app, name="domains")
    app.add_typer(admin_events.app, name="events")
