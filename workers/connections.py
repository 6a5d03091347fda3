"""Connections to MongoDB and Redis that fail fast, as one clear line, when a store is unusable.

Every process (worker, monitor, operator commands) opens its stores here: short timeouts, and a
ping at once, so that a wrong URL or a store that is down is a ConfigError naming where the URL
came from (CRAWLER_MONGODB_URL, or an operator command's `--mongodb-url`), not a traceback
minutes later.

CRAWLER_REDIS_URL may name a Redis Cluster (`redis+cluster://`, see crawler/redis_url.py).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import redis
from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import ConfigurationError, PyMongoError, ServerSelectionTimeoutError
from redis.exceptions import RedisClusterException

from config import Settings
from crawler.errors import ConfigError
from crawler.redis_url import CLUSTER_SCHEMES, redis_from_url
from crawler.store import Document

CONNECT_TIMEOUT = 3.0  # seconds to wait, at most, for a store that does not answer
MONGODB_SETTING = "CRAWLER_MONGODB_URL"
REDIS_SETTING = "CRAWLER_REDIS_URL"
REDIS_SCHEMES = ("redis", "rediss", "unix", *CLUSTER_SCHEMES)  # what redis_from_url takes


def connect(settings: Settings) -> tuple[Database[Document], redis.Redis]:
    """The MongoDB database and the Redis client the settings name, both answering."""
    # Settings refuse a MongoDB URL without a database: no default name stands in for it.
    database = mongo_client(settings.mongodb_url).get_default_database()
    return database, redis_client(settings.redis_url)


def mongo_client(url: str, setting: str = MONGODB_SETTING) -> MongoClient[Document]:
    """A client of the MongoDB at `url` that has answered a ping; `setting` is where the URL
    came from, for the errors."""
    timeout_ms = int(CONNECT_TIMEOUT * 1000)
    try:
        client: MongoClient[Document] = MongoClient(
            url, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms
        )
    except ConfigurationError as error:
        raise ConfigError(f"{setting} is not usable: {error}") from None
    try:
        client.admin.command("ping")
    except ServerSelectionTimeoutError:
        client.close()
        raise ConfigError(
            f"MongoDB at {where(url)} did not answer within {CONNECT_TIMEOUT:g} s (check {setting})"
        ) from None
    except PyMongoError as error:
        client.close()
        raise ConfigError(f"MongoDB at {where(url)} refused us: {error}") from None
    return client


def redis_client(url: str, setting: str = REDIS_SETTING) -> redis.Redis:
    """A client of the Redis (or Redis Cluster: `redis+cluster://`) at `url` that has answered;
    `setting` is where the URL came from, for the errors."""
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme not in REDIS_SCHEMES:
        schemes = ", ".join(f"{name}://" for name in REDIS_SCHEMES)
        got = f"{scheme}://" if scheme else "no scheme"
        raise ConfigError(
            f"{setting} is not usable: it must start with one of {schemes}, not {got}"
        )
    try:
        client = redis_from_url(url, CONNECT_TIMEOUT)
    except ValueError as error:
        raise ConfigError(f"{setting} is not usable: {error}") from None
    except (redis.RedisError, RedisClusterException) as error:  # a cluster connects at once
        raise _unusable(url, setting, error) from None
    try:
        client.ping()
    except redis.RedisError as error:
        client.close()
        raise _unusable(url, setting, error) from None
    return client


def _unusable(url: str, setting: str, error: Exception) -> ConfigError:
    return ConfigError(f"Redis at {where(url)} cannot be used: {error} (check {setting})")


def where(url: str) -> str:
    """The host part of a store URL, without the credentials it may hold."""
    parts = urlsplit(url)
    return parts.netloc.rpartition("@")[2] or parts.path or "?"
