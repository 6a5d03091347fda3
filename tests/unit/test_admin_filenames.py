"""Safe export names for attachment names that senders chose."""

import pytest

from workers.admin_filenames import MAX_NAME_BYTES, numbered, safe_filename

pytestmark = pytest.mark.unit

SHA = "ab" * 32


@pytest.mark.parametrize(
    ("stored", "safe"),
    [
        ("report.pdf", "report.pdf"),
        ("../../x", "x"),
        ("/etc/passwd", "passwd"),
        ("C:\\x\\y.pdf", "y.pdf"),
        ("..\\..\\Windows\\win.ini", "win.ini"),
        ("invoice.pdf\x00.exe", "invoice.pdf_.exe"),
        ("a\r\nb.txt", "a__b.txt"),
        ("evil\u202egpj.exe", "evil_gpj.exe"),  # a right-to-left override hides the extension
        ("zero\u200bwidth.txt", "zero_width.txt"),
        ('what?<>:"|*.txt', "what_______.txt"),
        ("x:y.pdf", "x_y.pdf"),
        (".bashrc", "bashrc"),
        ("..", f"{SHA}.bin"),
        ("../..", f"{SHA}.bin"),
        (" . ", f"{SHA}.bin"),
        ("", f"{SHA}.bin"),
        (None, f"{SHA}.bin"),
        (42, f"{SHA}.bin"),
        ("dir/", f"{SHA}.bin"),
        ("CON", "_CON"),
        ("nul.txt", "_nul.txt"),
        ("Cafe\u0301.pdf", "Caf\u00e9.pdf"),  # NFC: one code point, as most file systems expect
        ("trailing. . ", "trailing"),
    ],
)
def test_names_are_safe(stored: object, safe: str) -> None:
    assert safe_filename(stored, SHA) == safe


def test_a_bad_sha256_never_names_the_file() -> None:
    assert safe_filename("..", "../../etc/passwd") == "attachment.bin"


@pytest.mark.parametrize("char", ["n", "\u00e9", "\u6587", "\U0001f600"])
def test_long_names_are_cut_to_the_byte_cap_keeping_the_extension(char: str) -> None:
    name = safe_filename(char * 1000 + ".pdf", SHA)
    assert name.endswith(".pdf") and name.startswith(char)
    assert MAX_NAME_BYTES - 4 <= len(name.encode()) <= MAX_NAME_BYTES
    assert "\ufffd" not in name  # a character cut in half is dropped, not mangled


def test_a_long_extension_is_part_of_the_name() -> None:
    name = safe_filename("a." + "b" * 500, SHA)
    assert len(name.encode()) == MAX_NAME_BYTES and name.startswith("a.bbb")


@pytest.mark.parametrize(
    ("name", "counter", "result"),
    [
        ("report.pdf", 1, "report.pdf"),
        ("report.pdf", 2, "report (2).pdf"),
        ("archive.tar.gz", 3, "archive.tar (3).gz"),
        ("README", 2, "README (2)"),
    ],
)
def test_numbered_names(name: str, counter: int, result: str) -> None:
    assert numbered(name, counter) == result


def test_a_numbered_long_name_still_fits() -> None:
    name = numbered(safe_filename("x" * 1000 + ".pdf", SHA), 12)
    assert name.endswith(" (12).pdf") and len(name.encode()) == MAX_NAME_BYTES
