"""Modified UTF-7 (RFC 3501 section 5.1.3): how IMAP writes non-ASCII folder and label names."""

from __future__ import annotations

import base64
import binascii
import re

_SHIFTED = re.compile(rb"&([^-]*)-")


def encode(name: str) -> bytes:
    """`name` in modified UTF-7: printable ASCII as is, `&` as `&-`, other runs as `&base64-`."""
    out: list[bytes] = []
    pending: list[str] = []
    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            out.append(_shift(pending))
            pending = []
            out.append(b"&-" if char == "&" else char.encode())
        else:
            pending.append(char)
    out.append(_shift(pending))
    return b"".join(out)


def decode(data: bytes) -> str:
    """The name modified UTF-7 `data` stands for; ValueError when it is not valid modified UTF-7."""
    if any(byte > 0x7E or byte < 0x20 for byte in data):
        raise ValueError("modified UTF-7 is printable ASCII")
    return _SHIFTED.sub(_unshift, data).decode("utf-8", "surrogatepass")


def _shift(chars: list[str]) -> bytes:
    if not chars:
        return b""
    encoded = base64.b64encode("".join(chars).encode("utf-16-be"), altchars=b"+,")
    return b"&" + encoded.rstrip(b"=") + b"-"


def _unshift(match: re.Match[bytes]) -> bytes:
    payload = match.group(1)
    if not payload:
        return b"&"
    try:
        utf16 = base64.b64decode(
            payload + b"=" * (-len(payload) % 4), altchars=b"+,", validate=True
        )
        return utf16.decode("utf-16-be").encode("utf-8", "surrogatepass")
    except (binascii.Error, UnicodeDecodeError) as error:
        raise ValueError(f"bad modified UTF-7 run {payload!r}") from error
