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
- uuencode (`uuencode`, `x-uuencode`, `uue`, `x-uue`): as `email.message.Message.get_payload`
  reads it. Lines (ended by CRLF, LF or a lone CR) are skipped up to a `begin <octal mode> <name>`
  line; each line after it is `binascii.a2b_uu` of its first `1 + ceil(4 * length / 3)`
  characters (uu's workaround for broken encoders, and what `a2b_uu` of the whole line gives when
  it succeeds), up to a line `end`; text after `end` is ignored. Where `email` gives up on a
  line and returns the whole text as sent, the decoder cannot take back what it has already
  passed on: it skips that line instead, and counts it in `warnings` when it had a character
  outside the alphabet (an empty line carries nothing, so it is skipped silently). Without a
  begin line the text is the content, as in `email`; the begin line is looked for in the first
  64 KiB only, so that what is held back stays bounded. No `end` line decodes what came, as in
  `email`, with a warning.
- any other encoding, or none: the text is the content, as in `email`, with a warning.

Nothing here raises on any text: what is not understood is passed on as sent, or skipped, and
`PartDecoder.warnings` names it once the text has ended.
"""

from __future__ import annotations

import binascii
import enum
import re
from collections.abc import Callable
from typing import Protocol

_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# Everything that is neither a base64 character nor padding: removed before decoding.
_NOT_BASE64 = bytes(byte for byte in range(256) if byte not in _BASE64_ALPHABET + b"=")
_QUANTUM = 4
# A whole run of `=` (possibly empty) and the CR after it; with an odd run the last `=` and the
# CR make a soft break. Possessive and anchored at the run's start: linear on a line of `=`.
_PADS_BEFORE_CR = re.compile(rb"(?<!=)(=*+)\r")

# The line breaks of `bytes.splitlines`, which is how `email` cuts uuencoded text into lines.
_LINE_BREAK = re.compile(rb"\r\n?|\n")
# How much text is searched for a begin line: all of it is held back meanwhile, since without
# one it is sent as it is.
_BEGIN_WINDOW = 64 * 1024
# `a2b_uu` reads at most this many characters of a line: a length character, 84 for 63 bytes.
_UU_LINE_HEAD = 85
# Past this, a line in progress is shortened (see `_shorten`); real uuencoded lines are 62 long.
_LONG_LINE = 1024
_BLANKS = re.compile(rb"[ \t\f]+")
_END_STRIP = b" \t\r\n\f"  # what `email` strips from a line before comparing it to `end`
# An encoding name is header text from the mail: the warning shows only the start of its repr.
_NAME_SHOWN = 40


class _Decoder(Protocol):
    def feed(self, chunk: bytes) -> bytes: ...

    def finish(self) -> bytes: ...

    @property
    def warnings(self) -> list[str]: ...


class PartDecoder:
    """Decodes one part's transfer encoding chunk by chunk, wherever the chunks split the text.

    Never raises: an encoding it does not know is read as 7bit (`understood` is then False), and
    `warnings` names what was not understood once `finish` has been called.
    """

    def __init__(self, encoding: str) -> None:
        """`encoding` is the part's Content-Transfer-Encoding, in any case and spacing."""
        self.encoding = encoding.strip().lower()
        factory = _DECODERS.get(self.encoding)
        self.understood = factory is not None
        self._decoder: _Decoder = factory() if factory is not None else IdentityDecoder()

    @property
    def warnings(self) -> list[str]:
        """Short sentences naming what was not understood; complete only after `finish`."""
        found = self._decoder.warnings
        if not self.understood:
            name = repr(self.encoding)
            if len(name) > _NAME_SHOWN:
                name = name[: _NAME_SHOWN - 3] + "..."
            found.insert(0, f"unknown Content-Transfer-Encoding {name}: saved as sent")
        return found

    @property
    def begin_name(self) -> str | None:
        """The file name on a uuencoded part's begin line, None for other parts or without one."""
        return self._decoder.begin_name if isinstance(self._decoder, UUDecoder) else None

    def feed(self, chunk: bytes) -> bytes:
        """The decoded bytes that `chunk` completes."""
        return self._decoder.feed(chunk)

    def finish(self) -> bytes:
        """The decoded bytes still held back, once the encoded text has ended."""
        return self._decoder.finish()


class IdentityDecoder:
    """7bit, 8bit and binary parts, and encodings not understood: the text is the content."""

    def feed(self, chunk: bytes) -> bytes:
        """`chunk` itself."""
        return chunk

    def finish(self) -> bytes:
        """Nothing: no bytes are ever held back."""
        return b""

    @property
    def warnings(self) -> list[str]:
        """None: every text is content."""
        return []


class Base64Decoder:
    """Base64 read as `binascii.a2b_base64` reads it, lenient about a missing final padding."""

    def __init__(self) -> None:
        self._quantum = b""  # the 0 to 3 characters of the quantum in progress
        self._pads = 0  # `=` seen since the last character of that quantum
        self._ended = False  # a padded quantum ended the data
        self._cut_short = False  # the text ended inside a quantum
        self._whole_lines = True  # lines so far held whole quanta: `_decode_lines` may be tried

    def feed(self, chunk: bytes) -> bytes:
        """The bytes of every quantum that `chunk` completes."""
        if self._ended:
            return b""
        if self._whole_lines:
            # The lines before the first `=` (padding comes last: usually all but a few bytes).
            pad = chunk.find(b"=")
            lines = chunk if pad == -1 else chunk[: chunk.rfind(b"\n", 0, pad) + 1]
            decoded = self._decode_lines(lines) if lines else None
            if decoded is not None:
                return decoded if pad == -1 else decoded + self._decode_text(chunk[len(lines) :])
        return self._decode_text(chunk)

    def finish(self) -> bytes:
        """The bytes of an unpadded last quantum (a lone character is less than a byte: dropped)."""
        if self._ended:
            return b""
        self._ended = True
        # Unpadded base64 is rare in mail; a text cut off in transit usually ends like this.
        self._cut_short = bool(self._quantum)
        return self._close_quantum() if len(self._quantum) >= 2 else b""

    @property
    def warnings(self) -> list[str]:
        """Whether the text ended inside a quantum, once `finish` has been called."""
        if self._cut_short:
            return ["base64 text ends mid-quantum: the part may be truncated"]
        return []

    def _decode_text(self, chunk: bytes) -> bytes:
        text = chunk.translate(None, _NOT_BASE64)
        if b"=" not in text:  # the usual case: padding only ever comes at the very end
            return self._decode(text)
        return self._decode_padded(text)

    def _decode_lines(self, chunk: bytes) -> bytes | None:
        """`feed` of text without `=`, when the text up to its last line break holds whole
        quanta (lines of 76 characters do): `binascii` skips the line breaks itself, sparing a
        copy of the text without them. None, and no change, when the text has no line break or
        is cut inside a quantum there (`binascii` refuses it): `feed` then goes the long way,
        and no longer tries this one for the part."""
        text = self._quantum + chunk
        cut = text.rfind(b"\n") + 1
        if not cut:
            return None
        try:
            head = binascii.a2b_base64(memoryview(text)[:cut])
        except binascii.Error:  # a quantum straddles the line break
            self._whole_lines = False
            return None
        # `=` are counted only while 2 or 3 characters are held, which binascii takes only with
        # more from the chunk: those `=` were inside the text, and are skipped as `_decode` does.
        self._pads = 0
        tail = text[cut:].translate(None, _NOT_BASE64)
        complete = len(tail) - len(tail) % _QUANTUM
        self._quantum = tail[complete:]
        return head + binascii.a2b_base64(tail[:complete]) if complete else head

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

    @property
    def warnings(self) -> list[str]:
        """None: `binascii.a2b_qp` keeps whatever it does not understand as it is."""
        return []


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


class _Uu(enum.Enum):
    SEEKING = enum.auto()  # no begin line yet: holding the text back
    DECODING = enum.auto()  # after the begin line
    RAW = enum.auto()  # no begin line in the first 64 KiB: the text is the content
    ENDED = enum.auto()  # after `end`, or after `finish`


class UUDecoder:
    """uuencode read as Python's `email` package reads it, skipping the lines it would fail on.

    `begin_name` is the file name on the begin line (UTF-8, undecodable bytes replaced) once
    that line has been read, else None.
    """

    def __init__(self) -> None:
        self.begin_name: str | None = None
        self._state = _Uu.SEEKING
        self._held = bytearray()  # while seeking: all the text so far, sent as is if no begin
        self._line_start = 0  # while seeking: where the first line not yet looked at starts
        self._searched = 0  # while seeking: how far line breaks have been looked for
        self._line = b""  # while decoding: the line in progress, shortened when long
        self._no_begin = ""  # the warning when there was no begin line to find
        self._skipped = 0  # lines `a2b_uu` cannot decode
        self._no_end = False  # the text ended before the line `end`

    def feed(self, chunk: bytes) -> bytes:
        """The bytes of every line that `chunk` completes (or the text itself, without begin)."""
        if self._state is _Uu.SEEKING:
            return self._seek(chunk)
        if self._state is _Uu.DECODING:
            return self._decode(chunk)
        return chunk if self._state is _Uu.RAW else b""

    def finish(self) -> bytes:
        """The bytes of an unended last line, or the held text if it had no begin line."""
        if self._state is _Uu.SEEKING:
            # The last line has no line break, but it is whole now: it may still be the begin.
            if not self._is_begin(bytes(self._held[self._line_start :])):
                return self._give_up("uuencode without a begin line: saved as sent")
            self._held, self._state = bytearray(), _Uu.DECODING
        decoded = b""
        if self._state is _Uu.DECODING:
            decoded = self._decode_lines([self._line])
            self._no_end = self._state is _Uu.DECODING
        self._state, self._line = _Uu.ENDED, b""
        return decoded

    @property
    def warnings(self) -> list[str]:
        """What was not understood: no begin line, lines skipped, no end line."""
        found = [self._no_begin] if self._no_begin else []
        if self._skipped == 1:
            found.append("1 uuencoded line could not be decoded and was skipped")
        elif self._skipped:
            found.append(f"{self._skipped} uuencoded lines could not be decoded and were skipped")
        if self._no_end:
            found.append("uuencode without an end line: the part may be truncated")
        return found

    def _seek(self, chunk: bytes) -> bytes:
        self._held += chunk
        rest = self._after_begin()
        if rest is not None:
            self._held, self._state = bytearray(), _Uu.DECODING
            return self._decode(rest)
        if len(self._held) > _BEGIN_WINDOW:
            return self._give_up("uuencode without a begin line in its first 64 KiB: saved as sent")
        return b""

    def _after_begin(self) -> bytes | None:
        """The text after the first begin line, if one ends inside the window."""
        # The window is the same whatever the chunks, so the decoded text is too.
        window = min(len(self._held), _BEGIN_WINDOW)
        # A CR ending the text so far is a line break whatever follows: an LF after it only
        # makes an empty line, which changes nothing. So no break straddles two searches.
        breaks = _LINE_BREAK.finditer(self._held, self._searched, window)
        self._searched = window
        for line_break in breaks:
            line = bytes(self._held[self._line_start : line_break.start()])
            self._line_start = line_break.end()
            if self._is_begin(line):
                return bytes(self._held[self._line_start :])
        return None

    def _is_begin(self, line: bytes) -> bool:
        """Whether `line` is a begin line as `email` reads one; if so, keeps its file name."""
        if not line.startswith(b"begin "):
            return False
        mode, _, name = line.removeprefix(b"begin ").partition(b" ")
        try:
            int(mode, 8)
        except ValueError:
            return False
        self.begin_name = name.rstrip(_END_STRIP).decode("utf-8", errors="replace")
        return True

    def _give_up(self, warning: str) -> bytes:
        held = bytes(self._held)
        self._no_begin, self._held, self._state = warning, bytearray(), _Uu.RAW
        return held

    def _decode(self, chunk: bytes) -> bytes:
        lines = _LINE_BREAK.split(self._line + chunk)
        self._line = _shorten(lines.pop())
        return self._decode_lines(lines)

    def _decode_lines(self, lines: list[bytes]) -> bytes:
        decoded = []
        for line in lines:
            if line.strip(_END_STRIP) == b"end":
                self._state, self._line = _Uu.ENDED, b""
                break
            if line:  # `email` gives up on an empty line; it carries no data, so it is skipped
                decoded.append(self._decode_line(line))
        return b"".join(decoded)

    def _decode_line(self, line: bytes) -> bytes:
        # uu's workaround for broken encoders reads only the characters the length asks for;
        # `a2b_uu` of the whole line, when it succeeds, gives the same bytes.
        length = (line[0] - 32) & 63
        try:
            return binascii.a2b_uu(line[: (length * 4 + 5) // 3])
        except binascii.Error:  # a character outside the alphabet
            self._skipped += 1
            return b""


def _shorten(line: bytes) -> bytes:
    """A line in progress, cut so that it stays small but decodes and compares to `end` the same.

    A broken part may be one line of megabytes. Only its first 85 characters are decoded, and it
    is `end` only if all the rest is blanks but three characters: so the rest can lose its blank
    runs but one blank each, and then all but its first 8 characters, which keep at least 4
    non-blanks if there were as many. Shortening again what has been shortened keeps both.
    """
    if len(line) <= _LONG_LINE:
        return line
    return line[:_UU_LINE_HEAD] + _BLANKS.sub(b" ", line[_UU_LINE_HEAD:])[:8]


_DECODERS: dict[str, Callable[[], _Decoder]] = {
    "base64": Base64Decoder,
    "quoted-printable": QuotedPrintableDecoder,
    "7bit": IdentityDecoder,
    "8bit": IdentityDecoder,
    "binary": IdentityDecoder,
    "uuencode": UUDecoder,
    "x-uuencode": UUDecoder,
    "uue": UUDecoder,
    "x-uue": UUDecoder,
}
