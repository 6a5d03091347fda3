from typing import Any

import pytest
from imapclient.response_parser import parse_fetch_response

from crawler.errors import BadInput
from crawler.mime import (
    AttachmentPart,
    Unreadable,
    attachment_parts,
    decode_filename,
    filename_from_mime_header,
)

pytestmark = pytest.mark.unit

TEXT = b'("TEXT" "PLAIN" ("CHARSET" "UTF-8") NIL NIL "7BIT" 12 1 NIL NIL NIL NIL)'
HTML = b'("TEXT" "HTML" ("CHARSET" "UTF-8") NIL NIL "QUOTED-PRINTABLE" 40 2 NIL NIL NIL NIL)'
PDF = (
    b'("APPLICATION" "PDF" ("NAME" "invoice.pdf") "<f_1>" NIL "BASE64" 780 NIL '
    b'("ATTACHMENT" ("FILENAME" "invoice.pdf")) NIL NIL)'
)
LOGO = b'("IMAGE" "PNG" ("NAME" "logo.png") "<logo@x>" NIL "BASE64" 156 NIL ("INLINE" NIL) NIL NIL)'


def structure(body: bytes) -> Any:
    fetched = parse_fetch_response([b"1 (UID 7 BODYSTRUCTURE " + body + b")"])
    return fetched[7][b"BODYSTRUCTURE"]


def summary(body: bytes) -> list[tuple[str, str, str | None, bool]]:
    return [
        (part.part, part.content_type, part.filename, part.inline)
        for part in attachment_parts(structure(body)).parts
    ]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (TEXT, []),
        (
            b"(" + TEXT + PDF + b' "MIXED" ("BOUNDARY" "b1") NIL NIL NIL)',
            [("2", "application/pdf", "invoice.pdf", False)],
        ),
        (
            b"(("
            + TEXT
            + HTML
            + b' "ALTERNATIVE" ("BOUNDARY" "b2") NIL NIL NIL)'
            + PDF
            + b' "MIXED" ("BOUNDARY" "b1") NIL NIL NIL)',
            [("2", "application/pdf", "invoice.pdf", False)],
        ),
        (
            b"(("
            + HTML
            + LOGO
            + b' "RELATED" ("BOUNDARY" "r") NIL NIL NIL)'
            + PDF
            + b' "MIXED" ("BOUNDARY" "b1") NIL NIL NIL)',
            [
                ("1.2", "image/png", "logo.png", True),
                ("2", "application/pdf", "invoice.pdf", False),
            ],
        ),
        # A forwarded message: its own parts are 2.1 and 2.2.
        (
            b"(" + TEXT + b' ("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 900 '
            b'("Mon, 1 Jan 2024 00:00:00 +0000" "fwd" NIL NIL NIL NIL NIL NIL NIL "<m@x>") '
            b"(" + TEXT + PDF + b' "MIXED" ("BOUNDARY" "in") NIL NIL NIL) 30 NIL NIL NIL NIL)'
            b' "MIXED" ("BOUNDARY" "out") NIL NIL NIL)',
            [
                ("2", "message/rfc822", "fwd.eml", False),
                ("2.2", "application/pdf", "invoice.pdf", False),
            ],
        ),
        # A forwarded message whose structure Gmail cut short (no envelope, body or line
        # count): a plain leaf, named by its own name, kept whole.
        (
            b"(" + TEXT + b' ("MESSAGE" "RFC822" ("NAME" "fwd.eml") NIL NIL "7BIT" 23379 NIL '
            b'("ATTACHMENT" ("FILENAME" "fwd.eml")) NIL) "MIXED" ("BOUNDARY" "out") NIL NIL)',
            [("2", "message/rfc822", "fwd.eml", False)],
        ),
        # Named or attachment message/* parts other than an attached email are files too; a
        # bare report is a body.
        (
            b"(" + TEXT + b' ("MESSAGE" "DELIVERY-STATUS" NIL NIL NIL "7BIT" 300 NIL '
            b'("ATTACHMENT" ("FILENAME" "details.txt")) NIL NIL)'
            b' ("MESSAGE" "DELIVERY-STATUS" NIL NIL NIL "7BIT" 300 NIL NIL NIL NIL)'
            b' "REPORT" ("BOUNDARY" "b") NIL NIL)',
            [("2", "message/delivery-status", "details.txt", False)],
        ),
        # An invalid Content-Type is text/plain (RFC 2045): a body unless named.
        (
            b'(("" "" NIL NIL NIL "7BIT" 5 1 NIL NIL NIL NIL)'
            b' ("TEXT" "" NIL NIL NIL "7BIT" 5 1 NIL ("ATTACHMENT" ("FILENAME" "n.txt")) NIL NIL)'
            b' "MIXED" ("BOUNDARY" "b") NIL NIL NIL)',
            [("2", "text/plain", "n.txt", False)],
        ),
        # A forwarded single-part message whose body is the file: part 2.1.
        (
            b"(" + TEXT + b' ("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 900 '
            b'(NIL "fwd" NIL NIL NIL NIL NIL NIL NIL NIL) ' + PDF + b" 30 NIL NIL NIL NIL)"
            b' "MIXED" ("BOUNDARY" "out") NIL NIL NIL)',
            [
                ("2", "message/rfc822", "fwd.eml", False),
                ("2.1", "application/pdf", "invoice.pdf", False),
            ],
        ),
        # The whole message is the attachment: part 1.
        (PDF, [("1", "application/pdf", "invoice.pdf", False)]),
        # A nameless binary part is still a file; a nameless text part is a body.
        (
            b'(("APPLICATION" "PDF" NIL NIL NIL "BASE64" 78 NIL NIL NIL NIL) '
            + TEXT
            + b' "MIXED" ("BOUNDARY" "b") NIL NIL NIL)',
            [("1", "application/pdf", None, False)],
        ),
        # Disposition attachment on a nameless text part; image attachment with Content-ID.
        (
            b'(("TEXT" "PLAIN" NIL NIL NIL "7BIT" 5 1 NIL ("ATTACHMENT" NIL) NIL NIL) '
            b'("IMAGE" "JPEG" NIL "<c>" NIL "BASE64" 78 NIL ("ATTACHMENT" ("FILENAME" "p.jpg"))'
            b' NIL NIL) "MIXED" ("BOUNDARY" "b") NIL NIL NIL)',
            [("1", "text/plain", None, False), ("2", "image/jpeg", "p.jpg", False)],
        ),
        # Invalid disposition type, but a filename: an attachment by its name.
        (
            b"(" + TEXT + b' ("APPLICATION" "OCTET-STREAM" NIL NIL NIL "BASE64" 78 NIL '
            b'("ATTACHMNT" ("FILENAME" "x.bin")) NIL NIL) "MIXED" ("BOUNDARY" "b") NIL NIL NIL)',
            [("2", "application/octet-stream", "x.bin", False)],
        ),
    ],
)
def test_attachment_parts(body: bytes, expected: list[tuple[str, str, str | None, bool]]) -> None:
    assert summary(body) == expected


def test_part_details() -> None:
    [part] = attachment_parts(structure(PDF)).parts
    assert part == AttachmentPart(
        part="1",
        content_type="application/pdf",
        encoding="base64",
        encoded_size=780,
        filename="invoice.pdf",
        content_id="<f_1>",
        inline=False,
        needs_header=False,
    )
    assert part.size == 570


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"filename": b"plain.pdf"}, "plain.pdf"),
        ({"filename*": b"utf-8''%E2%82%AC.pdf"}, "\u20ac.pdf"),
        ({"filename*": b"iso-8859-1'en'%E9t%E9.txt"}, "\u00e9t\u00e9.txt"),
        ({"filename*1*": b"%20part.pdf", "filename*0*": b"utf-8''first"}, "first part.pdf"),
        ({"filename*0": b"long", "filename*1": b"-name", "filename*2": b".txt"}, "long-name.txt"),
        ({"filename*10": b"b", "filename*2": b"a", "filename*0": b"x"}, "xab"),
        (
            {"filename": b"=?utf-8?B?0J/RgNC40LLQtdGCLnBkZg==?="},
            "\u041f\u0440\u0438\u0432\u0435\u0442.pdf",
        ),
        ({"filename": b"=?utf-8?Q?caf=C3=A9?= =?utf-8?Q?_menu.pdf?="}, "caf\u00e9 menu.pdf"),
        ({"filename": "r\u00e9sum\u00e9.pdf".encode()}, "r\u00e9sum\u00e9.pdf"),
        ({"filename": "r\u00e9sum\u00e9.pdf".encode("latin-1")}, "r\u00e9sum\u00e9.pdf"),
        ({"filename": b"=?bogus-charset?B?AAAA?="}, "=?bogus-charset?B?AAAA?="),
        ({"filename": b"../../etc/passwd"}, "../../etc/passwd"),
        ({"filename*": b"utf-8''a%00b"}, "a\x00b"),
        ({"filename*": b"nonsense-charset''%FF.pdf"}, "\u00ff.pdf"),
        ({}, None),
        ({"filename": b""}, None),
    ],
)
def test_decode_filename(params: dict[str, bytes], expected: str | None) -> None:
    assert decode_filename(params, "filename") == expected


def test_an_attached_email_is_a_container_named_by_its_subject() -> None:
    body = (
        b"(" + TEXT + b' ("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 900 '
        b'("Mon, 1 Jan 2024 00:00:00 +0000" "=?utf-8?Q?R=C3=A9sum=C3=A9?= of  March" '
        b'NIL NIL NIL NIL NIL NIL NIL "<m@x>") '
        b"(" + TEXT + PDF + b' "MIXED" ("BOUNDARY" "in") NIL NIL NIL) 30 NIL NIL NIL NIL)'
        b' "MIXED" ("BOUNDARY" "out") NIL NIL NIL)'
    )
    found = attachment_parts(structure(body)).parts
    assert [(p.part, p.content_type, p.filename, p.container) for p in found] == [
        ("2", "message/rfc822", "R\u00e9sum\u00e9 of March.eml", True),
        ("2.2", "application/pdf", "invoice.pdf", False),
    ]


def test_an_unreadable_part_costs_only_itself() -> None:
    # Gmail's bodiless multipart (jstedfast/MailKit#371), between two good parts.
    body = (
        b"("
        + TEXT
        + b'("RELATED" NIL ("ATTACHMENT" NIL) NIL)'
        + PDF
        + b' "MIXED" ("BOUNDARY" "b") NIL NIL)'
    )
    found = attachment_parts(structure(body))
    assert [part.part for part in found.parts] == ["3"]
    assert [item.part for item in found.unreadable] == ["2"]
    assert found.unreadable[0].reason.startswith("malformed BODYSTRUCTURE")


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"filename": b"=?utf-8?b?A?="}, "=?utf-8?b?A?="),  # a word that does not decode
        ({"filename*": b"utf-8''%FF%FEreport.pdf"}, "\ufffd\ufffdreport.pdf"),
        ({"filename": b"=?utf-8?B?/w==?=.pdf"}, "\ufffd.pdf"),
        ({"filename": b"=?iso-8859-1?Q?=E9?=t\xc3\xa9.pdf"}, "\u00e9t\u00e9.pdf"),
        # An escape in unencoded text next to an encoded word is no lone surrogate.
        ({"filename": b"=?utf-8?q?x?= \\ud800.pdf"}, "x \ufffd.pdf"),
    ],
)
def test_names_decode_as_mail_clients_show_them(params: dict[str, bytes], expected: str) -> None:
    assert decode_filename(params, "filename") == expected


@pytest.mark.parametrize(
    "header",
    [
        b"Content-Type: application/octet-stream; \xff*\r\nContent-Disposition: attachment\r\n\r\n",
        b'Content-Type: text/plain; name="=?utf-8?b?A?="\r\n\r\n',
    ],
)
def test_a_header_the_email_package_cannot_read_is_bad_input(header: bytes) -> None:
    try:
        name = filename_from_mime_header(header)
    except BadInput as error:
        assert "MIME header cannot be read" in str(error)
    else:
        assert name is None or isinstance(name, str)


def test_filename_from_mime_header() -> None:
    header = (
        b"Content-Type: application/pdf\r\n"
        b"Content-Disposition: attachment;\r\n"
        b" filename*0*=utf-8''%E2%82%AC;\r\n filename*1=.pdf\r\n\r\n"
    )
    assert filename_from_mime_header(header) == "\u20ac.pdf"
    assert filename_from_mime_header(b"Content-Type: text/plain\r\n\r\n") is None
    raw_8bit = b'Content-Disposition: attachment; filename="caf\xe9.pdf"\r\n\r\n'
    assert filename_from_mime_header(raw_8bit) == "caf\ufffd.pdf"


@pytest.mark.parametrize(
    "body",
    [
        b'("APPLICATION" "PDF" NIL NIL NIL "BASE64" "not-a-number" NIL NIL NIL NIL)',
        b'("APPLICATION")',
        b"(" * 200 + TEXT + b' "MIXED" NIL NIL NIL NIL)' * 200,
    ],
)
def test_malformed_structures_are_listed_as_unreadable(body: bytes) -> None:
    found = attachment_parts(structure(body))
    assert found.parts == []
    assert found.unreadable
    assert all(isinstance(item, Unreadable) for item in found.unreadable)
    assert found.unreadable[0].reason.startswith("malformed BODYSTRUCTURE")
