"""Run the contenders against the servers: each run in a process of its own, timed phase by phase.

A run: a fresh account holding the mailbox; the first crawl; 1 % new mail; the re-crawl; the
process's peak RSS. After each phase the saved attachments are checked against the mailbox's.
Runs interleave (every contender once, then again) so that a noisy spell hits them all alike.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.child import Job
from bench.mailbox import Attachment, Mail
from bench.proxy import Wire
from bench.servers import Mailbox, Server
from bench.verify import Verdict, bucket_digests, listed_digests, saved_digests, verify
from standins.s3 import S3Server

REPO = Path(__file__).resolve().parents[1]
PHASE_TIMEOUT = 1800.0
PDF_RULE: dict[str, object] = {"content_types": ["application/pdf"]}


@dataclass(frozen=True)
class Contender:
    """A contender as the tables name it: its module, and the attachments it is to save."""

    name: str
    module: str
    rule: dict[str, object] = field(default_factory=dict)
    blob_store: str = "file"  # the crawler's: "s3" puts its blobs in the runner's fake S3

    def wants(self, attachment: Attachment) -> bool:
        """Whether this contender should save `attachment` (the crawler's PDF rule, or all)."""
        types = self.rule.get("content_types")
        return not isinstance(types, list) or attachment.content_type in types


CRAWLER = Contender("crawler", "bench.contenders.crawler")
CRAWLER_S3 = Contender("crawler on S3", "bench.contenders.crawler", blob_store="s3")
CRAWLER_PDF = Contender("crawler (PDF rule)", "bench.contenders.crawler", PDF_RULE)
NAIVE = Contender("naive design", "bench.baselines.naive")
IMAP_TOOLS = Contender("imap-tools loop", "bench.baselines.imap_tools_loop")
MBSYNC = Contender("mbsync + munpack", "bench.baselines.mbsync_munpack")
FLOOR = Contender("floor", "bench.baselines.floor")
CONTENDERS = (CRAWLER, CRAWLER_S3, CRAWLER_PDF, NAIVE, IMAP_TOOLS, MBSYNC, FLOOR)


@dataclass(frozen=True)
class Phase:
    """One crawl of a run."""

    seconds: float
    wire: Wire
    verdict: Verdict
    decoded: int  # decoded bytes of the attachments the phase should have saved


@dataclass(frozen=True)
class Run:
    """One contender's run on one server: the first crawl and the re-crawl after new mail."""

    server: str
    contender: str
    messages: int
    first: Phase | None = None
    again: Phase | None = None
    peak_rss_kb: int = 0
    error: str = ""


class ContenderFailed(RuntimeError):
    """The contender's process failed; the message ends with its stderr."""


class ContenderProcess:
    """A contender's process, driven one phase at a time (bench/child.py)."""

    def __init__(self, module: str, job: Path, log: Path) -> None:
        self.log = log
        with log.open("wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bench.child", module, str(job)],
                cwd=REPO,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        self.ready = False
        self.watchdog = threading.Timer(PHASE_TIMEOUT, self.process.kill)
        self.watchdog.start()

    def phase(self) -> float:
        """Run one phase; its wall time, which starts once the contender is set up."""
        assert self.process.stdin is not None
        if not self.ready:
            self._answer()  # imported and set up
            self.ready = True
        started = time.monotonic()
        self.process.stdin.write("go\n")
        self.process.stdin.flush()
        self._answer()
        return time.monotonic() - started

    def _answer(self) -> None:
        assert self.process.stdout is not None
        if not self.process.stdout.readline():
            raise ContenderFailed(self._failure())

    def finish(self) -> int:
        """End the process; its peak RSS in kB."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        line = self.process.stdout.readline()
        self.process.stdout.close()
        self.process.wait()
        self.watchdog.cancel()
        if not line:
            raise ContenderFailed(self._failure())
        return int(json.loads(line)["peak_rss_kb"])

    def kill(self) -> None:
        """Stop it, whatever it is doing."""
        self.watchdog.cancel()
        self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()

    def _failure(self) -> str:
        self.process.wait()
        tail = self.log.read_text(errors="replace").strip().splitlines()[-8:]
        return f"exit {self.process.returncode}: " + " | ".join(tail)


@dataclass
class Runner:
    """Runs contenders on servers and keeps every run."""

    work: Path
    progress: Callable[[str], None] = print
    s3: S3Server | None = None  # for the contenders on S3 (a bucket each run), started by them
    runs: list[Run] = field(default_factory=list)

    def run(
        self,
        server: Server,
        contender: Contender,
        mails: Sequence[Mail],
        new_mail: Sequence[Mail],
        label: str,
    ) -> Run:
        """One run; a failed contender is recorded with its error, not raised."""
        directory = self.work / label
        shutil.rmtree(directory, ignore_errors=True)
        (directory / "state").mkdir(parents=True)
        mailbox = server.mailbox(label, mails)
        try:
            run = self._measure(
                server,
                contender,
                mailbox=mailbox,
                mails=mails,
                new_mail=new_mail,
                directory=directory,
            )
        finally:
            mailbox.close()
            shutil.rmtree(directory, ignore_errors=True)
        self.runs.append(run)
        self.progress(_summary(run))
        return run

    def _measure(
        self,
        server: Server,
        contender: Contender,
        *,
        mailbox: Mailbox,
        mails: Sequence[Mail],
        new_mail: Sequence[Mail],
        directory: Path,
    ) -> Run:
        state = directory / "state"
        job = dataclasses.replace(
            mailbox.job(directory / "out", state),
            redis_prefix=f"bench:{uuid.uuid4().hex}:",
            rule=contender.rule,
            wanted=[_wanted(contender, mails, 0), _wanted(contender, new_mail, len(mails))],
            s3=self._bucket(directory.name) if contender.blob_store == "s3" else {},
        )
        process = ContenderProcess(contender.module, job.write(state / "job.json"), state / "log")
        run = Run(server.name, contender.name, len(mails))
        try:
            first = self._phase(process, mailbox, contender, job, mails)
            mailbox.deliver(new_mail)
            again = self._phase(process, mailbox, contender, job, [*mails, *new_mail])
            decoded = sum(a.size for m in new_mail for a in m.attachments if contender.wants(a))
            again = dataclasses.replace(again, decoded=decoded)
            return dataclasses.replace(run, first=first, again=again, peak_rss_kb=process.finish())
        except (ContenderFailed, OSError) as error:
            process.kill()
            return dataclasses.replace(run, error=str(error)[:600])

    def _bucket(self, label: str) -> dict[str, str]:
        """A new bucket of the fake S3 (started on first use), as a crawler's environment."""
        if self.s3 is None:
            self.s3 = S3Server()
            self.s3.start()
        bucket = f"bench-{label}"[:63]
        self.s3.create_bucket(bucket)
        return self.s3.crawler_env(bucket)

    def close(self) -> None:
        """Stop the fake S3, if a contender started it."""
        if self.s3 is not None:
            self.s3.kill()
            self.s3 = None

    def _phase(
        self,
        process: ContenderProcess,
        mailbox: Mailbox,
        contender: Contender,
        job: Job,
        mails: Sequence[Mail],
    ) -> Phase:
        mailbox.reset()
        # Write back what earlier runs and the mailbox's delivery left dirty, so that a
        # contender's own fsyncs do not pay for it.
        os.sync()
        seconds = process.phase()
        wire = mailbox.wire()
        expected = [a for m in mails for a in m.attachments if contender.wants(a)]
        inline = [a for m in mails for a in m.parts if a.inline]
        state = Path(job.state)
        if job.s3 and self.s3 is not None:  # read back from the bucket, not the disk
            saved = listed_digests(
                bucket_digests(self.s3.client(), job.s3["CRAWLER_S3_BUCKET"]), state
            )
        else:
            saved = saved_digests(Path(job.out), state)
        verdict = verify(expected, inline, saved)
        return Phase(seconds, wire, verdict, sum(a.size for a in expected))


def _wanted(
    contender: Contender, mails: Sequence[Mail], first_uid: int
) -> list[tuple[int, str, str]]:
    """What the floor fetches: (uid, part, encoding) of each wanted part; UIDs count from 1."""
    return [
        (first_uid + position + 1, attachment.part, attachment.encoding)
        for position, mail in enumerate(mails)
        for attachment in mail.attachments
        if contender.wants(attachment)
    ]


def _summary(run: Run) -> str:
    if run.first is None or run.again is None:
        return f"  {run.server:18} {run.contender:20} FAILED: {run.error}"
    first, again = run.first, run.again
    return (
        f"  {run.server:18} {run.contender:20} {first.seconds:7.2f} s  "
        f"{first.wire.commands:6d} cmds  {first.wire.total / 1e6:8.1f} MB  "
        f"rss {run.peak_rss_kb / 1024:5.0f} MB  re-crawl {again.seconds:5.2f} s "
        f"{again.wire.commands} cmds  [{first.verdict.describe()} / {again.verdict.describe()}]"
    )


__all__ = ["CONTENDERS", "Contender", "ContenderProcess", "Job", "Phase", "Run", "Runner"]
