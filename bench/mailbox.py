"""The benchmark mailbox: deterministic messages and the attachments each one holds.

`mailbox(n, seed=..., share=...)` returns n messages. Message i depends only on the seed and i,
so a mailbox of 500 is the first 500 of a mailbox of 5,000, and "1 % new mail" is messages
n..n+n/100 of the same sequence. A `share` of the messages have attachments; their sizes follow
a heavy-tailed distribution (log-normal, median 100 KB, plus a rare 10-25 MB file), and message
`BIG_AT` always carries one of exactly 25 MB, Gmail's attachment limit. The rest are text, some
with an inline signature logo. Attachments come as Gmail, Outlook, Thunderbird and Apple Mail
write them, some inside forwarded messages, in base64, quoted-printable and 7bit.

The parts are built with the fixture corpus's writers (fixtures/build_corpus.py), and what each
message holds is what was written; `tests/unit/test_bench_mailbox.py` checks it against the
corpus's independent `ground_truth` parser.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fixtures.build_corpus import (
    DOCX,
    PDF,
    XLSX,
    Kit,
    Part,
    apple_file,
    forward,
    gmail_file,
    inline_image,
    outlook_file,
    plain_file,
    render,
    text,
)

DEFAULT_SEED = 20_240_611
DEFAULT_SHARE = 0.15
MEDIAN_SIZE = 100_000
SIGMA = 1.0  # of the log-normal: the middle 68 % lie between 37 KB and 270 KB
BIG_CHANCE = 0.001  # per attachment: a 10-25 MB file
BIG_SIZES = (10 * 2**20, 25 * 2**20)
BIG_AT = 10  # the message that always holds a 25 MB attachment
MIN_SIZE = 200
FIRST_DATE = datetime(2024, 1, 1, 8, 0, tzinfo=UTC)
HOURS_APART = 3

ME = "Alice Martin <alice@example.com>"
SENDERS = (
    ("Bob Chen <bob.chen@gmail.com>", "gmail"),
    ("Dana Whitfield <dana.whitfield@contoso.example>", "outlook"),
    ("Priya Raman <priya.raman@example.in>", "thunderbird"),
    ("Marco Rossi <marco.rossi@example.it>", "apple"),
    ("Acme Billing <billing@acme-hosting.example>", "thunderbird"),
)
# (content type, extension, magic kind, transfer encodings to pick from, weight)
KINDS = (
    (PDF, "pdf", "pdf", ("base64",), 35),
    ("image/jpeg", "jpg", "jpg", ("base64",), 15),
    ("image/png", "png", "png", ("base64",), 8),
    (DOCX, "docx", "zip", ("base64",), 12),
    (XLSX, "xlsx", "zip", ("base64",), 8),
    ("application/zip", "zip", "zip", ("base64",), 7),
    ("text/csv", "csv", "", ("quoted-printable", "base64"), 8),
    ("text/plain", "txt", "", ("7bit", "quoted-printable"), 7),
)
WORDS = ("invoice", "report", "contract", "scan", "photo", "budget", "minutes", "draft", "offer")
UNICODE_WORDS = ("Übersicht", "résumé", "договор", "見積書")


@dataclass(frozen=True)
class Attachment:
    """One part a message holds, as written: where it is and what it decodes to."""

    part: str
    filename: str | None
    content_type: str
    encoding: str
    size: int
    sha256: str
    inline: bool  # an inline image (a signature logo), not an attachment
    sha256_lf: str | None = None  # text only: of the data with CRLF made LF, as munpack saves it


@dataclass(frozen=True)
class Mail:
    """One message of the benchmark mailbox."""

    index: int
    raw: bytes
    date: datetime
    parts: tuple[Attachment, ...]

    @property
    def attachments(self) -> tuple[Attachment, ...]:
        """The attachments (inline images left out)."""
        return tuple(part for part in self.parts if not part.inline)


def mailbox(
    n: int, *, seed: int = DEFAULT_SEED, share: float = DEFAULT_SHARE, start: int = 0
) -> list[Mail]:
    """Messages start..start+n-1 of the sequence that `seed` and `share` define."""
    return [message(index, seed=seed, share=share) for index in range(start, start + n)]


def message(index: int, *, seed: int = DEFAULT_SEED, share: float = DEFAULT_SHARE) -> Mail:
    """Message `index` of the sequence: the same arguments give the same bytes."""
    kit = _Kit(index, f"bench/{seed}/{index}")
    sender, style = kit.rng.choice(SENDERS)
    if index == BIG_AT:
        files = [_file(kit, style, size=BIG_SIZES[1], kind=KINDS[5])]
        body = kit.multipart("mixed", text("The archive you asked for.\n"), *files, style=style)
    elif kit.rng.random() < share:
        body = _with_attachments(kit, style)
    else:
        body = _text_only(kit, style)
    subject = f"{kit.rng.choice(WORDS).title()} {index}"
    part = kit.message(sender, subject, body)
    return Mail(index, render(part), kit.when(), tuple(_written(part)))


def attachment_size(rng: random.Random) -> int:
    """Decoded bytes of one attachment: log-normal around 100 KB, sometimes 10-25 MB."""
    if rng.random() < BIG_CHANCE:
        return rng.randint(*BIG_SIZES)
    drawn = math.exp(rng.gauss(math.log(MEDIAN_SIZE), SIGMA))
    return int(min(max(drawn, MIN_SIZE), BIG_SIZES[1]))


class _Kit(Kit):
    """The corpus kit, with dates a few hours apart (the corpus spaces its 53 by 15 days)."""

    def when(self, days_before: int = 0) -> datetime:
        return FIRST_DATE + timedelta(hours=HOURS_APART * self.index, days=-days_before)

    def date(self, days_before: int = 0) -> str:
        return self.when(days_before).strftime("%a, %d %b %Y %H:%M:%S +0000")


def _with_attachments(kit: _Kit, style: str) -> Part:
    count = kit.rng.choices((1, 2, 3, 4), weights=(60, 25, 10, 5))[0]
    files = [_file(kit, style) for _ in range(count)]
    note = text(f"{kit.prose(2)}\n{kit.rng.choice(WORDS)} attached.\n")
    roll = kit.rng.random()
    if roll < 0.12:  # a forwarded message with its attachments inside (parts 2.2, 2.3 ...)
        sender, inner_style = kit.rng.choice(SENDERS)
        original = kit.multipart("mixed", text(kit.prose(3)), *files, style=inner_style)
        inner = kit.message(sender, "Documents", original, to=ME, days_before=3)
        own = [_file(kit, style)] if kit.rng.random() < 0.3 else []
        return kit.multipart("mixed", text("Forwarding this.\n"), forward(inner), *own)
    if roll < 0.3:  # a signature logo next to the body, attachments after it
        related = kit.multipart("related", kit.alternative(kit.prose(3), style), _logo(kit))
        return kit.multipart("mixed", related, *files, style=style)
    return kit.multipart("mixed", note, *files, style=style)


def _text_only(kit: _Kit, style: str) -> Part:
    body = kit.alternative(kit.prose(kit.rng.randint(3, 40)), style)
    if kit.rng.random() < 0.2:
        return kit.multipart("related", body, _logo(kit))
    return body


def _logo(kit: _Kit) -> Part:
    cid = f"image001.png@01DA{kit.hex(8).upper()}"
    # Each sender's logo is the same image every time, as in a real mailbox.
    logo = random.Random(f"logo/{kit.rng.randrange(len(SENDERS))}").randbytes(3_000)
    name = "image001.png" if kit.rng.random() < 0.5 else None
    return inline_image(b"\x89PNG\r\n\x1a\n" + logo, "image/png", cid, name)


def _file(
    kit: _Kit,
    style: str,
    *,
    size: int | None = None,
    kind: tuple[str, str, str, tuple[str, ...], int] | None = None,
) -> Part:
    content_type, extension, magic, encodings, _ = (
        kind or kit.rng.choices(KINDS, weights=[entry[4] for entry in KINDS])[0]
    )
    size = size or attachment_size(kit.rng)
    stem = kit.rng.choice(WORDS + UNICODE_WORDS) if style == "gmail" else kit.rng.choice(WORDS)
    name = f"{stem}-{kit.hex(6)}.{extension}"
    encoding = kit.rng.choice(encodings)
    data = _text_bytes(kit, size) if not magic else kit.blob(magic, size)
    if encoding != "base64" or style == "thunderbird":
        return plain_file(data, content_type, name, encoding=encoding)
    if style == "gmail":
        return gmail_file(kit, data, content_type, name)
    if style == "outlook":
        return outlook_file(kit, data, content_type, name)
    return apple_file(data, content_type, name)


def _text_bytes(kit: _Kit, size: int) -> bytes:
    """`size` bytes of CRLF text: a few lines of prose, repeated."""
    block = kit.prose_bytes(40, width=70)
    whole = block * (size // len(block) + 1)
    cut = whole[:size]
    return cut[:-1] + b"." if cut.endswith(b"\r") else cut  # never end between CR and LF


def _written(part: Part, number: str = "") -> Iterator[Attachment]:
    """The leaves written with an intent, numbered as IMAP numbers them (RFC 3501 6.4.5)."""
    if part.children:
        for index, child in enumerate(part.children, start=1):
            yield from _written(child, f"{number}.{index}" if number else str(index))
    elif part.enclosed is not None:
        here = number or "1"
        yield from _written(part.enclosed, here if part.enclosed.children else f"{here}.1")
    elif part.intent is not None:
        yield Attachment(
            part=number or "1",
            filename=part.intent.filename,
            content_type=_header(part, "content-type").split(";")[0].strip().lower(),
            encoding=_header(part, "content-transfer-encoding").lower(),
            size=len(part.intent.data),
            sha256=hashlib.sha256(part.intent.data).hexdigest(),
            inline=part.intent.role == "inline_image",
            sha256_lf=_lf_digest(part),
        )


def _header(part: Part, name: str) -> str:
    for line in part.headers:
        text_line = line if isinstance(line, str) else line.decode("utf-8", "replace")
        key, _, value = text_line.partition(":")
        if key.strip().lower() == name:
            return value.strip()
    return ""


def _lf_digest(part: Part) -> str | None:
    if part.intent is None or not _header(part, "content-type").lower().startswith("text/"):
        return None
    return hashlib.sha256(part.intent.data.replace(b"\r\n", b"\n")).hexdigest()
