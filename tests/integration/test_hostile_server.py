"""Malformed server responses: contained to the account that got them, classified, never a hang.

A `HostileFront` stands between the crawler and the fake Gmail. It passes every byte through,
except that one command of one account's sessions is answered by the test instead of by the
fake: garbage, a literal cut short or announced too big, wrong UIDs, unbalanced parentheses, a
BODYSTRUCTURE nested 1,000 deep. A second account crawls through the same front in the same
pass and must not notice.
"""

from __future__ import annotations

import base64
import binascii
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import pytest

from crawler.errors import CrawlerError, ProtocolError, Transient
from crawler.gmail.session import ImapSession
from tests.plugins.crawling import World
from tests.plugins.fakes import build_message

pytestmark = pytest.mark.integration

VICTIM, BYSTANDER = "mallory@example.com", "alice@example.com"
TIMEOUT = 1.0  # the crawler's IMAP socket timeout in these tests


@dataclass(frozen=True)
class Answer:
    """What the front sends instead of forwarding a command (given its tag), and then."""

    data: Callable[[bytes], bytes]
    then: Literal["continue", "close", "stall"] = "continue"


def _xoauth2_user(line: bytes) -> str | None:
    try:
        decoded = base64.b64decode(line.strip(), validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return None
    return decoded[5:].split("\x01", 1)[0] if decoded.startswith("user=") else None


class HostileFront:
    """A TCP front for the fake Gmail that answers `trigger` commands of `victim` itself."""

    def __init__(
        self, backend_port: int, victim: str, trigger: Callable[[bytes], bool], answer: Answer
    ) -> None:
        self.backend_port = backend_port
        self.victim = victim
        self.trigger = trigger
        self.answer = answer
        self.hits = 0
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        for sock in [self._listener, *self._sockets]:
            sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed at the end of the test
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        backend = socket.create_connection(("127.0.0.1", self.backend_port))
        self._sockets += [client, backend]
        lock = threading.Lock()
        threading.Thread(target=self._pump, args=(backend, client, lock), daemon=True).start()
        reader = client.makefile("rb")
        user, authenticating = None, False
        try:
            while line := reader.readline():
                if authenticating:
                    user, authenticating = _xoauth2_user(line), False
                elif line.rstrip().upper().endswith(b" AUTHENTICATE XOAUTH2"):
                    authenticating = True
                if user == self.victim and self.trigger(line):
                    self.hits += 1
                    with lock:
                        client.sendall(self.answer.data(line.split(b" ", 1)[0]))
                    if self.answer.then == "close":
                        break
                    if self.answer.then == "stall":  # swallow the rest, answer nothing
                        while reader.readline():
                            pass
                        break
                    continue
                backend.sendall(line)
        except OSError:
            pass
        finally:
            for sock in (client, backend):
                sock.close()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket, lock: threading.Lock) -> None:
        try:
            while data := source.recv(65536):
                with lock:
                    target.sendall(data)
        except OSError:
            pass


def metadata_fetch(line: bytes) -> bool:
    return b" UID FETCH " in line and b"BODYSTRUCTURE" in line


def tagged_ok(response: bytes) -> Callable[[bytes], bytes]:
    return lambda tag: response + tag + b" OK Success\r\n"


LEAF = b'("TEXT" "PLAIN" ("CHARSET" "UTF-8") NIL NIL "7BIT" 1 1 NIL NIL NIL NIL)'
PDF = (
    b'("APPLICATION" "PDF" NIL NIL NIL "BASE64" 8 NIL ("ATTACHMENT" ("FILENAME" "x.pdf")) NIL NIL)'
)
GOOD_ITEMS = (
    b'X-GM-MSGID 1 X-GM-THRID 1 X-GM-LABELS () RFC822.SIZE 10 INTERNALDATE "01-Jan-2024'
    b' 00:00:00 +0000" ENVELOPE (NIL "s" NIL NIL NIL NIL NIL NIL NIL NIL) '
)


def deep(levels: int) -> bytes:
    return b"(" * levels + LEAF + b' "MIXED")' * levels


@pytest.fixture
def front(world: World) -> Iterator[Callable[[Callable[[bytes], bool], Answer], HostileFront]]:
    """Two accounts behind a hostile front; call it with the trigger and the answer."""
    for email, user_uuid in ((VICTIM, "victim"), (BYSTANDER, "bystander")):
        world.add_account(email, user_uuid)
        world.gmail.account(email).add_message(build_message(attachments={"a.pdf": b"%PDF-1"}))
    fronts: list[HostileFront] = []

    def make(trigger: Callable[[bytes], bool], answer: Answer) -> HostileFront:
        hostile = HostileFront(world.gmail.port, VICTIM, trigger, answer)
        fronts.append(hostile)
        world.settings = world.settings.model_copy(
            update={"imap_port": hostile.port, "imap_timeout": TIMEOUT, "retry_attempts": 2}
        )
        return hostile

    yield make
    for hostile in fronts:
        hostile.close()


def crawl(world: World) -> tuple[dict[str, str], float]:
    started = time.monotonic()
    outcomes = world.iterate().outcomes
    return outcomes, time.monotonic() - started


def assert_contained(world: World, outcomes: dict[str, str]) -> None:
    assert outcomes["bystander"] == "idle", world.status("bystander")["last_error"]
    assert [doc["filename"] for doc in world.stored("bystander").values()] == ["a.pdf"]


CASES = {
    # BODYSTRUCTURE nested 1,000 deep: IMAPClient's recursive parser gives up.
    "nested-1000": (
        Answer(
            tagged_ok(b"* 1 FETCH (UID 1 " + GOOD_ITEMS + b"BODYSTRUCTURE " + deep(1000) + b")\r\n")
        ),
        ProtocolError,
    ),
    "unbalanced-parentheses": (
        Answer(
            tagged_ok(b"* 1 FETCH (UID 1 " + GOOD_ITEMS + b"BODYSTRUCTURE ((" + LEAF + b")\r\n")
        ),
        ProtocolError,
    ),
    "not-a-number": (
        Answer(tagged_ok(b"* 1 FETCH (UID 1 X-GM-MSGID x9 BODYSTRUCTURE " + PDF + b")\r\n")),
        ProtocolError,
    ),
    "no-bodystructure": (Answer(tagged_ok(b"* 1 FETCH (UID 1 X-GM-MSGID 9)\r\n")), ProtocolError),
    "tagged-bad": (Answer(lambda tag: tag + b" BAD Could not parse command\r\n"), ProtocolError),
    "garbage-line": (Answer(tagged_ok(b"\x00\xff<html>garbage\r\n")), Transient),
    "bye-and-close": (Answer(lambda _: b"* BYE going away\r\n", then="close"), Transient),
    "close-mid-literal": (
        Answer(lambda _: b"* 1 FETCH (UID 1 ENVELOPE {100}\r\nonly a few bytes", then="close"),
        Transient,
    ),
    "stall-mid-literal": (
        Answer(lambda _: b"* 1 FETCH (UID 1 ENVELOPE {100}\r\nonly a few bytes", then="stall"),
        Transient,
    ),
    "literal-over-the-limit": (
        Answer(lambda _: b"* 1 FETCH (UID 1 ENVELOPE {9999999999}\r\n", then="stall"),
        ProtocolError,
    ),
    "line-over-1-mb": (
        Answer(lambda _: b"* 1 FETCH (UID 1 " + b"A" * 1_100_000, then="stall"),
        ProtocolError,
    ),
    "stall-before-answering": (Answer(lambda _: b"", then="stall"), Transient),
}


@pytest.mark.parametrize(("answer", "error"), CASES.values(), ids=CASES.keys())
def test_a_malformed_fetch_answer_fails_only_that_account_with_a_classified_error(
    world: World, front: Callable[..., HostileFront], answer: Answer, error: type[CrawlerError]
) -> None:
    hostile = front(metadata_fetch, answer)

    outcomes, elapsed = crawl(world)

    assert hostile.hits >= 1
    assert_contained(world, outcomes)
    assert outcomes["victim"] == "error"
    last_error = world.status("victim")["last_error"]
    assert last_error["type"] == error.__name__, last_error
    assert last_error["message"].lower().startswith(("fetch: ", "fetch answer lacks")), last_error
    assert world.stored("victim") == {}
    # Bounded: transient errors are retried (retry_attempts=2), each waiting at most the timeout;
    # an answer that cannot be read on a connection still in step is asked for once more alone.
    assert hostile.hits == (1 if answer.then == "stall" and error is ProtocolError else 2)
    assert elapsed < 2 * TIMEOUT + 5


def test_a_fetch_answer_for_uids_not_asked_for_is_never_stored(
    world: World, front: Callable[..., HostileFront]
) -> None:
    # The victim asked for UID 1; the answer is about UID 999.
    answer = b"* 1 FETCH (UID 999 " + GOOD_ITEMS + b"BODYSTRUCTURE " + PDF + b")\r\n"
    hostile = front(metadata_fetch, Answer(tagged_ok(answer)))

    outcomes, _ = crawl(world)

    assert hostile.hits == 1
    assert_contained(world, outcomes)
    assert outcomes["victim"] == "idle"  # UID 1 answered nothing: read as expunged meanwhile
    assert world.stored("victim") == {}
    fetched = b"".join(world.gmail.account(VICTIM).ledger.lines)
    assert b"999" not in fetched  # never asked for the part of a message it did not want


def fetch_of(uid: int) -> Callable[[bytes], bool]:
    """A metadata FETCH whose UID set names `uid`."""
    return lambda line: metadata_fetch(line) and str(uid).encode() in uid_set(line)


def uid_set(line: bytes) -> list[bytes]:
    return line.split(b" UID FETCH ", 1)[1].split(b" ", 1)[0].split(b",")


def malformed(uid: int) -> Answer:
    body = b"BODYSTRUCTURE " + deep(1000)  # IMAPClient's parser gives up
    return Answer(tagged_ok(b"* %d FETCH (UID %d " % (uid, uid) + GOOD_ITEMS + body + b")\r\n"))


def test_a_message_the_client_cannot_read_fails_alone_and_the_rest_of_its_batch_is_stored(
    world: World, front: Callable[..., HostileFront]
) -> None:
    for name in ("b.pdf", "c.pdf"):
        world.gmail.account(VICTIM).add_message(build_message(attachments={name: b"%PDF-2"}))
    hostile = front(fetch_of(2), malformed(2))

    outcomes, _ = crawl(world)

    assert_contained(world, outcomes)
    assert outcomes["victim"] == "idle"
    assert sorted(doc["filename"] for doc in world.stored("victim").values()) == ["a.pdf", "c.pdf"]
    [failed] = world.status("victim")["failed_uids"]
    assert (failed["uid"], failed["error"]) == (2, "ProtocolError")
    assert hostile.hits == 2  # the batch, then UID 2 alone


def test_a_lone_message_no_answer_for_which_can_be_read_fails_alone_after_three_crawls(
    world: World, front: Callable[..., HostileFront]
) -> None:
    hostile = front(fetch_of(1), malformed(1))

    for _ in range(2):  # maybe the server's fault: retried, nothing skipped
        outcomes, _ = crawl(world)
        assert outcomes["victim"] == "error"
        assert not world.status("victim").get("failed_uids")
        world.make_due("victim")
    world.gmail.account(VICTIM).add_message(build_message(attachments={"b.pdf": b"%PDF-2"}))
    outcomes, _ = crawl(world)  # the third crawl in a row: the message's fault

    assert outcomes["victim"] == "idle"
    [failed] = world.status("victim")["failed_uids"]
    assert (failed["uid"], failed["error"]) == (1, "ProtocolError")
    assert hostile.hits == 6  # each crawl: the batch, then the message alone
    world.make_due("victim")
    crawl(world)  # the queue drained, so this crawl searches and finds the new message
    assert [doc["filename"] for doc in world.stored("victim").values()] == ["b.pdf"]


def test_a_batch_every_message_of_which_fails_alone_is_the_server_s_error(
    world: World, front: Callable[..., HostileFront]
) -> None:
    world.gmail.account(VICTIM).add_message(build_message(attachments={"b.pdf": b"%PDF-2"}))
    front(metadata_fetch, malformed(1))

    outcomes, _ = crawl(world)

    assert_contained(world, outcomes)
    assert outcomes["victim"] == "error"  # nothing skipped: the next crawl tries them all again
    assert world.status("victim")["last_error"]["type"] == "ProtocolError"
    assert not world.status("victim").get("failed_uids")
    assert world.stored("victim") == {}


def download_fetch(line: bytes) -> bool:
    return b" UID FETCH " in line and b"BODY.PEEK[2]" in line


@pytest.mark.parametrize("stream_size", [2**20, 4], ids=["in-a-group", "streamed"])
def test_a_download_without_the_data_of_a_message_it_still_holds_fails_that_message(
    world: World, front: Callable[..., HostileFront], stream_size: int
) -> None:
    """OK, and no data: the message is still there (UID SEARCH finds it), so it failed."""
    hostile = front(download_fetch, Answer(tagged_ok(b"* 1 FETCH (UID 1 BODY[2] NIL)\r\n")))
    world.settings = world.settings.model_copy(update={"stream_size": stream_size})

    outcomes, _ = crawl(world)

    assert hostile.hits == 1
    assert_contained(world, outcomes)
    assert outcomes["victim"] == "idle"
    [failed] = world.status("victim")["failed_uids"]
    assert (failed["uid"], failed["error"]) == (1, "ProtocolError")
    assert "no data for part 2" in failed["message"]
    assert world.stored("victim") == {}


@pytest.mark.parametrize(
    "answer",
    [
        b"* 1 FETCH (UID 1 BODY[2] {99999999}\r\n",  # far more than BODYSTRUCTURE's 8 bytes
        b"* 1 FETCH (UID 1 BODY[2] {8}\r\nJVBERi0x BODY[2] {8}\r\nJVBERi0x)\r\n",  # two of it
    ],
    ids=["over-the-part-size", "twice"],
)
def test_a_streamed_part_that_is_not_the_part_it_announced_is_refused(
    world: World, front: Callable[..., HostileFront], answer: bytes
) -> None:
    hostile = front(download_fetch, Answer(lambda _: answer, then="stall"))
    world.settings = world.settings.model_copy(update={"stream_size": 4})

    outcomes, elapsed = crawl(world)

    assert hostile.hits == 1
    assert_contained(world, outcomes)
    assert outcomes["victim"] == "error"
    assert "streamed literal" in world.status("victim")["last_error"]["message"]
    assert world.stored("victim") == {}
    assert elapsed < TIMEOUT + 5


def test_parts_stored_before_a_streamed_part_gmail_could_not_fetch_are_kept(
    world: World, front: Callable[..., HostileFront]
) -> None:
    """UID 1's small part is still being stored when UID 2's big part starts to stream; Gmail
    then sends part of UID 2 and `Some messages could not be FETCHed`. UID 2 is fetched again
    alone, and UID 1's part, stored meanwhile, is recorded all the same."""
    big = b"%PDF-2" * 100
    world.gmail.account(VICTIM).add_message(build_message(attachments={"b.pdf": big}))
    answered: list[bytes] = []

    def first_big_fetch(line: bytes) -> bool:
        hit = download_fetch(line) and uid_set(line) == [b"2"] and not answered
        if hit:
            answered.append(line)
        return hit

    partial = b"* 2 FETCH (UID 2 BODY[2] {8}\r\nJVBERi0y)\r\n"
    front(
        first_big_fetch,
        Answer(lambda tag: partial + tag + b" NO Some messages could not be FETCHed (Failure)\r\n"),
    )
    world.settings = world.settings.model_copy(update={"stream_size": 100})

    outcomes, _ = crawl(world)

    assert len(answered) == 1
    assert_contained(world, outcomes)
    assert outcomes["victim"] == "idle", world.status("victim")["last_error"]
    assert sorted(doc["filename"] for doc in world.stored("victim").values()) == ["a.pdf", "b.pdf"]
    assert not world.status("victim").get("failed_uids")


def test_a_download_without_the_data_of_any_of_several_messages_is_the_server_s_error(
    world: World, front: Callable[..., HostileFront]
) -> None:
    world.gmail.account(VICTIM).add_message(build_message(attachments={"b.pdf": b"%PDF-2"}))
    front(download_fetch, Answer(tagged_ok(b"")))

    outcomes, _ = crawl(world)

    assert_contained(world, outcomes)
    assert outcomes["victim"] == "error"  # nothing skipped: the next crawl tries them again
    assert (
        "no data for part 2 of any of UIDs [1, 2]"
        in world.status("victim")["last_error"]["message"]
    )
    assert not world.status("victim").get("failed_uids")
    assert world.stored("victim") == {}


def test_a_connection_out_of_step_is_not_used_again(
    world: World, front: Callable[..., HostileFront]
) -> None:
    world.gmail.account(VICTIM).add_message(build_message(attachments={"b.pdf": b"%PDF-2"}))
    over = Answer(lambda _: b"* 1 FETCH (UID 1 ENVELOPE {9999999999}\r\n", then="stall")
    hostile = front(fetch_of(1), over)

    outcomes, elapsed = crawl(world)

    assert_contained(world, outcomes)
    assert outcomes["victim"] == "error"
    assert world.status("victim")["last_error"]["type"] == "ProtocolError"
    assert not world.status("victim").get("failed_uids")
    assert hostile.hits == 1  # no command went to a connection left inside a literal
    assert elapsed < TIMEOUT + 5


# -- before login: the greeting -------------------------------------------------------------


@pytest.fixture
def greeter() -> Iterator[Callable[[bytes, bool], int]]:
    """A server that sends `greeting` to every connection, then closes or stalls."""
    listeners: list[socket.socket] = []
    held: list[socket.socket] = []

    def start(greeting: bytes, close: bool) -> int:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)

        def serve() -> None:
            while True:
                try:
                    client, _ = listener.accept()
                except OSError:
                    return
                held.append(client)
                client.sendall(greeting)
                if close:
                    client.close()

        threading.Thread(target=serve, daemon=True).start()
        port: int = listener.getsockname()[1]
        return port

    yield start
    for sock in listeners + held:
        sock.close()


@pytest.mark.parametrize(
    ("greeting", "close", "error"),
    [
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", True, Transient),
        (b"* BYE [UNAVAILABLE] not today\r\n", True, Transient),
        (b"* NO go away\r\n", False, ProtocolError),
        (b"", False, Transient),  # silence: the socket timeout ends it
        (b"* OK " + b"x" * 1_100_000, False, ProtocolError),  # an endless first line
    ],
    ids=["http", "bye", "no", "silence", "endless-line"],
)
def test_a_bad_greeting_is_a_classified_error_within_the_timeout(
    greeter: Callable[[bytes, bool], int], greeting: bytes, close: bool, error: type[CrawlerError]
) -> None:
    port = greeter(greeting, close)
    started = time.monotonic()

    with pytest.raises(error) as caught:
        ImapSession("127.0.0.1", port, tls=False, timeout=TIMEOUT, max_literal=2**20)

    assert str(caught.value).startswith("connect: ")
    assert time.monotonic() - started < TIMEOUT + 2
