"""Did a contender save exactly the attachments it should have? Compared by sha256.

A contender that saves a different set is reported, never hidden. The known differences are
named: inline images (signature logos) saved as if they were attachments, and text attachments
saved with their line ends changed (munpack writes LF), which changes their bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.child import MANIFEST
from bench.mailbox import Attachment

NOT_ATTACHMENTS = (".desc", "tempdesc.txt")  # munpack's descriptions of the text parts


@dataclass(frozen=True)
class Verdict:
    """How the saved set differs from the expected one."""

    expected: int
    missing: int = 0
    extra: int = 0
    inline: int = 0  # of the extra: inline images
    altered: int = 0  # expected files saved with other line ends (neither missing nor extra)

    @property
    def ok(self) -> bool:
        """The same attachments, byte for byte."""
        return not (self.missing or self.extra or self.altered)

    def describe(self) -> str:
        """'ok', or what differs."""
        if self.ok:
            return "ok"
        found = []
        if self.missing:
            found.append(f"{self.missing} missing")
        if self.altered:
            found.append(f"{self.altered} text files altered (CRLF saved as LF)")
        if self.extra:
            logos = f", {self.inline} of them inline images" if self.inline else ""
            found.append(f"{self.extra} extra{logos}")
        return "; ".join(found)


def verify(
    expected: Iterable[Attachment], inline: Iterable[Attachment], saved: Counter[str]
) -> Verdict:
    """Compare what was saved with what was expected."""
    wanted = list(expected)
    want = Counter(item.sha256 for item in wanted)
    missing, extra = want - saved, saved - want
    altered = 0
    for item in wanted:
        if missing[item.sha256] and item.sha256_lf and extra[item.sha256_lf]:
            missing[item.sha256] -= 1
            extra[item.sha256_lf] -= 1
            altered += 1
    logos = {item.sha256 for item in inline}
    return Verdict(
        expected=len(wanted),
        missing=missing.total(),
        extra=(+extra).total(),
        inline=sum(count for digest, count in extra.items() if digest in logos and count > 0),
        altered=altered,
    )


def saved_digests(out: Path, state: Path) -> Counter[str]:
    """The sha256 of every attachment a contender saved as files in `out`."""
    files = Counter(
        _digest(path)
        for path in (out.rglob("*") if out.exists() else ())
        if path.is_file() and not path.name.endswith(NOT_ATTACHMENTS)
    )
    return listed_digests(files, state)


def bucket_digests(client: Any, bucket: str) -> Counter[str]:
    """The sha256 of the content of every object in an S3 bucket, read back whole."""
    digests: Counter[str] = Counter()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"]
            digest = hashlib.sha256()
            while chunk := body.read(1 << 20):
                digest.update(chunk)
            digests[digest.hexdigest()] += 1
    return digests


def listed_digests(stored: Counter[str], state: Path) -> Counter[str]:
    """What was saved, given the digests of what is `stored`.

    A contender that stores identical files once lists its attachments in a manifest; each
    listed digest then needs a stored copy, and a missing one is reported as a digest nobody
    expected.
    """
    manifest = state / MANIFEST
    if not manifest.exists():
        return stored
    listed: Counter[str] = Counter(json.loads(manifest.read_text()))
    return Counter(
        {digest if digest in stored else f"no file for {digest}": n for digest, n in listed.items()}
    )


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
