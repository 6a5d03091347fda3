"""One account crawled end to end: fake Gmail, real Redis, mongomock, a blob directory."""

import hashlib
import math
import re
import time
from pathlib import Path
from typing import Any

import pytest

from crawler.blobs import BlobWriter, FileBlobStore
from crawler.keys import Keys
from standins.fakegmail import Fault, FaultKind, Ledger
from tests.plugins.crawling import World
from tests.plugins.fakes import build_message

pytestmark = pytest.mark.integration

EMAIL = "alice@example.com"


def files(count: int, start: int = 0) -> list[dict[str, bytes]]:
    return [
        {f"report-{n}.bin": f"report {n} ".encode() * (50 + n)} for n in range(start, start + count)
    ]


def deliver(world: World, attachments: list[dict[str, bytes]], **headers: str) -> None:
    account = world.gmail.account(EMAIL)
    for n, named in enumerate(attachments):
        account.add_message(build_message(f"Report {n}", attachments=named, **headers))


def expected(attachments: list[dict[str, bytes]]) -> set[tuple[str, str, int]]:
    return {
        (name, hashlib.sha256(data).hexdigest(), len(data))
        for named in attachments
        for name, data in named.items()
    }


def saved(world: World) -> set[tuple[str, str, int]]:
    return {(d["filename"], d["sha256"], d["size"]) for d in world.stored("u1").values()}


def after_login(world: World) -> list[str]:
    """Command names each session sent after AUTHENTICATE, in order."""
    names = []
    for line in world.gmail.ledger.lines:
        match = re.match(rb"\S+ (UID \S+|\S+)", line)
        if match:
            names.append(match.group(1).decode().upper())
    return names[names.index("AUTHENTICATE") + 1 :] if "AUTHENTICATE" in names else names


def test_a_crawl_stores_every_attachment_once(world: World) -> None:
    world.add_account(EMAIL, "u1")
    attachments = files(3)
    deliver(world, attachments)
    world.gmail.account(EMAIL).add_message(build_message("No attachment"))

    assert world.iterate().outcomes == {"u1": "idle"}

    assert saved(world) == expected(attachments)
    for document in world.stored("u1").values():
        assert hashlib.sha256(world.blob(document["blob"])).hexdigest() == document["sha256"]
        assert document["part"] == "2"
        assert document["content_type"] == "application/octet-stream"
        assert document["message"]["subject"].startswith("Report")
    status = world.status("u1")
    assert status["state"] == "idle"
    assert status["last_uid"] == 4
    assert status["uidvalidity"] == 1
    assert status["next_crawl_at"] == world.now + world.settings.crawl_interval
    assert status["totals"]["attachments"] == 3
    assert status["totals"]["bytes"] == sum(size for *_, size in expected(attachments))


def test_a_recrawl_with_no_new_mail_costs_two_commands_after_login_and_no_body(
    world: World,
) -> None:
    world.add_account(EMAIL, "u1")
    world.db.rules.insert_many([{"user_uuid": "u1", "query": f"from:sender{n}"} for n in range(5)])
    deliver(world, files(2))
    world.iterate()
    assert world.status("u1")["all_mail"] == "[Gmail]/All Mail"  # the name LIST gave
    world.gmail.ledger.reset()

    world.make_due("u1")
    assert world.iterate().outcomes == {"u1": "idle"}

    # ID: once, as Google asks; no LIST: All Mail is examined under the name it had
    assert after_login(world) == ["ID", "EXAMINE", "LOGOUT"]
    assert not any(b"BODY" in line for line in world.gmail.ledger.lines)


def test_all_mail_renamed_since_the_last_crawl_is_listed_again(world: World) -> None:
    account = world.add_account(EMAIL, "u1")
    deliver(world, files(1))
    world.iterate()
    account.all_mail_name = "[Gmail]/Tous les messages"  # the account's language changed
    deliver(world, files(1, start=1))
    world.gmail.ledger.reset()

    world.make_due("u1")
    assert world.iterate().outcomes == {"u1": "idle"}

    assert after_login(world)[:4] == ["ID", "EXAMINE", "LIST", "EXAMINE"]
    assert world.status("u1")["all_mail"] == "[Gmail]/Tous les messages"
    assert saved(world) == expected(files(2))
    world.gmail.ledger.reset()
    world.make_due("u1")
    world.iterate()
    assert after_login(world) == ["ID", "EXAMINE", "LOGOUT"]


def test_all_mail_hidden_since_the_last_crawl_is_an_error_that_says_so(world: World) -> None:
    account = world.add_account(EMAIL, "u1")
    deliver(world, files(1))
    world.iterate()
    account.hide_all_mail = True

    world.make_due("u1")
    assert world.iterate().outcomes == {"u1": "error"}
    assert "Show in IMAP" in world.status("u1")["last_error"]["message"]


def test_the_capabilities_gmail_sends_after_login_are_not_asked_for_again(world: World) -> None:
    world.add_account(EMAIL, "u1")
    deliver(world, files(1))

    world.iterate()

    assert after_login(world) == [
        "ID",
        "LIST",
        "EXAMINE",
        "UID SEARCH",
        "UID FETCH",
        "UID FETCH",
        "LOGOUT",
    ]


def test_new_mail_is_searched_above_the_cursor_only(world: World) -> None:
    world.add_account(EMAIL, "u1")
    deliver(world, files(2))
    world.iterate()
    deliver(world, files(1, start=7))
    world.gmail.ledger.reset()

    world.make_due("u1")
    world.iterate()

    assert saved(world) == expected(files(2) + files(1, start=7))
    searches = [line for line in world.gmail.ledger.lines if b"SEARCH" in line]
    [search] = searches
    assert (
        search.split(b" ", 1)[1] == b"UID SEARCH CHARSET UTF-8 UID 3:3 X-GM-RAW has:attachment\r\n"
    )
    fetched = b" ".join(line for line in world.gmail.ledger.lines if b"FETCH" in line)
    assert b"FETCH 3 " in fetched and b"FETCH 1" not in fetched


def test_fetches_are_batched_and_never_whole_messages(world: World) -> None:
    settings = world.settings.model_copy(update={"fetch_batch": 7})
    world.add_account(EMAIL, "u1")
    attachments = files(30)
    deliver(world, attachments)

    world.iterate(settings=settings)

    assert saved(world) == expected(attachments)
    lines = world.gmail.ledger.lines
    metadata = [line for line in lines if b"BODYSTRUCTURE" in line]
    assert len(metadata) == math.ceil(30 / 7)
    assert not any(re.search(rb"BODY(\.PEEK)?\[\]|RFC822[ )]|RFC822\.TEXT", line) for line in lines)
    downloads = [line for line in lines if b"BODY.PEEK[2]" in line]
    assert len(downloads) == math.ceil(30 / 7)  # one per batch: every message keeps part 2


def test_names_missing_from_the_structure_are_read_in_one_fetch_per_batch(world: World) -> None:
    """A part BODYSTRUCTURE leaves unnamed costs a `BODY.PEEK[n.MIME]`: one command for the
    whole batch, and only for parts a rule may keep (no nameless signature logo)."""
    corpus = Path(__file__).parents[2] / "fixtures" / "messages"
    nameless = (corpus / "42-attachment-without-name.eml").read_bytes()  # part 2 has no name
    nested = (corpus / "20-deep-nesting.eml").read_bytes()  # and an unnamed inline logo, 1.2.2
    world.add_account(EMAIL, "u1")
    for _ in range(6):
        world.gmail.account(EMAIL).add_message(nameless)
        world.gmail.account(EMAIL).add_message(nested)

    world.iterate()

    stored = world.stored("u1").values()
    assert sorted((doc["uid"], doc["part"], doc["filename"]) for doc in stored) == [
        (uid, "2", None if uid % 2 else "catalogue-spring.pdf") for uid in range(1, 13)
    ]
    headers = [line for line in world.gmail.ledger.lines if b".MIME]" in line]
    assert len(headers) == 1, headers
    assert headers[0].endswith(b" UID FETCH 1,3,5,7,9,11 (BODY.PEEK[2.MIME])\r\n")


class WaitingStore(FileBlobStore):
    """A blob store whose commits wait (up to a second) for the server to have received
    `until` UID FETCH commands, and note whether it had."""

    def __init__(self, root: Path, ledger: Ledger, until: int) -> None:
        super().__init__(root)
        self.ledger, self.until = ledger, until
        self.waited: list[bool] = []

    def commit(self, writer: BlobWriter[Any]) -> str:
        deadline = time.monotonic() + 1
        while self.ledger.commands["UID FETCH"] < self.until and time.monotonic() < deadline:
            time.sleep(0.01)
        self.waited.append(self.ledger.commands["UID FETCH"] >= self.until)
        return super().commit(writer)


def test_parts_are_stored_while_the_next_command_is_on_the_wire(world: World) -> None:
    """Decoding, hashing and syncing one answer's parts overlap the next command's round trip:
    the first part's commit waits for the last download command, which would otherwise come
    only after it."""
    world.add_account(EMAIL, "u1")
    attachments = [{"a.bin": b"A" * 5000}, {"b.bin": b"B" * 6000, "c.bin": b"C" * 7000}]
    deliver(world, attachments)  # metadata, then two downloads: parts (2) and parts (2, 3)
    account = world.gmail.account(EMAIL)
    blobs = WaitingStore(world.settings.blob_dir, account.ledger, until=3)

    assert world.iterate(blobs=blobs).outcomes == {"u1": "idle"}

    assert saved(world) == expected(attachments)
    assert account.ledger.commands["UID FETCH"] == 3
    assert blobs.waited == [True, True, True]


class FullDisk(FileBlobStore):
    """A blob store on a disk that is full until `full` is cleared."""

    full = True

    def commit(self, writer: BlobWriter[Any]) -> str:
        if self.full:
            raise OSError(28, "No space left on device")
        return super().commit(writer)


def test_a_part_that_cannot_be_stored_fails_the_batch_and_leaves_nothing_behind(
    world: World,
) -> None:
    world.add_account(EMAIL, "u1")
    attachments = [{"a.bin": b"A" * 5000}, {"b.bin": b"B" * 6000, "c.bin": b"C" * 7000}]
    deliver(world, attachments)
    blobs = FullDisk(world.settings.blob_dir)

    assert world.iterate(blobs=blobs).outcomes == {"u1": "error"}
    assert "No space left on device" in world.status("u1")["last_error"]["message"]
    assert saved(world) == set()
    assert list((world.settings.blob_dir / "tmp").iterdir()) == []

    blobs.full = False
    world.make_due("u1")
    assert world.iterate(blobs=blobs).outcomes == {"u1": "idle"}
    assert saved(world) == expected(attachments)


class FillingDisk(FileBlobStore):
    """A blob store whose disk is full once `room` bytes were written, until `room` is None."""

    room: int | None = 2**16

    def writer(self, *, content_type: str = "application/octet-stream") -> BlobWriter[Any]:
        writer = super().writer(content_type=content_type)
        write = writer.staging.write

        def limited(data: bytes) -> None:
            if self.room is not None and writer.size + len(data) > self.room:
                raise OSError(28, "No space left on device")
            write(data)

        writer.staging.write = limited  # type: ignore[method-assign]
        return writer


def test_a_disk_that_fills_up_inside_a_streamed_part_fails_the_batch_and_nothing_else(
    world: World,
) -> None:
    """The literal is read to its end all the same, so the session stays in step: the crawl
    ends in one clear error without a reconnect, leaves nothing behind, and resumes later."""
    settings = world.settings.model_copy(update={"stream_size": 2**14})
    world.add_account(EMAIL, "u1")
    attachments = [{"big.bin": bytes(range(256)) * 1024}]  # 256 KiB, streamed
    deliver(world, attachments)
    blobs = FillingDisk(world.settings.blob_dir)

    assert world.iterate(settings=settings, blobs=blobs).outcomes == {"u1": "error"}
    assert "No space left on device" in world.status("u1")["last_error"]["message"]
    assert world.gmail.ledger.sessions_opened == 1
    assert world.gmail.ledger.commands["LOGOUT"] == 1  # the session ended in step
    assert saved(world) == set()
    assert list((world.settings.blob_dir / "tmp").iterdir()) == []

    blobs.room = None
    world.make_due("u1")
    assert world.iterate(settings=settings, blobs=blobs).outcomes == {"u1": "idle"}
    assert saved(world) == expected(attachments)


def test_a_big_part_is_one_command_whatever_its_size(world: World) -> None:
    settings = world.settings.model_copy(update={"stream_size": 2**14})
    world.add_account(EMAIL, "u1")
    attachments = [{"big.bin": bytes(range(256)) * 4096}, {"small.bin": b"s" * 100}]  # 1 MiB
    deliver(world, attachments)

    assert world.iterate(settings=settings).outcomes == {"u1": "idle"}

    assert saved(world) == expected(attachments)
    fetches = [line for line in world.gmail.ledger.lines if b" UID FETCH " in line]
    assert len(fetches) == 3  # metadata, the small part, the big part
    assert not any(b"]<" in line for line in fetches)  # no partial fetches


def test_a_big_part_cut_short_is_discarded_and_fetched_again(world: World) -> None:
    settings = world.settings.model_copy(update={"stream_size": 2**14})
    world.add_account(EMAIL, "u1")
    attachments = [{"big.bin": bytes(range(256)) * 256}]  # 64 KiB: streamed
    deliver(world, attachments)
    cut = Fault(FaultKind.DISCONNECT, commands={"UID FETCH"}, after_bytes=40_000, times=1)
    world.gmail.account(EMAIL).faults.add(cut)

    assert world.iterate(settings=settings).outcomes == {"u1": "idle"}, world.status("u1")[
        "last_error"
    ]

    assert world.gmail.ledger.sessions_opened == 2
    assert saved(world) == expected(attachments)
    assert list((world.settings.blob_dir / "tmp").iterdir()) == []


def test_only_what_a_rule_wants_is_downloaded(world: World) -> None:
    world.add_account(EMAIL, "u1", filename="*.pdf")
    account = world.gmail.account(EMAIL)
    account.add_message(
        build_message("mixed", attachments={"a.pdf": b"%PDF" * 400, "b.zip": b"Z" * 9000})
    )

    world.iterate()

    assert {doc["filename"] for doc in world.stored("u1").values()} == {"a.pdf"}
    body_bytes = sum(len(line) for line in world.gmail.ledger.lines if b"BODY.PEEK[3]" in line)
    assert body_bytes == 0
    assert world.gmail.ledger.bytes_out < 9000  # b.zip (12 KB encoded) never crossed the wire


def test_a_message_counts_for_a_rule_only_if_its_query_found_it(world: World) -> None:
    world.add_account(EMAIL, "u1", query="from:boss")
    world.db.rules.insert_one({"_id": "csv", "user_uuid": "u1", "query": "subject:numbers"})
    account = world.gmail.account(EMAIL)
    account.add_message(
        build_message("numbers", sender="boss@example.com", attachments={"x.csv": b"1,2"})
    )
    account.add_message(
        build_message("numbers", sender="eve@example.com", attachments={"y.csv": b"3,4"})
    )
    account.add_message(
        build_message("other", sender="eve@example.com", attachments={"z.csv": b"5,6"})
    )

    world.iterate()

    rules = {doc["filename"]: sorted(doc["rule_ids"]) for doc in world.stored("u1").values()}
    boss_rule = str(world.db.rules.find_one({"query": "from:boss"})["_id"])
    assert rules == {"x.csv": sorted([boss_rule, "csv"]), "y.csv": ["csv"]}


def test_a_new_rule_searches_the_whole_mailbox(world: World) -> None:
    world.add_account(EMAIL, "u1", filename="*.pdf")
    account = world.gmail.account(EMAIL)
    account.add_message(build_message("old", attachments={"old.csv": b"1,2", "old.pdf": b"%PDF"}))
    world.iterate()
    assert {doc["filename"] for doc in world.stored("u1").values()} == {"old.pdf"}

    world.db.rules.insert_one({"user_uuid": "u1", "filename": "*.csv"})
    world.make_due("u1")
    world.iterate()

    assert {doc["filename"] for doc in world.stored("u1").values()} == {"old.pdf", "old.csv"}


def test_a_new_rule_is_added_to_what_an_old_rule_with_its_query_kept(world: World) -> None:
    """Rules that share a query search once: the new one from UID 0, the old one above the
    cursor. An attachment kept before gains the new rule's id; a new one has both."""
    world.add_account(EMAIL, "u1")
    old = str(world.db.rules.find_one({"user_uuid": "u1"})["_id"])
    account = world.gmail.account(EMAIL)
    account.add_message(build_message("old", attachments={"old.txt": b"1"}))
    world.iterate()
    world.db.rules.insert_one({"_id": "new", "user_uuid": "u1"})
    account.add_message(build_message("new", attachments={"new.txt": b"2"}))
    world.make_due("u1")

    world.iterate()

    kept = {doc["filename"]: sorted(doc["rule_ids"]) for doc in world.stored("u1").values()}
    assert kept == {"old.txt": sorted([old, "new"]), "new.txt": sorted([old, "new"])}
    searches = [line for line in world.gmail.ledger.lines if b"SEARCH" in line]
    assert len(searches) == 2  # one per crawl: the two rules share their query


def test_what_the_queue_holds_per_uid_does_not_grow_with_the_rules(world: World) -> None:
    """Fifty rules share one query: each queued UID holds the index of their group, the group's
    rule ids are stored once, and both go when the queue drains."""
    settings = world.settings.model_copy(update={"fetch_batch": 2})
    world.add_account(EMAIL, "u1")
    others = [f"rule-{n:02}" for n in range(50)]
    world.db.rules.insert_many([{"_id": rule_id, "user_uuid": "u1"} for rule_id in others])
    ids = {str(world.db.rules.find_one({"user_uuid": "u1"})["_id"]), *others}
    deliver(world, files(6))
    keys = Keys(world.settings.redis_prefix)
    batches = iter(range(100))

    outcome = world.iterate(settings=settings, should_stop=lambda: next(batches) >= 1).outcomes

    assert outcome == {"u1": "interrupted"}
    assert set(world.redis.hvals(keys.rule_hits("u1"))) == {b"0"}
    assert world.redis.hlen(keys.rule_hits("u1")) == 4
    groups = world.redis.hgetall(keys.rule_groups("u1"))
    assert groups.keys() == {b"0"} and set(groups[b"0"].decode().split(",")) == ids
    assert world.iterate(settings=settings).outcomes == {"u1": "idle"}
    assert world.redis.exists(keys.rule_hits("u1"), keys.rule_groups("u1")) == 0
    assert len(world.stored("u1")) == 6
    assert all(set(doc["rule_ids"]) == ids for doc in world.stored("u1").values())


@pytest.mark.parametrize(
    ("rule_id", "says"),
    [("a,b", "contains a comma"), ("x" * 200, "200 characters long"), ("a\nb", "control")],
)
def test_a_rule_whose_id_cannot_travel_fails_alone(world: World, rule_id: str, says: str) -> None:
    """The queue joins rule ids with commas: such an id fails its rule, named in rule_errors,
    and the account's other rules crawl on."""
    world.add_account(EMAIL, "u1", filename="*.pdf")
    world.db.rules.insert_one({"_id": rule_id, "user_uuid": "u1"})
    world.gmail.account(EMAIL).add_message(
        build_message(attachments={"a.pdf": b"%PDF", "b.txt": b"b"})
    )

    assert world.iterate().outcomes == {"u1": "idle"}

    assert says in world.status("u1")["rule_errors"][rule_id]
    assert [doc["filename"] for doc in world.stored("u1").values()] == ["a.pdf"]


def test_throttled_backs_off_then_resumes_without_loss_or_duplicate(world: World) -> None:
    settings = world.settings.model_copy(update={"fetch_batch": 2})
    world.add_account(EMAIL, "u1")
    attachments = files(6)
    deliver(world, attachments)
    account = world.gmail.account(EMAIL)
    account.faults.add(
        Fault(FaultKind.THROTTLED, commands={"UID FETCH"}, after_commands=1, times=1)
    )

    assert world.iterate(settings=settings).outcomes == {"u1": "throttled"}
    status = world.status("u1")
    assert status["state"] == "throttled"
    assert status["throttle_reason"] == "throttled"
    assert status["consecutive_throttles"] == 1
    assert status["throttle_backoff_timestamp"] == world.now + 300
    assert status["last_uid"] == 0  # the queue is not drained: the cursor stays
    assert 0 < len(world.stored("u1")) < 6

    world.gmail.ledger.reset()
    assert world.iterate(settings=settings).outcomes == {}  # skipped until the backoff ends
    assert world.gmail.ledger.sessions_opened == 0

    world.now = status["throttle_backoff_timestamp"] + 1
    assert world.iterate(settings=settings).outcomes == {"u1": "idle"}
    assert saved(world) == expected(attachments)
    assert len(world.stored("u1")) == 6
    assert not any(b"SEARCH" in line for line in world.gmail.ledger.lines)  # resumed from the queue
    status = world.status("u1")
    assert (status["state"], status["consecutive_throttles"], status["last_uid"]) == ("idle", 0, 6)
    assert status["totals"]["attachments"] == 6  # progress of the throttled crawl counted too


def test_a_shutdown_stops_between_batches_and_the_next_crawl_resumes(world: World) -> None:
    settings = world.settings.model_copy(update={"fetch_batch": 2})
    world.add_account(EMAIL, "u1")
    attachments = files(6)
    deliver(world, attachments)
    batches = iter(range(100))

    outcome = world.iterate(settings=settings, should_stop=lambda: next(batches) >= 2).outcomes

    assert outcome == {"u1": "interrupted"}
    status = world.status("u1")
    assert (status["state"], status["next_crawl_at"], status["last_uid"]) == ("idle", world.now, 0)
    assert 0 < len(world.stored("u1")) < 6
    assert world.iterate(settings=settings).outcomes == {"u1": "idle"}
    assert saved(world) == expected(attachments)


def test_the_lease_outlives_a_batch_that_downloads_for_longer_than_its_ttl(world: World) -> None:
    """A slow download renews the account's lease as it goes, even inside one big part, so no
    other worker takes the account over in the middle of a batch (its ack would be refused)."""
    settings = world.settings.model_copy(update={"lease_ttl": 0.5, "stream_size": 2**14})
    world.add_account(EMAIL, "u1")
    deliver(world, [{"big.bin": bytes(range(256)) * 4096}])  # 1 MiB, 1.4 MB encoded
    world.gmail.account(EMAIL).faults.bandwidth = 10**6  # about 1.4 s for the one command

    assert world.iterate(settings=settings).outcomes == {"u1": "idle"}

    assert [doc["size"] for doc in world.stored("u1").values()] == [2**20]


HEADERS = [
    # (Subject, From, as recorded: subject, from, from_name)
    (
        b"=?UTF-8?B?w5xiZXJ3ZWlzdW5nIGbDvA==?= =?UTF-8?Q?r_M=C3=A4rz?=",
        b"=?ISO-8859-1?Q?J=F6rg_M=FCller?= <jm@example.com>",
        ("\u00dcberweisung f\u00fcr M\u00e4rz", "jm@example.com", "J\u00f6rg M\u00fcller"),
    ),
    (  # raw 8-bit UTF-8, as many mailers send it
        "Gr\u00fc\u00dfe aus K\u00f6ln".encode(),
        b"Ann <ann@example.com>",
        ("Gr\u00fc\u00dfe aus K\u00f6ln", "ann@example.com", "Ann"),
    ),
    (  # a broken encoded word, and a charset nobody knows: kept as written
        b"=?utf-8?b?A?= and =?x-unknown?q?abc?=",
        b"bob@example.com",
        ("=?utf-8?b?A?= and =?x-unknown?q?abc?=", "bob@example.com", None),
    ),
]


@pytest.mark.parametrize(("subject", "sender", "recorded"), HEADERS, ids=["2047", "8bit", "broken"])
def test_subjects_and_senders_are_recorded_as_mail_clients_show_them(
    world: World, subject: bytes, sender: bytes, recorded: tuple[str, str, str | None]
) -> None:
    world.add_account(EMAIL, "u1")
    raw = build_message(attachments={"a.pdf": b"%PDF-1.4"}).replace(
        b"Subject: Invoice", b"Subject: " + subject
    )
    raw = raw.replace(b"From: Bob <bob@example.com>", b"From: " + sender)
    world.gmail.account(EMAIL).add_message(raw)

    assert world.iterate().outcomes == {"u1": "idle"}

    [document] = world.stored("u1").values()
    message = document["message"]
    assert (message["subject"], message["from"], message["from_name"]) == recorded
