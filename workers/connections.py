"""Connections to MongoDB and Redis that fail fast, as one clear line, when a store is unusable.

Every process (worker, monitor, operator commands) opens its stores here: short timeouts, and a
ping at once, so that a wrong URL or a store that is down is a ConfigError naming the setting,
not a traceback minutes later.

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
from crawler.redis_url import redis_from_url
from crawler.store import Document

CONNECT_TIMEOUT = 3.0  # seconds to wait, at most, for a store that does not answer


def connect(settings: Settings) -> tuple[Database[Document], redis.Redis]:
    """The MongoDB database and the Redis client the settings name, both answering."""
    database = mongo_client(settings.mongodb_url).get_default_database("crawler")
    return database, redis_client(settings.redis_url)


def mongo_client(url: str) -> MongoClient[Document]:
    """A client of the MongoDB at `url` that has answered a ping."""
    timeout_ms = int(CONNECT_TIMEOUT * 1000)
    try:
        client: MongoClient[Document] = MongoClient(
            url, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms
        )
    except ConfigurationError as error:
        raise ConfigError(f"CRAWLER_MONGODB_URL is not usable: {error}") from None
    try:
        client.admin.command("ping")
    except ServerSelectionTimeoutError:
        client.close()
        raise ConfigError(
            f"MongoDB at {where(url)} did not answer within {CONNECT_TIMEOUT:g} s "
            "(check CRAWLER_MONGODB_URL)"
        ) from None
    except PyMongoError as error:
        client.close()
        raise ConfigError(f"MongoDB at {where(url)} refused us: {error}") from None
    return client


def redis_client(url: str) -> redis.Redis:
    """A client of the Redis (or Redis Cluster: `redis+cluster://`) at `url` that has answered."""
    try:
        client = redis_from_url(url, CONNECT_TIMEOUT)
    except ValueError as error:
        raise ConfigError(f"CRAWLER_REDIS_URL is not usable: {error}") from None
    except (redis.RedisError, RedisClusterException) as error:  # a cluster connects at once
        raise _unusable(url, error) from None
    try:
        client.ping()
    except redis.RedisError as error:
        client.close()
        raise _unusable(url, error) from None
    return client


def _unusable(url: str, error: Exception) -> ConfigError:
    return ConfigError(f"Redis at {where(url)} cannot be used: {error} (check CRAWLER_REDIS_URL)")


def where(url: str) -> str:
    """The host part of a store URL, without the credentials it may hold."""
    parts = urlsplit(url)
    return parts.netloc.rpartition("@")[2] or parts.path or "?"
