"""Safe local file names for attachments, whose stored names the senders chose.

A stored name may be a path (`../../x`, `/etc/passwd`, `C:\\x\\y.pdf`), hold control, bidi or
zero-width characters, a NUL, or be a thousand characters long. The safe name is its last path
component with every dangerous character replaced, no leading dots (`..`, hidden files) and at
most MAX_NAME_BYTES of UTF-8, its extension kept. (pathvalidate, the usual library, keeps `..`
as it is and cuts the extension off long names, so it does not fit here.)
"""

from __future__ import annotations

import re
import unicodedata

from crawler.blobs import validate_key
from crawler.errors import BadInput

MAX_NAME_BYTES = 200
MAX_EXTENSION_BYTES = 16  # a longer "extension" is just part of the name
# Characters Windows refuses in names, and Unicode controls, formats (bidi overrides, zero-width),
# lone surrogates and line or paragraph separators: all become "_".
_FORBIDDEN = frozenset('<>:"/\\|?*')
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_WINDOWS_DEVICES = frozenset(
    {"CON", "PRN", "AUX", "NUL"} | {f"{port}{n}" for port in ("COM", "LPT") for n in range(1, 10)}
)
_SEPARATORS = re.compile(r"[/\\]")


def safe_filename(stored: object, sha256: object) -> str:
    """A file name that stays in its directory on any OS; `<sha256>.bin` when nothing is left."""
    name = unicodedata.normalize("NFC", stored) if isinstance(stored, str) else ""
    name = _SEPARATORS.split(name)[-1]  # the last path component, whichever separator
    name = "".join("_" if _unsafe(char) else char for char in name).strip(" .")
    if not name:
        return _fallback(sha256)
    if name.split(".")[0].rstrip(" ").upper() in _WINDOWS_DEVICES:
        name = f"_{name}"
    return numbered(name, 1)


def numbered(name: str, counter: int) -> str:
    """`name`, or `name (counter)` before its extension when counter > 1, cut to fit."""
    stem, extension = _split_extension(name)
    tag = f" ({counter})" if counter > 1 else ""
    room = MAX_NAME_BYTES - len((tag + extension).encode())
    # Cutting UTF-8 bytes may split a character: drop its remains.
    return stem.encode()[:room].decode("utf-8", "ignore") + tag + extension


def _unsafe(char: str) -> bool:
    return char in _FORBIDDEN or unicodedata.category(char) in _UNSAFE_CATEGORIES


def _split_extension(name: str) -> tuple[str, str]:
    stem, dot, extension = name.rpartition(".")
    if dot and stem and 0 < len(extension.encode()) < MAX_EXTENSION_BYTES:
        return stem, f".{extension}"
    return name, ""


def _fallback(sha256: object) -> str:
    try:
        return f"{validate_key(str(sha256))}.bin"
    except BadInput:  # not a blob key: it must not name the file either
        return "attachment.bin"
