"""The benchmark mailbox: the same bytes for the same seed, a heavy tail, and true to its parts."""

import random
import statistics

import pytest

from bench.mailbox import BIG_AT, BIG_SIZES, attachment_size, mailbox, message
from fixtures.build_corpus import ground_truth

pytestmark = pytest.mark.unit


def test_the_same_seed_gives_the_same_bytes_and_another_seed_others() -> None:
    first = [mail.raw for mail in mailbox(12, start=11)]

    assert first == [mail.raw for mail in mailbox(12, start=11)]
    assert first != [mail.raw for mail in mailbox(12, start=11, seed=7)]


def test_a_smaller_mailbox_is_the_start_of_a_larger_one_and_new_mail_comes_after() -> None:
    larger = mailbox(16, start=11)

    assert [mail.raw for mail in mailbox(10, start=11)] == [mail.raw for mail in larger[:10]]
    assert [mail.index for mail in mailbox(6, start=21)] == [mail.index for mail in larger[10:]]


def test_sizes_have_a_median_near_100_kb_and_a_tail_to_25_mib() -> None:
    sizes = [attachment_size(random.Random(f"size/{n}")) for n in range(20_000)]

    assert 90_000 < statistics.median(sizes) < 110_000
    assert statistics.quantiles(sizes, n=100)[98] > 8 * statistics.median(sizes)  # p99
    assert 5 <= sum(size >= BIG_SIZES[0] for size in sizes) <= 60
    assert max(sizes) <= BIG_SIZES[1]


def test_one_message_always_holds_a_25_mib_attachment() -> None:
    (big,) = message(BIG_AT).attachments

    assert big.size == BIG_SIZES[1]


def test_what_each_message_holds_is_what_the_corpus_parser_finds() -> None:
    mails = mailbox(40, start=BIG_AT + 1)

    for mail in mails:
        truth = ground_truth(mail.raw)
        assert [(a.part, a.sha256, a.size) for a in mail.attachments] == [
            (a["part"], a["sha256"], a["size"]) for a in truth["attachments"]
        ]
        assert [a.sha256 for a in mail.parts if a.inline] == [
            a["sha256"] for a in truth["inline_images"]
        ]


def test_the_mailbox_holds_several_encodings_forwards_and_logos() -> None:
    mails = mailbox(200, start=BIG_AT + 1)
    shapes = {(a.encoding, "." in a.part, a.inline) for mail in mails for a in mail.parts}

    assert {"base64", "quoted-printable", "7bit"} <= {encoding for encoding, _, _ in shapes}
    assert (("base64", True, False) in shapes) and any(inline for _, _, inline in shapes)
