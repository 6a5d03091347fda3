import base64
import binascii
import email.policy
import itertools
import quopri
import tracemalloc
from collections.abc import Iterable
from email.message import EmailMessage
from email.parser import BytesParser

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crawler.decode import Base64Decoder, PartDecoder

pytestmark = pytest.mark.unit

MB = 1024 * 1024


def decode(encoding: str, chunks: Iterable[bytes]) -> bytes:
    decoder = PartDecoder(encoding)
    return b"".join([*(decoder.feed(chunk) for chunk in chunks), decoder.finish()])


def pieces(text: bytes, cuts: Iterable[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(text)]
    return [text[start:end] for start, end in itertools.pairwise(bounds)]


def single_bytes(text: bytes) -> list[bytes]:
    return [text[index : index + 1] for index in range(len(text))]


def email_decode(encoding: str, text: bytes) -> bytes:
    """What Python's email package makes of a part with this body."""
    raw = (
        b"Content-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: " + encoding.encode() + b"\r\n\r\n" + text
    )
    message = BytesParser(policy=email.policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload


def lenient_b64decode(text: bytes) -> bytes:
    """`base64.b64decode`, but closing an unpadded last quantum (the decoder's rule) instead."""
    try:
        return base64.b64decode(text)
    except binascii.Error as error:
        if "1 more than a multiple of 4" in str(error):  # a lone sixth of a byte: dropped
            return base64.b64decode(text + b"A==")[:-1]
        return base64.b64decode(text + b"==")


def crlf_lines(text: bytes) -> bytes:
    return text.replace(b"\n", b"\r\n")


@st.composite
def cut_text(draw: st.DrawFn, texts: st.SearchStrategy[bytes]) -> tuple[bytes, list[int]]:
    text = draw(texts)
    cuts = draw(st.lists(st.integers(0, len(text)), max_size=12))
    return text, cuts


def text_over(alphabet: bytes, max_size: int = 80) -> st.SearchStrategy[bytes]:
    return st.lists(st.sampled_from(alphabet), max_size=max_size).map(bytes)


# -- choosing the decoder --------------------------------------------------------------


@pytest.mark.parametrize(
    "encoding", ["base64", "BASE64", " Base64 ", "quoted-printable", "7BIT", "8bit", "Binary"]
)
def test_known_encodings_are_accepted_in_any_case(encoding: str) -> None:
    assert PartDecoder(encoding).encoding == encoding.strip().lower()


@pytest.mark.parametrize(
    ("encoding", "shown"),
    [
        ("base9000", "'base9000'"),
        (" X-GZIP64 ", "'x-gzip64'"),
        ("base-64", "'base-64'"),
        ("", "''"),
        ("gzip\r\nX-Evil: 1", "'gzip\\r\\nx-evil: 1'"),
    ],
)
def test_unknown_encodings_are_the_text_as_sent_with_a_warning_naming_them(
    encoding: str, shown: str
) -> None:
    text = b"line one\r\n\xff\x00 =3D QUJD==\r\nbegin 644 x\r\n"
    decoder = PartDecoder(encoding)
    decoded = b"".join(
        [*(decoder.feed(chunk) for chunk in pieces(text, [5, 20])), decoder.finish()]
    )
    assert decoded == text == email_decode(encoding.strip(), text)
    assert decoder.understood is False
    assert decoder.warnings == [f"unknown Content-Transfer-Encoding {shown}: saved as sent"]


def test_a_long_unknown_encoding_is_named_by_its_start() -> None:
    decoder = PartDecoder("x-" + "z" * 10_000)
    decoder.finish()
    [warning] = decoder.warnings
    assert warning.startswith("unknown Content-Transfer-Encoding 'x-zzz")
    assert len(warning) < 100


@pytest.mark.parametrize(
    ("encoding", "text"),
    [
        ("base64", b"aGVsbG8gd29ybGQ=\r\n"),
        ("base64", b"aGVs\r\n"),  # ends on a quantum
        ("base64", b""),
        ("quoted-printable", b"caf=C3=A9 =\r\nx=ZZ="),  # what binascii keeps as is is no warning
        ("7bit", b"abc\r\n"),
        ("8bit", b"\xff"),
        ("binary", b"\x00"),
        ("x-uuencode", b"begin 644 a\r\n#86)C\r\n`\r\nend\r\n"),
    ],
)
def test_known_encodings_decoded_cleanly_give_no_warnings(encoding: str, text: bytes) -> None:
    decoder = PartDecoder(encoding)
    decoder.feed(text)
    decoder.finish()
    assert decoder.understood is True
    assert decoder.warnings == []
    assert decoder.begin_name == ("a" if "uu" in encoding else None)


@pytest.mark.parametrize("encoding", ["7bit", "8bit", "binary"])
def test_identity_encodings_pass_bytes_through(encoding: str) -> None:
    text = b"line one\r\n\xff\x00 =3D line two\r\n"
    assert decode(encoding, pieces(text, [3, 11])) == text


# -- base64 ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"aGVsbG8gd29ybGQ=", b"hello world"),
        (b"aGVs\r\nbG8g\r\nd29y\r\nbGQ=\r\n", b"hello world"),  # line breaks anywhere
        (b" aG\tVs bG8 ", b"hello"),
        (b"aGVsbG8", b"hello"),  # missing padding: 3 characters give 2 bytes
        (b"aGVsbA", b"hell"),  # missing padding: 2 characters give 1 byte
        (b"aGVsbA=", b"hell"),  # half the padding
        (b"aGVsb", b"hel"),  # a lone character is less than a byte: dropped
        (b"aG!Vs*bG8-", b"hello"),  # garbage outside the alphabet is skipped
        (b"aGVs_bG8", b"hello"),  # base64url characters are garbage here
        (b"YQ==YWJj", b"a"),  # a padded quantum ends the data, as in binascii
        (b"YQ==\r\n\r\n--boundary--\r\n", b"a"),  # so a stray MIME trailer is harmless
        (b"=YWJj", b"abc"),  # padding where no quantum can end is skipped
        (b"YW=Jj", b"abc"),
        (b"YW=JjYW=Jj", b"abcabc"),  # a character between two `=` breaks up the padding
        (b"YWJjY===", b"abc"),  # nor after a quantum's first character
        (b"YW===Jj", b"a"),
        (b"", b""),
        (b"\r\n", b""),
    ],
)
def test_base64_table(text: bytes, expected: bytes) -> None:
    assert decode("base64", [text]) == expected
    assert decode("base64", single_bytes(text)) == expected


@pytest.mark.parametrize("text", [b"aGVsbG8", b"aGVsbA", b"aGVsbG8gd29y\r\nbGQ", b"aGVs bG8="])
def test_base64_missing_padding_decodes_as_the_email_package_does(text: bytes) -> None:
    assert decode("base64", single_bytes(text)) == email_decode("base64", text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"aGVsbG8", b"hello"),  # three characters of a quantum: their two bytes
        (b"aGVsbA", b"hell"),
        (b"aGVsbA=", b"hell"),  # half the padding still leaves the quantum open
        (b"aGVsb", b"hel"),  # a lone character is less than a byte
        (b"aGVsbG8gd29y\r\nbG", b"hello worl"),
    ],
)
def test_base64_ending_mid_quantum_gives_the_whole_bytes_and_a_warning(
    text: bytes, expected: bytes
) -> None:
    decoder = PartDecoder("base64")
    decoded = b"".join([*(decoder.feed(chunk) for chunk in single_bytes(text)), decoder.finish()])
    assert decoded == expected
    assert decoder.warnings == ["base64 text ends mid-quantum: the part may be truncated"]


def test_base64_warnings_are_complete_only_after_finish() -> None:
    decoder = PartDecoder("base64")
    assert decoder.feed(b"aGVsbG8") == b"hel"
    assert decoder.warnings == []
    assert decoder.finish() == b"lo"
    assert decoder.warnings == ["base64 text ends mid-quantum: the part may be truncated"]


def test_base64_input_after_the_padding_is_ignored() -> None:
    decoder = PartDecoder("base64")
    assert decoder.feed(b"YWI=") == b"ab"
    assert decoder.feed(b"YWJj") == b""
    assert decoder.finish() == b""


def test_base64_decodes_each_complete_quantum_without_waiting() -> None:
    decoder = PartDecoder("base64")
    assert decoder.feed(b"YWJjZG") == b"abc"
    assert decoder.feed(b"VmZw") == b"def"
    assert decoder.finish() == b"g"


@given(st.binary(max_size=2000), st.data())
def test_base64_of_any_data_split_anywhere_decodes_to_the_data(
    data: bytes, draw: st.DataObject
) -> None:
    text = crlf_lines(base64.encodebytes(data))
    cuts = draw.draw(st.lists(st.integers(0, len(text)), max_size=12))
    assert decode("base64", pieces(text, cuts)) == data
    assert email_decode("base64", text) == data


@given(cut_text(text_over(b"YWJjQ+/0===\r\n !-")))
def test_base64_of_any_text_split_anywhere_decodes_as_the_whole(
    example: tuple[bytes, list[int]],
) -> None:
    text, cuts = example
    assert decode("base64", pieces(text, cuts)) == lenient_b64decode(text)


def line_wrapped(text: bytes, width: int) -> bytes:
    return b"".join(text[start : start + width] + b"\r\n" for start in range(0, len(text), width))


@given(st.binary(max_size=3000), st.integers(1, 90), st.data())
def test_base64_in_lines_of_any_width_split_anywhere_decodes_to_the_data(
    data: bytes, width: int, draw: st.DataObject
) -> None:
    text = line_wrapped(base64.b64encode(data), width)  # a width not a multiple of 4 too
    cuts = draw.draw(st.lists(st.integers(0, len(text)), max_size=12))
    assert decode("base64", pieces(text, cuts)) == data


@pytest.mark.parametrize("width", [76, 64, 75, 3])
def test_base64_lines_cut_at_every_point_decode_to_the_data(width: int) -> None:
    data = bytes(range(256)) * 3
    text = line_wrapped(base64.b64encode(data), width)
    for cut in range(len(text) + 1):
        assert decode("base64", [text[:cut], text[cut:]]) == data
        assert decode("base64", pieces(text, [cut, min(cut + 83, len(text))])) == data


def feeds(decoder: Base64Decoder, chunks: list[bytes]) -> list[bytes]:
    return [*(decoder.feed(chunk) for chunk in chunks), decoder.finish()]


@given(cut_text(text_over(b"YWJjQ+/0===\r\n !-", max_size=200)))
def test_base64_whole_lines_give_each_chunk_what_the_long_way_gives(
    example: tuple[bytes, list[int]],
) -> None:
    text, cuts = example
    long_way = Base64Decoder()
    long_way._whole_lines = False  # every chunk without its line breaks first
    chunks = pieces(text, cuts)
    assert feeds(Base64Decoder(), chunks) == feeds(long_way, chunks)


def test_base64_lines_of_whole_quanta_are_decoded_with_their_line_breaks() -> None:
    decoder = Base64Decoder()
    assert decoder.feed(b"YWJj\r\nZGVm\r\nZ2") == b"abcdef"
    assert decoder.feed(b"hp\r\namts\r\n") == b"ghijkl"
    assert decoder._whole_lines
    assert decoder.feed(b"bW5v") == b"mno"  # no line break: the long way
    assert decoder.finish() == b""


def test_base64_lines_cut_inside_a_quantum_go_the_long_way_for_the_rest_of_the_part() -> None:
    decoder = Base64Decoder()
    assert decoder.feed(b"YWJjZ\r\nGV") == b"abc"  # 5 characters in the first line
    assert not decoder._whole_lines
    assert decoder.feed(b"m\r\nZ2hp\r\n") == b"defghi"
    assert decoder.finish() == b""


def test_base64_padding_seen_before_a_line_break_counts_on_after_it() -> None:
    decoder = Base64Decoder()
    assert decoder.feed(b"YW=") == b""
    assert decoder.feed(b"\r\n") == b""  # no characters: the `=` before still counts
    assert decoder.feed(b"=") == b"a"  # the second `=` ends the data
    assert decoder.feed(b"YWJj\r\n") == b""


# -- quoted-printable ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"caf=C3=A9\r\n", "café\r\n".encode()),
        (b"caf=c3=a9", "café".encode()),  # lowercase hex
        (b"a very long =\r\nline", b"a very long line"),  # soft line break
        (b"soft =\nbreak", b"soft break"),  # soft line break with a bare LF
        (b"ends in a soft break=", b"ends in a soft break"),
        (b"1+1=3D2", b"1+1=2"),
        (b"a=ZZb", b"a=ZZb"),  # an escape that is not hex stays as it is
        (b"a=3", b"a=3"),  # an escape cut short by the end stays as it is
        (b"a==3D", b"a=3D"),  # `==` is a literal `=`
        (b"x=\rignored\ny", b"xy"),  # a bare CR after `=` breaks the line up to the LF
        (b"tab\tand space \r\n", b"tab\tand space \r\n"),
        (b"", b""),
    ],
)
def test_quoted_printable_table(text: bytes, expected: bytes) -> None:
    assert decode("quoted-printable", [text]) == expected
    assert decode("quoted-printable", single_bytes(text)) == expected
    assert quopri.decodestring(text) == expected


@given(st.binary(max_size=2000), st.data())
def test_quoted_printable_of_any_data_split_anywhere_decodes_to_the_data(
    data: bytes, draw: st.DataObject
) -> None:
    text = quopri.encodestring(data)  # which may drop a CR: b"\n\r\n" -> b"\n\n"
    cuts = draw.draw(st.lists(st.integers(0, len(text)), max_size=12))
    assert decode("quoted-printable", pieces(text, cuts)) == quopri.decodestring(text)
    on_the_wire = crlf_lines(text)
    assert decode("quoted-printable", pieces(on_the_wire, cuts)) == email_decode(
        "quoted-printable", on_the_wire
    )


@given(cut_text(text_over(b"==\r\nA4fz \t")))
def test_quoted_printable_of_any_text_split_anywhere_decodes_as_the_whole(
    example: tuple[bytes, list[int]],
) -> None:
    text, cuts = example
    assert decode("quoted-printable", pieces(text, cuts)) == quopri.decodestring(text)


@given(text_over(b"=\rA4z\n", max_size=24))
def test_quoted_printable_one_byte_at_a_time_decodes_as_the_whole(text: bytes) -> None:
    assert decode("quoted-printable", single_bytes(text)) == quopri.decodestring(text)


def test_quoted_printable_does_not_wait_for_a_line_break() -> None:
    decoder = PartDecoder("quoted-printable")
    assert decoder.feed(b"no line break here =3") == b"no line break here "
    assert decoder.feed(b"D and on") == b"= and on"
    assert decoder.finish() == b""


# -- memory ----------------------------------------------------------------------------


def peak_allocation(encoding: str, chunk: bytes, times: int) -> int:
    """The decoder's own peak allocation (the chunk is allocated before tracing starts)."""
    decoder = PartDecoder(encoding)
    tracemalloc.start()
    try:
        for _ in range(times):
            decoder.feed(chunk)
        decoder.finish()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    ("encoding", "chunk"),
    [
        ("base64", b"QUJD" * (MB // 4)),
        ("quoted-printable", b"x" * MB),  # one line without a break
        ("quoted-printable", b"=\r" + b"x" * MB),  # a soft break swallowing a huge line
        ("quoted-printable", b"=" * MB),
    ],
    ids=["base64", "qp-long-line", "qp-swallowed-line", "qp-equals-signs"],
)
def test_memory_follows_the_chunk_size_not_the_part_size(encoding: str, chunk: bytes) -> None:
    assert peak_allocation(encoding, chunk, times=20) < 4 * MB


# -- any input -------------------------------------------------------------------------

ENCODINGS = ["base64", "quoted-printable", "7bit", "x-uuencode", "uue", "base9000", ""]


@given(
    st.one_of(st.sampled_from(ENCODINGS), st.text(max_size=20)),
    cut_text(st.one_of(st.binary(max_size=300), text_over(b"begin 644 x\r\n#86)C=QUJD`~end"))),
)
def test_any_encoding_and_any_text_never_raise_and_decode_as_the_whole(
    encoding: str, example: tuple[bytes, list[int]]
) -> None:
    text, cuts = example
    whole = PartDecoder(encoding)
    decoded = b"".join([whole.feed(text), whole.finish()])
    decoder = PartDecoder(encoding)
    chunked = b"".join([*(decoder.feed(chunk) for chunk in pieces(text, cuts)), decoder.finish()])
    assert chunked == decoded
    assert decoder.warnings == whole.warnings
    assert len(decoder.warnings) <= 3
    assert all(len(warning) < 100 for warning in decoder.warnings)
