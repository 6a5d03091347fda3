"""Fetch exactly the wanted attachment parts, in as few commands as the byte budget allows.

Small parts of messages that want the same part numbers share one `UID FETCH` (most messages
keep their attachment at part 2, so a batch usually downloads in one or two commands). A part
bigger than the chunk size streams in `<offset.length>` partial fetches, so memory is bounded
by the chunk size and the budget, never by the attachment. When Gmail could not FETCH some
messages of a command, each is fetched alone, and one it never serves is reported, not retried.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial

from crawler.blobs import BlobStore
from crawler.decode import PartDecoder
from crawler.errors import CrawlerError, PartialFetch, ProtocolError
from crawler.gmail.session import ImapSession
from crawler.mime import AttachmentPart


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


@dataclass
class _Command:
    uids: list[int] = field(default_factory=list)
    encoded: int = 0


Plan = tuple[list[tuple[list[int], tuple[str, ...]]], list[Wanted]]


def plan(wanted: Sequence[Wanted], budget: int, chunk: int) -> Plan:
    """Group small parts into commands (UIDs, part numbers) under `budget`; big ones apart."""
    sections: dict[int, list[Wanted]] = defaultdict(list)
    big = []
    for item in wanted:
        if item.part.encoded_size > chunk:
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
    `progress` is called after every answer: a long download keeps the account's lease with it.
    `failed` hears of each UID whose parts Gmail could not FETCH even alone.
    """

    def __init__(
        self,
        session: ImapSession,
        blobs: BlobStore,
        budget: int,
        chunk: int,
        recheck: Recheck,
        *,
        progress: Callable[[], None] = lambda: None,
        failed: Callable[[int, CrawlerError], None],
    ) -> None:
        self.session = session
        self.blobs = blobs
        self.budget = budget
        self.chunk = chunk
        self.recheck = recheck
        self.progress = progress
        self.failed = failed

    def download(self, wanted: Sequence[Wanted]) -> Iterator[Fetched]:
        """Each wanted part, decoded and stored; ProtocolError for a part the server omits."""
        by_key = {(item.uid, item.part.part): item for item in wanted}
        commands, big = plan(wanted, self.budget, self.chunk)
        for uids, parts in commands:
            yield from self._narrowed(uids, partial(self._small, parts=parts, by_key=by_key))
        for item in big:
            yield from self._narrowed([item.uid], partial(self._big, by_uid={item.uid: item}))

    def _narrowed(
        self,
        uids: list[int],
        fetch: Callable[[list[int]], Iterator[Fetched]],
        *,
        alone: bool = False,
    ) -> Iterator[Fetched]:
        """`fetch(uids)`; when Gmail could not FETCH some of them, once more each UID alone,
        then `failed`. (A fetch fails before it yields anything: its answer is checked, or its
        blob left uncommitted.)"""
        try:
            yield from fetch(uids)
        except PartialFetch as error:
            if alone:
                self.failed(uids[0], error)
                return
            for uid in uids:
                yield from self._narrowed([uid], fetch, alone=True)

    def _small(
        self, uids: list[int], parts: tuple[str, ...], by_key: dict[tuple[int, str], Wanted]
    ) -> Iterator[Fetched]:
        response = self.session.fetch(uids, [f"BODY.PEEK[{part}]" for part in parts])
        self.progress()
        bodies = []
        for uid in uids:
            data = response.get(uid, {})
            for part in parts:
                body = data.get(f"BODY[{part}]".encode())
                if not isinstance(body, bytes):
                    raise ProtocolError(f"UID {uid}: the server sent no data for part {part}")
                bodies.append((by_key[(uid, part)], body))
        for item, body in bodies:
            yield from self._store(item, [body])

    def _big(self, uids: list[int], by_uid: dict[int, Wanted]) -> Iterator[Fetched]:
        for uid in uids:
            yield from self._store(by_uid[uid], self._chunks(by_uid[uid]))

    def _chunks(self, item: Wanted) -> Iterator[bytes]:
        offset = 0
        while True:
            section = f"BODY.PEEK[{item.part.part}]<{offset}.{self.chunk}>"
            data = self.session.fetch([item.uid], [section]).get(item.uid, {})
            self.progress()
            body = data.get(f"BODY[{item.part.part}]<{offset}>".encode())
            if not isinstance(body, bytes):
                raise ProtocolError(f"UID {item.uid}: no data for {section}")
            yield body
            if len(body) < self.chunk:
                return
            offset += len(body)

    def _store(self, item: Wanted, chunks: Iterable[bytes]) -> Iterator[Fetched]:
        decoder = PartDecoder(item.part.encoding)
        with self.blobs.writer() as writer:
            for chunk in chunks:
                writer.write(decoder.feed(chunk))
            writer.write(decoder.finish())
            rule_ids = self.recheck(item, writer.size)
            if not rule_ids:
                return  # leaving the writer uncommitted discards what it wrote
            key = self.blobs.commit(writer)
        yield Fetched(replace(item, rule_ids=rule_ids), key, writer.sha256, writer.size)
