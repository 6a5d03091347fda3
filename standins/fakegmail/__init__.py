"""A fake Gmail IMAP server for tests, the demo and benchmarks.

    with FakeGmail() as gmail:                       # its own event loop, in a daemon thread
        account = gmail.add_account("alice@example.com", password="app-password")
        stored = account.add_message(raw, labels=["\\\\Inbox"])   # uid, gm_msgid, gm_thrid
        account.faults.add(Fault(FaultKind.THROTTLED, commands={"UID FETCH"}, times=1))
        ...connect to 127.0.0.1:gmail.port without TLS...
        account.ledger.commands["UID FETCH"]

It speaks Gmail's IMAP as GMAIL_IMAP.md describes it, with Gmail's own texts: XOAUTH2 (tokens
from `standins.tokens`), LOGIN with app passwords, LIST/XLIST with special-use flags,
SELECT/EXAMINE, SEARCH with X-GM-RAW, FETCH with the X-GM-* items and partial sections, and
programmable faults (faults.py). Not implemented: IDLE, STORE, COPY/MOVE, APPEND, EXPUNGE,
ENABLE, COMPRESS, ESEARCH return options, STARTTLS/TLS.

The fake shares no code with the crawler's own IMAP handling (`crawler.gmail`, `crawler.mime`),
so a bug there cannot hide behind the same bug here.
"""

from standins.fakegmail.config import ConfigError, GmailConfig, load_config
from standins.fakegmail.faults import Fault, FaultKind, Faults
from standins.fakegmail.generated import GeneratedAccount
from standins.fakegmail.ledger import Ledger, SessionSummary
from standins.fakegmail.mailbox import Account, StoredMessage
from standins.fakegmail.message import FakeMessage
from standins.fakegmail.server import FakeGmail, serve

__all__ = [
    "Account",
    "ConfigError",
    "FakeGmail",
    "FakeMessage",
    "Fault",
    "FaultKind",
    "Faults",
    "GeneratedAccount",
    "GmailConfig",
    "Ledger",
    "SessionSummary",
    "StoredMessage",
    "load_config",
    "serve",
]
