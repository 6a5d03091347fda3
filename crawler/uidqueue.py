"""The reliable UID queue of one account: filled by a search, claimed in batches, acked once stored.

A UID is always in exactly one place: queued (the list, popped from the right), in flight (a set,
claimed by the lease holder) or done (gone). Every transition is one Lua script over the keys of
one hash tag, so a crash between any two instructions leaves nothing half-moved, and the scripts
run unchanged on Redis Cluster. The rule-hits hash doubles as the index of pending UIDs: a UID has
an entry exactly while it is queued or in flight, which is how a push skips the UIDs it already
holds in O(1) each instead of scanning the list.

What a UID keeps of the rules that found it does not grow with the number of rules: a search
finds UIDs for groups of rules (the rules that share a query), and a UID's entry holds the small
indices of its groups (`0,3`). The rule ids of each group are stored once per account, in the
rule-groups hash, which lives as long as any UID is pending and goes when the queue is drained or
cleared. A push interns its groups there, so a group pushed again keeps its index.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from redis import Redis
from redis.commands.core import Script

from crawler.errors import BadInput
from crawler.keys import Keys
from crawler.lease import HELD_BY_US, Lease, LeaseLost

__all__ = ["MAX_UID", "LeaseLost", "UidQueue", "check_uid", "requeue_abandoned"]

MAX_UID = 2**32 - 1  # IMAP UIDs are 32-bit unsigned and never 0

# Every script sees KEYS = lease, queue, in-flight set, rule hits, rule groups and
# ARGV[1] = worker id.
# unpack() is bounded by Lua's C stack, hence the slices.
_HELPERS = """
local function bulk(command, key, items)
  for first = 1, #items, 1000 do
    redis.call(command, key, unpack(items, first, math.min(first + 999, #items)))
  end
end
local function requeue(queue, inflight)
  local uids = redis.call('SMEMBERS', inflight)
  bulk('RPUSH', queue, uids)
  redis.call('DEL', inflight)
  return #uids
end
"""
# A nil reply tells the caller that the lease is not ours: nothing was touched.
_FENCE = f"if not ({HELD_BY_US}) then return false end\n"

# ARGV[2] = how many groups, n; ARGV[3 .. n+2] = the rule ids of each group (sorted, comma-joined);
# then uid, comma-joined indices of its groups among those n, uid, indices, ... Each group gets
# its index in the rule-groups hash (the one it has there already, else the next free one), and
# each UID the indices of its groups there. A UID already pending keeps its place and gains the
# groups that found it this time, so a re-search neither doubles nor forgets it.
_PUSH = """
local groups = tonumber(ARGV[2])
local index = {}
if groups > 0 then
  local known, size = {}, 0
  local stored = redis.call('HGETALL', KEYS[5])
  for i = 1, #stored, 2 do
    known[stored[i + 1]] = stored[i]
    size = size + 1
  end
  for i = 1, groups do
    local rules = ARGV[2 + i]
    if not known[rules] then
      known[rules] = tostring(size)
      redis.call('HSET', KEYS[5], known[rules], rules)
      size = size + 1
    end
    index[tostring(i - 1)] = known[rules]
  end
end
-- Adds to the set `into` the indices listed in `refs`, those of this push (`pushed`) mapped to
-- their place in the rule-groups hash.
local function union(into, refs, pushed)
  for ref in string.gmatch(refs, '[^,]+') do
    local at = ref
    if pushed then at = index[ref] end
    at = tonumber(at)
    if at then into[at] = true end
  end
end
local function joined(set)
  local list = {}
  for at in pairs(set) do list[#list + 1] = at end
  table.sort(list)
  return table.concat(list, ',')
end
local fresh = {}
for i = groups + 3, #ARGV, 2 do
  local found = {}
  union(found, ARGV[i + 1], true)
  local refs = joined(found)
  if redis.call('HSETNX', KEYS[4], ARGV[i], refs) == 1 then
    fresh[#fresh + 1] = ARGV[i]
  elseif refs ~= '' then
    union(found, redis.call('HGET', KEYS[4], ARGV[i]), false)
    redis.call('HSET', KEYS[4], ARGV[i], joined(found))
  end
end
bulk('RPUSH', KEYS[2], fresh)
return #fresh
"""
# ARGV[2] = how many.
_CLAIM = """
local uids = redis.call('RPOP', KEYS[2], ARGV[2])
if not uids then return {} end
bulk('SADD', KEYS[3], uids)
return uids
"""
# ARGV[2..] = UIDs. Only UIDs in flight are acked: a queued one keeps its place and its rules.
# The last ack of a drained queue takes the rule groups with it.
_ACK = """
local acked = 0
for i = 2, #ARGV do
  if redis.call('SREM', KEYS[3], ARGV[i]) == 1 then
    redis.call('HDEL', KEYS[4], ARGV[i])
    acked = acked + 1
  end
end
local remaining = redis.call('LLEN', KEYS[2]) + redis.call('SCARD', KEYS[3])
if remaining == 0 then redis.call('DEL', KEYS[5]) end
return {acked, remaining}
"""
_REQUEUE = "return requeue(KEYS[2], KEYS[3])"
_CLEAR = "return redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5])"
# The monitor's way in: only when no worker holds the account.
_ABANDONED = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
return requeue(KEYS[2], KEYS[3])
"""


def check_uid(uid: object) -> int:
    """The UID if it is a positive 32-bit integer, else BadInput naming it."""
    if isinstance(uid, bool) or not isinstance(uid, int) or not 0 < uid <= MAX_UID:
        raise BadInput(f"UID {uid!r} is not a positive 32-bit integer")
    return uid


def _group(rule_ids: object) -> str:
    """A group's rule ids, sorted and comma-joined: the same rules, the same text."""
    if isinstance(rule_ids, str | bytes) or not isinstance(rule_ids, Iterable):
        raise BadInput(f"a group's rule ids must be a collection of strings, got {rule_ids!r:.80}")
    ids = set()
    for rule_id in rule_ids:
        if not isinstance(rule_id, str) or not rule_id or "," in rule_id:
            raise BadInput(f"rule id {rule_id!r:.80} must be a non-empty string without commas")
        ids.add(rule_id)
    return ",".join(sorted(ids))


def _refs(indices: object, groups: int) -> str:
    """A UID's group indices, comma-joined, each checked to name one of the pushed groups."""
    if isinstance(indices, str | bytes) or not isinstance(indices, Iterable):
        raise BadInput(f"group indices must be a collection of integers, got {indices!r:.80}")
    checked = []
    for index in indices:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < groups:
            raise BadInput(f"group index {index!r:.40} names none of the {groups} groups pushed")
        checked.append(str(index))
    return ",".join(checked)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _account_keys(keys: Keys, user_uuid: str) -> list[str]:
    return [
        keys.lease(user_uuid),
        keys.uids(user_uuid),
        keys.inflight(user_uuid),
        keys.rule_hits(user_uuid),
        keys.rule_groups(user_uuid),
    ]


def requeue_abandoned(redis: Redis, keys: Keys, user_uuid: str) -> int:
    """For the monitor: if no worker holds the account's lease, put its in-flight UIDs back.

    Returns how many UIDs went back (0 while a lease is held).
    """
    script = redis.register_script(_HELPERS + _ABANDONED)
    return int(script(keys=_account_keys(keys, user_uuid)))


class UidQueue:
    """The UIDs of one account still to process, claimed and acked by the lease holder only."""

    def __init__(self, redis: Redis, keys: Keys, user_uuid: str, lease: Lease) -> None:
        if lease.key != keys.lease(user_uuid):
            raise ValueError(f"the lease {lease.key} is not the lease of {user_uuid}")
        self.redis = redis
        self.keys = keys
        self.user_uuid = user_uuid
        self.lease = lease
        self._script_keys = _account_keys(keys, user_uuid)
        self._push, self._claim, self._ack, self._requeue, self._clear = (
            redis.register_script(_HELPERS + _FENCE + body)
            for body in (_PUSH, _CLAIM, _ACK, _REQUEUE, _CLEAR)
        )

    def push(
        self,
        uids: Iterable[int],
        found_by: Mapping[int, Collection[int]] | None = None,
        groups: Sequence[Collection[str]] = (),
        chunk: int = 1000,
    ) -> int:
        """Queue the UIDs not already queued or in flight, with the groups of rules that found
        each: `groups[i]` holds the ids of the rules of group i, and `found_by[uid]` the indices
        (in `groups`) of the groups whose search found `uid`.

        One round trip per `chunk` UIDs. Everything is validated before anything is written.
        Returns how many UIDs were newly queued.
        """
        if chunk < 1:
            raise ValueError(f"chunk must be at least 1, got {chunk}")
        found = found_by or {}
        head: list[int | str] = [len(groups), *map(_group, groups)]
        args: list[int | str] = []
        for uid in uids:
            args += [check_uid(uid), _refs(found.get(uid, ()), len(groups))]
        if not args:
            return 0
        # Before the first UID lands, so that the monitor never misses a queue.
        self.redis.sadd(self.keys.crawls, self.user_uuid)
        step = 2 * chunk
        return sum(
            int(self._fenced(self._push, [*head, *args[start : start + step]]))
            for start in range(0, len(args), step)
        )

    def claim(self, n: int) -> list[int]:
        """Move up to `n` UIDs from the right of the queue into flight and return them."""
        if n < 1:
            raise ValueError(f"claim at least one UID, not {n}")
        return [int(uid) for uid in self._fenced(self._claim, [n])]

    def ack(self, uids: Iterable[int]) -> int:
        """Mark in-flight UIDs done (their attachments are stored); returns how many were."""
        checked = [check_uid(uid) for uid in uids]
        if not checked:
            return 0
        acked, remaining = self._fenced(self._ack, checked)
        if remaining == 0:
            # The lease holder is the only writer, so the account stays drained; should the lease
            # change hands in this instant, the new holder's next push records it again.
            self.redis.srem(self.keys.crawls, self.user_uuid)
        return int(acked)

    def rule_ids(self, uids: Sequence[int]) -> dict[int, frozenset[str]]:
        """The ids of the rules that found each pending UID (UIDs not pending are left out).

        UIDs found by the same groups share one set.
        """
        checked = [check_uid(uid) for uid in uids]
        if not checked:
            return {}
        with self.redis.pipeline() as pipe:
            pipe.hmget(self.keys.rule_hits(self.user_uuid), checked)
            pipe.hgetall(self.keys.rule_groups(self.user_uuid))
            found, stored = pipe.execute()
        groups = {
            _text(index): frozenset(filter(None, _text(rules).split(",")))
            for index, rules in stored.items()
        }
        rules: dict[str, frozenset[str]] = {}
        for refs in {_text(joined) for joined in found if joined is not None}:
            if not groups:  # queued before rule groups: the entry holds the rule ids themselves
                rules[refs] = frozenset(refs.split(",")) if refs else frozenset()
            else:
                rules[refs] = frozenset().union(
                    *(groups.get(index, ()) for index in refs.split(",") if index)
                )
        return {
            uid: rules[_text(joined)]
            for uid, joined in zip(checked, found, strict=True)
            if joined is not None
        }

    def requeue_inflight(self) -> int:
        """Put every in-flight UID back on the queue (on taking the lease); returns how many."""
        return int(self._fenced(self._requeue, []))

    def depth(self) -> tuple[int, int]:
        """(queued, in flight), read at one instant."""
        with self.redis.pipeline() as pipe:
            pipe.llen(self.keys.uids(self.user_uuid))
            pipe.scard(self.keys.inflight(self.user_uuid))
            queued, inflight = pipe.execute()
        return int(queued), int(inflight)

    def drained(self) -> bool:
        """True when nothing is queued or in flight."""
        return self.depth() == (0, 0)

    def clear(self) -> None:
        """Drop the queue, the in-flight UIDs, their rule hits and the rule groups (the
        UIDVALIDITY changed)."""
        self._fenced(self._clear, [])
        self.redis.srem(self.keys.crawls, self.user_uuid)

    def _fenced(self, script: Script, args: Sequence[int | str]) -> Any:
        """Run a script that acts only while the lease holds our worker id."""
        result = script(keys=self._script_keys, args=[self.lease.worker_id, *args])
        if result is None:
            raise LeaseLost(f"worker {self.lease.worker_id} no longer holds {self.lease.key}")
        return result
