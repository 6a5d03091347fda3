"""The fake Gmail's message model: BODYSTRUCTURE, ENVELOPE and BODY[section] bytes.

Every expected value here was checked against Dovecot 2.3 for the same message (Dovecot writes
types, subtypes, encodings and parameter names as sent; Gmail, and so the fake, upper-cases them).
"""

from __future__ import annotations

import base64
import email
import email.policy
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from standins.fakegmail.message import FakeMessage

pytestmark = pytest.mark.unit


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


PDF64 = base64.encodebytes(b"%PDF-1.4 fake invoice\n" * 4).decode()
PNG64 = base64.encodebytes(b"\x89PNG\r\n\x1a\nlogo").decode()

MESSAGES = {
    "single": crlf(
        "From: Alice Example <alice@example.com>\n"
        "To: Bob <bob@example.org>, carol@example.net\n"
        "Subject: Lunch?\n"
        "Date: Tue, 02 Jan 2024 09:30:00 +0100\n"
        "Message-ID: <single@example.com>\n"
        "MIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=UTF-8\n"
        "\n"
        "See you at noon.\n"
    ),
    "mixed": crlf(
        "From: billing@example.com\n"
        "To: alice@example.com\n"
        "Subject: Invoice 42\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="mix"\n'
        "\n"
        "This is a multi-part message in MIME format.\n"
        "--mix\n"
        "Content-Type: text/plain; charset=utf-8\n"
        "Content-Transfer-Encoding: 7bit\n"
        "\n"
        "Your invoice is attached.\n"
        "--mix\n"
        'Content-Type: application/pdf; name="invoice.pdf"\n'
        'Content-Disposition: attachment; filename="invoice.pdf"\n'
        "Content-Transfer-Encoding: base64\n"
        "\n" + PDF64 + "--mix--\n"
    ),
    "alternative": crlf(
        "From: news@example.com\n"
        "Subject: Report\n"
        "MIME-Version: 1.0\n"
        "Content-Type: multipart/mixed; boundary=outer\n"
        "\n"
        "--outer\n"
        "Content-Type: multipart/alternative; boundary=alt\n"
        "\n"
        "--alt\n"
        "Content-Type: text/plain; charset=us-ascii\n"
        "\n"
        "plain report\n"
        "--alt\n"
        "Content-Type: text/html; charset=us-ascii\n"
        "Content-Transfer-Encoding: quoted-printable\n"
        "\n"
        "<p>html report</p>\n"
        "--alt--\n"
        "\n"
        "--outer\n"
        "Content-Type: text/csv; name=report.csv\n"
        "Content-Disposition: attachment; filename=report.csv\n"
        "\n"
        "a,b\n"
        "1,2\n"
        "--outer--\n"
    ),
    "related": crlf(
        "From: sig@example.com\n"
        "Subject: Signature\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/related; boundary="rel"; type="text/html"\n'
        "\n"
        "--rel\n"
        "Content-Type: text/html; charset=utf-8\n"
        "\n"
        '<img src="cid:logo@example.com">\n'
        "--rel\n"
        "Content-Type: image/png; name=logo.png\n"
        "Content-ID: <logo@example.com>\n"
        "Content-Disposition: inline; filename=logo.png\n"
        "Content-Transfer-Encoding: base64\n"
        "\n" + PNG64 + "--rel--\n"
    ),
    "forwarded": crlf(
        "From: Dan <dan@example.com>\n"
        "Subject: Fwd: Contract\n"
        "MIME-Version: 1.0\n"
        "Content-Type: multipart/mixed; boundary=fwd\n"
        "\n"
        "--fwd\n"
        "Content-Type: text/plain\n"
        "\n"
        "See below.\n"
        "--fwd\n"
        "Content-Type: message/rfc822\n"
        "Content-Disposition: attachment\n"
        "\n"
        "From: Eve <eve@example.org>\n"
        "To: dan@example.com\n"
        "Subject: Contract\n"
        "Date: Mon, 1 Jan 2024 08:00:00 +0000\n"
        "MIME-Version: 1.0\n"
        "Content-Type: multipart/mixed; boundary=inner\n"
        "\n"
        "--inner\n"
        "Content-Type: text/plain\n"
        "\n"
        "Draft attached.\n"
        "--inner\n"
        "Content-Type: application/msword; name=contract.doc\n"
        "Content-Disposition: attachment; filename=contract.doc\n"
        "Content-Transfer-Encoding: base64\n"
        "\n"
        "AAAA\n"
        "--inner--\n"
        "\n"
        "--fwd--\n"
    ),
    "rfc2231": crlf(
        "Subject: Euro\n"
        "MIME-Version: 1.0\n"
        "Content-Type: multipart/mixed; boundary=b\n"
        "\n"
        "--b\n"
        "Content-Type: application/pdf; name*=utf-8''%E2%82%AC.pdf\n"
        "Content-Disposition: attachment;\n"
        " filename*1*=%20rate.pdf; filename*0*=utf-8''%E2%82%AC\n"
        "Content-Transfer-Encoding: base64\n"
        "\n"
        "AAAA\n"
        "--b--\n"
    ),
    "encoded_word": crlf(
        "Subject: =?UTF-8?B?UmVjaWJv?=\n"
        "MIME-Version: 1.0\n"
        "Content-Type: multipart/mixed; boundary=b\n"
        "\n"
        "--b\n"
        'Content-Type: application/pdf; name="=?UTF-8?B?UmVjaWJvIG7CujEucGRm?="\n'
        'Content-Disposition: attachment; filename="=?UTF-8?B?UmVjaWJvIG7CujEucGRm?="\n'
        "Content-Transfer-Encoding: base64\n"
        "\n"
        "AAAA\n"
        "--b--\n"
    ),
    "eight_bit": crlf(
        "Subject: Caf\u00e9\n"
        "MIME-Version: 1.0\n"
        "Content-Type: multipart/mixed; boundary=b\n"
        "\n"
        "--b\n"
        'Content-Type: application/pdf; name="caf\u00e9.pdf"\n'
        "Content-Transfer-Encoding: base64\n"
        "\n"
        "AAAA\n"
        "--b--\n"
    ),
    "no_disposition": crlf(
        "MIME-Version: 1.0\n"
        "Content-Type: multipart/mixed; boundary=b\n"
        "\n"
        "--b\n"
        "\n"
        "body without headers\n"
        "--b\n"
        "Content-Type: application/vnd.ms-tnef; name=winmail.dat\n"
        "Content-Transfer-Encoding: base64\n"
        "\n"
        "AAAA\n"
        "--b--\n"
    ),
    "no_boundary": crlf(
        "MIME-Version: 1.0\nContent-Type: multipart/mixed\n\nnot really multipart\n"
    ),
    "unclosed": crlf(
        "MIME-Version: 1.0\n"
        "Content-Type: multipart/mixed; boundary=b\n"
        "\n"
        "--b\n"
        "Content-Type: text/plain\n"
        "\n"
        "first\n"
        "--b\n"
        "Content-Type: application/zip; name=a.zip\n"
        "\n"
        "PK\n"
    ),
    "garbage": (
        b"From: a@example.com\r\n"
        b"this line is not a header\r\n"
        b"X-Bin: \xff\xfe\r\n"
        b"Content-Type: text/plain charset=utf-8\r\n"
        b"\r\n"
        b"\x80\x81 junk\r\n"
    ),
}

MIXED = "Content-Type: multipart/mixed; boundary=b\r\n\r\n"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("single", b'("TEXT" "PLAIN" ("CHARSET" "UTF-8") NIL NIL "7BIT" 18 1 NIL NIL NIL NIL)'),
        (
            "mixed",
            b'(("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 25 0 NIL NIL NIL '
            b'NIL)("APPLICATION" "PDF" ("NAME" "invoice.pdf") NIL NIL "BASE64" 122 NIL '
            b'("ATTACHMENT" ("FILENAME" "invoice.pdf")) NIL NIL) "MIXED" ("BOUNDARY" "mix") NIL '
            b"NIL NIL)",
        ),
        (
            "alternative",
            b'((("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 12 0 NIL NIL NIL '
            b'NIL)("TEXT" "HTML" ("CHARSET" "us-ascii") NIL NIL "QUOTED-PRINTABLE" 18 0 NIL NIL '
            b'NIL NIL) "ALTERNATIVE" ("BOUNDARY" "alt") NIL NIL NIL)("TEXT" "CSV" ("NAME" '
            b'"report.csv" "CHARSET" "us-ascii") NIL NIL "7BIT" 8 1 NIL ("ATTACHMENT" '
            b'("FILENAME" "report.csv")) NIL NIL) "MIXED" ("BOUNDARY" "outer") NIL NIL NIL)',
        ),
        (
            "related",
            b'(("TEXT" "HTML" ("CHARSET" "utf-8") NIL NIL "7BIT" 32 0 NIL NIL NIL NIL)("IMAGE" '
            b'"PNG" ("NAME" "logo.png") "<logo@example.com>" NIL "BASE64" 16 NIL ("INLINE" '
            b'("FILENAME" "logo.png")) NIL NIL) "RELATED" ("BOUNDARY" "rel" "TYPE" "text/html") '
            b"NIL NIL NIL)",
        ),
        (
            "forwarded",
            b'(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 10 0 NIL NIL NIL '
            b'NIL)("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 401 ("Mon, 1 Jan 2024 08:00:00 +0000" '
            b'"Contract" (("Eve" NIL "eve" "example.org")) (("Eve" NIL "eve" "example.org")) '
            b'(("Eve" NIL "eve" "example.org")) ((NIL NIL "dan" "example.com")) NIL NIL NIL NIL) '
            b'(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 15 0 NIL NIL NIL '
            b'NIL)("APPLICATION" "MSWORD" ("NAME" "contract.doc") NIL NIL "BASE64" 4 NIL '
            b'("ATTACHMENT" ("FILENAME" "contract.doc")) NIL NIL) "MIXED" ("BOUNDARY" "inner") '
            b'NIL NIL NIL) 18 NIL ("ATTACHMENT" NIL) NIL NIL) "MIXED" ("BOUNDARY" "fwd") NIL NIL '
            b"NIL)",
        ),
        (
            "rfc2231",
            b'(("APPLICATION" "PDF" ("NAME*" "utf-8\'\'%E2%82%AC.pdf") NIL NIL "BASE64" 4 NIL '
            b'("ATTACHMENT" ("FILENAME*" "utf-8\'\'%E2%82%AC%20rate.pdf")) NIL NIL) "MIXED" '
            b'("BOUNDARY" "b") NIL NIL NIL)',
        ),
        (
            "encoded_word",
            b'(("APPLICATION" "PDF" ("NAME" "=?UTF-8?B?UmVjaWJvIG7CujEucGRm?=") NIL NIL "BASE64" '
            b'4 NIL ("ATTACHMENT" ("FILENAME" "=?UTF-8?B?UmVjaWJvIG7CujEucGRm?=")) NIL NIL) '
            b'"MIXED" ("BOUNDARY" "b") NIL NIL NIL)',
        ),
        (
            "eight_bit",
            b'(("APPLICATION" "PDF" ("NAME" {9}\r\ncaf\xc3\xa9.pdf) NIL NIL "BASE64" 4 NIL NIL '
            b'NIL NIL) "MIXED" ("BOUNDARY" "b") NIL NIL NIL)',
        ),
        (
            "no_disposition",
            b'(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 20 0 NIL NIL NIL '
            b'NIL)("APPLICATION" "VND.MS-TNEF" ("NAME" "winmail.dat") NIL NIL "BASE64" 4 NIL NIL '
            b'NIL NIL) "MIXED" ("BOUNDARY" "b") NIL NIL NIL)',
        ),
        (
            "no_boundary",
            b'(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 0 0 NIL NIL NIL NIL) '
            b'"MIXED" NIL NIL NIL NIL)',
        ),
        (
            "unclosed",
            b'(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 5 0 NIL NIL NIL '
            b'NIL)("APPLICATION" "ZIP" ("NAME" "a.zip") NIL NIL "7BIT" 4 NIL NIL NIL NIL) '
            b'"MIXED" ("BOUNDARY" "b") NIL NIL NIL)',
        ),
        ("garbage", b'("" "" NIL NIL NIL "7BIT" 9 NIL NIL NIL NIL)'),
    ],
)
def test_bodystructure(name: str, expected: bytes) -> None:
    assert FakeMessage(MESSAGES[name]).bodystructure() == expected


ADDRESSES = crlf(
    "Date: Mon, 1 Jan 2024 10:00:00 +0000\n"
    "Subject: =?utf-8?q?caf=C3=A9?=\n"
    "  and\ttabs\n"
    'From: "Doe, John" <john@x.org>\n'
    "Sender: Jo (comment) <j@x.org>\n"
    "To: undisclosed-recipients:;\n"
    'Cc: Team: a@x.org, "B" <b@y.org>;, c@z\n'
    "Bcc: nodomain, a@b, , <@route:r@x>, bad@, @bad, x@y (Comment Name)\n"
    "In-Reply-To: <a@b>\n"
    "Message-ID: <m@x>\n"
    "\n"
    "body\n"
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            MESSAGES["single"],
            b'("Tue, 02 Jan 2024 09:30:00 +0100" "Lunch?" (("Alice Example" NIL "alice" '
            b'"example.com")) (("Alice Example" NIL "alice" "example.com")) (("Alice Example" NIL '
            b'"alice" "example.com")) (("Bob" NIL "bob" "example.org")(NIL NIL "carol" '
            b'"example.net")) NIL NIL NIL "<single@example.com>")',
        ),
        (
            ADDRESSES,
            b'("Mon, 1 Jan 2024 10:00:00 +0000" "=?utf-8?q?caf=C3=A9?= and tabs" (("Doe, John" '
            b'NIL "john" "x.org")) (("Jo" NIL "j" "x.org")) (("Doe, John" NIL "john" "x.org")) '
            b'((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)) ((NIL NIL "Team" NIL)'
            b'(NIL NIL "a" "x.org")("B" NIL "b" "y.org")(NIL NIL NIL NIL)(NIL NIL "c" "z")) '
            b'((NIL NIL "nodomain" "MISSING_DOMAIN")(NIL NIL "a" "b")(NIL NIL "MISSING_MAILBOX" '
            b'"MISSING_DOMAIN")(NIL "@route" "r" "x")(NIL NIL "bad" "MISSING_DOMAIN")'
            b'(NIL NIL "MISSING_MAILBOX" "bad")("Comment Name" NIL "x" "y")) "<a@b>" "<m@x>")',
        ),
        (
            b"Subject:\r\nFrom:\r\nMessage-ID:\r\n\r\nbody\r\n",
            b'(NIL "" NIL NIL NIL NIL NIL NIL NIL "")',
        ),
        (
            b"From: a@b\r\nFrom: c@d\r\nSubject: one\r\nSubject: two\r\n\r\n",
            b'(NIL "two" ((NIL NIL "a" "b")(NIL NIL "c" "d")) ((NIL NIL "a" "b")(NIL NIL "c" "d")) '
            b'((NIL NIL "a" "b")(NIL NIL "c" "d")) NIL NIL NIL NIL NIL)',
        ),
        (MESSAGES["eight_bit"], b"(NIL {5}\r\nCaf\xc3\xa9 NIL NIL NIL NIL NIL NIL NIL NIL)"),
    ],
    ids=["single", "address-forms", "empty-values", "repeated-fields", "eight-bit-subject"],
)
def test_envelope(raw: bytes, expected: bytes) -> None:
    assert FakeMessage(raw).envelope() == expected


@pytest.mark.parametrize(
    ("name", "spec", "expected"),
    [
        ("mixed", "1", b"Your invoice is attached."),
        (
            "mixed",
            "2.MIME",
            b'Content-Type: application/pdf; name="invoice.pdf"\r\nContent-Disposition: attachm'
            b'ent; filename="invoice.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n',
        ),
        (
            "mixed",
            "TEXT",
            b"This is a multi-part message in MIME format.\r\n--mix\r\nContent-Type: text/plain"
            b"; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\nYour invoice is attache"
            b'd.\r\n--mix\r\nContent-Type: application/pdf; name="invoice.pdf"\r\nContent-Dispo'
            b'sition: attachment; filename="invoice.pdf"\r\nContent-Transfer-Encoding: base64\r'
            b"\n\r\nJVBERi0xLjQgZmFrZSBpbnZvaWNlCiVQREYtMS40IGZha2UgaW52b2ljZQolUERGLTEuNCBmYWt"
            b"l\r\nIGludm9pY2UKJVBERi0xLjQgZmFrZSBpbnZvaWNlCg==\r\n--mix--\r\n",
        ),
        (
            "alternative",
            "1",
            b"--alt\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nplain report\r\n"
            b"--alt\r\nContent-Type: text/html; charset=us-ascii\r\nContent-Transfer-Encoding: "
            b"quoted-printable\r\n\r\n<p>html report</p>\r\n--alt--\r\n",
        ),
        ("alternative", "1.2", b"<p>html report</p>"),
        (
            "alternative",
            "1.2.MIME",
            b"Content-Type: text/html; charset=us-ascii\r\nContent-Transfer-Encoding: quoted-pr"
            b"intable\r\n\r\n",
        ),
        ("alternative", "2", b"a,b\r\n1,2"),
        (
            "forwarded",
            "2",
            b"From: Eve <eve@example.org>\r\nTo: dan@example.com\r\nSubject: Contract\r\n"
            b"Date: Mon, 1 Jan 2024 08:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: "
            b"multipart/mixed; boundary=inner\r\n\r\n--inner\r\nContent-Type: text/plain\r\n"
            b"\r\nDraft attached.\r\n--inner\r\nContent-Type: application/msword; name=contract"
            b".doc\r\nContent-Disposition: attachment; filename=contract.doc\r\nContent-Transfe"
            b"r-Encoding: base64\r\n\r\nAAAA\r\n--inner--\r\n",
        ),
        (
            "forwarded",
            "2.HEADER",
            b"From: Eve <eve@example.org>\r\nTo: dan@example.com\r\nSubject: Contract\r\n"
            b"Date: Mon, 1 Jan 2024 08:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: "
            b"multipart/mixed; boundary=inner\r\n\r\n",
        ),
        (
            "forwarded",
            "2.TEXT",
            b"--inner\r\nContent-Type: text/plain\r\n\r\nDraft attached.\r\n--inner\r\nContent-"
            b"Type: application/msword; name=contract.doc\r\nContent-Disposition: attachment; "
            b"filename=contract.doc\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--inner"
            b"--\r\n",
        ),
        ("forwarded", "2.1", b"Draft attached."),
        ("forwarded", "2.2", b"AAAA"),
        (
            "forwarded",
            "2.2.MIME",
            b"Content-Type: application/msword; name=contract.doc\r\nContent-Disposition: "
            b"attachment; filename=contract.doc\r\nContent-Transfer-Encoding: base64\r\n\r\n",
        ),
        (
            "forwarded",
            "2.HEADER.FIELDS (SUBJECT FROM)",
            b"From: Eve <eve@example.org>\r\nSubject: Contract\r\n\r\n",
        ),
        ("single", "1", b"See you at noon.\r\n"),
        (
            "single",
            "HEADER.FIELDS (SUBJECT DATE)",
            b"Subject: Lunch?\r\nDate: Tue, 02 Jan 2024 09:30:00 +0100\r\n\r\n",
        ),
        (
            "single",
            "HEADER.FIELDS.NOT (FROM TO DATE MESSAGE-ID MIME-VERSION)",
            b"Subject: Lunch?\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n",
        ),
        ("no_disposition", "1.MIME", b"\r\n"),
        ("no_disposition", "1", b"body without headers"),
        ("unclosed", "2", b"PK\r\n"),
        ("no_boundary", "1", b""),  # the one empty part BODYSTRUCTURE shows
        ("no_boundary", "1.MIME", b""),
        ("no_boundary", "2", None),
        ("no_boundary", "TEXT", b"not really multipart\r\n"),
        ("forwarded", "", MESSAGES["forwarded"]),
        ("forwarded", "3", None),
        ("forwarded", "2.3", None),
        ("forwarded", "1.HEADER", b""),
        ("single", "2", None),
        ("single", "MIME", None),
        ("single", "BOGUS", None),
        ("single", "HEADER.FIELDS", None),
        ("single", "0", None),
    ],
)
def test_section(name: str, spec: str, expected: bytes | None) -> None:
    assert FakeMessage(MESSAGES[name]).section(spec) == expected


@pytest.mark.parametrize(
    ("why", "raw", "spec", "expected"),
    [
        ("delimiter is a line prefix", MIXED + "--bfoo\r\n\r\nA\r\n--b--x\r\n\r\nC\r\n", "1", b"A"),
        (
            "close delimiter with junk",
            MIXED + "--bfoo\r\n\r\nA\r\n--b\r\n\r\nB\r\n--b--x\r\n\r\nC\r\n",
            "2",
            b"B",
        ),
        (
            "transport padding",
            MIXED + "--b  \r\nX-A: 1\r\n\r\nA\r\n--b--  \r\n",
            "1.MIME",
            b"X-A: 1\r\n\r\n",
        ),
        ("preamble and epilogue", MIXED + "pre\r\n--b\r\n\r\nA\r\n--b--\r\nepi\r\n", "1", b"A"),
        ("CRLF before delimiter", MIXED + "--b\r\n\r\nA\r\n\r\n--b--", "1", b"A\r\n"),
        ("missing close delimiter", MIXED + "--b\r\n\r\nA\r\n--b\r\n\r\nB\r\n", "2", b"B\r\n"),
        ("header cut by delimiter", MIXED + "--b\r\nX-A: 1\r\n--b--", "1.MIME", b"X-A: 1"),
        (
            "empty line eaten by delimiter",
            MIXED + "--b\r\nX-A: 1\r\n\r\n--b\r\n\r\nB\r\n--b--",
            "1.MIME",
            b"X-A: 1\r\n",
        ),
        ("part without header", MIXED + "--b\r\n\r\nA\r\n--b--", "1.MIME", b"\r\n"),
        (
            "same boundary nested",
            MIXED
            + "--b\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nA\r\n--b--\r\n"
            "--b\r\n\r\nB\r\n--b--\r\n",
            "1",
            b"--b\r\n\r\nA\r\n--b--\r\n",
        ),
        (
            "outer boundary ends unclosed inner",
            MIXED + "--b\r\nContent-Type: multipart/mixed; boundary=bb\r\n\r\n--bb\r\n\r\nA\r\n"
            "--b\r\n\r\nB\r\n--b--\r\n",
            "1",
            b"--bb\r\n\r\nA",
        ),
        (
            "longest boundary wins",
            MIXED + "--b\r\nContent-Type: multipart/mixed; boundary=bb\r\n\r\n--bb\r\n\r\nA\r\n"
            "--b\r\n\r\nB\r\n--b--\r\n",
            "1.1",
            b"A",
        ),
        ("delimiter cut by the end opens no part", MIXED + "--b\r\n\r\nA\r\n--b", "2", None),
        (
            "digest part is a message",
            "Content-Type: multipart/digest; boundary=b\r\n\r\n--b\r\n\r\nFrom: a@b\r\n\r\n"
            "A\r\n--b--\r\n",
            "1.1",
            b"A",
        ),
        (
            "message/rfc822 single part body",
            MIXED
            + "--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: x\r\n\r\nbody\r\n--b--\r\n",
            "1.1",
            b"body",
        ),
        (
            "message/rfc822 header cut keeps CRLF",
            MIXED + "--b\r\nContent-Type: message/rfc822\r\n\r\nX-A: 1\r\n--b--\r\n",
            "1",
            b"X-A: 1\r\n",
        ),
        (
            "message/rfc822 header cut",
            MIXED + "--b\r\nContent-Type: message/rfc822\r\n\r\nX-A: 1\r\n--b--\r\n",
            "1.HEADER",
            b"X-A: 1",
        ),
        (
            "header filter reads on to an empty line",
            MIXED + "--b\r\nContent-Type: message/rfc822\r\n\r\nX-A: 1\r\nFrom: f@g\r\n--b\r\n\r\n"
            "B\r\n--b--\r\n",
            "1.HEADER.FIELDS.NOT (FROM)",
            b"X-A: 1\r\n--b\r\n\r\n",
        ),
        ("part 1 of a single part message", "Subject: x\r\n\r\nbody\r\n", "1", b"body\r\n"),
        (
            "MIME of a single part message",
            "Subject: x\r\n\r\nbody\r\n",
            "1.MIME",
            b"Subject: x\r\n\r\n",
        ),
        (
            "no empty line: all header",
            "Subject: x\r\nFrom: a@b\r\n",
            "HEADER",
            b"Subject: x\r\nFrom: a@b\r\n",
        ),
        ("no empty line: no text", "Subject: x\r\nFrom: a@b\r\n", "TEXT", b""),
        (
            "HEADER.FIELDS of a header without end",
            "From: a@b\r\nSubject: x",
            "HEADER.FIELDS (SUBJECT)",
            b"Subject: x\r\n\r\n",
        ),
        (
            "HEADER.FIELDS.NOT of a header without end",
            "From: a@b\r\nSubject: x",
            "HEADER.FIELDS.NOT (FROM)",
            b"Subject: x",
        ),
        (
            "field name with space before colon",
            "Subject : x\r\nFrom: a@b\r\n\r\nbody",
            "HEADER.FIELDS (subject)",
            b"Subject : x\r\n\r\n",
        ),
        (
            "HEADER of a part that is not a message",
            MIXED + "--b\r\n\r\nA\r\n--b--",
            "1.HEADER",
            b"",
        ),
        ("a path below a leaf", "Subject: x\r\n\r\nbody\r\n", "1.1", None),
        (
            "a boundary no line matches: one empty part",
            MIXED + "--a\r\n\r\nA\r\n--b--\r\n--b\r\nContent-Type: multipart/mixed; "
            "boundary=zzz\r\n\r\n--a\r\n\r\nA\r\n--b--\r\n",
            "1.1",
            b"",
        ),
        (
            "the empty part of a multipart without parts has an empty header",
            MIXED + "--b\r\nContent-Type: multipart/mixed; boundary=zzz\r\n\r\nA\r\n--b--\r\n",
            "1.1.MIME",
            b"",
        ),
    ],
)
def test_mime_splitter(why: str, raw: str, spec: str, expected: bytes | None) -> None:
    assert FakeMessage(raw.encode()).section(spec) == expected, why


@pytest.mark.parametrize("name", ["mixed", "alternative", "related", "forwarded", "rfc2231"])
def test_leaf_sections_match_the_email_package(name: str) -> None:
    """Where Python's parser is byte-faithful (leaf bodies of well-formed messages), we agree."""
    message = FakeMessage(MESSAGES[name])
    parsed = email.message_from_bytes(message.raw, policy=email.policy.compat32)
    for number, leaf in _numbered_leaves(parsed, ""):
        payload = leaf.get_payload()
        assert isinstance(payload, str)
        assert message.section(number) == payload.encode("ascii", "surrogateescape"), number
        assert leaf.get_payload(decode=True) == _decoded(message, number, leaf), number


def _numbered_leaves(
    part: email.message.Message, number: str
) -> list[tuple[str, email.message.Message]]:
    payload = part.get_payload()
    if part.get_content_type() == "message/rfc822":
        assert isinstance(payload, list)
        inner = payload[0]
        assert isinstance(inner, email.message.Message)
        return _numbered_leaves(inner, number if inner.is_multipart() else f"{number}.1")
    if not part.is_multipart():
        return [(number or "1", part)]
    assert isinstance(payload, list)
    found = []
    for index, child in enumerate(payload, start=1):
        assert isinstance(child, email.message.Message)
        found += _numbered_leaves(child, f"{number}.{index}" if number else str(index))
    return found


def _decoded(message: FakeMessage, number: str, leaf: email.message.Message) -> bytes | None:
    body = message.section(number)
    assert body is not None
    if leaf.get("content-transfer-encoding", "").lower() == "base64":
        return base64.b64decode(body)
    return body


def test_nul_bytes_as_dovecot_serves_them() -> None:
    """A NUL is 0x80 in every section, and U+FFFD in the header text of BODYSTRUCTURE/ENVELOPE."""
    raw = crlf(
        "Subject: a\x00b\n"
        'To: "Q\x00d" <q@x.com>\n'
        "MIME-Version: 1.0\n"
        "Content-Type: multipart/mixed; boundary=b\n"
        "\n"
        "--b\n"
        "Content-Type: text/plain; charset=ut\x00f-8\n"
        "Content-Description: d\x00e \x80\n"
        "Content-ID: <i\x00d>\n"
        "\n"
        "bo\x00dy\n"
        "--b\n"
        'Content-Type: application/pdf; name="a\x00b.pdf"\n'
        'Content-Disposition: attachment; filename="f\x00g.pdf"\n'
        "\n"
        "x\n"
        "--b--\n"
    ).replace("\x80".encode(), b"\x80")
    message = FakeMessage(raw)
    assert message.section("") == raw.replace(b"\x00", b"\x80")
    assert message.section("1") == b"bo\x80dy"
    assert message.section("1.MIME").startswith(b"Content-Type: text/plain; charset=ut\x80f-8\r\n")
    assert message.section("HEADER.FIELDS (SUBJECT)") == b"Subject: a\x80b\r\n\r\n"
    fffd = "\ufffd".encode()
    assert message.bodystructure() == (
        b'(("TEXT" "PLAIN" ("CHARSET" "ut") {7}\r\n<i' + fffd + b"d> {7}\r\nd" + fffd
        + b'e \x80 "7BIT" 5 0 NIL NIL NIL NIL)("APPLICATION" "PDF" ("NAME" {9}\r\na' + fffd
        + b'b.pdf) NIL NIL "7BIT" 1 NIL ("ATTACHMENT" ("FILENAME" {9}\r\nf' + fffd
        + b'g.pdf)) NIL NIL) "MIXED" ("BOUNDARY" "b") NIL NIL NIL)'
    )  # fmt: skip
    assert message.envelope() == (
        b"(NIL {5}\r\na" + fffd + b"b NIL NIL NIL ((" + b"{5}\r\nQ" + fffd
        + b'd NIL "q" "x.com")) NIL NIL NIL NIL)'
    )  # fmt: skip


def test_size_counts_crlf_bytes_and_lone_lf_is_normalised() -> None:
    message = FakeMessage(b"Subject: x\n\nline\n")
    assert message.raw == b"Subject: x\r\n\r\nline\r\n"
    assert message.size == 20
    assert message.section("TEXT") == b"line\r\n"


def test_encoded_size_is_the_base64_length() -> None:
    assert b'"BASE64" %d NIL' % len(PDF64.replace("\n", "\r\n").removesuffix("\r\n")) in (
        FakeMessage(MESSAGES["mixed"]).bodystructure()
    )


@pytest.mark.parametrize(
    ("name", "filenames", "subject", "text"),
    [
        ("single", [], "Lunch?", "See you at noon."),
        ("mixed", ["invoice.pdf"], "Invoice 42", "Your invoice is attached."),
        ("alternative", ["report.csv"], "Report", "html report"),
        ("related", [], "Signature", ""),
        ("forwarded", ["contract.doc"], "Fwd: Contract", "Draft attached."),
        ("rfc2231", ["\u20ac rate.pdf"], "Euro", ""),
        ("encoded_word", ["Recibo n\u00ba1.pdf"], "Recibo", ""),
        ("eight_bit", ["caf\u00e9.pdf"], "Caf\u00e9", ""),
        ("no_disposition", ["winmail.dat"], "", "body without headers"),
        ("no_boundary", [], "", ""),
        ("unclosed", ["a.zip"], "", "first"),
    ],
)
def test_search_facts(name: str, filenames: list[str], subject: str, text: str) -> None:
    message = FakeMessage(MESSAGES[name])
    assert message.attachment_filenames == filenames
    assert message.has_attachment == bool(filenames)
    assert message.subject == subject
    assert text in message.text


def test_header_facts() -> None:
    message = FakeMessage(MESSAGES["single"])
    assert message.header_addresses("from") == ["Alice Example <alice@example.com>"]
    assert message.header_addresses("to", "cc", "bcc") == [
        "Bob <bob@example.org>",
        "carol@example.net",
    ]
    assert message.date == datetime(2024, 1, 2, 8, 30, tzinfo=UTC)
    assert message.message_id == "<single@example.com>"
    assert FakeMessage(b"Date: yesterday\r\n\r\n").date is None
    assert FakeMessage(b"\r\n").message_id is None


_PIECES = st.sampled_from(
    [
        b"\r\n",
        b"\n",
        b"--b",
        b"--b--",
        b"Content-Type: multipart/mixed; boundary=b",
        b"Content-Type: message/rfc822",
        b"Content-Type: multipart/digest; boundary=b",
        b": ",
        b"(",
        b")",
        b'"',
        b"\\",
        b";",
        b"=",
        b"name*0*=",
        b"From: ",
        b"<",
        b">",
        b"@",
        b",",
        b"x",
        b"\xc3\xa9",
        b"\xff",
        b"\x00",
        b" ",
        b"=?utf-8?q?a?=",
        b"\r",
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_PIECES, max_size=40).map(b"".join) | st.binary(max_size=200))
def test_malformed_messages_never_raise(raw: bytes) -> None:
    message = FakeMessage(raw)
    assert message.bodystructure().startswith(b"(")
    assert message.envelope().startswith(b"(")
    for spec in ("", "HEADER", "TEXT", "1", "1.MIME", "2.1", "2.HEADER.FIELDS (FROM)", "x"):
        message.section(spec)
    assert isinstance(message.text + message.subject, str)
    assert isinstance(message.attachment_filenames, list)
    assert message.section("") == message.raw.replace(b"\x00", b"\x80")
