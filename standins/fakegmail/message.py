"""One message as the fake Gmail serves it: BODYSTRUCTURE, ENVELOPE, BODY[section] and search facts.

Everything a client sees is computed from the raw bytes, the way an IMAP server does it, and
matches Dovecot 2.3 byte for byte where Gmail is not known to differ. Sections are byte ranges of
the raw message, never a re-serialisation. The MIME splitter follows Dovecot's message parser:

- a boundary line is any line that *starts* with ``--boundary``; when several enclosing boundaries
  match, the longest wins, and on a tie the innermost; anything after it on the line is ignored;
- the CRLF before a boundary line belongs to the boundary, unless it lies before the start of the
  region being cut (a part's body, a preamble or an epilogue);
- a boundary of an enclosing multipart ends every inner part (a missing close delimiter is then
  harmless); after a close delimiter the epilogue runs to the next enclosing boundary;
- the header of a part ends at its first empty line, or at a boundary line, or at the end;
- the first Content-Type, Content-Transfer-Encoding, Content-ID ... header of a part wins;
- an empty line right before an enclosing boundary is that boundary's CRLF: the header then
  ends without it, and a message/rfc822 part whose enclosed header was cut short this way keeps
  the CRLF in its own body (its size and BODY[n] include it);
- a delimiter line cut off by the end of the message (no line break) opens no part;
- a multipart without a boundary, or with no parts, is written with one empty text/plain child;
- message/rfc822 is parsed whatever its transfer encoding; the children of multipart/digest
  default to message/rfc822; Content-* headers other than Content-Type count only in a MIME part
  (one with Content-Type or MIME-Version, or a child of a multipart).

Section rules as Dovecot answers them: ``N.1`` of a leaf part N is the part itself, deeper paths
below a leaf do not exist; ``N.MIME`` of a single-part message is its header; HEADER, TEXT and
HEADER.FIELDS of a part that is not message/rfc822 are empty. HEADER.FIELDS[.NOT] of an enclosed
message reads on from its header to the first empty line, past boundaries if need be, and ends
with an empty line only when it found one; the top-level HEADER.FIELDS always ends with one.

ENVELOPE as Dovecot writes it: the last Date, Subject, In-Reply-To and Message-ID win, address
headers add up; subjects and display names lose line breaks and runs of whitespace; a missing
mailbox or host reads ``MISSING_MAILBOX`` / ``MISSING_DOMAIN``; groups are start and end markers.

Header values are parsed leniently as Dovecot does: a Content-Type with junk after the subtype is
written as ``"" ""``; a type without subtype as ``"text" ""``; parameters that do not parse are
skipped up to the next ``;``; RFC 2231 continuations are merged into ``NAME*`` (extended) or
``NAME`` and sorted after the plain parameters, and kept apart (``NAME*0*``, ``NAME*2``) when an
index is missing; values are never decoded (encoded words and percent escapes travel as sent).
Text parts without a charset get ``("CHARSET" "us-ascii")``.

A NUL byte is served as 0x80 in every section (BODY[], headers and bodies alike), and becomes
U+FFFD in the header text BODYSTRUCTURE and ENVELOPE carry (a NUL ends a token, as any other
byte outside it does). A multipart without parts shows one empty text/plain part, and BODY[n.1]
of it is empty.

Deliberate differences from Dovecot, because Gmail writes them so: types, subtypes, transfer
encodings, disposition types and parameter names are upper-cased (``"TEXT" "PLAIN"
("CHARSET" "UTF-8")``); parameter values keep their case. Literal-versus-quoted choices follow
`wire.nstring` (a quoted string whenever the value is printable ASCII), which is equivalent on
the wire; Dovecot sends some printable values (a subject with a double quote) as literals.

Known gaps: Dovecot's limits on MIME nesting (beyond 100 levels, parts are leaves here too) and on
boundary length are not reproduced exactly.

The search facts (decoded subject, addresses, attachment names, body text) come from Python's
email package, which only needs to be right about meaning, not bytes.
"""

from __future__ import annotations

import email
import email.errors
import email.header
import email.message
import email.policy
import email.utils
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from standins.fakegmail.wire import nstring, paren

MAX_DEPTH = 100
_CRLF = b"\r\n"
_LONE_LF = re.compile(rb"(?<!\r)\n")
_ALNUM = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_ATEXT = frozenset(_ALNUM + b"!#$%&'*+-/=?^_`{|}~") | frozenset(range(0x80, 0x100))
_TOKEN = (_ATEXT - frozenset(b"/=?")) | frozenset(b".")
_LWSP = frozenset(b" \t\r\n")
_WSP = b" \t"
_EMPTY_PART = b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 0 0 NIL NIL NIL NIL)'
_NUL = b"\x00"
_SERVED_NUL = b"\x80"  # what a NUL becomes in the bytes of a section
_PARSED_NUL = "\ufffd".encode()  # what a NUL becomes in header text parsed for BODYSTRUCTURE


# ---------------------------------------------------------------------------------------------
# Lexical scanning of header values (RFC 5322 / RFC 2045), lenient like Dovecot's rfc822 parser.


class _Scanner:
    """A cursor over one header value."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.last_comment = b""

    @property
    def more(self) -> bool:
        """Whether anything is left."""
        return self.pos < len(self.data)

    def peek(self) -> int:
        """The next byte, or -1 at the end."""
        return self.data[self.pos] if self.more else -1

    def skip_lwsp(self) -> bool:
        """Skip whitespace and comments; True when something is left."""
        while self.more:
            byte = self.data[self.pos]
            if byte in _LWSP:
                self.pos += 1
            elif byte == 0x28:  # "("
                self._comment()
            else:
                return True
        return False

    def _comment(self) -> None:
        depth, text = 0, bytearray()
        while self.more:
            byte = self.data[self.pos]
            self.pos += 1
            if byte == 0x5C and self.more:  # a quoted pair
                text.append(self.data[self.pos])
                self.pos += 1
                continue
            depth += (byte == 0x28) - (byte == 0x29)
            if depth == 0:
                break
            if not (depth == 1 and byte == 0x28) and byte not in b"\r\n":
                text.append(byte)
        self.last_comment = bytes(text)

    def run(self, allowed: frozenset[int]) -> bytes:
        """Consume the longest run of `allowed` bytes."""
        start = self.pos
        while self.more and self.data[self.pos] in allowed:
            self.pos += 1
        return self.data[start : self.pos]

    def token(self) -> bytes:
        """A MIME token (possibly empty), then whitespace."""
        value = self.run(_TOKEN)
        self.skip_lwsp()
        return value

    def quoted(self) -> bytes | None:
        """A quoted string at a double quote, unescaped and unfolded; None if unterminated."""
        self.pos += 1
        out = bytearray()
        while self.more:
            byte = self.data[self.pos]
            self.pos += 1
            if byte == 0x22:
                self.skip_lwsp()
                return bytes(out)
            if byte == 0x5C:
                if not self.more:
                    return None
                byte = self.data[self.pos]
                self.pos += 1
            elif byte in b"\r\n":
                continue
            out.append(byte)
        return None

    def phrase(self) -> bytes | None:
        """Words (atoms, dots, quoted strings) joined by one space; None if there is none."""
        if not self.more or self.peek() == 0x2E:
            return None
        words = []
        while self.more and (self.peek() in _ATEXT or self.peek() in b'".'):
            word = self.quoted() if self.peek() == 0x22 else self._atom_or_dot()
            if word is None:
                return None
            words.append(word)
        return b" ".join(words) if words else None

    def _atom_or_dot(self) -> bytes:
        value = self.run(_ATEXT | frozenset(b"."))
        self.skip_lwsp()
        return value

    def dot_atom(self) -> bytes | None:
        """Atoms joined by dots (whitespace and comments allowed around the dots)."""
        atoms = []
        while self.more and self.peek() in _ATEXT:
            atoms.append(self.run(_ATEXT))
            if not self.skip_lwsp() or self.peek() != 0x2E:
                break
            self.pos += 1
            self.skip_lwsp()
        return b".".join(atoms) if atoms else None

    def domain(self) -> bytes | None:
        """A domain after "@": a dot-atom or a [literal]."""
        self.skip_lwsp()
        if self.peek() != 0x5B:
            return self.dot_atom()
        end = self.data.find(b"]", self.pos)
        if end < 0:
            return None
        literal = self.data[self.pos : end + 1]
        self.pos = end + 1
        self.skip_lwsp()
        return literal


# ---------------------------------------------------------------------------------------------
# Header fields and parameters.


@dataclass(frozen=True)
class _Field:
    name: bytes  # as written, trailing whitespace removed
    value: bytes  # leading whitespace removed, folded lines joined by LF without their CRs
    raw: bytes  # the whole field, name through the line ending of its last line


def _fields(header: bytes) -> list[_Field]:
    """The fields of a header block; a line without a colon is a field named by the line."""
    lines = [line + b"\n" for line in header.split(b"\n")]
    lines[-1] = lines[-1][:-1]
    groups: list[list[bytes]] = []
    for line in filter(None, lines):
        if line in (_CRLF, b"\n"):
            break
        if groups and line[:1] in (b" ", b"\t"):
            groups[-1].append(line)
        else:
            groups.append([line])
    return [_field(group) for group in groups]


def _field(lines: list[bytes]) -> _Field:
    first = lines[0].rstrip(b"\r\n")
    name, colon, value = first.partition(b":")
    if not colon:
        name, value = first, b""
    rest = [line.rstrip(b"\r\n") for line in lines[1:]]
    full = b"\n".join([value.lstrip(_WSP), *rest])
    return _Field(name.rstrip(_WSP), full, b"".join(lines))


def _first(fields: Sequence[_Field], name: bytes) -> _Field | None:
    return next((f for f in fields if f.name.lower() == name), None)


def _params(scanner: _Scanner) -> list[tuple[bytes, bytes]]:
    """Parameters after a type (``; key=value`` ...), RFC 2231 continuations merged."""
    plain: list[tuple[bytes, bytes]] = []
    sections: list[tuple[bytes, int, bool, bytes]] = []
    while scanner.more:
        param = _param(scanner)
        if param is None:
            scanner.pos += 1  # resynchronise at the next ";"
            continue
        section = _rfc2231_section(*param)
        if section is None:
            plain.append(param)
        else:
            sections.append(section)
    return plain + _merge_sections(sections)


def _param(scanner: _Scanner) -> tuple[bytes, bytes] | None:
    if scanner.peek() != 0x3B:  # ";"
        return None
    scanner.pos += 1
    if not scanner.skip_lwsp():
        return None
    key = scanner.run(_TOKEN)
    if not scanner.skip_lwsp() or scanner.peek() != 0x3D:  # "="
        return None
    scanner.pos += 1
    value = _param_value(scanner)
    return None if value is None else (key, value)


def _param_value(scanner: _Scanner) -> bytes | None:
    """A token or quoted string (None when unterminated), empty when there is none."""
    if not scanner.skip_lwsp():
        return b""
    if scanner.peek() == 0x22:
        return scanner.quoted()
    if scanner.peek() == 0x3D:  # a bare encoded word: name==?utf-8?b?...?=
        start = scanner.pos
        while scanner.more and scanner.peek() not in b"; \t\r\n":
            scanner.pos += 1
        return scanner.data[start : scanner.pos]
    return scanner.token()


def _rfc2231_section(key: bytes, value: bytes) -> tuple[bytes, int, bool, bytes] | None:
    """(name, index, extended, value) for ``name*``, ``name*N`` and ``name*N*`` keys."""
    match = re.fullmatch(rb"([^*]*)\*(\d*)(\*?)", key)
    if match is None or (match[2] == b"" and match[3] == b"*"):
        return None
    index = int(match[2]) if match[2] else 0
    extended = match[3] == b"*" or match[2] == b""
    return match[1], index, extended, value


def _merge_sections(
    sections: list[tuple[bytes, int, bool, bytes]],
) -> list[tuple[bytes, bytes]]:
    sections.sort(key=lambda section: (section[0], section[1]))
    merged: list[tuple[bytes, bytes]] = []
    start = 0
    while start < len(sections):
        end = start
        while end < len(sections) and sections[end][0].lower() == sections[start][0].lower():
            end += 1
        merged.extend(_merge_group(sections[start:end]))
        start = end
    return merged


def _merge_group(group: list[tuple[bytes, int, bool, bytes]]) -> list[tuple[bytes, bytes]]:
    if [index for _, index, _, _ in group] != list(range(len(group))):
        return [
            (b"%s*%d%s" % (name, index, b"*" if extended else b""), value)
            for name, index, extended, value in group
        ]
    extended = any(section[2] for section in group)
    if not extended:
        return [(group[0][0], b"".join(section[3] for section in group))]
    value = b"" if group[0][2] else b"''"
    for _, _, is_extended, piece in group:
        value += piece if is_extended else piece.replace(b"%", b"%25")
    return [(group[0][0] + b"*", value)]


@dataclass(frozen=True)
class _ContentType:
    type: bytes
    subtype: bytes
    params: list[tuple[bytes, bytes]]
    valid: bool

    @property
    def joined(self) -> bytes:
        """``type/subtype`` as Dovecot's message parser sees it (``type`` when it has none)."""
        return self.type + b"/" + self.subtype if self.valid else self.type


def _content_type(value: bytes) -> _ContentType:
    """Parse a Content-Type value; a broken one keeps what Dovecot keeps of it."""
    scanner = _Scanner(value)
    broken = _ContentType(b"", b"", [], valid=False)
    main = scanner.token() if scanner.skip_lwsp() else b""
    if main and not scanner.more:
        return _ContentType(main, b"", [], valid=False)  # a type without subtype is kept
    if not main or scanner.peek() != 0x2F:  # "/"
        return broken
    scanner.pos += 1
    sub = scanner.token() if scanner.skip_lwsp() else b""
    if not sub or (scanner.more and scanner.peek() != 0x3B):
        return broken
    return _ContentType(main, sub, _params(scanner), valid=True)


# ---------------------------------------------------------------------------------------------
# The MIME tree, cut from the raw bytes.


@dataclass
class _Part:
    header_start: int
    header_end: int  # after the empty line ending the header, when there is one
    body_start: int
    body_end: int
    fields: list[_Field]
    kind: str  # "multipart", "message", "text" or "other", as Dovecot's parser flags it
    content_type: _ContentType | None
    children: list[_Part] = field(default_factory=list)  # a message/rfc822 part: [the message]
    # Content-* headers count only in a MIME part: one with Content-Type or MIME-Version, or a
    # child of a multipart. Elsewhere Dovecot forgets them.
    mime: bool = False

    def header(self, name: bytes) -> _Field | None:
        """The first Content-* field called `name` (lower case), if this part is MIME."""
        return _first(self.fields, name) if self.mime else None

    # Where the enclosing message/rfc822 part ends: the body's end, except that a header cut
    # short by a boundary leaves the CRLF before that boundary to its enclosing part (Dovecot).
    extent: int = 0


@dataclass(frozen=True)
class _Hit:
    """A boundary line found in the body."""

    pos: int  # where the line starts
    level: int  # index of the matched boundary, outermost first
    close: bool  # a close delimiter (``--boundary--``)
    after: int  # where the next line starts


class _Splitter:
    """Cuts a message into parts by byte offsets, with Dovecot's rules (see the module doc)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.end = len(data)

    def message(self) -> _Part:
        part, _ = self.entity(0, [], parent=b"", depth=0)
        return part

    def entity(
        self, start: int, bounds: list[bytes], *, parent: bytes, depth: int
    ) -> tuple[_Part, _Hit | None]:
        """One part from `start` (`parent`: the enclosing multipart's subtype, or empty)."""
        header_end, hit = self._header(start, bounds)
        part = _kind(_fields(self.data[start:header_end]), start, header_end, parent)
        if hit is None:
            hit = self._blank_line_cut(part, bounds)
        if hit is not None:  # the header ran into a boundary: no body
            part.extent = hit.pos
            if part.kind == "message":
                end = part.header_end
                part.children = [_Part(end, end, end, end, [], "text", None)]
            return part, hit
        if depth >= MAX_DEPTH:
            part.kind = "other" if part.kind in ("multipart", "message") else part.kind
        if part.kind == "multipart":
            hit = self._multipart(part, bounds, depth)
        elif part.kind == "message":
            inner, hit = self.entity(header_end, bounds, parent=b"", depth=depth + 1)
            part.children, part.body_end = [inner], inner.extent
        else:
            hit = self.find(header_end, bounds)
            part.body_end = self.trim(header_end, hit.pos) if hit else self.end
        part.extent = part.body_end
        return part, hit

    def _header(self, start: int, bounds: list[bytes]) -> tuple[int, _Hit | None]:
        """Where the header from `start` ends, and the boundary that ended it, if one did."""
        pos = start
        while pos < self.end:
            hit = self.match(pos, bounds)
            if hit is not None:
                return self.trim(start, pos), hit
            after = self.line_after(pos)
            if self.data[pos:after] in (_CRLF, b"\n"):
                return after, None
            pos = after
        return self.end, None

    def _blank_line_cut(self, part: _Part, bounds: list[bytes]) -> _Hit | None:
        """An empty line right before an enclosing boundary is that boundary's CRLF.

        The header then ends at a boundary instead of at an empty line. The part's own boundary
        (a multipart's first delimiter right after its header) does not count.
        """
        end = part.header_end
        if end == part.header_start or self.data[end - 1 : end] != b"\n":
            return None
        own = _boundary(part) if part.kind == "multipart" else None
        hit = self.match(end, [*bounds, own] if own is not None else bounds)
        if hit is None or hit.level >= len(bounds):
            return None
        part.header_end = part.body_start = part.body_end = self.trim(part.header_start, end)
        return hit

    def _multipart(self, part: _Part, bounds: list[bytes], depth: int) -> _Hit | None:
        boundary = _boundary(part)
        if boundary is None:
            hit = self.find(part.body_start, bounds)
            part.body_end = self.trim(part.body_start, hit.pos) if hit else self.end
            return hit
        own, level = [*bounds, boundary], len(bounds)
        assert part.content_type is not None  # only a Content-Type makes a multipart
        subtype = part.content_type.subtype.lower() or b"mixed"
        hit = self.find(part.body_start, own)
        while hit is not None and hit.level == level and not hit.close:
            if not self.data.endswith(b"\n", 0, hit.after):
                hit = None  # a delimiter cut off by the end of the message opens no part
                break
            child, hit = self.entity(hit.after, own, parent=subtype, depth=depth + 1)
            part.children.append(child)
        if hit is None:
            part.body_end = self.end
        elif hit.level == level:  # closed: the epilogue runs to the next enclosing boundary
            epilogue = hit.after
            hit = self.find(epilogue, bounds)
            part.body_end = self.trim(epilogue, hit.pos) if hit else self.end
        else:  # an enclosing boundary cut it short
            last = part.children[-1].extent if part.children else None
            part.body_end = last if last is not None else self.trim(part.body_start, hit.pos)
        return hit

    def line_after(self, pos: int) -> int:
        newline = self.data.find(b"\n", pos)
        return self.end if newline < 0 else newline + 1

    def match(self, pos: int, bounds: list[bytes]) -> _Hit | None:
        """The boundary line starting at `pos`, if it is one."""
        if not bounds or not self.data.startswith(b"--", pos):
            return None
        best = -1
        for level in range(len(bounds) - 1, -1, -1):
            candidate = bounds[level]
            if self.data.startswith(candidate, pos + 2) and (
                best < 0 or len(candidate) > len(bounds[best])
            ):
                best = level
        if best < 0:
            return None
        close = self.data.startswith(b"--", pos + 2 + len(bounds[best]))
        return _Hit(pos, best, close, self.line_after(pos))

    def find(self, start: int, bounds: list[bytes]) -> _Hit | None:
        """The first boundary line at or after `start` (a line start)."""
        if not bounds:
            return None
        pos = start
        while pos < self.end:
            hit = self.match(pos, bounds)
            if hit is not None:
                return hit
            newline = self.data.find(b"\n--", pos)
            if newline < 0:
                return None
            pos = newline + 1
        return None

    def trim(self, region_start: int, pos: int) -> int:
        """Where content before a boundary line at `pos` ends: its CRLF is the boundary's."""
        if pos - 2 >= region_start and self.data[pos - 2 : pos] == _CRLF:
            return pos - 2
        if pos - 1 >= region_start and self.data[pos - 1 : pos] == b"\n":
            return pos - 1
        return pos


def _kind(fields: list[_Field], start: int, header_end: int, parent: bytes) -> _Part:
    header = _first(fields, b"content-type")
    content_type = _content_type(header.value) if header is not None else None
    if content_type is None:
        kind = "message" if parent == b"digest" else "text"
    else:
        kind = _kind_of(content_type.joined.lower())
    part = _Part(start, header_end, header_end, header_end, fields, kind, content_type)
    part.mime = bool(parent) or header is not None or _first(fields, b"mime-version") is not None
    return part


def _kind_of(joined: bytes) -> str:
    if joined == b"message/rfc822":
        return "message"
    if joined == b"text" or joined.startswith(b"text/"):
        return "text"
    if joined.startswith(b"multipart/"):
        return "multipart"
    return "other"


def _boundary(part: _Part) -> bytes | None:
    if part.content_type is None or not part.content_type.valid:
        return None
    return next((v for k, v in part.content_type.params if k.lower() == b"boundary"), None)


# ---------------------------------------------------------------------------------------------
# Strings as Dovecot writes header text.


def _nolf(value: bytes) -> bytes:
    """A header value on one line: each line break dropped, a space added where none follows."""
    out = bytearray()
    for index, byte in enumerate(value):
        if byte not in b"\r\n":
            out.append(byte)
        elif value[index + 1 : index + 2] not in (b" ", b"\t", b""):
            out.append(0x20)
    return bytes(out).replace(_NUL, _PARSED_NUL)


def _parsed(value: bytes | None) -> bytes:
    """A string parsed from a header (a parameter value, an address part), NULs made U+FFFD."""
    return nstring(None if value is None else value.replace(_NUL, _PARSED_NUL))


def _human_string(value: bytes) -> bytes:
    """Subjects and names: line breaks dropped, whitespace runs made one space, ends trimmed."""
    text = value.replace(b"\r", b"").replace(b"\n", b"").replace(_NUL, _PARSED_NUL)
    return nstring(re.sub(rb"[ \t]+", b" ", text).strip(b" "))


# ---------------------------------------------------------------------------------------------
# ENVELOPE.

_ADDRESS_FIELDS = (b"from", b"sender", b"reply-to", b"to", b"cc", b"bcc")
_STRING_FIELDS = (b"date", b"subject", b"in-reply-to", b"message-id")
_MISSING_MAILBOX = b"MISSING_MAILBOX"
_MISSING_DOMAIN = b"MISSING_DOMAIN"


@dataclass
class _Address:
    name: bytes | None = None
    route: bytes | None = None
    mailbox: bytes | None = None
    domain: bytes | None = None

    def render(self) -> bytes:
        name = None if self.name is None else _human_string(self.name)
        parts = [
            name or b"NIL",
            *(_parsed(item) for item in (self.route, self.mailbox, self.domain)),
        ]
        return paren(parts)


def _addresses(value: bytes) -> list[_Address]:
    """An address list as IMAP sees it: groups as start and end markers, gaps filled in."""
    scanner = _Scanner(value)
    found: list[_Address] = []
    more = scanner.skip_lwsp()
    while more:
        start = scanner.pos
        if not _group(scanner, found):
            scanner.pos = start
            found.append(_mailbox(scanner))  # an empty element becomes a MISSING_ address
        if scanner.peek() != 0x2C:  # ","
            break
        scanner.pos += 1
        more = scanner.skip_lwsp()
    return found


def _group(scanner: _Scanner, found: list[_Address]) -> bool:
    """``name: member, member;`` as a start marker, the members and an end marker."""
    name = scanner.phrase()
    if name is None or scanner.peek() != 0x3A:  # ":"
        return False
    scanner.pos += 1
    scanner.skip_lwsp()
    found.append(_Address(mailbox=name))
    while scanner.more and scanner.peek() != 0x3B:  # ";"
        before = scanner.pos
        found.append(_mailbox(scanner))
        if scanner.peek() != 0x2C:
            break
        scanner.pos += 1
        scanner.skip_lwsp()
        if scanner.pos == before:
            break
    if scanner.peek() == 0x3B:
        scanner.pos += 1
        scanner.skip_lwsp()
    found.append(_Address())
    return True


def _mailbox(scanner: _Scanner) -> _Address:
    start = scanner.pos
    address = _name_addr(scanner)
    if address is None:
        scanner.pos = start
        address = _addr_spec(scanner)
    if not address.mailbox:
        address.mailbox = _MISSING_MAILBOX
    if not address.domain:
        address.domain = _MISSING_DOMAIN
    return address


def _name_addr(scanner: _Scanner) -> _Address | None:
    name = scanner.phrase() if scanner.peek() != 0x3C else b""
    if name is None or scanner.peek() != 0x3C:  # "<"
        return None
    address = _Address(name=name or None)
    scanner.pos += 1
    scanner.skip_lwsp()
    if scanner.peek() == 0x40:  # "@": an obsolete source route
        address.route = _route(scanner)
    if scanner.peek() != 0x3E:
        _local_at_domain(scanner, address)
    end = scanner.data.find(b">", scanner.pos)
    scanner.pos = len(scanner.data) if end < 0 else end + 1
    scanner.skip_lwsp()
    return address


def _route(scanner: _Scanner) -> bytes:
    hops = []
    while scanner.peek() == 0x40:
        scanner.pos += 1
        hops.append(b"@" + (scanner.domain() or b""))
        while scanner.peek() == 0x2C:
            scanner.pos += 1
            scanner.skip_lwsp()
    if scanner.peek() == 0x3A:
        scanner.pos += 1
        scanner.skip_lwsp()
    return b",".join(hops)


def _local_at_domain(scanner: _Scanner, address: _Address) -> None:
    if scanner.peek() == 0x22:
        address.mailbox = scanner.quoted()
    else:
        address.mailbox = scanner.dot_atom()
    if scanner.peek() == 0x40:
        scanner.pos += 1
        address.domain = scanner.domain()


def _addr_spec(scanner: _Scanner) -> _Address:
    scanner.last_comment = b""
    address = _Address()
    _local_at_domain(scanner, address)
    if scanner.last_comment:
        address.name = scanner.last_comment
    return address


def _render_addresses(addresses: list[_Address]) -> bytes:
    # RFC 3501 writes an address list as 1*address: no space between the addresses.
    return b"(" + b"".join(a.render() for a in addresses) + b")" if addresses else b"NIL"


def _envelope(fields: list[_Field]) -> bytes:
    strings: dict[bytes, bytes] = {}
    lists: dict[bytes, list[_Address]] = {name: [] for name in _ADDRESS_FIELDS}
    for item in fields:
        name = item.name.lower()
        if name in _STRING_FIELDS:
            strings[name] = item.value
        elif name in lists:
            lists[name].extend(_addresses(item.value))
    subject = strings.get(b"subject")
    for name in (b"sender", b"reply-to"):
        lists[name] = lists[name] or lists[b"from"]
    items = [
        nstring(_nolf(strings[b"date"])) if b"date" in strings else b"NIL",
        b"NIL" if subject is None else _human_string(subject),
        *(_render_addresses(lists[name]) for name in _ADDRESS_FIELDS),
        *(nstring(_nolf(strings[n])) if n in strings else b"NIL" for n in _STRING_FIELDS[2:]),
    ]
    return paren(items)


# ---------------------------------------------------------------------------------------------
# BODYSTRUCTURE.


def _render_params(params: list[tuple[bytes, bytes]]) -> bytes:
    if not params:
        return b"NIL"
    return paren(item for key, value in params for item in (nstring(key.upper()), _parsed(value)))


class _Structure:
    """Writes the extended BODYSTRUCTURE of a part tree."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def render(self, part: _Part) -> bytes:
        if part.kind == "multipart":
            return self._multipart(part)
        return self._single(part)

    def _multipart(self, part: _Part) -> bytes:
        children = b"".join(self.render(child) for child in part.children) or _EMPTY_PART
        content_type = part.content_type
        assert content_type is not None  # only a Content-Type makes a multipart
        extension = [
            nstring(content_type.subtype.upper()),
            _render_params(content_type.params),
            *self._common(part),
        ]
        return b"(" + children + b" " + b" ".join(extension) + b")"

    def _single(self, part: _Part) -> bytes:
        body = self.data[part.body_start : part.body_end]
        items = [*self._type(part), *self._fields(part), b"%d" % len(body)]
        if part.kind == "message":
            inner = part.children[0]
            items += [_envelope(inner.fields), self.render(inner), b"%d" % body.count(b"\n")]
        elif self._is_text(part):
            items.append(b"%d" % body.count(b"\n"))
        md5 = part.header(b"content-md5")
        items += [_string(md5), *self._common(part)]
        return paren(items)

    def _is_text(self, part: _Part) -> bool:
        return part.content_type is None or part.content_type.type.lower() == b"text"

    def _type(self, part: _Part) -> list[bytes]:
        content_type = part.content_type
        if part.kind == "message":
            params = content_type.params if content_type is not None else []
            return [b'"MESSAGE"', b'"RFC822"', _render_params(params)]
        if content_type is None:
            return [b'"TEXT"', b'"PLAIN"', b'("CHARSET" "us-ascii")']
        params = list(content_type.params)
        if self._is_text(part) and not any(k.lower() == b"charset" for k, _ in params):
            params.append((b"charset", b"us-ascii"))
        return [
            nstring(content_type.type.upper()),
            nstring(content_type.subtype.upper()),
            _render_params(params),
        ]

    def _fields(self, part: _Part) -> list[bytes]:
        content_id = part.header(b"content-id")
        description = part.header(b"content-description")
        return [_string(content_id), _string(description), nstring(_encoding(part).upper())]

    def _common(self, part: _Part) -> list[bytes]:
        return [_disposition(part), _language(part), _string(part.header(b"content-location"))]


def _string(item: _Field | None) -> bytes:
    return b"NIL" if item is None else nstring(_nolf(item.value))


def _encoding(part: _Part) -> bytes:
    header = part.header(b"content-transfer-encoding")
    if header is None:
        return b"7bit"
    scanner = _Scanner(header.value)
    scanner.skip_lwsp()
    token = scanner.token()
    return token if token and not scanner.more else b"7bit"


def _disposition(part: _Part) -> bytes:
    header = part.header(b"content-disposition")
    if header is None:
        return b"NIL"
    scanner = _Scanner(header.value)
    scanner.skip_lwsp()
    kind = scanner.token()
    return paren([nstring(kind.upper()), _render_params(_params(scanner))])


def _language(part: _Part) -> bytes:
    header = part.header(b"content-language")
    if header is None:
        return b"NIL"
    scanner = _Scanner(header.value)
    scanner.skip_lwsp()
    tags = []
    while scanner.more:
        tag = scanner.run(_ATEXT)
        if not tag:
            break
        tags.append(nstring(tag))
        if not scanner.skip_lwsp() or scanner.peek() != 0x2C:
            break
        scanner.pos += 1
        scanner.skip_lwsp()
    return paren(tags) if tags else b"NIL"


# ---------------------------------------------------------------------------------------------
# BODY[section].

_TEXT_SPECIFIERS = ("", "HEADER", "TEXT", "MIME", "HEADER.FIELDS", "HEADER.FIELDS.NOT")


@dataclass(frozen=True)
class _Section:
    """A parsed section spec: part number, text specifier, header field names."""

    path: list[int]
    text: str
    names: frozenset[bytes] | None


def _section(spec: str) -> _Section | None:
    head, paren_open, rest = spec.strip().partition("(")
    pieces = head.strip().split(".") if head.strip() else []
    path = []
    while pieces and pieces[0].isdigit() and pieces[0].isascii():
        path.append(int(pieces.pop(0)))
    text = ".".join(pieces).upper()
    wants_names = text.startswith("HEADER.FIELDS")
    if text not in _TEXT_SPECIFIERS or bool(paren_open) != wants_names or 0 in path:
        return None
    if not wants_names:
        return _Section(path, text, None)
    if not rest.rstrip().endswith(")"):
        return None
    names = rest.rstrip()[:-1].split()
    return _Section(path, text, frozenset(n.strip('"').lower().encode() for n in names))


def _walk(root: _Part, numbers: list[int]) -> _Part | None:
    """The part a section number names, as Dovecot resolves it (RFC 3501 section 6.4.5)."""
    part: _Part | None = root
    for position, number in enumerate(numbers):
        if part is None:
            return None
        last = position == len(numbers) - 1
        if part.kind == "multipart":
            # A multipart without parts shows one empty text/plain part: BODY[n.1] is empty.
            at = part.body_start
            children = part.children or [_Part(at, at, at, at, [], "text", None)]
            part = children[number - 1] if 0 < number <= len(children) else None
        elif number != 1 or (not last and part.kind != "message"):
            return None
        if part is not None and part.kind == "message" and not last:
            part = part.children[0]
    return part


def _header_fields(data: bytes, start: int, names: frozenset[bytes], *, exclude: bool) -> bytes:
    """HEADER.FIELDS[.NOT] of the header at `start`, read as Dovecot's header filter reads it.

    The filter reads lines from `start` up to the first empty line, whatever boundaries it
    passes, and ends its output with an empty line only when it found one. The message's own
    HEADER.FIELDS comes from a cleaner path in Dovecot: every line ends with CRLF, and so does
    the output.
    """
    pos, blank = start, False
    while pos < len(data) and not blank:
        newline = data.find(b"\n", pos)
        after = len(data) if newline < 0 else newline + 1
        blank = data[pos:after] in (_CRLF, b"\n")
        pos = after
    chosen = [f.raw for f in _fields(data[start:pos]) if (f.name.lower() in names) != exclude]
    if start == 0 and not exclude:
        return b"".join(raw if raw.endswith(b"\n") else raw + _CRLF for raw in chosen) + _CRLF
    return b"".join(chosen) + (_CRLF if blank else b"")


# ---------------------------------------------------------------------------------------------
# The message.


class FakeMessage:
    """One immutable RFC 5322 message as the fake Gmail serves it."""

    def __init__(self, raw: bytes) -> None:
        self.raw: bytes = _LONE_LF.sub(_CRLF, raw)
        self._root = _Splitter(self.raw).message()
        self._served = self.raw.replace(_NUL, _SERVED_NUL)  # IMAP literals carry no NUL

    def __repr__(self) -> str:
        return f"FakeMessage({self.size} bytes, subject={self.subject!r})"

    @property
    def size(self) -> int:
        """RFC822.SIZE: the length of the CRLF bytes."""
        return len(self.raw)

    def bodystructure(self) -> bytes:
        """The parenthesised extended BODYSTRUCTURE, as Gmail writes it."""
        return _Structure(self.raw).render(self._root)

    def envelope(self) -> bytes:
        """The parenthesised ENVELOPE of the message."""
        return _envelope(self._root.fields)

    def section(self, spec: str) -> bytes | None:
        """The bytes of BODY[spec]; None when the part does not exist or `spec` is not a section.

        HEADER, TEXT and HEADER.FIELDS of a part that is not message/rfc822 are empty, as in
        Dovecot; NUL bytes come as 0x80.
        """
        section = _section(spec)
        if section is None or (not section.path and section.text == "MIME"):
            return None
        if not section.path:
            return self._text(self._root, section)
        part = _walk(self._root, section.path)
        if part is None or section.text in ("", "MIME"):
            return None if part is None else self._part(part, mime=section.text == "MIME")
        return self._text(part.children[0], section) if part.kind == "message" else b""

    def _part(self, part: _Part, *, mime: bool) -> bytes:
        if mime:
            return self._served[part.header_start : part.header_end]
        return self._served[part.body_start : part.body_end]

    def _text(self, message: _Part, section: _Section) -> bytes:
        if section.text == "":
            return self._served[message.header_start : message.body_end]
        if section.text == "HEADER":
            return self._served[message.header_start : message.header_end]
        if section.text == "TEXT":
            return self._served[message.body_start : message.body_end]
        names = section.names or frozenset()
        exclude = section.text == "HEADER.FIELDS.NOT"
        return _header_fields(self._served, message.header_start, names, exclude=exclude)

    # --- search facts ------------------------------------------------------------------------

    @cached_property
    def _parsed(self) -> email.message.Message:
        return email.message_from_bytes(self.raw, policy=_RAW_HEADERS)

    def header_addresses(self, *names: str) -> list[str]:
        """The addresses in the named headers as decoded ``Name <a@b>`` strings."""
        values = [_decode(v) for name in names for v in self._parsed.get_all(name, [])]
        return [
            f"{name} <{address}>" if name else address
            for name, address in email.utils.getaddresses(values)
            if name or address
        ]

    @cached_property
    def subject(self) -> str:
        """The decoded Subject, empty when there is none."""
        return _decode(self._parsed.get("subject", ""))

    @cached_property
    def date(self) -> datetime | None:
        """The Date header as an aware datetime, None when absent or unreadable."""
        value = self._parsed.get("date")
        if value is None:
            return None
        try:
            parsed = email.utils.parsedate_to_datetime(str(value))
        except (TypeError, ValueError, IndexError):
            return None
        return parsed if parsed.tzinfo is not None else None

    @cached_property
    def message_id(self) -> str | None:
        """The Message-ID header, stripped, or None."""
        value = self._parsed.get("message-id")
        return str(value).strip() or None if value is not None else None

    @cached_property
    def attachment_filenames(self) -> list[str]:
        """Decoded names of the parts that Gmail counts as attachments."""
        return [name for part in _leaves(self._parsed) if (name := _attachment_name(part))]

    @property
    def has_attachment(self) -> bool:
        """Whether any part counts as an attachment."""
        return bool(self.attachment_filenames)

    @cached_property
    def text(self) -> str:
        """The decoded text of the text/* body parts (not attachments), for bare-word search."""
        texts = [
            _payload_text(part)
            for part in _leaves(self._parsed)
            if part.get_content_maintype() == "text" and _attachment_name(part) is None
        ]
        return "\n".join(texts)


class _RawHeaders(email.policy.Compat32):
    """compat32 that hands header values back as they are (8-bit bytes as surrogates)."""

    def header_fetch_parse(self, name: str, value: str) -> str:
        """The value unchanged: `_decode` reads 8-bit bytes as UTF-8 and decodes encoded words."""
        return value


_RAW_HEADERS = _RawHeaders()


def _decode(value: str) -> str:
    """A raw header value with 8-bit bytes read as UTF-8 and encoded words decoded."""
    text = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    try:
        chunks = email.header.decode_header(text)
    except (ValueError, email.errors.HeaderParseError):
        return text
    return "".join(_decode_chunk(data, charset) for data, charset in chunks)


def _decode_chunk(data: bytes | str, charset: str | None) -> str:
    if isinstance(data, str):
        return data
    try:  # decode_header leaves the text between encoded words raw-unicode-escaped
        return data.decode(charset or "raw-unicode-escape", errors="replace")
    except LookupError:  # unknown-8bit, or a charset Python does not know
        return data.decode("utf-8", errors="replace")


def _leaves(message: email.message.Message) -> Iterator[email.message.Message]:
    for part in message.walk():
        if not part.is_multipart():
            yield part


def _attachment_name(part: email.message.Message) -> str | None:
    """The decoded file name of an attachment part; None for body text and inline images.

    Like the crawler's own rule: an attachment has a file name, or an attachment disposition, or
    is neither text nor a message; an image with a Content-ID that is not an attachment is an
    inline picture (a signature logo), not an attachment.
    """
    disposition = part.get_content_disposition()
    maintype = part.get_content_maintype()
    if maintype == "image" and part.get("content-id") and disposition != "attachment":
        return None
    name = _decode(_filename(part) or "")
    if name or disposition == "attachment" or maintype not in ("text", "message", "multipart"):
        return name or "noname"
    return None


def _filename(part: email.message.Message) -> str | None:
    name = part.get_filename() or part.get_param("name")
    if isinstance(name, tuple):  # an RFC 2231 name on Content-Type, left undecoded
        return email.utils.collapse_rfc2231_value(name)
    return name


def _payload_text(part: email.message.Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    text = _decode_chunk(payload, part.get_content_charset() or "utf-8")
    if part.get_content_subtype() == "html":
        text = re.sub(r"<[^>]*>", " ", text)
    return text
