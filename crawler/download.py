"""Fetch exactly the wanted attachment parts, in as few commands as the byte budget allows.

Small parts of messages that want the same part numbers share one `UID FETCH` (most messages
keep their attachment at part 2, so a batch usually downloads in one or two commands). A part
bigger than the stream size has a command of its own, and its literal goes to the blob store a
piece at a time as it comes off the wire. An answer's parts are decoded, hashed and stored on a
thread of their own while the next command is on the wire, so memory holds at most two answers
(each within the budget) or two pieces of a big part, never a whole attachment. When Gmail
could not FETCH some messages of a command, each is fetched alone, and one it never serves is
reported, not retried. A message that another client expunged after its structure was read
comes back without data (Dovecot: `BODY[2] NIL`): it is no loss and no failure.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TypeVar

from crawler.blobs import BlobStore
from crawler.decode import PartDecoder
from crawler.errors import ProtocolError, ServerFault
from crawler.gmail.session import ImapSession
from crawler.gmail.wire import LiteralSink
from crawler.mime import AttachmentPart
from crawler.narrow import Failed, ServerAtFault, one_at_a_time


@dataclass(frozen=True)
class Wanted:
    """A part some rule keeps."""

    uid: int
    part: AttachmentPart
    rule_ids: tuple[str, ...]


@dataclass(frozen=True)
class Fetched:
    """A part stored in the blob store."""

    wanted: Wanted
    blob: str
    sha256: str
    size: int
    warnings: tuple[str, ...] = ()  # what the transfer encoding's decoder did not understand
    skipped: str | None = None  # why it was not stored (then `blob` and `sha256` are empty)


class _Unserved(Exception):
    """The server answered a download without the data of `uids`, `asked` UIDs in all."""

    def __init__(self, uids: list[int], what: str, asked: int) -> None:
        super().__init__(f"no data for {what} of UIDs {uids}")
        self.uids, self.what, self.asked = uids, what, asked


@dataclass
class _Command:
    uids: list[int] = field(default_factory=list)
    encoded: int = 0


DECODE_SLICE = 2**20  # bytes of an answer decoded at once
PARTS_AT_ONCE = 4  # an answer's parts stored at the same time
T = TypeVar("T")


Plan = tuple[list[tuple[list[int], tuple[str, ...]]], list[Wanted]]


def plan(wanted: Sequence[Wanted], budget: int, stream_size: int) -> Plan:
    """Group small parts into commands (UIDs, part numbers) under `budget`; the parts over
    `stream_size` apart."""
    sections: dict[int, list[Wanted]] = defaultdict(list)
    big = []
    for item in wanted:
        if item.part.encoded_size > stream_size:
            big.append(item)
        else:
            sections[item.uid].append(item)
    commands: dict[tuple[str, ...], list[_Command]] = defaultdict(list)
    for uid, items in sections.items():
        key = tuple(sorted(item.part.part for item in items))
        size = sum(item.part.encoded_size for item in items)
        group = commands[key]
        if not group or (group[-1].encoded + size > budget and group[-1].uids):
            group.append(_Command())
        group[-1].uids.append(uid)
        group[-1].encoded += size
    planned = [(command.uids, key) for key, group in commands.items() for command in group]
    return planned, big


Recheck = Callable[[Wanted, int], tuple[str, ...]]


class Downloader:
    """Downloads wanted parts over one session into a blob store.

    `recheck` gives the rules that keep a part at its exact decoded size (BODYSTRUCTURE only
    gives the encoded size); a part no rule keeps any more is discarded before it is stored.
    `progress` is called after every answer and every piece of a big part: a long download
    keeps the account's lease with it.
    `failed` hears of each UID whose parts Gmail could not FETCH even alone, and
    `server_at_fault` decides whether UIDs none of whose answers can be read are retried.
    """

    def __init__(
        self,
        session: ImapSession,
        blobs: BlobStore,
        budget: int,
        stream_size: int,
        recheck: Recheck,
        *,
        max_size: int,
        progress: Callable[[], None] = lambda: None,
        failed: Failed,
        server_at_fault: ServerAtFault,
    ) -> None:
        self.session = session
        self.blobs = blobs
        self.budget = budget
        self.stream_size = stream_size
        self.recheck = recheck
        self.max_size = max_size
        self.progress = progress
        self.failed = failed
        self.server_at_fault = server_at_fault

    def download(self, wanted: Sequence[Wanted]) -> Iterator[Fetched]:
        """Each wanted part, decoded and stored; ProtocolError for a part the server omits."""
        by_key = {(item.uid, item.part.part): item for item in wanted}
        commands, big = plan(wanted, self.budget, self.stream_size)
        with _Storer() as storer:
            for uids, parts in commands:
                small = partial(self._small, parts=parts, by_key=by_key, storer=storer)
                yield from self._narrowed(uids, small)
            for item in big:
                big_one = partial(self._big, by_uid={item.uid: item}, storer=storer)
                yield from self._narrowed([item.uid], big_one)
            yield from storer.wait()

    def _narrowed(
        self, uids: list[int], fetch: Callable[[list[int]], Iterator[Fetched]]
    ) -> Iterator[Fetched]:
        """`fetch(uids)`, one UID at a time if need be (`crawler.narrow`): such a fetch has
        stored nothing of its own when it fails (its answer is checked first, or its blob
        discarded). UIDs answered without data: `_unserved`."""
        return one_at_a_time(
            uids,
            partial(self._served, fetch),
            broken=lambda: self.session.broken,
            failed=self.failed,
            server_at_fault=self.server_at_fault,
        )

    def _served(
        self, fetch: Callable[[list[int]], Iterator[Fetched]], uids: list[int]
    ) -> Iterator[Fetched]:
        try:
            yield from fetch(uids)
        except _Unserved as error:
            self._unserved(error)

    def _unserved(self, error: _Unserved) -> None:
        """Messages the folder no longer holds were deleted meanwhile: nothing to save. One it
        still holds failed, unless no UID of a command for several got data: the server's fault,
        so the batch is retried."""
        held = sorted(self.session.present(error.uids))
        if held and len(error.uids) == error.asked > 1:
            raise ServerFault(f"the server sent no data for {error.what} of any of UIDs {held}")
        for uid in held:
            self.failed(uid, ProtocolError(f"UID {uid}: the server sent no data for {error.what}"))

    def _small(
        self,
        uids: list[int],
        parts: tuple[str, ...],
        by_key: dict[tuple[int, str], Wanted],
        storer: _Storer,
    ) -> Iterator[Fetched]:
        # Gmail serves the sizes BODYSTRUCTURE gives; far more is not those parts.
        claimed = sum(by_key[(uid, part)].part.encoded_size for uid in uids for part in parts)
        items = [f"BODY.PEEK[{part}]" for part in parts]
        response = self.session.fetch(uids, items, expected=2 * claimed)
        self.progress()
        bodies: list[tuple[Wanted, bytes]] = []
        unserved = []
        for uid in uids:
            data = response.get(uid, {})
            served = [
                (by_key[(uid, part)], body)
                for part in parts
                if isinstance(body := data.get(f"BODY[{part}]".encode()), bytes)
            ]
            if len(served) == len(parts):
                bodies += served
            else:
                unserved.append(uid)
        yield from storer.submit(partial(storer.each, self._whole, bodies))
        if unserved:
            raise _Unserved(unserved, f"part {' '.join(parts)}", len(uids))

    def _whole(self, body: tuple[Wanted, bytes]) -> list[Fetched]:
        """One part that arrived whole, stored."""
        item, data = body
        blob = _Blob(self.blobs, item, self.recheck, self.max_size)
        blob.feed(data)
        return blob.finish()

    def _big(
        self, uids: list[int], by_uid: dict[int, Wanted], storer: _Storer
    ) -> Iterator[Fetched]:
        for uid in uids:
            yield from self._streamed(by_uid[uid], storer)

    def _streamed(self, item: Wanted, storer: _Storer) -> Iterator[Fetched]:
        """A big part in one command, its literal stored a piece at a time as it arrives.

        What the storer holds is passed on first: once pieces stream, a failed command would
        take it down with the part."""
        yield from storer.wait()
        blob = _Blob(self.blobs, item, self.recheck, self.max_size)
        stream = _Stream(storer, blob, self.progress)
        section = f"BODY[{item.part.part}]"
        # Gmail serves the size that BODYSTRUCTURE gives; far more is not that part.
        sink = LiteralSink(section.encode(), 2 * item.part.encoded_size + 2**16, stream.write)
        try:
            data = self.session.fetch(
                [item.uid], [f"BODY.PEEK[{item.part.part}]"], expected=sink.limit, sink=sink
            )
            self.progress()
            if stream.error is not None:
                raise stream.error
            body = data.get(item.uid, {}).get(section.encode())
            if not isinstance(body, bytes):
                raise _Unserved([item.uid], f"part {item.part.part}", 1)
            if body:  # sent in the line, not as a literal
                yield from storer.submit(partial(blob.feed, body))
            yield from storer.submit(blob.finish)
        except BaseException:
            storer.settle()
            blob.discard()
            raise


class _Stream:
    """The pieces of a big part's literal, handed to the storer as they come off the wire.

    It never raises: the session reads the literal to its end whatever happens, to keep the
    connection in step, so an error (a full disk, a lost lease) waits in `error` for the end
    of the command. The storer holds nothing else meanwhile: its pieces store nothing yet.
    """

    def __init__(self, storer: _Storer, blob: _Blob, progress: Callable[[], None]) -> None:
        self.storer = storer
        self.blob = blob
        self.progress = progress
        self.error: Exception | None = None

    def write(self, piece: bytes) -> None:
        if self.error is not None:
            return
        try:
            self.storer.submit(partial(self.blob.feed, piece))
            self.progress()
        except Exception as error:  # raised once the command has ended
            self.error = error


class _Blob:
    """One wanted part on its way into the blob store, decoded and hashed chunk by chunk.

    The size cap holds for what arrives, whatever BODYSTRUCTURE claimed: past it, the rest of
    the part is read and dropped, and the part is reported skipped."""

    def __init__(self, blobs: BlobStore, item: Wanted, recheck: Recheck, max_size: int) -> None:
        self.blobs = blobs
        self.item = item
        self.recheck = recheck
        self.max_size = max_size
        self.decoder = PartDecoder(item.part.encoding)
        self.writer = blobs.writer(content_type=item.part.content_type)
        self.size = 0  # decoded bytes that arrived

    def feed(self, chunk: bytes) -> list[Fetched]:
        """Decode and write `chunk`, a slice at a time (decoding copies what it is given);
        nothing is stored yet."""
        try:
            for start in range(0, len(chunk), DECODE_SLICE):
                self._write(self.decoder.feed(chunk[start : start + DECODE_SLICE]))
        except BaseException:
            self.discard()
            raise
        return []

    def _write(self, data: bytes) -> None:
        was_within = self.size <= self.max_size
        self.size += len(data)
        if self.size <= self.max_size:
            self.writer.write(data)
        elif was_within:
            self.discard()  # nothing of an oversized part is kept; the rest is only counted

    def finish(self) -> list[Fetched]:
        """Store the part, unless it arrived over the size cap or no rule keeps it at its
        decoded size."""
        try:
            self._write(self.decoder.finish())
            if self.size > self.max_size:
                reason = "larger than CRAWLER_MAX_ATTACHMENT_SIZE when it arrived"
                return [Fetched(self.item, "", "", self.size, skipped=reason)]
            rule_ids = self.recheck(self.item, self.writer.size)
            if not rule_ids:
                return []
            key = self.blobs.commit(self.writer)
        finally:
            self.discard()  # a committed blob stays: discarding is for what was not
        wanted = replace(self.item, rule_ids=rule_ids)
        warnings = tuple(self.decoder.warnings)
        return [Fetched(wanted, key, self.writer.sha256, self.writer.size, warnings)]

    def discard(self) -> None:
        """Throw away what was written, unless it was committed."""
        self.writer.discard()


class _Storer:
    """Stores parts on a thread of its own, one answer behind the session.

    Decoding, hashing, writing and syncing an answer's parts overlap the next command's round
    trip instead of delaying it. Jobs run one at a time in order, and at most one waits, so
    memory holds at most two answers (two pieces of a big part). The parts of one answer are
    stored `PARTS_AT_ONCE` at a time (`each`): a blob's fsyncs wait on the disk, and several in
    flight share the filesystem's journal commits.
    """

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blob-store")
        self._parts = ThreadPoolExecutor(max_workers=PARTS_AT_ONCE, thread_name_prefix="blob")
        self._pending: Future[list[Fetched]] | None = None

    def each(self, job: Callable[[T], list[Fetched]], items: Sequence[T]) -> list[Fetched]:
        """`job` of every item, several at once; what they stored, in order. When one fails,
        the others end first (a blob either stored whole or discarded), then its error."""
        running = [self._parts.submit(job, item) for item in items]
        futures.wait(running)
        return [fetched for done in running for fetched in done.result()]

    def submit(self, job: Callable[[], list[Fetched]]) -> list[Fetched]:
        """Start `job` once the previous one is done; what the previous one stored."""
        stored = self.wait()
        self._pending = self._executor.submit(job)
        return stored

    def wait(self) -> list[Fetched]:
        """What the pending job stored; its exception if it failed."""
        pending, self._pending = self._pending, None
        return pending.result() if pending else []

    def settle(self) -> None:
        """Let the pending job end; what it stored, or its error, still comes from `wait`."""
        if self._pending:
            futures.wait([self._pending])

    def __enter__(self) -> _Storer:
        return self

    def __exit__(self, *_: object) -> None:
        self.settle()
        self._executor.shutdown()
        self._parts.shutdown()
