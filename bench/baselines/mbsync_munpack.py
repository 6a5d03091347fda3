"""What an operator would script instead: `mbsync` (isync) pulls the folder into a Maildir, then
`munpack` (mpack) unpacks the attachments of the messages it brought."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bench.child import Job

CONFIG = """\
IMAPAccount bench
Host {host}
Port {port}
User {user}
Pass {password}
SSLType None
AuthMechs LOGIN
DisableExtensions COMPRESS=DEFLATE

IMAPStore far
Account bench

MaildirStore near
Path {maildir}/
Inbox {maildir}/INBOX
SubFolders Verbatim

Channel bench
Far :far:"{folder}"
Near :near:mirror
Sync Pull
Create Near
Expunge None
SyncState *
"""
MUNPACK_BATCH = 500  # message files per munpack command line


class Contender:
    """mbsync keeps its own sync state: a second run brings only the new messages."""

    external = True

    def __init__(self, job: Job) -> None:
        state = Path(job.state)
        self.out = Path(job.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.maildir = state / "maildir"
        self.maildir.mkdir(parents=True, exist_ok=True)
        self.config = state / "mbsyncrc"
        self.config.write_text(
            CONFIG.format(
                host=job.host,
                port=job.port,
                user=job.user,
                password=job.password,
                maildir=self.maildir,
                folder=job.folder,
            )
        )
        self.unpacked: set[Path] = set()

    def crawl(self) -> None:
        """Sync, then unpack the messages that arrived."""
        subprocess.run(["mbsync", "-q", "-c", str(self.config), "bench"], check=True)
        arrived = sorted(
            path
            for sub in ("new", "cur")
            for path in (self.maildir / "mirror" / sub).glob("*")
            if path not in self.unpacked
        )
        for start in range(0, len(arrived), MUNPACK_BATCH):
            batch = arrived[start : start + MUNPACK_BATCH]
            command = ["munpack", "-q", "-C", str(self.out), *map(str, batch)]
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        self.unpacked.update(arrived)
