"""What every operator command shares: settings, connections, options, one-line errors.

An operator command asks `Operator` for the stores it needs; each is opened on first use with
short timeouts and checked with a ping, so an unreachable MongoDB or Redis is reported at once
as one line, naming where its URL came from (`--mongodb-url`, or CRAWLER_MONGODB_URL).
`operator_command` turns every failure a command can meet (bad configuration, bad input, an
unreachable store, an unwritable file) into one line on stderr and an exit code.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, NoReturn, ParamSpec

import pydantic
import redis
import typer
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from config import Settings, load_settings
from crawler.blobs import BlobStore, open_blob_store
from crawler.errors import BadInput, CrawlerError
from crawler.keys import Keys
from crawler.oauth import TokenCipher
from crawler.store.admin import AdminStore
from crawler.store.status import Document
from workers.connections import MONGODB_SETTING, REDIS_SETTING, mongo_client, redis_client

EXIT_FAILED = 1  # bad configuration, an unreachable store, an unknown id
EXIT_BAD_INPUT = 2  # a bad rule, account or option value, as for a usage error

P = ParamSpec("P")

MongoUrlOption = Annotated[
    str | None,
    typer.Option(
        "--mongodb-url",
        help="MongoDB URL with the database name (default: CRAWLER_MONGODB_URL).",
        show_default=False,
    ),
]
RedisUrlOption = Annotated[
    str | None,
    typer.Option("--redis-url", help="Redis URL (default: CRAWLER_REDIS_URL).", show_default=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


class Operator:
    """The settings of one command and its connections, opened on first use."""

    def __init__(
        self,
        settings: Settings,
        *,
        mongodb_setting: str = MONGODB_SETTING,
        redis_setting: str = REDIS_SETTING,
    ) -> None:
        self.settings = settings
        # Where the URLs came from (a variable, or an option of the command), for the errors.
        self.mongodb_setting = mongodb_setting
        self.redis_setting = redis_setting
        self.keys = Keys(settings.redis_prefix)
        self._mongo: MongoClient[Document] | None = None
        self._store: AdminStore | None = None
        self._redis: redis.Redis | None = None

    @property
    def store(self) -> AdminStore:
        """The MongoDB collections; ConfigError when MongoDB cannot be used."""
        if self._store is None:
            self._mongo = mongo_client(self.settings.mongodb_url, self.mongodb_setting)
            # Settings refuse a URL without a database: no default name stands in for it.
            self._store = AdminStore(self._mongo.get_default_database())
        return self._store

    @property
    def redis(self) -> redis.Redis:
        """The Redis client; ConfigError when Redis cannot be reached."""
        if self._redis is None:
            self._redis = redis_client(self.settings.redis_url, self.redis_setting)
        return self._redis

    def cipher(self) -> TokenCipher:
        """The cipher of tokens and passwords; ConfigError without CRAWLER_SECRET_KEY."""
        return TokenCipher(self.settings.secret_key.get_secret_value())

    def blobs(self) -> BlobStore:
        """The configured attachment blob store."""
        return open_blob_store(self.settings, self.store.db)

    def close(self) -> None:
        """Close whatever was opened."""
        if self._mongo is not None:
            self._mongo.close()
        if self._redis is not None:
            self._redis.close()


@contextmanager
def operator(mongodb_url: str | None = None, redis_url: str | None = None) -> Iterator[Operator]:
    """An Operator for settings from the environment and `.env`, the given URLs on top."""
    ops = Operator(
        load_settings(mongodb_url=mongodb_url, redis_url=redis_url),
        mongodb_setting=MONGODB_SETTING if mongodb_url is None else "--mongodb-url",
        redis_setting=REDIS_SETTING if redis_url is None else "--redis-url",
    )
    try:
        yield ops
    finally:
        ops.close()


def operator_command(command: Callable[P, None]) -> Callable[P, None]:
    """Make `command` end a failure with one line on stderr and an exit code, not a traceback."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            command(*args, **kwargs)
        except BadInput as error:
            fail(str(error), EXIT_BAD_INPUT)
        except CrawlerError as error:
            fail(str(error))
        except pydantic.ValidationError as error:
            fail(_settings_problem(error))
        except (PyMongoError, redis.RedisError, OSError) as error:
            fail(f"{type(error).__name__}: {error}")

    return run


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Print `message` as one line on stderr and exit with `code`."""
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    raise typer.Exit(code)


def _settings_problem(error: pydantic.ValidationError) -> str:
    problems = error.errors()
    first = problems[0]
    name = ".".join(_source(str(part)) for part in first["loc"]) or "settings"
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"invalid configuration: {name}: {first['msg']}{more}"


def _source(name: str) -> str:
    """Where a setting came from: its variable as pydantic names it (CRAWLER_MONGODB_URL), or,
    named by its field, the command's option of that name (`mongodb_url`: `--mongodb-url`): a
    command passes its options to `load_settings` by field. Other places (`.env`) stay as named."""
    if name in Settings.model_fields:
        return f"--{name.replace('_', '-')}"
    return name
