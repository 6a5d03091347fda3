"""The reliable UID queue of one account: filled by a search, claimed in batches, acked once stored.

A UID is always in exactly one place: queued (the list, popped from the right), in flight (a set,
claimed by the lease holder) or done (gone). Every transition is one Lua script over the keys of
one hash tag, so a crash between any two instructions leaves nothing half-moved, and the scripts
run unchanged on Redis Cluster. The rule-hits hash doubles as the index of pending UIDs: a UID has
an entry exactly while it is queued or in flight, which is how a push skips the UIDs it already
holds in O(1) each instead of scanning the list.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from redis import Redis
from redis.commands.core import Script

from crawler.errors import BadInput
from crawler.keys import Keys
from crawler.lease import HELD_BY_US, Lease, LeaseLost

__all__ = ["MAX_UID", "LeaseLost", "UidQueue", "check_uid", "requeue_abandoned"]

MAX_UID = 2**32 - 1  # IMAP UIDs are 32-bit unsigned and never 0

# Every script sees KEYS = lease, queue, in-flight set, rule hits and ARGV[1] = worker id.
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

# ARGV[2..] = uid, comma-joined rule ids, uid, rule ids, ... A UID already pending keeps its place
# and gains the rules that found it this time, so a re-search neither doubles nor forgets it.
_PUSH = """
local function merge(uid, rules)
  local known = redis.call('HGET', KEYS[4], uid)
  local seen = {}
  for id in string.gmatch(known, '[^,]+') do seen[id] = true end
  for id in string.gmatch(rules, '[^,]+') do
    if not seen[id] then
      seen[id] = true
      if known == '' then known = id else known = known .. ',' .. id end
    end
  end
  redis.call('HSET', KEYS[4], uid, known)
end
local fresh = {}
for i = 2, #ARGV, 2 do
  if redis.call('HSETNX', KEYS[4], ARGV[i], ARGV[i + 1]) == 1 then
    fresh[#fresh + 1] = ARGV[i]
  elseif ARGV[i + 1] ~= '' then
    merge(ARGV[i], ARGV[i + 1])
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
_ACK = """
local acked = 0
for i = 2, #ARGV do
  if redis.call('SREM', KEYS[3], ARGV[i]) == 1 then
    redis.call('HDEL', KEYS[4], ARGV[i])
    acked = acked + 1
  end
end
return {acked, redis.call('LLEN', KEYS[2]) + redis.call('SCARD', KEYS[3])}
"""
_REQUEUE = "return requeue(KEYS[2], KEYS[3])"
_CLEAR = "return redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])"
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


def _joined(rule_ids: object) -> str:
    if isinstance(rule_ids, str | bytes) or not isinstance(rule_ids, Iterable):
        raise BadInput(f"rule ids must be a list of strings, got {rule_ids!r}")
    for rule_id in rule_ids:
        if not isinstance(rule_id, str) or not rule_id or "," in rule_id:
            raise BadInput(f"rule id {rule_id!r} must be a non-empty string without commas")
    return ",".join(rule_ids)


def _split(joined: bytes | str) -> list[str]:
    text = joined.decode() if isinstance(joined, bytes) else joined
    return text.split(",") if text else []


def _account_keys(keys: Keys, user_uuid: str) -> list[str]:
    return [
        keys.lease(user_uuid),
        keys.uids(user_uuid),
        keys.inflight(user_uuid),
        keys.rule_hits(user_uuid),
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
        rule_ids: Mapping[int, Sequence[str]] | None = None,
        chunk: int = 1000,
    ) -> int:
        """Queue the UIDs not already queued or in flight, with the rules that found each.

        One round trip per `chunk` UIDs. Everything is validated before anything is written.
        Returns how many UIDs were newly queued.
        """
        if chunk < 1:
            raise ValueError(f"chunk must be at least 1, got {chunk}")
        found_by = rule_ids or {}
        args: list[int | str] = []
        for uid in uids:
            args += [check_uid(uid), _joined(found_by.get(uid, ()))]
        if not args:
            return 0
        # Before the first UID lands, so that the monitor never misses a queue.
        self.redis.sadd(self.keys.crawls, self.user_uuid)
        step = 2 * chunk
        return sum(
            int(self._fenced(self._push, args[start : start + step]))
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

    def rule_ids(self, uids: Sequence[int]) -> dict[int, list[str]]:
        """The ids of the rules that found each pending UID (UIDs not pending are left out)."""
        checked = [check_uid(uid) for uid in uids]
        if not checked:
            return {}
        found = self.redis.hmget(self.keys.rule_hits(self.user_uuid), checked)
        return {
            uid: _split(joined)
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
        """Drop the queue, the in-flight UIDs and their rule hits (the UIDVALIDITY changed)."""
        self._fenced(self._clear, [])
        self.redis.srem(self.keys.crawls, self.user_uuid)

    def _fenced(self, script: Script, args: Sequence[int | str]) -> Any:
        """Run a script that acts only while the lease holds our worker id."""
        result = script(keys=self._script_keys, args=[self.lease.worker_id, *args])
        if result is None:
            raise LeaseLost(f"worker {self.lease.worker_id} no longer holds {self.lease.key}")
        return result
