"""The UID queue against a real Redis: no UID lost or doubled by claims, crashes or takeovers."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from redis.crc import key_slot

from crawler.errors import BadInput
from crawler.keys import Keys
from crawler.lease import Lease
from crawler.uidqueue import MAX_UID, LeaseLost, UidQueue, requeue_abandoned
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.integration

USER = "user-1"


@pytest.fixture(params=[False, True], ids=["bytes", "text"])
def client(request: pytest.FixtureRequest, redis_server: redis.Redis) -> Iterator[redis.Redis]:
    """A client returning bytes, then one decoding to str: the queue must work with both."""
    with redis.Redis.from_url(REDIS_URL, decode_responses=request.param) as connected:
        yield connected


@pytest.fixture
def keys(redis_prefix: str) -> Keys:
    return Keys(redis_prefix)


@pytest.fixture
def queue(client: redis.Redis, keys: Keys) -> UidQueue:
    """The queue of a worker that holds the account's lease."""
    held = worker(client, keys, "worker-a")
    assert held.lease.acquire()
    return held


def worker(client: redis.Redis, keys: Keys, worker_id: str) -> UidQueue:
    return UidQueue(client, keys, USER, Lease(client, keys, USER, worker_id, ttl=30.0))


def queued(client: redis.Redis, keys: Keys) -> list[int]:
    return [int(uid) for uid in client.lrange(keys.uids(USER), 0, -1)]


def inflight(client: redis.Redis, keys: Keys) -> set[int]:
    return {int(uid) for uid in client.smembers(keys.inflight(USER))}


def crawling(client: redis.Redis, keys: Keys) -> bool:
    return bool(client.sismember(keys.crawls, USER))


def expire(client: redis.Redis, keys: Keys) -> None:
    """What a lease TTL running out does, without waiting for it."""
    client.delete(keys.lease(USER))


def drain(queue: UidQueue, batch: int) -> list[int]:
    """Claim and ack until empty, as a crawl does; the UIDs in the order they were processed."""
    done: list[int] = []
    while claimed := queue.claim(batch):
        assert queue.ack(claimed) == len(claimed)
        done += claimed
    return done


def test_claim_moves_uids_from_the_right_into_flight(
    client: redis.Redis, keys: Keys, queue: UidQueue
) -> None:
    assert queue.push([1, 2, 3, 4, 5]) == 5
    assert queue.claim(2) == [5, 4]
    assert queued(client, keys) == [1, 2, 3]
    assert inflight(client, keys) == {4, 5}
    assert queue.depth() == (3, 2)
    assert not queue.drained()
    assert queue.claim(10) == [3, 2, 1]
    assert queue.claim(10) == []


def test_ack_finishes_uids_and_forgets_their_rules(
    client: redis.Redis, keys: Keys, queue: UidQueue
) -> None:
    queue.push([10, 11], found_by={10: [0], 11: [1]}, groups=[["r1"], ["r2", "r3"]])
    assert queue.rule_ids([10, 11]) == {10: {"r1"}, 11: {"r2", "r3"}}
    assert queue.claim(2) == [11, 10]
    assert queue.ack([11]) == 1
    assert queue.rule_ids([10, 11]) == {10: {"r1"}}
    assert queue.depth() == (0, 1)
    assert queue.ack([10]) == 1
    assert queue.drained()
    assert client.exists(keys.rule_hits(USER), keys.rule_groups(USER)) == 0


def test_ack_leaves_a_queued_uid_where_it_is(
    client: redis.Redis, keys: Keys, queue: UidQueue
) -> None:
    queue.push([1, 2], found_by={1: [0]}, groups=[["r1"]])
    assert queue.claim(1) == [2]
    assert queue.ack([1, 2, 3]) == 1
    assert queued(client, keys) == [1]
    assert queue.rule_ids([1]) == {1: {"r1"}}
    assert client.exists(keys.rule_groups(USER)) == 1


def test_push_never_doubles_a_queued_or_inflight_uid(
    client: redis.Redis, keys: Keys, queue: UidQueue
) -> None:
    assert queue.push([1, 2, 2, 3]) == 3
    assert queue.claim(1) == [3]
    assert queue.push([1, 2, 3, 4], chunk=2) == 1
    assert queued(client, keys) == [1, 2, 4]
    assert inflight(client, keys) == {3}
    assert client.hlen(keys.rule_hits(USER)) == 4


def test_a_repush_adds_the_rules_that_found_a_uid_again(
    client: redis.Redis, keys: Keys, queue: UidQueue
) -> None:
    queue.push([7, 8], found_by={7: [0]}, groups=[["r1"]])
    again = [["r2"], ["r1"], ["r3"]]
    assert queue.push([7, 8], found_by={7: [0, 1], 8: [2]}, groups=again) == 0
    assert queue.push([8]) == 0
    assert queue.rule_ids([7, 8, 9]) == {7: {"r1", "r2"}, 8: {"r3"}}
    # A group pushed again keeps its index: r1 is stored once.
    assert client.hlen(keys.rule_groups(USER)) == 3


def test_groups_and_indices_may_be_any_iterables(queue: UidQueue) -> None:
    groups: Any = [iter(["r2", "r1", "r2"]), set()]
    found_by: Any = {1: iter([0, 1]), 2: [1]}
    assert queue.push([1, 2], found_by=found_by, groups=groups) == 2
    assert queue.rule_ids([1, 2]) == {1: {"r1", "r2"}, 2: set()}


def test_what_a_uid_keeps_does_not_grow_with_the_rules_that_found_it(
    client: redis.Redis, keys: Keys, queue: UidQueue
) -> None:
    """A UID holds the indices of the groups that found it; each group's rule ids are stored
    once for the account, however many UIDs it found and however many chunks pushed them."""
    many = [f"{n:024x}" for n in range(5000)]
    uids = range(1, 2001)
    found_by = dict.fromkeys(uids, (0, 1))
    assert queue.push(uids, found_by=found_by, groups=[many, ["r"]], chunk=300) == 2000
    assert queue.push([3000], found_by={3000: [0]}, groups=[["r"]]) == 1

    assert client.hget(keys.rule_hits(USER), 1) in {"0,1", b"0,1"}
    assert client.hget(keys.rule_hits(USER), 3000) in {"1", b"1"}
    assert client.hlen(keys.rule_groups(USER)) == 2
    per_uid = client.memory_usage(keys.rule_hits(USER), samples=0) / 2001
    assert per_uid < 200  # each UID held the 5,001 rule ids before: 125 KB
    found = queue.rule_ids([1, 2, 3000])
    assert found == {1: {*many, "r"}, 2: {*many, "r"}, 3000: {"r"}}
    assert found[1] is found[2]  # UIDs found by the same groups share one set
    drain(queue, batch=500)
    assert client.exists(keys.rule_hits(USER), keys.rule_groups(USER)) == 0


def test_a_queue_written_before_rule_groups_is_still_read(
    client: redis.Redis, keys: Keys, queue: UidQueue
) -> None:
    """An entry that names the rules themselves (`r1,r2`) is read as such while the account has
    no rule groups, so a queue that an earlier version left is processed whole."""
    client.rpush(keys.uids(USER), 5, 6)
    client.hset(keys.rule_hits(USER), mapping={5: "r1,r2", 6: ""})
    assert queue.rule_ids([5, 6]) == {5: {"r1", "r2"}, 6: set()}
    assert sorted(drain(queue, batch=2)) == [5, 6]
    assert client.exists(keys.rule_hits(USER)) == 0


@pytest.mark.parametrize("bad", [0, -1, MAX_UID + 1, "7", 7.0, True, None])
def test_push_refuses_garbage_uids_before_writing(
    client: redis.Redis, keys: Keys, queue: UidQueue, bad: Any
) -> None:
    with pytest.raises(BadInput, match="UID"):
        queue.push([1, bad])
    assert queue.depth() == (0, 0)
    assert not crawling(client, keys)
    with pytest.raises(BadInput):
        queue.ack([bad])
    with pytest.raises(BadInput):
        queue.rule_ids([bad])


@pytest.mark.parametrize("bad", ["r1", ["r1,r2"], [""], [3], None])
def test_push_refuses_garbage_rule_ids(queue: UidQueue, bad: Any) -> None:
    with pytest.raises(BadInput, match="rule id"):
        queue.push([1], found_by={1: [0]}, groups=[bad])
    assert queue.drained()


@pytest.mark.parametrize("bad", [[1], [-1], [True], ["0"], "0", 0, None])
def test_push_refuses_group_indices_that_name_no_group(
    client: redis.Redis, keys: Keys, queue: UidQueue, bad: Any
) -> None:
    with pytest.raises(BadInput, match="group ind"):
        queue.push([1, 2], found_by={1: [0], 2: bad}, groups=[["r1"]])
    assert queue.drained()
    assert client.exists(keys.rule_groups(USER)) == 0


def test_the_largest_uid_fits(queue: UidQueue) -> None:
    assert queue.push([MAX_UID]) == 1
    assert queue.claim(1) == [MAX_UID]


def test_nonsense_sizes_are_refused(queue: UidQueue) -> None:
    with pytest.raises(ValueError, match="chunk"):
        queue.push([1], chunk=0)
    with pytest.raises(ValueError, match="claim"):
        queue.claim(0)


def test_a_queue_needs_its_own_accounts_lease(client: redis.Redis, keys: Keys) -> None:
    with pytest.raises(ValueError, match="not the lease"):
        UidQueue(client, keys, USER, Lease(client, keys, "user-2", "worker-a", 30.0))


def test_every_key_of_an_account_hashes_to_one_cluster_slot(keys: Keys) -> None:
    names = [keys.uids(USER), keys.inflight(USER), keys.rule_hits(USER), keys.lease(USER)]
    names.append(keys.rule_groups(USER))
    assert len({key_slot(name.encode()) for name in names}) == 1


def test_the_crawls_set_holds_accounts_with_pending_uids(
    client: redis.Redis, keys: Keys, queue: UidQueue
) -> None:
    queue.push([1, 2])
    assert crawling(client, keys)
    drain(queue, batch=1)
    assert not crawling(client, keys)
    queue.push([3, 4], found_by={3: [0]}, groups=[["r1"]])
    queue.claim(1)
    queue.clear()
    assert queue.drained()
    assert queue.rule_ids([3]) == {}
    assert client.exists(keys.rule_hits(USER), keys.rule_groups(USER)) == 0
    assert not crawling(client, keys)


def test_a_second_worker_cannot_touch_a_held_queue(
    client: redis.Redis, keys: Keys, queue: UidQueue
) -> None:
    queue.push([1, 2, 3])
    claimed = queue.claim(1)
    intruder = worker(client, keys, "worker-b")
    assert not intruder.lease.acquire()
    for step in (
        lambda: intruder.claim(1),
        lambda: intruder.ack(claimed),
        lambda: intruder.push([4]),
        intruder.requeue_inflight,
        intruder.clear,
    ):
        with pytest.raises(LeaseLost, match="worker-b"):
            step()
    assert queued(client, keys) == [1, 2]
    assert inflight(client, keys) == {3}


def test_a_zombie_whose_lease_expired_is_fenced_off(
    client: redis.Redis, keys: Keys, queue: UidQueue
) -> None:
    queue.push(range(1, 7))
    batch = queue.claim(2)
    expire(client, keys)
    with pytest.raises(LeaseLost):
        queue.ack(batch)
    successor = worker(client, keys, "worker-b")
    assert successor.lease.acquire()
    with pytest.raises(LeaseLost):
        queue.claim(2)
    with pytest.raises(LeaseLost):
        queue.ack(batch)
    assert inflight(client, keys) == set(batch)
    assert successor.requeue_inflight() == 2
    assert sorted(drain(successor, batch=4)) == [1, 2, 3, 4, 5, 6]


def test_the_monitor_leaves_a_held_account_alone(
    client: redis.Redis, keys: Keys, queue: UidQueue
) -> None:
    queue.push([1, 2, 3])
    queue.claim(2)
    assert requeue_abandoned(client, keys, USER) == 0
    assert inflight(client, keys) == {2, 3}


def test_a_crash_between_claim_and_ack_loses_nothing(
    client: redis.Redis, keys: Keys, queue: UidQueue
) -> None:
    uids = list(range(1, 11))
    groups = [["r0"], ["r1"], ["r2"]]
    queue.push(uids, found_by={uid: [uid % 3] for uid in uids}, groups=groups)
    stored = queue.claim(4)
    assert queue.ack(stored[:2]) == 2  # stored, then the process dies mid-batch
    expire(client, keys)

    assert requeue_abandoned(client, keys, USER) == 2
    assert Counter(queued(client, keys)) == Counter(set(uids) - set(stored[:2]))
    assert inflight(client, keys) == set()
    successor = worker(client, keys, "worker-b")
    assert successor.lease.acquire()
    assert successor.requeue_inflight() == 0
    assert successor.rule_ids(stored[2:]) == {uid: {f"r{uid % 3}"} for uid in stored[2:]}
    rest = drain(successor, batch=3)
    assert Counter(stored[:2] + rest) == Counter(uids)
    assert not crawling(client, keys)


class CountingConnection(redis.Connection):
    """Counts the requests sent: a pipeline is one, each command outside a pipeline is one."""

    sent = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        type(self).sent += 1
        # redis-py leaves this method unannotated
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


def test_push_of_many_uids_takes_one_round_trip_per_chunk(keys: Keys) -> None:
    with redis.Redis.from_url(REDIS_URL, connection_class=CountingConnection) as counted:
        queue = worker(counted, keys, "worker-a")
        assert queue.lease.acquire()
        CountingConnection.sent = 0
        started = time.monotonic()
        assert queue.push(range(1, 100_001), chunk=1000) == 100_000
        elapsed = time.monotonic() - started
        # 100 chunks, the crawls set, and at most one NOSCRIPT retry with its SCRIPT LOAD.
        assert CountingConnection.sent <= 100 + 1 + 2
        assert queue.depth() == (100_000, 0)
    assert elapsed < 10


class Crawl(RuleBasedStateMachine):
    """Random interleavings of push, claim, ack, requeue and crashes against a model."""

    client: redis.Redis
    prefix: str

    def __init__(self) -> None:
        super().__init__()
        self.keys = Keys(f"{self.prefix}{uuid.uuid4().hex}:")
        self.workers = 0
        self.queue = self._take_over()
        self.state: dict[int, str] = {}  # uid -> queued | inflight | acked
        self.found_by: dict[int, set[str]] = {}

    def _take_over(self) -> UidQueue:
        self.workers += 1
        queue = worker(self.client, self.keys, f"worker-{self.workers}")
        assert queue.lease.acquire()
        return queue

    def _uids(self, state: str) -> set[int]:
        return {uid for uid, now in self.state.items() if now == state}

    @rule(
        groups=st.lists(
            st.frozensets(st.sampled_from(["r1", "r2", "r3"]), min_size=1), min_size=1, max_size=3
        ),
        found=st.dictionaries(st.integers(1, 30), st.lists(st.integers(0, 2), max_size=2)),
    )
    def push(self, groups: list[frozenset[str]], found: dict[int, list[int]]) -> None:
        found = {uid: [at for at in refs if at < len(groups)] for uid, refs in found.items()}
        pending = self._uids("queued") | self._uids("inflight")
        pushed = self.queue.push(found, found_by=found, groups=groups, chunk=4)
        assert pushed == len(found.keys() - pending)
        for uid, refs in found.items():
            if uid not in pending:
                self.state[uid], self.found_by[uid] = "queued", set()
            self.found_by[uid] |= set().union(*(groups[at] for at in refs))

    @rule(n=st.integers(1, 8))
    def claim(self, n: int) -> None:
        was_queued = self._uids("queued")
        claimed = self.queue.claim(n)
        assert len(claimed) == len(set(claimed)) == min(n, len(was_queued))
        assert set(claimed) <= was_queued
        self.state.update(dict.fromkeys(claimed, "inflight"))

    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        candidates = sorted(self._uids("inflight") | self._uids("queued")) or [1]
        chosen = set(data.draw(st.lists(st.sampled_from(candidates), max_size=5)))
        finished = chosen & self._uids("inflight")
        assert self.queue.ack(chosen) == len(finished)
        self.state.update(dict.fromkeys(finished, "acked"))
        for uid in finished:
            del self.found_by[uid]

    @rule(by_monitor=st.booleans())
    def crash(self, by_monitor: bool) -> None:
        """The worker dies; its lease runs out; the monitor or the next worker recovers."""
        zombie, inflight_before = self.queue, self._uids("inflight")
        expire(self.client, self.keys)
        if by_monitor:
            assert requeue_abandoned(self.client, self.keys, USER) == len(inflight_before)
        self.queue = self._take_over()
        assert self.queue.requeue_inflight() == (0 if by_monitor else len(inflight_before))
        with pytest.raises(LeaseLost):
            zombie.claim(1)
        self.state.update(dict.fromkeys(inflight_before, "queued"))

    @rule()
    def monitor_while_held(self) -> None:
        assert requeue_abandoned(self.client, self.keys, USER) == 0

    @invariant()
    def every_uid_is_in_exactly_one_place(self) -> None:
        listed = queued(self.client, self.keys)
        claimed = inflight(self.client, self.keys)
        assert len(listed) == len(set(listed)), "a UID is queued twice"
        assert not set(listed) & claimed, "a UID is both queued and in flight"
        assert set(listed) == self._uids("queued")
        assert claimed == self._uids("inflight")
        assert self.queue.depth() == (len(listed), len(claimed))
        pending = sorted(self.found_by)
        assert self.client.hlen(self.keys.rule_hits(USER)) == len(pending)
        assert self.queue.rule_ids(pending) == self.found_by
        # The rule groups live while UIDs are pending, each set of rules stored once.
        groups = self.client.hlen(self.keys.rule_groups(USER))
        assert groups <= 7 and (pending or groups == 0)

    def teardown(self) -> None:
        names = list(self.client.scan_iter(match=f"{self.keys.prefix}*"))
        if names:
            self.client.delete(*names)


def test_random_interleavings_keep_every_uid_in_one_place(
    client: redis.Redis, redis_prefix: str
) -> None:
    machine = type("BoundCrawl", (Crawl,), {"client": client, "prefix": redis_prefix})
    run_state_machine_as_test(
        machine, settings=settings(max_examples=50, stateful_step_count=25, deadline=None)
    )
