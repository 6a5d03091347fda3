"""The floor: one pipelined stream of exactly the wanted parts, their UIDs and part numbers known.

After the greeting every command goes out in one write: LOGIN, EXAMINE, one `UID FETCH` per set
of messages that want the same parts (`UID FETCH 3,9,14 (BODY.PEEK[2])`), LOGOUT. Then it reads
the answers as they stream in, decoding each literal in slices straight to its file. No client
can ask for fewer bytes or wait for fewer round trips.
"""

from __future__ import annotations

import binascii
import re
import socket
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO, cast

from bench.child import Job, quoted

SLICE = 1 << 20
# A literal ends the line; BODY[section] literals are the parts, any other is skipped.
_LITERAL = re.compile(rb"(?:BODY\[([0-9.]+)\] )?\{(\d+)\}\r\n$")
_UID = re.compile(rb"^\* \d+ FETCH \(.*?\bUID (\d+)")
Decode = Callable[[bytes], bytes]
Group = tuple[tuple[str, ...], list[int], dict[str, str]]  # parts, UIDs, encoding of each part
_DECODERS: dict[str, Decode] = {
    "base64": binascii.a2b_base64,
    "quoted-printable": binascii.a2b_qp,
}


class Contender:
    """Fetches phase n's wanted parts in phase n."""

    external = False

    def __init__(self, job: Job) -> None:
        self.job = job
        self.out = Path(job.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.phase = 0
        self.saved = 0

    def crawl(self) -> None:
        """Send every command at once, then read the stream to the end."""
        wanted = self.job.wanted[self.phase]
        self.phase += 1
        groups = _groups(wanted)
        with socket.create_connection((self.job.host, self.job.port)) as connection:
            stream = cast(BinaryIO, connection.makefile("rb", buffering=SLICE))
            stream.readline()  # the greeting
            connection.sendall(self._commands(groups))
            self._read(stream, groups, len(groups) + 3)

    def _commands(self, groups: Sequence[Group]) -> bytes:
        login = f"a LOGIN {quoted(self.job.user)} {quoted(self.job.password)}"
        lines = [login, f"b EXAMINE {quoted(self.job.folder)}"]
        for number, (parts, uids, _) in enumerate(groups):
            items = " ".join(f"BODY.PEEK[{part}]" for part in parts)
            lines.append(f"f{number} UID FETCH {','.join(map(str, uids))} ({items})")
        lines.append("z LOGOUT")
        return "".join(line + "\r\n" for line in lines).encode()

    def _read(self, stream: BinaryIO, groups: Sequence[Group], commands: int) -> None:
        encodings = {
            (uid, part): encoding
            for _, uids, parts in groups
            for uid in uids
            for part, encoding in parts.items()
        }
        done = 0
        while done < commands:
            line = stream.readline()
            if not line:
                raise ConnectionError("the server closed the stream early")
            if line.startswith(b"* "):
                # Servers may run pipelined FETCHes side by side: the UID says whose part it is.
                uid = _UID.search(line)
                while literal := _LITERAL.search(line):  # the response goes on after it
                    section, size = literal.groups()
                    if section is None or uid is None:
                        stream.read(int(size))
                    else:
                        self._save(stream, int(size), encodings[int(uid[1]), section.decode()])
                    line = stream.readline()
                continue
            if line.split(b" ", 2)[1:2] != [b"OK"]:
                raise RuntimeError(f"the server refused: {line[:200]!r}")
            done += 1

    def _save(self, stream: BinaryIO, size: int, encoding: str) -> None:
        decode = _DECODERS.get(encoding, bytes)
        self.saved += 1
        with (self.out / f"{self.saved:06d}").open("wb") as file:
            carry = b""
            while size:
                data = carry + stream.read(min(size, SLICE))
                size -= len(data) - len(carry)
                # Decode whole lines only: base64 and quoted-printable lines stand alone.
                cut = data.rfind(b"\n") + 1 if size else len(data)
                carry = data[cut:]
                file.write(decode(data[:cut]))


def _groups(wanted: Sequence[Sequence[object]]) -> list[Group]:
    """The messages that want the same parts (with the same encodings), one command each."""
    by_uid: dict[int, dict[str, str]] = defaultdict(dict)
    for uid, part, encoding in wanted:
        by_uid[int(str(uid))][str(part)] = str(encoding)
    groups: dict[tuple[tuple[str, str], ...], list[int]] = defaultdict(list)
    for uid, parts in sorted(by_uid.items()):
        groups[tuple(sorted(parts.items()))].append(uid)
    return [(tuple(part for part, _ in key), uids, dict(key)) for key, uids in groups.items()]
