"""Incremental Content-Transfer-Encoding decoding of one attachment part.

IMAP hands a part over in `<offset.length>` slices of its encoded text, cut anywhere: inside a
base64 quantum, between `=` and `\\r\\n`, inside `=3D`. Each decoder carries the few bytes it cannot
decode yet to the next slice, so memory follows the slice size, never the attachment size, and the
output equals decoding the whole text at once, whatever the cuts.

Malformed text is read the way `binascii` (and so Python's `email` package) reads it:

- base64: bytes outside the alphabet (line breaks, spaces, garbage) are skipped; an `=` that
  completes a quantum ends the data, and anything after it is ignored; any other `=` is skipped.
  Unlike `binascii`, the end of the text closes an unpadded last quantum instead of failing, as
  mail clients do: two or three characters still give their one or two bytes, and a single
  leftover character (six bits, less than a byte) is dropped.
- quoted-printable: `binascii.a2b_qp`: `=XX` escapes, soft line breaks `=\\r\\n` and `=\\n` (and a
  bare `=\\r`, which swallows the rest of its line), an `=` followed by anything else is kept
  as is, and a trailing `=` at the very end is dropped.
"""

from __future__ import annotations

import binascii
import re
from typing import Protocol

from crawler.errors import BadInput

_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# Everything that is neither a base64 character nor padding: removed before decoding.
_NOT_BASE64 = bytes(byte for byte in range(256) if byte not in _BASE64_ALPHABET + b"=")
_QUANTUM = 4
# A whole run of `=` (possibly empty) and the CR after it; with an odd run the last `=` and the
# CR make a soft break. Possessive and anchored at the run's start: linear on a line of `=`.
_PADS_BEFORE_CR = re.compile(rb"(?<!=)(=*+)\r")


class _Decoder(Protocol):
    def feed(self, chunk: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


class PartDecoder:
    """Decodes one part's transfer encoding chunk by chunk, wherever the chunks split the text."""

    def __init__(self, encoding: str) -> None:
        """`encoding` is the part's Content-Transfer-Encoding, in any case.

        Raises `BadInput` naming it when it is none of base64, quoted-printable, 7bit, 8bit, binary.
        """
        self.encoding = encoding.strip().lower()
        if self.encoding == "base64":
            self._decoder: _Decoder = Base64Decoder()
        elif self.encoding == "quoted-printable":
            self._decoder = QuotedPrintableDecoder()
        elif self.encoding in {"7bit", "8bit", "binary"}:
            self._decoder = IdentityDecoder()
        else:
            raise BadInput(f"unsupported Content-Transfer-Encoding {encoding!r}")

    def feed(self, chunk: bytes) -> bytes:
        """The decoded bytes that `chunk` completes."""
        return self._decoder.feed(chunk)

    def finish(self) -> bytes:
        """The decoded bytes still held back, once the encoded text has ended."""
        return self._decoder.finish()


class IdentityDecoder:
    """7bit, 8bit and binary parts: the text is the content."""

    def feed(self, chunk: bytes) -> bytes:
        """`chunk` itself."""
        return chunk

    def finish(self) -> bytes:
        """Nothing: no bytes are ever held back."""
        return b""


class Base64Decoder:
    """Base64 read as `binascii.a2b_base64` reads it, lenient about a missing final padding."""

    def __init__(self) -> None:
        self._quantum = b""  # the 0 to 3 characters of the quantum in progress
        self._pads = 0  # `=` seen since the last character of that quantum
        self._ended = False  # a padded quantum ended the data

    def feed(self, chunk: bytes) -> bytes:
        """The bytes of every quantum that `chunk` completes."""
        if self._ended:
            return b""
        text = chunk.translate(None, _NOT_BASE64)
        if b"=" not in text:  # the usual case: padding only ever comes at the very end
            return self._decode(text)
        return self._decode_padded(text)

    def finish(self) -> bytes:
        """The bytes of an unpadded last quantum (a lone character is less than a byte: dropped)."""
        if self._ended:
            return b""
        self._ended = True
        return self._close_quantum() if len(self._quantum) >= 2 else b""

    def _decode(self, characters: bytes) -> bytes:
        if characters:
            self._pads = 0
        text = self._quantum + characters
        complete = len(text) - len(text) % _QUANTUM
        self._quantum = text[complete:]
        return binascii.a2b_base64(memoryview(text)[:complete])

    def _decode_padded(self, text: bytes) -> bytes:
        # Between two pieces there was exactly one `=`.
        first, *rest = text.split(b"=")
        decoded = [self._decode(first)]
        for piece in rest:
            if self._pad_ends_data():
                self._ended = True
                decoded.append(self._close_quantum())
                break
            decoded.append(self._decode(piece))
        return b"".join(decoded)

    def _pad_ends_data(self) -> bool:
        # The rule of binascii: padding counts only after two characters of a quantum.
        if len(self._quantum) < 2:
            return False
        self._pads += 1
        return len(self._quantum) + self._pads >= _QUANTUM

    def _close_quantum(self) -> bytes:
        quantum, self._quantum = self._quantum, b""
        return binascii.a2b_base64(quantum + b"==")  # padding past the quantum's end is ignored


class QuotedPrintableDecoder:
    """Quoted-printable read by `binascii.a2b_qp`, fed only text that ends between two escapes."""

    def __init__(self) -> None:
        self._held = b""  # the end of the text so far, which the next chunk may change

    def feed(self, chunk: bytes) -> bytes:
        """The bytes of the text up to the last point where the next chunk cannot change them."""
        text = self._held + chunk
        line = text.rfind(b"\n") + 1  # every escape and soft break ends by the line feed
        cut, self._held = _split_line(text[line:])
        return binascii.a2b_qp(memoryview(text)[: line + cut])

    def finish(self) -> bytes:
        """The bytes of the held-back end of the text."""
        held, self._held = self._held, b""
        return binascii.a2b_qp(held)


def _split_line(line: bytes) -> tuple[int, bytes]:
    """Where to cut a line without its line feed, and what to hold back for the next chunk.

    Lines are short (76 characters in RFC 2045) but a broken part may be one line of megabytes,
    so the split must not wait for a line feed: it goes right before a final escape that may be
    incomplete (`=`, `=X`), and a soft break `=\\r` keeps only itself, since binascii drops the
    rest of its line anyway.
    """
    for pads in _PADS_BEFORE_CR.finditer(line):
        if len(pads[1]) % 2:  # `==` is a literal `=`, so only an odd run's last `=` escapes the CR
            return pads.end() - 2, b"=\r"
    last_pad = line.rfind(b"=")
    if last_pad == -1 or last_pad < len(line) - 2:  # every escape is complete
        return len(line), b""
    # Cut at the start of that run of `=`, or after a whole number of `==` pairs in it.
    run = len(line[: last_pad + 1].rstrip(b"="))
    cut = run + 2 * ((last_pad - run) // 2)
    return cut, line[cut:]
