"""The contender side of a run: one process per contender run, driven one phase at a time.

    python -m bench.child bench.baselines.naive JOB.json

The child says it is ready once the contender is imported and set up; then the parent writes
`go` for each phase (the first crawl, then the re-crawl after new mail) and times it until the
answer line. An empty line or end of input ends the run, and the last line says the process's
peak RSS. Each contender module defines `Contender(job)` with a `crawl()`
method; what it keeps between phases (a cursor, a database) is its own business. What is shared
by the contenders lives here: the job, where files go, and the search they start from.
"""

from __future__ import annotations

import importlib
import json
import resource
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

HAS_ATTACHMENT = "has:attachment"
MANIFEST = "manifest.json"  # the digests of what a contender that stores each file once saved


@dataclass(frozen=True)
class Job:
    """What a contender is told: the server, the account, where to save, what to want."""

    host: str
    port: int
    user: str
    password: str
    folder: str
    gmail: bool
    out: str
    state: str
    token: str = ""
    redis_prefix: str = "bench:"
    rule: dict[str, object] = field(default_factory=dict)
    # The floor only: per phase, the (uid, part, transfer encoding) of every wanted part.
    wanted: list[list[tuple[int, str, str]]] = field(default_factory=list)
    # The crawler on S3 only: the environment that points it at its bucket.
    s3: dict[str, str] = field(default_factory=dict)

    def write(self, path: Path) -> Path:
        """Write the job where the contender process reads it (too long for an argument)."""
        path.write_text(json.dumps(self.__dict__))
        return path


class Contender(Protocol):
    """One contender's state across the phases of a run."""

    external: bool  # its work runs in child processes (mbsync): report their peak RSS

    def crawl(self) -> None: ...


class Saver:
    """Writes each attachment to a file of its own in the output directory."""

    def __init__(self, out: str) -> None:
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.count = len(list(self.out.iterdir()))  # a later phase adds to what is there

    def save(self, data: bytes) -> None:
        """Write one attachment's decoded bytes."""
        self.count += 1
        (self.out / f"{self.count:06d}").write_bytes(data)


def search_criteria(job: Job, above_uid: int) -> str:
    """The UID SEARCH criteria of a script that remembers the last UID it saw.

    On Gmail it asks for messages with attachments, as the crawler does; elsewhere for all.
    """
    criteria = f"UID {above_uid + 1}:*"
    return f'{criteria} X-GM-RAW "{HAS_ATTACHMENT}"' if job.gmail else criteria


def quoted(text: str) -> str:
    """An IMAP quoted string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def peak_rss_kb(external: bool) -> int:
    """The peak resident set of this process, or of its finished children when `external`.

    VmHWM, not ru_maxrss: a process forked from the big benchmark process starts with that
    process's pages counted in its ru_maxrss; VmHWM starts again at exec.
    """
    if external:
        return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # kilobytes on Linux
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:", 1)[1].split()[0])


def main(argv: list[str]) -> int:
    """Run the phases the parent asks for; print one line per phase and the peak RSS."""
    module, job = argv[1], Job(**json.loads(Path(argv[2]).read_text()))
    contender: Contender = importlib.import_module(module).Contender(job)
    print(json.dumps({"ready": True}), flush=True)  # imports and setup stay out of the timing
    for line in sys.stdin:
        if line.strip() != "go":
            break
        contender.crawl()
        print(json.dumps({"done": True}), flush=True)
    print(json.dumps({"peak_rss_kb": peak_rss_kb(contender.external)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
