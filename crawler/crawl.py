"""`ImapCrawler`: one crawl of one account on any IMAP server, end to end.

Connect and log in, EXAMINE the folder, search for UIDs above the cursor (unless a queue is left
from a crawl that stopped), push them, then drain the queue in batches: metadata, the wanted
parts, blobs, attachment documents, ack. The cursor advances only once the queue is empty.
What a Gmail account does differently (XOAUTH2, All Mail, X-GM-RAW, X-GM-MSGID) is
`crawler.gmail_crawler.GmailCrawler`, a subclass.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Protocol

from config import Settings
from crawler import daily, metrics
from crawler.blobs import BlobStore
from crawler.download import Downloader, Fetched, Wanted
from crawler.errors import (
    BadAccount,
    BadInput,
    ConfigError,
    CrawlerError,
    DailyLimit,
    Interrupted,
    ProtocolError,
    SessionExpired,
    Throttled,
)
from crawler.events import Event, EventStream
from crawler.gmail.session import ImapSession, Mailbox, MessageMeta
from crawler.identity import message_identity
from crawler.lease import LeaseLost, LeaseWatch
from crawler.mime import AttachmentPart, attachment_parts, filename_from_mime_header, header_text
from crawler.narrow import one_at_a_time
from crawler.oauth import MISSING_KEY, TokenCipher, TokenSource
from crawler.rules import Rule, RuleTester
from crawler.store import Store
from crawler.store.status import Download
from crawler.uidqueue import UidQueue

log = logging.getLogger(__name__)

MAX_FAILED_UIDS = 1000
MAX_RELOGINS = 3  # sessions a crawl opens again after the server ended one with its token
MIME_HEADER_BYTES = 2**14  # what one part's MIME header may carry
# Crawls in a row that can read no answer for the same UIDs before the messages, not the
# server, are blamed: a server's fault is retried, but one message must not stop the account.
SUSPECT_CRAWLS = 3


@dataclass
class CrawlResult:
    """What one crawl did."""

    messages: int = 0
    attachments: int = 0
    bytes: int = 0
    skipped: int = 0
    failed: int = 0
    commands: int = 0
    bytes_in: int = 0


class Crawler(Protocol):
    """What `CrawlIterator` asks of a crawler class: built with keyword arguments (`account`,
    `rules`, `settings`, `status`, `store`, `queue`, `blobs`, `cipher`, `tokens`, `rule_tester`,
    `clock`, `should_stop`), it crawls the account once, raising `Throttled` (or a subclass)
    when the server says to back off."""

    def crawl(self) -> CrawlResult | None:
        """Run one crawl of the account."""
        ...


class ImapCrawler:
    """Crawls one account on any IMAP server (`imap_password`: LOGIN, a folder of the account's,
    every new message a candidate); raises `Throttled` when the server says to back off."""

    gmail_items = False  # X-GM-MSGID, X-GM-THRID and X-GM-LABELS in the metadata

    def __init__(
        self,
        *,
        account: Mapping[str, Any],
        rules: Sequence[Rule],
        settings: Settings,
        status: Mapping[str, Any],
        store: Store,
        queue: UidQueue,
        blobs: BlobStore,
        cipher: TokenCipher | None,
        tokens: TokenSource | None = None,
        rule_tester: type[RuleTester] = RuleTester,
        clock: Callable[[], float] = time.time,
        should_stop: Callable[[], bool] = lambda: False,
        events: EventStream | None = None,
        **_: Any,
    ) -> None:
        self.account = account
        self.user_uuid = str(account["user_uuid"])
        self.rules = list(rules)
        self.settings = settings
        self.status = dict(status)
        self.store = store
        self.queue = queue
        self.blobs = blobs
        self.cipher = cipher
        self.tokens = tokens
        self.tester = rule_tester(self.rules)
        self.clock = clock
        self.should_stop = should_stop
        self.events = events
        self.batch_events: list[Event] = []  # the batch's attachment events, sent before its ack
        self.batch_records: list[dict[str, Any]] = []  # its records, written at its end
        self.result = CrawlResult()
        self.counted = self.largest_batch = 0  # bytes: see _count_download
        self.session_expired = False  # the server ended a session with its token: a fresh one
        self.started = self.lease_renewed = time.monotonic()
        self.watch: LeaseWatch | None = None  # the open session's (see _connect)

    def crawl(self) -> CrawlResult:
        """Run one crawl of the account.

        When the server ends the session with the token it logged in with (Gmail does, about
        an hour on), the crawl logs in again and goes on from the queue: no error, no retry.
        """
        relogins = 0
        while True:
            session, mailbox = self._open()
            try:
                if self.queue.drained():
                    # A crawl that stopped right after its last batch left the cursor behind.
                    self._advance_cursor()
                    self._search(session, mailbox)
                self._drain(session)
                self._advance_cursor()
                return self.result
            except SessionExpired:
                if relogins >= MAX_RELOGINS:
                    raise
                relogins += 1
                self.session_expired = True
                self.queue.requeue_inflight()  # the batch in hand is taken again
            finally:
                self._close(session)

    def _open(self) -> tuple[ImapSession, Mailbox]:
        """A session logged in, with the folder examined."""
        session = self._connect()
        try:
            self._authenticate(session)
            mailbox = self._examine(session)
            self._examined(mailbox)
            self._check_uidvalidity(mailbox)
        except BaseException:
            self._close(session)
            raise
        return session, mailbox

    def _cut(self, session: ImapSession) -> None:
        log.warning(
            "the lease of %s went unrenewed for %.1f s: its IMAP session is cut before another "
            "worker can take the account",
            self.user_uuid,
            time.monotonic() - self.lease_renewed,
        )
        session.cut()

    def _close(self, session: ImapSession) -> None:
        if self.watch is not None:
            self.watch.stop()
        session.logout()
        self.result.commands += session.tap.commands
        self.result.bytes_in += session.tap.bytes_in

    # -- session ------------------------------------------------------------------------

    def _connect(self) -> ImapSession:
        """A session, opened under a lease just renewed, and watched so that it ends before
        the lease could lapse (`LeaseWatch`)."""
        self._keep_lease(force=True)
        host, port, tls = self._server()
        session = ImapSession(
            host,
            port,
            tls=tls,
            timeout=self.settings.imap_timeout,
            max_literal=max(self.settings.download_budget, self.settings.stream_size) + 2**16,
            ca_file=str(self.settings.imap_ca_file) if self.settings.imap_ca_file else None,
            min_rate=self.settings.imap_min_rate,
            contact=self.settings.imap_id_contact or None,
        )
        session.tap.on_read = self._keep_lease  # a slow answer keeps the lease too
        self.watch = LeaseWatch(
            lambda: self.lease_renewed, self.settings.lease_ttl, partial(self._cut, session)
        )
        self.watch.start()
        return session

    def _server(self) -> tuple[str, int, bool]:
        imap = self.account.get("imap")
        if not isinstance(imap, Mapping) or not isinstance(imap.get("host"), str):
            raise BadAccount("imap.host is missing for an imap_password account")
        port, tls = imap.get("port", 993), imap.get("tls", True)
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise BadAccount(f"imap.port must be a port number, not {port!r:.40}")
        if not isinstance(tls, bool):
            raise BadAccount(f"imap.tls must be true or false, not {tls!r:.40}")
        return str(imap["host"]), port, tls

    def _authenticate(self, session: ImapSession) -> None:
        password = self._cipher().decrypt(self.account.get("password"), "password")
        session.login(str(self.account.get("username") or self._email()), password)

    def _email(self) -> str:
        email = self.account.get("email")
        if not isinstance(email, str) or not email:
            raise BadAccount("email is missing")
        return email

    def _cipher(self) -> TokenCipher:
        if self.cipher is None:
            raise ConfigError(MISSING_KEY)
        return self.cipher

    def _examine(self, session: ImapSession) -> Mailbox:
        """EXAMINE the account's folder."""
        return session.examine(self._folder(session))

    def _folder(self, session: ImapSession) -> str:
        folder = self.account.get("folder", "INBOX")
        if not isinstance(folder, str):
            raise BadAccount("folder must be a string")
        return folder

    def _examined(self, mailbox: Mailbox) -> None:
        """What the folder's EXAMINE answer tells about the account (a plain server: nothing)."""

    def _search_query(self, rule: Rule) -> str | None:
        """The server-side search that finds a rule's candidates; None: every new message
        (a plain IMAP server has no Gmail search syntax, so BODYSTRUCTURE decides)."""
        return None

    # -- cursor and search --------------------------------------------------------------

    def _check_uidvalidity(self, mailbox: Mailbox) -> None:
        known = self.status.get("uidvalidity")
        if known == mailbox.uidvalidity:
            return
        # New UIDs for everything: start over; gm_msgid keeps the stores duplicate-free.
        self.queue.clear()
        self.status.update(uidvalidity=mailbox.uidvalidity, last_uid=0, rules_seen=[])
        self.status.update(pending_uid=0, pending_rules=[])
        self.store.statuses.recorded(
            self.user_uuid,
            **{key: self.status[key] for key in ("uidvalidity", "last_uid", "rules_seen")},
        )

    def _search(self, session: ImapSession, mailbox: Mailbox) -> None:
        """One search per distinct query. The rules of a query make up to two groups: those new
        to the account look from UID 0, the others above the cursor; each UID is queued with the
        indices of the groups that found it, never with their rule ids, so what a UID costs does
        not grow with the rules."""
        cursor = int(self.status.get("last_uid") or 0)
        seen = set(self.status.get("rules_seen") or ())
        top = mailbox.uidnext - 1 if mailbox.uidnext else None
        groups: list[frozenset[str]] = []
        found_by: dict[int, list[int]] = defaultdict(list)
        for query, rules in self._queries().items():
            ids = frozenset(rule.id for rule in rules)
            # (a group, the UID above which it looks): the new rules, then the others
            windows = ((ids - seen, 0), (ids & seen, cursor))
            start = min(after for group, after in windows if group)
            if top is not None and start >= top:
                continue  # UIDNEXT says nothing new for these rules
            indexed = []  # (a group's index in `groups`, the UID above which it looks)
            for group, after in windows:
                if group:
                    indexed.append((len(groups), after))
                    groups.append(group)
            for uid in session.search(query, start, mailbox.uidnext):
                found_by[uid] += [index for index, after in indexed if uid > after]
        if found_by:
            self.queue.push(sorted(found_by), found_by=found_by, groups=groups)
        pending = {
            "pending_uid": top or max(found_by, default=cursor),
            "pending_rules": self._ids(),
        }
        self.status.update(pending)
        self.store.statuses.recorded(self.user_uuid, **pending)
        if session.throttled:
            raise Throttled("Gmail replied [THROTTLED] during the search")

    def _queries(self) -> dict[str | None, list[Rule]]:
        groups: dict[str | None, list[Rule]] = defaultdict(list)
        for rule in self.tester.rules:
            groups[self._search_query(rule)].append(rule)
        if len(groups) > self.settings.max_queries:
            kept = dict(list(groups.items())[: self.settings.max_queries])
            dropped = [
                rule.id for key, group in groups.items() if key not in kept for rule in group
            ]
            self._rule_errors(
                dropped, f"more than {self.settings.max_queries} distinct queries on the account"
            )
            return kept
        return groups

    def _ids(self) -> list[str]:
        return [rule.id for rule in self.tester.rules]

    def _advance_cursor(self) -> None:
        if self.status.get("pending_uid") is None or not self.queue.drained():
            return
        fields = {
            "last_uid": max(
                int(self.status.get("pending_uid") or 0), int(self.status.get("last_uid") or 0)
            ),
            "rules_seen": list(
                self.status.get("pending_rules") or self.status.get("rules_seen") or []
            ),
        }
        fields |= {"pending_uid": None, "pending_rules": None}
        self.status.update(fields)
        self.store.statuses.recorded(self.user_uuid, **fields)

    def _rule_errors(self, rule_ids: Sequence[str], reason: str) -> None:
        errors = dict.fromkeys(rule_ids, reason)
        self.store.statuses.rule_errors(self.user_uuid, errors, merge=True)

    # -- draining the queue -------------------------------------------------------------

    def _drain(self, session: ImapSession) -> None:
        downloader = Downloader(
            session,
            self.blobs,
            self.settings.download_budget,
            self.settings.stream_size,
            self._recheck,
            max_size=self.settings.max_attachment_size,
            progress=self._keep_lease,
            failed=self._failed,
            server_at_fault=self._server_at_fault,
        )
        self.counted = 0  # of this session's bytes, those in crawl_status.downloaded
        try:
            while not self.queue.drained():
                self._check_daily_limit()
                batch = self.queue.claim(self.settings.fetch_batch)
                if not batch:
                    break
                start = session.tap.bytes_in
                self._batch(session, downloader, batch)
                self.largest_batch = max(self.largest_batch, session.tap.bytes_in - start)
                self._after_batch(session)
        finally:
            self._count_download(session)

    def _batch(self, session: ImapSession, downloader: Downloader, batch: list[int]) -> None:
        """One claimed batch: processed, stored, its events sent, acknowledged, counted."""
        before = replace(self.result)
        self.batch_events, self.batch_records = [], []
        self._process(session, downloader, batch)
        if self.events is not None:
            self.events.publish(self.batch_events)
        self.queue.ack(batch)
        self._record_progress(before, self._download_since(session))

    def _after_batch(self, session: ImapSession) -> None:
        """Whether to go on after a batch: the lease is renewed, or the crawl stops."""
        self._keep_lease(force=True)
        if session.throttled:
            raise Throttled("Gmail replied [THROTTLED]")
        if self.should_stop():
            raise Interrupted("the worker is shutting down")
        if time.monotonic() - self.started > self.settings.max_crawl_time:
            # The queue keeps the rest; other due accounts get their turn first.
            raise Interrupted("the crawl ran for CRAWLER_MAX_CRAWL_TIME; it resumes next pass")

    def _keep_lease(self, *, force: bool = False) -> None:
        """Renew the account's lease after each batch, and within one every third of its TTL;
        LeaseLost (the crawl stops at once) when another worker holds it now."""
        now = time.monotonic()
        if force or now - self.lease_renewed > self.settings.lease_ttl / 3:
            if not self.queue.lease.renew():
                raise LeaseLost(f"the lease of {self.user_uuid} expired and was not renewed")
            self.lease_renewed = now

    def _record_progress(self, before: CrawlResult, download: Download | None) -> None:
        """Add the batch's counts to `crawl_status.totals`, and what it received to the
        rolling count, in one write, so progress survives any stop."""
        done = {
            name: getattr(self.result, name) - getattr(before, name)
            for name in ("messages", "attachments", "bytes")
        }
        self.store.statuses.progressed(self.user_uuid, self.clock(), done, download)

    def _count_download(self, session: ImapSession) -> None:
        """Add what the session received since it was last counted to the account's rolling
        24-hour count (`crawl_status.downloaded`)."""
        download = self._download_since(session)
        if download is not None:
            self.store.statuses.downloaded(self.user_uuid, download)

    def _download_since(self, session: ImapSession) -> Download | None:
        """What the session received since it was last counted, now counted in the crawl's
        own copy of the window (which drops the hours past it); None when nothing came."""
        size = session.tap.bytes_in - self.counted
        if size <= 0:
            return None
        self.counted += size
        now = self.clock()
        hour, window = str(daily.hour_of(now)), dict(self.status.get("downloaded") or {})
        gone = daily.expired(window, now)
        window = {key: value for key, value in window.items() if key not in gone}
        window[hour] = window.get(hour, 0) + size
        self.status["downloaded"] = window
        return int(hour), size, gone

    def _check_daily_limit(self) -> None:
        """DailyLimit unless the next batch stays under CRAWLER_DAILY_DOWNLOAD_LIMIT, with when
        enough of the window will have passed (the queue keeps the rest). The next
        batch is taken to be as big as the biggest of this crawl, and at least one download
        command's budget."""
        limit, now = self.settings.daily_download_limit, self.clock()
        window = self.status.get("downloaded") or {}
        need = max(self.largest_batch, self.settings.download_budget)
        if not daily.blocked(window, now, need, limit):
            return
        raise DailyLimit(
            f"{daily.used(window, now)} bytes downloaded in the last 24 h: the next batch could "
            f"pass CRAWLER_DAILY_DOWNLOAD_LIMIT ({limit})",
            daily.resume_at(window, now, need, limit),
        )

    def _process(self, session: ImapSession, downloader: Downloader, batch: list[int]) -> None:
        found_by = self.queue.rule_ids(batch)  # UIDs found by the same rules share one set
        nothing: frozenset[str] = frozenset()
        metas = self._metadata(session, batch)
        candidates = {
            uid: self._candidates(meta, found_by.get(uid, nothing)) for uid, meta in metas.items()
        }
        named = self._named(session, candidates)
        wanted = [
            Wanted(uid, part, tuple(rule_ids))
            for uid in batch
            for part in named.get(uid, [])
            if (rule_ids := self.tester.rule_ids(part, found_by.get(uid, nothing)))
        ]
        self.result.messages += len(metas)
        # Only the messages that have wanted parts: without X-GM-RAW most of a batch has none.
        identities = {item.uid: message_identity(metas[item.uid]) for item in wanted}
        stored = (
            self.store.stored_attachments(self.user_uuid, list(set(identities.values())))
            if identities
            else {}
        )
        fresh, again = [], []
        for item in wanted:
            key = (identities[item.uid], item.part.part)
            if key in stored:  # kept before, maybe for other rules: only add these rules
                again.append((*key, item.rule_ids))
                self._stored_again(stored[key], item.rule_ids)
            else:
                fresh.append(item)
        for fetched in downloader.download(self._within_cap(metas, fresh)):
            meta = metas[fetched.wanted.uid]
            if fetched.skipped:
                arrived = replace(fetched.wanted.part, decoded_size=fetched.size)
                self._save_skipped(meta, replace(fetched.wanted, part=arrived), fetched.skipped)
            else:
                self._save(meta, fetched)
        self.store.add_rule_ids_many(self.user_uuid, again)
        self._store_records()

    def _metadata(self, session: ImapSession, batch: list[int]) -> dict[int, MessageMeta]:
        """The batch's metadata in one UID FETCH; one UID at a time if need be."""

        def fetch(uids: list[int]) -> Iterator[tuple[int, MessageMeta]]:
            yield from session.metadata(uids, gmail=self.gmail_items).items()

        return dict(
            one_at_a_time(
                batch,
                fetch,
                broken=lambda: session.broken,
                failed=self._failed,
                server_at_fault=self._server_at_fault,
            )
        )

    def _candidates(self, meta: MessageMeta, found_by: Collection[str]) -> list[AttachmentPart]:
        """The message's attachment parts that a rule which found it keeps under some name."""
        structure = attachment_parts(meta.bodystructure)
        for unreadable in structure.unreadable:
            error = BadInput(f"part {unreadable.part}: {unreadable.reason}")
            self._failed(meta.uid, error, part=unreadable.part)
        return [part for part in structure.parts if self.tester.may_want(part, found_by)]

    def _named(
        self, session: ImapSession, parts: Mapping[int, list[AttachmentPart]]
    ) -> dict[int, list[AttachmentPart]]:
        """`parts`, with the names BODYSTRUCTURE lacks read from `BODY.PEEK[<part>.MIME]`:
        one UID FETCH for all the messages whose unnamed parts have the same numbers. A header
        that cannot be read leaves its part nameless, with a warning."""
        nameless: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for uid, items in parts.items():
            sections = tuple(part.part for part in items if part.needs_header)
            if sections:
                nameless[sections].append(uid)
        named: dict[tuple[int, str], AttachmentPart] = {}
        for sections, uids in nameless.items():
            headers = self._mime_headers(session, sorted(uids), sections)
            for uid in uids:
                for part in parts[uid]:
                    if part.part in sections:
                        named[(uid, part.part)] = _with_header_name(part, headers.get(uid, {}))
        return {
            uid: [named.get((uid, part.part), part) for part in items]
            for uid, items in parts.items()
        }

    def _mime_headers(
        self, session: ImapSession, uids: list[int], sections: tuple[str, ...]
    ) -> dict[int, dict[bytes, Any]]:
        """The MIME headers of `sections` of each message; none when the answer cannot be read."""
        try:
            items = [f"BODY.PEEK[{section}.MIME]" for section in sections]
            return session.fetch(uids, items, expected=MIME_HEADER_BYTES * len(items) * len(uids))
        except ProtocolError:
            if session.broken:
                raise
            return {}

    def _recheck(self, item: Wanted, size: int) -> tuple[str, ...]:
        exact = replace(item.part, decoded_size=size)
        return tuple(self.tester.rule_ids(exact, item.rule_ids))

    def _within_cap(self, metas: Mapping[int, MessageMeta], wanted: list[Wanted]) -> list[Wanted]:
        kept = []
        for item in wanted:
            if item.part.size > self.settings.max_attachment_size:
                self._save_skipped(metas[item.uid], item, "larger than CRAWLER_MAX_ATTACHMENT_SIZE")
            else:
                kept.append(item)
        return kept

    # -- records ------------------------------------------------------------------------

    def _document(self, meta: MessageMeta, item: Wanted) -> dict[str, Any]:
        envelope = meta.envelope
        return {
            "user_uuid": self.user_uuid,
            "gm_msgid": message_identity(meta),
            "gm_thrid": meta.gm_thrid,
            "uid": meta.uid,
            "uidvalidity": self.status.get("uidvalidity"),
            "part": item.part.part,
            "filename": item.part.filename,
            "content_type": item.part.content_type,
            "encoding": item.part.encoding,
            "message": _message_fields(envelope),
            "labels": list(meta.labels),
            "rule_ids": list(item.rule_ids),
            "saved_at": self.clock(),
        }

    def _save(self, meta: MessageMeta, fetched: Fetched) -> None:
        """The record of a stored part, written with the batch's others (`_store_records`)."""
        document = self._document(meta, fetched.wanted)
        document.update(size=fetched.size, sha256=fetched.sha256, blob=fetched.blob)
        warnings = [*fetched.wanted.part.warnings, *fetched.warnings]
        if warnings:
            document["warnings"] = warnings
        self.batch_records.append(document)

    def _save_skipped(self, meta: MessageMeta, item: Wanted, reason: str) -> None:
        """The record of a skipped part, written with the batch's others (`_store_records`)."""
        document = self._document(meta, item)
        document.update(size=item.part.size, sha256=None, blob=None, skipped=reason)
        self.batch_records.append(document)

    def _store_records(self) -> None:
        """Write the batch's records in one round trip, once its parts are downloaded, and
        count those that are new: the batch is acknowledged only after, so a crawl that stops
        before takes it again, and the unique key keeps a record from being written twice.
        Each new record with a blob has its event."""
        record_ids = self.store.save_attachments(self.batch_records)
        for document, record_id in zip(self.batch_records, record_ids, strict=True):
            if record_id is None:  # stored before, or earlier in the batch
                continue
            if "skipped" in document:
                self.result.skipped += 1
                continue
            self._event({**document, "_id": record_id})
            self.result.attachments += 1
            self.result.bytes += document["size"]
            metrics.ATTACHMENTS.inc()
            metrics.ATTACHMENT_BYTES.inc(document["size"])

    def _stored_again(self, record: Mapping[str, Any], rule_ids: Sequence[str]) -> None:
        """A record met again (a crawl stopped before its batch was acknowledged, new rules, a
        new UIDVALIDITY): its event goes again, as at least once delivery wants."""
        if record.get("blob"):
            self._event({**record, "rule_ids": {*(record.get("rule_ids") or ()), *rule_ids}})

    def _event(self, record: Mapping[str, Any]) -> None:
        if self.events is not None:
            self.batch_events.append(self.events.attachment(record))

    def _server_at_fault(self, uids: Sequence[int]) -> bool:
        """Whether UIDs none of whose answers could be read are to be retried (the server's
        fault), not failed (the messages'): yes for the first crawls in a row that meet them,
        no for the SUSPECT_CRAWLS-th."""
        suspect = self.status.get("suspect_uids") or {}
        same = suspect.get("uids") == list(uids)
        crawls = (suspect.get("crawls", 0) if same else 0) + 1
        suspect = {"uids": list(uids), "crawls": crawls} if crawls < SUSPECT_CRAWLS else None
        self.status.update(suspect_uids=suspect)
        self.store.statuses.recorded(self.user_uuid, suspect_uids=suspect)
        return crawls < SUSPECT_CRAWLS

    def _failed(self, uid: int, error: CrawlerError, *, part: str | None = None) -> None:
        self.result.failed += 1
        entry = {
            "uid": uid,
            **({"part": part} if part else {}),
            "error": type(error).__name__,
            "message": str(error)[:300],
            "at": self.clock(),
        }
        self.store.statuses.uid_failed(self.user_uuid, entry, MAX_FAILED_UIDS)


def _message_fields(envelope: Any) -> dict[str, Any]:
    """`message` of an attachment record: the sender's address and display name apart, and the
    subject, decoded as mail clients show them."""
    if envelope is None:
        return {"from": None, "from_name": None, "subject": None, "date": None}
    sender = envelope.from_[0] if envelope.from_ else None
    return {
        "from": _text(f"{_text(sender.mailbox)}@{_text(sender.host)}") if sender else None,
        "from_name": header_text(sender.name) if sender else None,
        "subject": header_text(envelope.subject),
        "date": envelope.date,
    }


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _with_header_name(part: AttachmentPart, headers: Mapping[bytes, Any]) -> AttachmentPart:
    """`part` named from its MIME header in `headers`, if it has a name there."""
    header = headers.get(f"BODY[{part.part}.MIME]".encode())
    if not isinstance(header, bytes):
        return part
    try:
        name = filename_from_mime_header(header)
    except BadInput as error:
        return replace(part, needs_header=False, warnings=(*part.warnings, str(error)))
    return replace(part, filename=name, needs_header=False) if name else part
