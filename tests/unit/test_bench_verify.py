"""The benchmark's checks: saved attachments against the mailbox's; the proxy's command count."""

from collections import Counter

import pytest

from bench.mailbox import Attachment
from bench.proxy import CommandCounter
from bench.verify import verify

pytestmark = pytest.mark.unit


def part(digest: str, *, inline: bool = False, lf: str | None = None) -> Attachment:
    return Attachment("2", "f", "text/plain", "base64", 1, digest, inline, lf)


PDF, CSV, LOGO = part("pdf"), part("csv", lf="csv-lf"), part("logo", inline=True)


@pytest.mark.parametrize(
    ("saved", "expected"),
    [
        (["pdf", "csv"], "ok"),
        (["pdf"], "1 missing"),
        (["pdf", "csv", "logo", "logo"], "2 extra, 2 of them inline images"),
        (["pdf", "csv-lf"], "1 text files altered (CRLF saved as LF)"),
        (["pdf", "csv", "csv"], "1 extra"),
    ],
)
def test_a_verdict_names_what_differs(saved: list[str], expected: str) -> None:
    assert verify([PDF, CSV], [LOGO], Counter(saved)).describe() == expected


@pytest.mark.parametrize("cut", [1, 7, 13, 30, 1000])
def test_the_proxy_counts_commands_not_literal_lines_however_the_stream_is_cut(cut: int) -> None:
    stream = (
        b"a LOGIN {4}\r\nuser {10}\r\npass\r\nword\r\n"
        b"b EXAMINE INBOX\r\n"
        b'c UID SEARCH CHARSET UTF-8 X-GM-RAW {6+}\r\n"a\r\nb"\r\n'
        b"d LOGOUT\r\n"
    )
    counter = CommandCounter()

    for start in range(0, len(stream), cut):
        counter.feed(stream[start : start + cut])

    assert counter.commands == 4
