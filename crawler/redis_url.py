"""The Redis client that CRAWLER_REDIS_URL names: one Redis, or a Redis Cluster.

A URL whose scheme is `redis+cluster://` (or `rediss+cluster://`) names one node of a Redis
Cluster: the client discovers the others and routes each command to its slot. Every Redis call
of the crawler is a single-key command or a script over the keys of one hash tag
(crawler/keys.py), so the cluster client runs them exactly as a plain client does.
"""

from __future__ import annotations

from typing import cast

import redis
from redis.cluster import RedisCluster

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def redis_from_url(url: str, timeout: float) -> redis.Redis:
    """A plain client, or a cluster client for the `+cluster` schemes (it connects at once);
    `timeout` bounds connecting and every reply."""
    scheme, separator, rest = url.partition("://")
    if separator and scheme.lower() in CLUSTER_SCHEMES:
        cluster = RedisCluster.from_url(
            f"{CLUSTER_SCHEMES[scheme.lower()]}://{rest}",
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
        )
        # Not a redis.Redis subclass, but it takes every call the crawler makes (see above).
        return cast(redis.Redis, cluster)
    return redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
