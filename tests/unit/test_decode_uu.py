"""uuencoded parts: decoded as Python's `email` package decodes them, in bounded memory."""

import binascii
import itertools
import random
import tracemalloc
from collections.abc import Iterable, Iterator

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from crawler.decode import PartDecoder
from tests.unit.test_decode import email_decode as decode_as_email

pytestmark = pytest.mark.unit

KB = 1024
MB = 1024 * KB
WINDOW = 64 * KB  # the text searched for a begin line

NO_BEGIN = "uuencode without a begin line: saved as sent"
NO_BEGIN_IN_WINDOW = "uuencode without a begin line in its first 64 KiB: saved as sent"
NO_END = "uuencode without an end line: the part may be truncated"
ONE_SKIPPED = "1 uuencoded line could not be decoded and was skipped"


def run(decoder: PartDecoder, chunks: Iterable[bytes]) -> bytes:
    return b"".join([*(decoder.feed(chunk) for chunk in chunks), decoder.finish()])


def decode(chunks: Iterable[bytes], encoding: str = "x-uuencode") -> bytes:
    return run(PartDecoder(encoding), chunks)


def pieces(text: bytes, cuts: Iterable[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(text)]
    return [text[start:end] for start, end in itertools.pairwise(bounds)]


def single_bytes(text: bytes) -> list[bytes]:
    return [text[index : index + 1] for index in range(len(text))]


def every_cut(text: bytes) -> Iterator[list[bytes]]:
    """The text whole, cut in two at every position, and one byte at a time."""
    yield [text]
    for cut in range(len(text) + 1):
        yield pieces(text, [cut])
    yield single_bytes(text)


def random_cuts(text: bytes, seed: int, count: int) -> list[bytes]:
    rng = random.Random(seed)
    return pieces(text, [rng.randrange(len(text) + 1) for _ in range(count)])


def email_decode(text: bytes) -> bytes:
    """What Python's email package makes of an x-uuencode part with this body."""
    return decode_as_email("x-uuencode", text)


def uu_lines(data: bytes, backtick: bool = False) -> list[bytes]:
    """The data lines of `uu.encode`: 45 bytes a line, then an empty-length line."""
    chunks = [data[start : start + 45] for start in range(0, len(data), 45)]
    return [binascii.b2a_uu(chunk, backtick=backtick)[:-1] for chunk in [*chunks, b""]]


def uuencode(
    data: bytes, newline: bytes = b"\n", backtick: bool = False, name: bytes = b"file.bin"
) -> bytes:
    lines = [b"begin 644 " + name, *uu_lines(data, backtick), b"end"]
    return newline.join(lines) + newline


def some_bytes(size: int) -> bytes:
    return random.Random(size).randbytes(size)


def line(data: bytes) -> bytes:
    return binascii.b2a_uu(data)[:-1]


# -- choosing the decoder --------------------------------------------------------------


@pytest.mark.parametrize(
    "encoding", ["uuencode", "X-UUENCODE", " x-uuencode ", "uue", "X-Uue", "\tx-uue\r\n"]
)
def test_uuencode_names_are_understood_in_any_case(encoding: str) -> None:
    decoder = PartDecoder(encoding)
    assert decoder.encoding == encoding.strip().lower()
    assert run(decoder, [uuencode(b"abc")]) == b"abc"
    assert decoder.understood is True
    assert decoder.warnings == []
    assert decoder.begin_name == "file.bin"


# -- round trips -----------------------------------------------------------------------

NEWLINES = pytest.mark.parametrize("newline", [b"\n", b"\r\n"], ids=["lf", "crlf"])


@NEWLINES
@pytest.mark.parametrize("backtick", [False, True], ids=["spaces", "backticks"])
@pytest.mark.parametrize("size", [0, 1, 44, 45, 46])
def test_small_data_cut_anywhere_decodes_to_the_data(
    size: int, newline: bytes, backtick: bool
) -> None:
    data = some_bytes(size)
    text = uuencode(data, newline, backtick)
    assert email_decode(text) == data
    for chunks in every_cut(text):
        decoder = PartDecoder("x-uuencode")
        assert run(decoder, chunks) == data, chunks
        assert decoder.warnings == []
        assert decoder.begin_name == "file.bin"


@NEWLINES
@pytest.mark.parametrize("size", [1000, 100_000])
def test_large_data_cut_at_random_decodes_to_the_data(size: int, newline: bytes) -> None:
    data = some_bytes(size)
    text = uuencode(data, newline)
    assert email_decode(text) == data
    for seed in range(10):
        decoder = PartDecoder("x-uuencode")
        assert run(decoder, random_cuts(text, seed, count=50)) == data
        assert decoder.warnings == []


@given(st.binary(max_size=2000), st.sampled_from([b"\n", b"\r\n", b"\r"]), st.data())
def test_any_data_split_anywhere_decodes_to_the_data(
    data: bytes, newline: bytes, draw: st.DataObject
) -> None:
    text = uuencode(data, newline)
    cuts = draw.draw(st.lists(st.integers(0, len(text)), max_size=12))
    assert decode(pieces(text, cuts)) == data == email_decode(text)


# -- as the email package reads it -----------------------------------------------------

BEGIN = b"begin 644 a.txt\n"
ABC = line(b"abc")  # b"#86)C"
GARBAGE_AFTER = ABC + b"garbage!"  # a broken encoder: the line says 3 bytes but has more
LONGER_THAN_SAID = b"#86)C86)C"


@pytest.mark.parametrize("text", [GARBAGE_AFTER, LONGER_THAN_SAID])
def test_the_broken_encoder_lines_of_the_table_do_need_the_workaround(text: bytes) -> None:
    with pytest.raises(binascii.Error, match="Trailing garbage"):
        binascii.a2b_uu(text)


@pytest.mark.parametrize(
    ("text", "expected", "warnings", "name"),
    [
        (BEGIN + ABC + b"\n`\nend\n", b"abc", [], "a.txt"),
        (BEGIN + GARBAGE_AFTER + b"\nend\n", b"abc", [], "a.txt"),
        (BEGIN + LONGER_THAN_SAID + b"\nend\n", b"abc", [], "a.txt"),
        (BEGIN + ABC + b"\nend\n" + ABC + b"\nbegin 644 b\n" + ABC + b"\n", b"abc", [], "a.txt"),
        (BEGIN + ABC + b"\nend", b"abc", [], "a.txt"),  # `end` without a line break
        (BEGIN + ABC + b"\n \t end \f\nignored\n", b"abc", [], "a.txt"),
        (BEGIN + ABC + b"\n`\n", b"abc", [NO_END], "a.txt"),
        (BEGIN + ABC, b"abc", [NO_END], "a.txt"),
        (b"begin 644 a.txt", b"", [NO_END], "a.txt"),
        (
            b"preamble\nbegin 64x a\nbeginner 644 b\nbegin  644 c\nbegin 0644 d\n" + ABC,
            b"abc",
            [NO_END],
            "d",
        ),
        (b"begin 644\n" + ABC + b"\nend\n", b"abc", [], ""),  # no name: email accepts it
        (b"begin 755 my file.txt \t\r\n" + ABC + b"\r\nend\r\n", b"abc", [], "my file.txt"),
        (b"begin 644 caf\xc3\xa9\xff\n" + ABC + b"\nend\n", b"abc", [], "café\ufffd"),
        (b"begin 644 a\r" + ABC + b"\r`\rend\r", b"abc", [], "a"),  # lone CR line breaks
        (b"begin 644 a\n" + ABC + b"\r\n" + ABC + b"\rend\n", b"abcabc", [], "a"),
        (BEGIN + b"M\nend\n", bytes(45), [], "a.txt"),  # a short line: the rest is zeros
        (BEGIN + b"#86)\nend\n", b"ab@", [], "a.txt"),  # a character short: zero bits
        (BEGIN + line(b"\x00\x00\x00") + b"\nend\n", b"\x00\x00\x00", [], "a.txt"),
        (BEGIN + b"#````\nend\n", b"\x00\x00\x00", [], "a.txt"),  # backticks are zeros too
        (BEGIN + b"\x1f86)C\nend\n", binascii.a2b_uu(b"\x1f86)C"), [], "a.txt"),
        (ABC + b"\nend\n", ABC + b"\nend\n", [NO_BEGIN], None),
        (b"", b"", [NO_BEGIN], None),
        (b"begin 8 a\n" + ABC, b"begin 8 a\n" + ABC, [NO_BEGIN], None),
        (b"\xff\x00 begin 644 a\n", b"\xff\x00 begin 644 a\n", [NO_BEGIN], None),
    ],
)
def test_uuencode_table_decodes_as_the_email_package(
    text: bytes, expected: bytes, warnings: list[str], name: str | None
) -> None:
    assert email_decode(text) == expected
    for chunks in every_cut(text):
        decoder = PartDecoder("x-uuencode")
        assert run(decoder, chunks) == expected, chunks
        assert decoder.warnings == warnings
        assert decoder.begin_name == name


# -- where it differs: the email package would give the text back as sent ---------------


@pytest.mark.parametrize(
    ("text", "expected", "warnings"),
    [
        (BEGIN + ABC + b"\n#\x0186)\nend\n", b"abc", [ONE_SKIPPED]),
        (
            BEGIN + b"#86)~\n" + ABC + b"\n#86\x7fC\n" + ABC + b"\nM\xff\n",
            b"abcabc",
            ["3 uuencoded lines could not be decoded and were skipped", NO_END],
        ),
    ],
)
def test_lines_that_cannot_be_decoded_are_skipped_with_a_count(
    text: bytes, expected: bytes, warnings: list[str]
) -> None:
    assert email_decode(text) == text  # email gives up on the whole part
    for chunks in every_cut(text):
        decoder = PartDecoder("x-uuencode")
        assert run(decoder, chunks) == expected
        assert decoder.warnings == warnings


def test_many_lines_that_cannot_be_decoded_are_one_warning() -> None:
    text = BEGIN + b"M\x01\n" * 10_000 + b"end\n"
    decoder = PartDecoder("uue")
    assert run(decoder, random_cuts(text, seed=1, count=100)) == b""
    assert decoder.warnings == ["10000 uuencoded lines could not be decoded and were skipped"]


@pytest.mark.parametrize(
    "text", [BEGIN + ABC + b"\n\n" + ABC + b"\nend\n", BEGIN + ABC + b"\n\r" + ABC + b"\nend\n"]
)
def test_empty_lines_carry_nothing_and_are_skipped(text: bytes) -> None:
    assert email_decode(text) == text  # email gives up on the whole part
    for chunks in every_cut(text):
        decoder = PartDecoder("x-uuencode")
        assert run(decoder, chunks) == b"abcabc"
        assert decoder.warnings == []


def test_warnings_are_complete_only_after_finish() -> None:
    decoder = PartDecoder("x-uuencode")
    assert decoder.feed(b"no begin line here\n") == b""
    assert decoder.warnings == []
    assert decoder.finish() == b"no begin line here\n"
    assert decoder.warnings == [NO_BEGIN]
    assert decoder.finish() == b""


@st.composite
def uu_texts(draw: st.DrawFn) -> bytes:
    """Texts of uuencoded, broken and stray lines, with any line breaks."""
    some_line = st.one_of(
        st.binary(max_size=45).map(line),
        st.sampled_from([b"begin 644 a", b"begin x a", b"end", b" end ", b"`", b" ", b"M"]),
        st.lists(st.sampled_from(b"#86)C`M \t\x01~end"), min_size=1, max_size=70).map(bytes),
    )
    lines = draw(st.lists(some_line, max_size=12))
    breaks = draw(st.lists(st.sampled_from([b"\n", b"\r\n", b"\r"]), min_size=len(lines)))
    return b"".join(text + newline for text, newline in zip(lines, breaks, strict=False))


@given(uu_texts(), st.data())
def test_any_text_decodes_as_the_email_package_unless_it_would_give_up(
    text: bytes, draw: st.DataObject
) -> None:
    assume(b"" not in text.splitlines())  # email gives up on an empty line (see above)
    cuts = draw.draw(st.lists(st.integers(0, len(text)), max_size=12))
    decoder = PartDecoder("x-uuencode")
    decoded = run(decoder, pieces(text, cuts))
    assert decoded == decode([text])
    assert len(decoder.warnings) <= 3
    if any("could not be decoded" in warning for warning in decoder.warnings):
        assert email_decode(text) == text
    else:
        assert decoded == email_decode(text)


@st.composite
def long_lines(draw: st.DrawFn) -> bytes:
    """Lines of thousands of characters, mostly blanks: whether each is `end` must survive."""
    runs = draw(
        st.lists(st.tuples(st.sampled_from(b" \t\fendMx#"), st.integers(1, 1500)), max_size=8)
    )
    return b"".join(bytes([character]) * count for character, count in runs)


@given(st.lists(long_lines(), min_size=1, max_size=3), st.data())
def test_long_lines_decode_as_the_email_package(lines: list[bytes], draw: st.DataObject) -> None:
    text = BEGIN + b"\n".join(lines) + b"\n" + ABC + b"\n"
    assume(b"" not in text.splitlines())
    cuts = draw.draw(st.lists(st.integers(0, len(text)), max_size=20))
    decoder = PartDecoder("x-uuencode")
    decoded = run(decoder, pieces(text, cuts))
    if any("could not be decoded" in warning for warning in decoder.warnings):
        assert email_decode(text) == text
    else:
        assert decoded == email_decode(text)


# -- the begin line is looked for in the first 64 KiB ----------------------------------


def decoded_every_way(text: bytes) -> set[bytes]:
    """What the decoder makes of `text` fed whole and in chunks of several sizes."""
    return {
        decode([text[start : start + size] for start in range(0, len(text), size)])
        for size in (1, 7, 4096, 65_536, 65_537, len(text) or 1)
    }


@pytest.mark.parametrize(
    ("padding", "decoded"),
    [
        (WINDOW - len(BEGIN), b"abc"),  # the begin line ends with the window
        (WINDOW - len(BEGIN) + 1, None),  # its line feed is the first byte past the window
        (WINDOW, None),
        (100 * KB, None),
    ],
    ids=["ends-inside", "ends-just-after", "starts-after", "far-after"],
)
def test_a_begin_line_is_found_only_inside_the_first_64_kib(
    padding: int, decoded: bytes | None
) -> None:
    preamble = b"x" * (padding - 1) + b"\n"
    text = preamble + BEGIN + ABC + b"\nend\n"
    expected = text if decoded is None else decoded
    assert decoded_every_way(text) == {expected}
    decoder = PartDecoder("x-uuencode")
    run(decoder, [text])
    assert decoder.warnings == ([] if decoded else [NO_BEGIN_IN_WINDOW])
    assert email_decode(text) == b"abc"  # email looks everywhere: the cost of bounded memory


def test_a_text_of_exactly_64_kib_ending_in_its_begin_line_is_decoded() -> None:
    begin = b"begin 644 a"
    text = b"x" * (WINDOW - len(begin) - 1) + b"\n" + begin
    assert len(text) == WINDOW
    assert decoded_every_way(text) == {b""} == {email_decode(text)}


def test_a_text_without_begin_line_longer_than_64_kib_is_sent_as_is_as_it_comes() -> None:
    text = some_bytes(200 * KB)
    decoder = PartDecoder("x-uuencode")
    first = decoder.feed(text[: 32 * KB])
    assert first == b""  # held back: a begin line may still come
    second = decoder.feed(text[32 * KB : 96 * KB])
    assert second == text[: 96 * KB]  # past the window: given up, the text is the content
    assert decoder.feed(text[96 * KB :]) == text[96 * KB :]
    assert decoder.finish() == b""
    assert decoder.warnings == [NO_BEGIN_IN_WINDOW]


# -- memory ----------------------------------------------------------------------------


def held_and_peak(chunks: Iterable[bytes]) -> tuple[int, int]:
    """The most the decoder held between two feeds, and its peak allocation while feeding.

    The chunks are allocated before tracing starts, and what `feed` returns is dropped at once.
    """
    decoder = PartDecoder("x-uuencode")
    held = 0
    tracemalloc.start()
    try:
        for chunk in chunks:
            decoder.feed(chunk)
            held = max(held, tracemalloc.get_traced_memory()[0])
        decoder.finish()
        return held, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


CHUNK = 64 * KB
DATA_LINES = uu_lines(bytes(range(256)) * 180)[:-1]  # whole 45-byte lines, no empty one
assert len(DATA_LINES) == 1024


@pytest.mark.parametrize(
    ("first", "chunk"),
    [
        (b"x" * CHUNK, b"x" * CHUNK),
        (b"", b"\n".join(DATA_LINES) + b"\n"),  # uuencoded lines, but no begin line
        (BEGIN, b"\n".join(DATA_LINES) + b"\n"),
        (BEGIN + b"M", b"A" * CHUNK),  # one line of 20 MB
        (BEGIN, b" " * CHUNK),
    ],
    ids=["no-begin", "no-begin-lines", "uu-lines", "one-long-line", "one-long-blank-line"],
)
def test_memory_follows_the_chunk_size_not_the_part_size(first: bytes, chunk: bytes) -> None:
    times = 20 * MB // len(chunk)
    held, peak = held_and_peak(itertools.chain([first], itertools.repeat(chunk, times)))
    assert held < WINDOW + CHUNK + 16 * KB
    assert peak < 4 * (WINDOW + CHUNK)


def test_a_line_of_megabytes_of_blanks_around_end_is_still_end() -> None:
    blanks = b" \t" * (MB // 2)
    chunks = [BEGIN, ABC + b"\n", blanks, b"e", blanks, b"nd", blanks, b"\n" + ABC + b"\n"]
    decoder = PartDecoder("x-uuencode")
    assert run(decoder, chunks) == b"abcabc"  # `e nd` is not `end`: decoded, then no end
    assert decoder.warnings == [NO_END]
    chunks = [BEGIN, ABC + b"\n", blanks, b"end", blanks, b"\n" + ABC + b"\n"]
    decoder = PartDecoder("x-uuencode")
    assert run(decoder, chunks) == b"abc"
    assert decoder.warnings == []
