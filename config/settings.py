"""The one frozen Settings object; nothing outside this package reads the environment."""

from __future__ import annotations

import difflib
import os
import re
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote_plus

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from config.endpoints import is_secure_endpoint


def _env(
    name: str,
    default: Any,
    description: str,
    *,
    ge: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> Any:
    """A field read from the environment variable `name`, with optional bounds."""
    return Field(default, validation_alias=name, description=description, ge=ge, le=le, lt=lt)


class Settings(BaseSettings):
    """Everything the crawler can be told; each field is documented in README's table."""

    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", frozen=True, populate_by_name=True
    )

    mongodb_url: str = _env(
        "CRAWLER_MONGODB_URL",
        "mongodb://127.0.0.1:27017/crawler",
        "MongoDB URL, which must name the database",
    )
    redis_url: str = _env(
        "CRAWLER_REDIS_URL",
        "redis://127.0.0.1:6379/0",
        "Redis URL; `redis+cluster://host:port` for a Redis Cluster",
    )
    redis_prefix: str = _env("CRAWLER_REDIS_PREFIX", "crawler:", "prefix of every Redis key")
    imap_host: str = _env("CRAWLER_IMAP_HOST", "imap.gmail.com", "Gmail IMAP host")
    imap_port: int = _env("CRAWLER_IMAP_PORT", 993, "Gmail IMAP port")
    imap_tls: bool = _env("CRAWLER_IMAP_TLS", True, "TLS (with certificate checks) to IMAP")
    imap_ca_file: Path | None = _env(
        "CRAWLER_IMAP_CA_FILE",
        None,
        "extra CA certificates (PEM) to trust for IMAP TLS, added to the system's",
    )
    oauth_token_url: str = _env(
        "CRAWLER_OAUTH_TOKEN_URL",
        "https://oauth2.googleapis.com/token",
        "OAuth2 token endpoint for refresh-token grants",
    )
    oauth_auth_url: str = _env(
        "CRAWLER_OAUTH_AUTH_URL",
        "https://accounts.google.com/o/oauth2/v2/auth",
        "OAuth2 consent page that `crawler accounts authorize` opens",
    )
    oauth_client_id: str = _env("CRAWLER_OAUTH_CLIENT_ID", "", "OAuth2 client id")
    oauth_client_secret: SecretStr = _env(
        "CRAWLER_OAUTH_CLIENT_SECRET", SecretStr(""), "OAuth2 client secret"
    )
    oauth_refresh_margin: float = _env(
        "CRAWLER_OAUTH_REFRESH_MARGIN", 300.0, "refresh an access token this many seconds early"
    )
    directory_url: str = _env(
        "CRAWLER_DIRECTORY_URL",
        "https://admin.googleapis.com",
        "Google Admin SDK (Directory API) base URL, for `crawler domains sync`",
    )
    domain_refused_backoff: float = _env(
        "CRAWLER_DOMAIN_REFUSED_BACKOFF",
        3600.0,
        "how long a Workspace domain's accounts wait after Google refused its service account",
    )
    oauth_timeout: float = _env(
        "CRAWLER_OAUTH_TIMEOUT", 20.0, "total time of one token endpoint request, seconds"
    )
    secret_key: SecretStr = _env(
        "CRAWLER_SECRET_KEY", SecretStr(""), "Fernet key that encrypts tokens at rest"
    )
    blob_dir: Path = _env("CRAWLER_BLOB_DIR", Path("var/blobs"), "filesystem blob store root")
    blob_store: Literal["file", "gridfs", "s3"] = _env(
        "CRAWLER_BLOB_STORE",
        "file",
        "where attachments go: file (CRAWLER_BLOB_DIR), gridfs, or s3 (CRAWLER_S3_BUCKET)",
    )
    s3_bucket: str = _env("CRAWLER_S3_BUCKET", "", "S3 bucket of the s3 blob store")
    s3_prefix: str = _env(
        "CRAWLER_S3_PREFIX", "", "prefix of every object key in CRAWLER_S3_BUCKET, e.g. `blobs/`"
    )
    s3_endpoint_url: str = _env(
        "CRAWLER_S3_ENDPOINT_URL",
        "",
        "S3-compatible endpoint (MinIO, R2, GCS); empty: AWS, region and credentials as boto3 "
        "finds them (AWS_* variables, profile, instance role)",
    )
    events_maxlen: int = _env(
        "CRAWLER_EVENTS_MAXLEN",
        100_000,
        "about how many events the stream `<prefix>events` keeps (XADD MAXLEN ~); 0: no events",
        ge=0,
    )
    client_id: int | None = _env("CRAWLER_CLIENT_ID", None, "static shard id")
    client_count: int | None = _env("CRAWLER_CLIENT_COUNT", None, "static shard count")
    crawl_interval: float = _env(
        "CRAWLER_CRAWL_INTERVAL", 900.0, "seconds between crawls of an account"
    )
    throttle_backoff: float = _env(
        "CRAWLER_THROTTLE_BACKOFF", 300.0, "first backoff after [THROTTLED]"
    )
    overquota_backoff: float = _env(
        "CRAWLER_OVERQUOTA_BACKOFF", 3600.0, "first backoff, over quota"
    )
    connections_backoff: float = _env(
        "CRAWLER_CONNECTIONS_BACKOFF", 60.0, "first backoff after too many connections"
    )
    throttle_backoff_max: float = _env("CRAWLER_THROTTLE_BACKOFF_MAX", 86400.0, "backoff cap")
    error_backoff: float = _env("CRAWLER_ERROR_BACKOFF", 300.0, "first retry delay after an error")
    error_backoff_max: float = _env("CRAWLER_ERROR_BACKOFF_MAX", 21600.0, "error retry delay cap")
    imap_disabled_backoff: float = _env(
        "CRAWLER_IMAP_DISABLED_BACKOFF", 21600.0, "least retry delay when IMAP is turned off"
    )
    backoff_jitter: float = _env(
        "CRAWLER_BACKOFF_JITTER", 0.2, "share of each backoff taken off at random", ge=0, lt=1
    )
    fetch_batch: int = _env(
        "CRAWLER_FETCH_BATCH", 200, "UIDs per metadata FETCH and per queue claim", ge=1, le=5000
    )
    download_budget: int = _env(
        "CRAWLER_DOWNLOAD_BUDGET", 16 * 2**20, "encoded bytes of parts per download command"
    )
    stream_size: int = _env(
        "CRAWLER_STREAM_SIZE",
        8 * 2**20,
        "a bigger part is fetched alone, streamed to disk as it arrives",
        ge=1,
    )
    max_attachment_size: int = _env(
        "CRAWLER_MAX_ATTACHMENT_SIZE", 50 * 2**20, "larger attachments are skipped and recorded"
    )
    daily_download_limit: int = _env(
        "CRAWLER_DAILY_DOWNLOAD_LIMIT",
        1_250_000_000,
        "bytes an account may download in a rolling 24 h: half of Gmail's 2,500 MB a day, so "
        "the user's own mail apps keep the rest; the crawl stops before a batch could pass it",
        ge=1,
    )
    max_queries: int = _env("CRAWLER_MAX_QUERIES", 20, "distinct rule queries searched per account")
    max_rules: int = _env(
        "CRAWLER_MAX_RULES", 100, "rules an account may have; more are refused", ge=1
    )
    max_crawl_time: float = _env(
        "CRAWLER_MAX_CRAWL_TIME",
        1800.0,
        "a crawl running this long stops after its batch and resumes on a later pass",
        ge=0.1,
    )
    imap_timeout: float = _env("CRAWLER_IMAP_TIMEOUT", 60.0, "IMAP socket timeout, seconds")
    imap_id_contact: str = _env(
        "CRAWLER_IMAP_ID_CONTACT",
        "",
        "contact address sent in the IMAP ID command after login, as Google asks of clients",
    )
    imap_min_rate: int = _env(
        "CRAWLER_IMAP_MIN_RATE",
        16384,
        "slowest answer rate, bytes/s: an IMAP command may take CRAWLER_IMAP_TIMEOUT plus the "
        "bytes it may carry at this rate, and no longer",
        ge=1,
    )
    retry_attempts: int = _env(
        "CRAWLER_RETRY_ATTEMPTS", 3, "attempts at a crawl that hits transient errors", ge=1
    )
    retry_wait: float = _env("CRAWLER_RETRY_WAIT", 2.0, "first wait between attempts, seconds")
    retry_max_time: float = _env(
        "CRAWLER_RETRY_MAX_TIME", 120.0, "no new attempt after this many seconds"
    )
    lease_ttl: float = _env("CRAWLER_LEASE_TTL", 120.0, "seconds an account lease lives unrenewed")
    resync_interval: float = _env(
        "CRAWLER_RESYNC_INTERVAL", 3600.0, "seconds between full scans of rules for new accounts"
    )
    worker_id: str | None = _env("CRAWLER_WORKER_ID", None, "this worker's id (default host:pid)")
    concurrency: int = _env("CRAWLER_CONCURRENCY", 4, "account crawls a worker runs at once", ge=1)
    heartbeat_ttl: float = _env(
        "CRAWLER_HEARTBEAT_TTL", 30.0, "a worker missing heartbeats this long is dead", ge=1
    )
    monitor_interval: float = _env("CRAWLER_MONITOR_INTERVAL", 15.0, "seconds between checks")
    stall_after: float = _env(
        "CRAWLER_STALL_AFTER", 900.0, "a crawl with no progress this long is reported"
    )
    shutdown_deadline: float = _env(
        "CRAWLER_SHUTDOWN_DEADLINE", 30.0, "seconds a stopping worker gives its crawls"
    )
    process_name: str | None = _env(
        "HONCHO_PROCESS_NAME", None, "set by honcho (worker.3): the shard id with a shard count"
    )
    hostname: str | None = _env(
        "HOSTNAME", None, "a StatefulSet pod name (crawler-2): the shard id with a shard count"
    )
    log_format: Literal["keyvalue", "json"] = _env(
        "CRAWLER_LOG_FORMAT", "keyvalue", "log lines as key=value pairs or as JSON objects"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = _env(
        "CRAWLER_LOG_LEVEL", "INFO", "least severe level logged"
    )
    airbrake_project_id: int | None = _env("AIRBRAKE_PROJECT_ID", None, "Airbrake project id")
    airbrake_project_key: SecretStr = _env(
        "AIRBRAKE_PROJECT_KEY", SecretStr(""), "Airbrake project key"
    )
    airbrake_host: str = _env(
        "AIRBRAKE_HOST",
        "https://api.airbrake.io",
        "Airbrake host: https:// (http:// only to a loopback address)",
    )
    airbrake_environment: str = _env("AIRBRAKE_ENVIRONMENT", "production", "Airbrake environment")

    def __init__(self, **values: Any) -> None:
        # The .env file is checked before pydantic-settings reads it: see `check_env_file`.
        env_file = values.get("_env_file", type(self).model_config.get("env_file"))
        if isinstance(env_file, str | os.PathLike):
            env_file = [env_file]
        paths = [Path(path).expanduser() for path in env_file or ()]
        for path in paths:
            check_env_file(path)
        # A misspelt name would be ignored, its setting left at the default: it is refused.
        unknown = unknown_names(os.environ, "environment", service_links=True)
        encoding = values.get("_env_file_encoding") or self.model_config.get("env_file_encoding")
        for path in paths:
            if path.is_file():
                unknown += unknown_names(dotenv_values(path, encoding=encoding), str(path))
        if unknown:
            raise ValidationError.from_exception_data("Settings", unknown)
        super().__init__(**values)

    @field_validator("airbrake_host")
    @classmethod
    def _airbrake_over_https(cls, host: str) -> str:
        """The project key goes with every notice: never in clear past this machine."""
        if not is_secure_endpoint(host):
            raise ValueError(
                f"AIRBRAKE_HOST must be https:// (http:// only to a loopback address), got {host!r}"
            )
        return host

    @field_validator("mongodb_url")
    @classmethod
    def _mongodb_database_named(cls, url: str) -> str:
        """The database is the URL's to name: no silent default."""
        if url.startswith(MONGODB_SCHEMES) and not mongodb_database(url):
            raise PydanticCustomError(
                "mongodb_url_without_database",
                "the URL names no database: put its name after the hosts, as in "
                "mongodb://127.0.0.1:27017/crawler or mongodb+srv://cluster0.example.net/crawler",
            )
        return url


PREFIX = "CRAWLER_"
"""Every variable named so is a setting: any other is a mistake (see `unknown_names`)."""
MONGODB_SCHEMES = ("mongodb://", "mongodb+srv://")
# Kubernetes gives a pod variables for each Service of its namespace ("service links"): a
# Service named `crawler` (or `crawler-...`) brings CRAWLER_SERVICE_HOST=10.0.0.7,
# CRAWLER_PORT=tcp://10.0.0.7:9100, CRAWLER_PORT_9100_TCP_PROTO=tcp and the like. Known by
# name and value, they are not taken for misspelt settings.
_ADDRESS = r"[0-9A-Fa-f.:]+"
_LINK = r"(?:tcp|udp|sctp)://\[?[0-9A-Fa-f.:]+\]?:\d+"
_PORT = r"PORT_\d+_(?:TCP|UDP|SCTP)"  # one port of the Service
_SERVICE_LINKS = [
    (re.compile(rf"CRAWLER_(?:\w+_)?{name}"), re.compile(value))
    for name, value in [
        ("SERVICE_HOST", _ADDRESS),
        (r"SERVICE_PORT(?:_\w+)?", r"\d+"),
        ("PORT", _LINK),
        (_PORT, _LINK),
        (f"{_PORT}_PROTO", "tcp|udp|sctp"),
        (f"{_PORT}_PORT", r"\d+"),
        (f"{_PORT}_ADDR", _ADDRESS),
    ]
]


def setting_names() -> list[str]:
    """The variable of every setting, as its field's validation alias names it."""
    return [str(field.validation_alias) for field in Settings.model_fields.values()]


def unknown_names(
    variables: Mapping[str, str | None], where: str, *, service_links: bool = False
) -> list[InitErrorDetails]:
    """An error for each CRAWLER_* name of `variables` (from `where`) that is no setting, with
    the closest setting's name when one is close; `service_links`: not for those Kubernetes
    sets."""
    known = setting_names()
    errors: list[InitErrorDetails] = []
    for name in sorted(variables):
        upper = name.upper()  # settings are read case-insensitively
        if not upper.startswith(PREFIX) or upper in known:
            continue
        if service_links and _is_service_link(upper, variables[name] or ""):
            continue
        message = f"{name} is not a setting{_suggestion(upper, known)}"
        error = PydanticCustomError("unknown_setting", "{message}", {"message": message})
        errors.append(InitErrorDetails(type=error, loc=(where,), input=name))
    return errors


def _suggestion(name: str, known: Iterable[str]) -> str:
    # Compared without the prefix they all share, which would make any two names look close.
    names = [n.removeprefix(PREFIX) for n in known if n.startswith(PREFIX)]
    close = difflib.get_close_matches(name.removeprefix(PREFIX), names, n=1)
    if close:
        return f"; did you mean {PREFIX}{close[0]}?"
    return " (README's configuration table lists the settings)"


def _is_service_link(name: str, value: str) -> bool:
    return any(n.fullmatch(name) and v.fullmatch(value) for n, v in _SERVICE_LINKS)


def mongodb_database(url: str) -> str:
    """The database a MongoDB URL names ('' for none), read as pymongo reads it."""
    hosts_and_path = url.partition("://")[2].partition("?")[0]
    return unquote_plus(hosts_and_path.partition("/")[2]).partition(".")[0]


def check_env_file(path: Path) -> None:
    """Refuse a `.env` that someone else could have written, before a byte of it is read.

    Its settings (CRAWLER_IMAP_HOST, CRAWLER_SECRET_KEY ...) control the crawler, so the file
    must belong to this user (or root) and be writable by its owner only. A missing file (or a
    directory, which is not read either) is fine.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        return
    owners = {os.getuid(), 0}
    if info.st_uid not in owners:
        problem = f"is owned by uid {info.st_uid}, not by this user (uid {os.getuid()}) or root"
    elif info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        mode = f"{stat.S_IMODE(info.st_mode):04o}"
        problem = f"is writable by group or others (mode {mode}; `chmod go-w` it)"
    else:
        return
    message = f"{path.absolute()} {problem}: refusing to read settings from it"
    error = InitErrorDetails(
        type=PydanticCustomError("unsafe_env_file", "{message}", {"message": message}),
        loc=(str(path),),
        input=str(path),
    )
    raise ValidationError.from_exception_data("Settings", [error])


def load_settings(**overrides: Any) -> Settings:
    """Build Settings from the environment and `.env`, with CLI flags (non-None) on top."""
    return Settings(**{key: value for key, value in overrides.items() if value is not None})
