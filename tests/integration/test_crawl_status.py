"""`crawl_status` through its one writer, on mongomock, the embedded stand-in and (with
MONGODB_URL) a real MongoDB: each transition, and what a crawl records on its way."""

import re
from pathlib import Path
from typing import Any

import pytest
from pymongo.database import Database

from crawler.store.status import TRANSITIONS, LastError, State, StatusBook

pytestmark = pytest.mark.integration

ERROR: LastError = {"type": "Transient", "message": "reset", "at": 7.0}


@pytest.fixture
def book(mongo_db: Database[dict[str, Any]]) -> StatusBook:
    book = StatusBook(mongo_db)
    book.ensure_indexes()
    return book


def state(book: StatusBook, user_uuid: str = "a") -> Any:
    document = book.of(user_uuid)
    assert document is not None
    return document["state"]


def test_new_statuses_start_idle_and_due(book: StatusBook) -> None:
    assert book.created(["a", "a", 7, "b"], now=5) == 2
    assert book.created(["a", "c"], now=6) == 1
    status = book.of("a")
    assert status is not None
    assert (status["state"], status["next_crawl_at"], status["last_uid"]) == ("idle", 5, 0)
    assert status["totals"] == {"messages": 0, "attachments": 0, "bytes": 0}
    assert book.known() == {"a", "b", "c"}


def test_due_is_ordered_and_excludes_the_future_and_unscheduled(book: StatusBook) -> None:
    book.created(["a", "b", "c", "d"], now=0)
    book.finished("a", now=1, next_crawl_at=50)
    book.finished("b", now=1, next_crawl_at=10)
    book.auth_failed("c", ERROR, revoked=True)  # unscheduled
    book.finished("d", now=1, next_crawl_at=99)
    assert [doc["user_uuid"] for doc in book.due(now=60)] == ["b", "a"]
    assert book.next_due_at(60) == 99


def test_a_crawl_s_way_through_its_states(book: StatusBook) -> None:
    book.created(["a"], now=0)
    book.started("a", "worker-1", now=1)
    assert (state(book), book.of("a")["worker"]) == ("crawling", "worker-1")
    book.throttled("a", "over_quota", consecutive=2, until=3600, error=ERROR)
    status = book.of("a")
    assert status is not None
    assert (status["state"], status["throttle_backoff_timestamp"], status["next_crawl_at"]) == (
        "throttled",
        3600,
        3600,
    )
    assert (status["consecutive_throttles"], status["throttle_reason"]) == (2, "over_quota")
    book.failed("a", ERROR, consecutive=1, next_crawl_at=300)
    assert (state(book), book.of("a")["last_error"]) == ("error", ERROR)
    book.finished("a", now=9, next_crawl_at=909)
    status = book.of("a")
    assert status is not None
    assert (status["state"], status["consecutive_throttles"], status["consecutive_errors"]) == (
        "idle",
        0,
        0,
    )
    assert (status["last_error"], status["throttle_reason"]) == (None, None)


def test_crawl_now_clears_the_backoff_of_any_account_not_crawling_or_auth_failed(
    book: StatusBook,
) -> None:
    book.created(["idle", "throttled", "error", "crawling", "revoked"], now=0)
    book.throttled("throttled", "daily_limit", consecutive=3, until=90_000, error=ERROR)
    book.failed("error", ERROR, consecutive=4, next_crawl_at=700)
    book.started("crawling", "w", now=1)
    book.auth_failed("revoked", ERROR, revoked=True)

    moved = {user: book.crawl_now(user, now=50) for user in book.known()}

    assert moved == {
        "idle": True,
        "throttled": True,
        "error": True,
        "crawling": False,
        "revoked": False,
    }
    for user in ("throttled", "error"):
        status = book.of(user)
        assert status is not None
        assert (status["state"], status["next_crawl_at"]) == ("idle", 50)
        assert (status["throttle_backoff_timestamp"], status["consecutive_throttles"]) == (0, 0)
        assert status["consecutive_errors"] == 0
    assert {"error", "idle", "throttled"} <= {doc["user_uuid"] for doc in book.due(now=50)}
    assert (state(book, "crawling"), state(book, "revoked")) == ("crawling", "auth_failed")


def test_requeued_only_leaves_crawling(book: StatusBook) -> None:
    book.created(["a", "b"], now=0)
    book.started("a", "w", now=1)
    book.throttled("b", "throttled", consecutive=1, until=500, error=ERROR)
    assert book.requeued("a", now=10) is True
    assert book.requeued("b", now=10) is False  # a throttled crawl keeps its backoff
    assert (state(book, "a"), book.of("a")["next_crawl_at"]) == ("idle", 10)
    assert (state(book, "b"), book.of("b")["next_crawl_at"]) == ("throttled", 500)


def test_reauthorized_only_leaves_auth_failed(book: StatusBook) -> None:
    book.created(["a", "b"], now=0)
    book.auth_failed("a", ERROR, revoked=True)
    assert book.reauthorized("b", now=5) is False
    assert book.reauthorized("a", now=5) is True
    status = book.of("a")
    assert status is not None
    assert (status["state"], status["next_crawl_at"], status["auth_revoked"]) == ("idle", 5, False)


def test_progress_adds_up_and_the_way_is_recorded(book: StatusBook) -> None:
    book.created(["a"], now=0)
    book.progressed("a", now=3, counts={"messages": 4, "attachments": 2, "bytes": 10})
    book.progressed(
        "a", now=4, counts={"messages": 1, "attachments": 3, "bytes": 5}, download=(3600, 70, [])
    )
    book.downloaded("a", (7200, 30, ["3600"]))  # the hour 3600 has left the window
    book.recorded("a", last_uid=42, rules_seen=["r1"], pending_uid=None)
    status = book.of("a")
    assert status is not None
    assert status["totals"] == {"messages": 5, "attachments": 5, "bytes": 15}
    assert (status["progress_at"], status["last_uid"], status["rules_seen"]) == (4, 42, ["r1"])
    assert status["downloaded"] == {"7200": 30}
    with pytest.raises(ValueError, match="not a field"):
        book.recorded("a", state="idle")  # the state changes only by a transition


def test_rule_errors_replace_or_merge(book: StatusBook) -> None:
    book.created(["a"], now=0)
    book.rule_errors("a", {"r1": "bad glob"}, merge=False)
    book.rule_errors("a", {"r2": "too many queries"}, merge=True)
    assert book.of("a")["rule_errors"] == {"r1": "bad glob", "r2": "too many queries"}
    book.rule_errors("a", {}, merge=False)
    assert book.of("a")["rule_errors"] == {}


def test_failed_uids_keep_the_newest(book: StatusBook) -> None:
    book.created(["a"], now=0)
    for uid in range(1, 6):
        book.uid_failed("a", {"uid": uid}, keep=3)
    assert [entry["uid"] for entry in book.of("a")["failed_uids"]] == [3, 4, 5]


def test_a_stall_is_reported_once(book: StatusBook) -> None:
    book.created(["slow", "fine"], now=0)
    book.started("slow", "w", now=10)
    book.started("fine", "w", now=10)
    book.progressed("fine", now=95, counts={})
    assert book.stalled(progress_before=90, now=100) == ["slow"]
    assert book.stalled(progress_before=91, now=101) == []


def test_counts(book: StatusBook) -> None:
    book.created(["a", "b", "c"], now=0)
    book.throttled("a", "throttled", consecutive=1, until=160, error=ERROR)
    book.throttled("b", "throttled", consecutive=1, until=40, error=ERROR)
    assert book.count_by_state() == {"throttled": 2, "idle": 1}
    assert book.count_throttled(now=100) == 1


def test_every_transition_enters_its_state() -> None:
    assert {enters for _, enters in TRANSITIONS.values()} == set(State)
    assert all(callable(getattr(StatusBook, name, None)) for name in TRANSITIONS)


WRITE = re.compile(
    r"(crawl_status|\.status|statuses\.collection)\S*\."
    r"(update_one|update_many|insert_one|insert_many|delete_one|delete_many|replace_one"
    r"|find_one_and_update|bulk_write)\("
)


def test_nothing_else_writes_crawl_status() -> None:
    root = Path(__file__).parents[2]
    sources = [*root.glob("crawler/**/*.py"), *root.glob("workers/*.py")]
    assert len(sources) > 30
    writes = [
        f"{path.relative_to(root)}: {line.strip()}"
        for path in sources
        if path != root / "crawler" / "store" / "status.py"
        for line in path.read_text().splitlines()
        if WRITE.search(line)
    ]
    assert writes == []
