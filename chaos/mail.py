"""The messages a run delivers, and the ground truth of what the crawler must store from them.

Messages come from the fixture corpus (their sidecars are the truth) or are written fresh during
the run as new mail (their truth is computed by `fixtures.build_corpus.ground_truth`, which never
uses the crawler's code). The truth is keyed as the crawler keys `attachments`: (`user_uuid`,
`gm_msgid`, `part`), with the sha256 of the decoded bytes.
"""

from __future__ import annotations

import json
import random
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from functools import cache
from pathlib import Path
from typing import Any

from crawler.store import storable_msgid
from fixtures.build_corpus import ground_truth
from standins.fakegmail import Account

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "messages"

Key = tuple[str, Any, str]
"""(user_uuid, gm_msgid as stored, part)."""


@dataclass(frozen=True)
class CorpusMessage:
    """One fixture message and its sidecar."""

    name: str
    raw: bytes
    labels: tuple[str, ...]
    attachments: tuple[tuple[str, str], ...]  # (part, sha256)


@cache
def corpus() -> tuple[CorpusMessage, ...]:
    """The fixture corpus, in file-name order."""
    messages = []
    for path in sorted(CORPUS.glob("*.eml")):
        truth: dict[str, Any] = json.loads(path.with_suffix(".json").read_text("utf-8"))
        messages.append(
            CorpusMessage(
                name=path.name,
                raw=path.read_bytes(),
                labels=tuple(truth.get("labels") or ("\\Inbox",)),
                attachments=tuple((a["part"], a["sha256"]) for a in truth["attachments"]),
            )
        )
    if len(messages) < 40:
        raise RuntimeError("the fixture corpus is missing: run python fixtures/build_corpus.py")
    return tuple(messages)


def fresh_message(rng: random.Random, to: str) -> bytes:
    """A new message with 1-3 attachments of random bytes (the 150 KB ones stream)."""
    message = EmailMessage()
    message["From"] = "Chaos <chaos@example.com>"
    message["To"] = to
    message["Subject"] = f"new mail {rng.getrandbits(32):08x}"
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain="chaos.example.com")
    message.set_content("New mail, delivered while the crawlers run.\n")
    for n in range(rng.randint(1, 3)):
        size = rng.choice((0, 1, 700, 20_000, 150_000))
        data = rng.randbytes(size)
        message.add_attachment(
            data, maintype="application", subtype="octet-stream", filename=f"new-{n}.bin"
        )
    return message.as_bytes()


class Truth:
    """Every attachment the run delivered, by (user_uuid, gm_msgid, part); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.expected: dict[Key, str] = {}
        self.messages = 0
        self.new_mail = 0

    def deliver_corpus(
        self, account: Account, user_uuid: str, message: CorpusMessage, *, reachable: bool = True
    ) -> None:
        """Deliver a fixture message; its sidecar says what it holds. The attachments of an
        account that cannot be crawled (`reachable=False`) are not expected."""
        stored = account.add_message(message.raw, labels=message.labels)
        self._record(
            user_uuid, stored.gm_msgid, message.attachments if reachable else (), new=False
        )

    def deliver_new(self, account: Account, user_uuid: str, raw: bytes) -> None:
        """Deliver new mail during the run; `ground_truth` says what it holds."""
        parts = tuple((a["part"], a["sha256"]) for a in ground_truth(raw)["attachments"])
        stored = account.add_message(raw, labels=("\\Inbox",))
        self._record(user_uuid, stored.gm_msgid, parts, new=True)

    def for_user(self, user_uuid: str) -> dict[Key, str]:
        """The expected attachments of one account."""
        with self._lock:
            return {key: sha for key, sha in self.expected.items() if key[0] == user_uuid}

    def _record(
        self, user_uuid: str, gm_msgid: int, parts: tuple[tuple[str, str], ...], *, new: bool
    ) -> None:
        with self._lock:
            self.messages += 1
            self.new_mail += int(new)
            for part, sha256 in parts:
                self.expected[(user_uuid, storable_msgid(gm_msgid), part)] = sha256
