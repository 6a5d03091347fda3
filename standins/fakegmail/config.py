"""The JSON file that describes a fake Gmail for `crawler fake-gmail --config FILE`.

Every key but `email` is optional; unknown keys are errors; paths are relative to the file::

    {
      "token_secret": "fake-google-signing-secret",
      "accounts": [
        {
          "email": "alice@example.com",
          "password": "app-password",
          "all_mail_name": "[Gmail]/All Mail",
          "hide_all_mail": false,
          "uidvalidity": 1,
          "max_connections": 15,
          "latency": 0.0,
          "bandwidth": null,
          "daily_limit": null,
          "daily_window": 86400,
          "messages": [
            {"path": "fixtures/messages/*.eml"},
            {"path": "mail/invoice.eml", "labels": ["\\\\Inbox", "Invoices"],
             "flags": ["\\\\Seen"], "internaldate": "2024-05-01T10:00:00+00:00"}
          ],
          "faults": [
            {"kind": "throttled", "commands": ["UID FETCH"], "after_commands": 3,
             "slowdown": 0.5, "times": 1}
          ]
        },
        {
          "email": "big@example.com",
          "generated": {"count": 200000, "seed": 0, "first_uid": 1, "spacing": 1,
                        "attachment_every": 2000}
        }
      ]
    }

- `token_secret`: what the fake token endpoint signs access tokens with (tokens.py).
- `password`: the app password LOGIN accepts; without one, only XOAUTH2 logs in.
- `latency`: seconds before every response; `bandwidth`: bytes per second at most.
- `daily_limit`: bytes the account may be sent in a rolling day (quota.py); null: no limit.
- `daily_window`: the length of that rolling day in seconds, and of the lock past the limit;
  a test whose processes run on the system clock shortens it to let a day pass.
- `messages`: a glob or a file per entry, delivered in sorted path order (UIDs follow it).
  A message's labels are the entry's `labels`, else the `labels` of its JSON sidecar
  (`x.eml` -> `x.json`), else none (All Mail only). Its INTERNALDATE is the entry's
  `internaldate`, else its Date header, else the time of loading.
- `faults`: the fields of `faults.Fault`, `kind` being one of `faults.FaultKind`'s values.
- `generated`: a big mailbox made up as it is read instead of `messages` (generated.py): its
  `count` of messages (the only key it needs), the `seed` they are made from, the `first_uid`
  and the mean `spacing` between UIDs, and one in `attachment_every` carrying a PNG. It cannot
  have `messages`, nor hide All Mail.
"""

from __future__ import annotations

import glob
import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from standins import tokens
from standins.fakegmail.faults import Fault
from standins.fakegmail.mailbox import DEFAULT_MAX_CONNECTIONS, Account
from standins.fakegmail.message import FakeMessage
from standins.fakegmail.quota import DAY

if TYPE_CHECKING:
    from standins.fakegmail.server import FakeGmail

_LABELS = TypeAdapter(list[str])


class ConfigError(ValueError):
    """The config file (or a file it names) is missing or malformed."""


class MessageSource(BaseModel):
    """Messages from .eml files."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    labels: list[str] | None = None
    flags: list[str] = []
    internaldate: datetime | None = None


class GeneratedConfig(BaseModel):
    """A mailbox made up as it is read (generated.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = Field(ge=0)
    seed: int = 0
    first_uid: int = Field(default=1, ge=1)
    spacing: int = Field(default=1, ge=1)
    attachment_every: int = Field(default=1000, ge=1)


class AccountConfig(BaseModel):
    """One account, its messages and its faults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    email: str
    password: str | None = None
    all_mail_name: str = "[Gmail]/All Mail"
    hide_all_mail: bool = False
    uidvalidity: int = Field(default=1, ge=1)
    max_connections: int = Field(default=DEFAULT_MAX_CONNECTIONS, ge=0)
    latency: float = Field(default=0.0, ge=0)
    bandwidth: int | None = Field(default=None, gt=0)
    daily_limit: int | None = Field(default=None, gt=0)
    daily_window: float = Field(default=DAY, gt=0)
    messages: list[MessageSource] = []
    faults: list[Fault] = []
    generated: GeneratedConfig | None = None

    @model_validator(mode="after")
    def _generated_alone(self) -> AccountConfig:
        if self.generated is not None and self.messages:
            raise ValueError("a generated account has no `messages`")
        if self.generated is not None and self.hide_all_mail:
            raise ValueError("a generated account cannot hide All Mail")
        return self


class GmailConfig(BaseModel):
    """A whole fake Gmail."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    token_secret: str = tokens.DEFAULT_SECRET
    accounts: list[AccountConfig] = []

    def populate(self, gmail: FakeGmail, base_dir: Path) -> None:
        """Create the accounts in `gmail`, reading messages relative to `base_dir`."""
        for entry in self.accounts:
            account = _add_account(gmail, entry)
            account.faults.latency = entry.latency
            account.faults.bandwidth = entry.bandwidth
            account.quota.limit = entry.daily_limit
            account.quota.window = entry.daily_window
            for fault in entry.faults:
                account.faults.add(fault)
            for source in entry.messages:
                for path in _expand(base_dir, source.path):
                    _deliver(account, path, source)


def load_config(path: Path) -> GmailConfig:
    """The config in `path`; ConfigError with the reason when it cannot be used."""
    try:
        return GmailConfig.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError, ValidationError) as error:
        raise ConfigError(f"{path}: {error}") from None


def _add_account(gmail: FakeGmail, entry: AccountConfig) -> Account:
    if entry.generated is None:
        return gmail.add_account(
            entry.email,
            password=entry.password,
            all_mail_name=entry.all_mail_name,
            uidvalidity=entry.uidvalidity,
            hide_all_mail=entry.hide_all_mail,
            max_connections=entry.max_connections,
        )
    generated = entry.generated
    try:
        return gmail.add_generated_account(
            entry.email,
            count=generated.count,
            seed=generated.seed,
            first_uid=generated.first_uid,
            spacing=generated.spacing,
            attachment_every=generated.attachment_every,
            password=entry.password,
            all_mail_name=entry.all_mail_name,
            uidvalidity=entry.uidvalidity,
            max_connections=entry.max_connections,
        )
    except ValueError as error:  # UIDs past 32 bits
        raise ConfigError(f"{entry.email}: {error}") from None


def _expand(base_dir: Path, pattern: str) -> list[Path]:
    found = sorted(Path(name) for name in glob.glob(str(base_dir / pattern), recursive=True))
    if not found:
        raise ConfigError(f"{pattern!r} matches no file under {base_dir}")
    return found


def _deliver(account: Account, path: Path, source: MessageSource) -> None:
    message = FakeMessage(path.read_bytes())
    labels = source.labels if source.labels is not None else _sidecar_labels(path)
    when = source.internaldate or message.date
    account.add_message(message, labels=labels, flags=source.flags, internaldate=when)


def _sidecar_labels(path: Path) -> list[str]:
    sidecar = path.with_suffix(".json")
    if not sidecar.exists():
        return []
    try:
        facts = json.loads(sidecar.read_text(encoding="utf-8"))
        return _LABELS.validate_python(facts.get("labels", []) if isinstance(facts, dict) else [])
    except (OSError, json.JSONDecodeError, ValidationError) as error:
        raise ConfigError(f"{sidecar}: {error}") from None
