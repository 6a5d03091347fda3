"""The one frozen Settings object; nothing outside this package reads the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _env(name: str, default: Any, description: str) -> Any:
    """A field read from `name` (and the `CRAWLER_`-less spelling for the AIRBRAKE_* ones)."""
    return Field(default, validation_alias=AliasChoices(name), description=description)


class Settings(BaseSettings):
    """Everything the crawler can be told; each field is documented in README's table."""

    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", frozen=True, populate_by_name=True
    )

    mongodb_url: str = _env(
        "CRAWLER_MONGODB_URL", "mongodb://127.0.0.1:27017/crawler", "MongoDB URL with database"
    )
    redis_url: str = _env("CRAWLER_REDIS_URL", "redis://127.0.0.1:6379/0", "Redis URL")
    redis_prefix: str = _env("CRAWLER_REDIS_PREFIX", "crawler:", "prefix of every Redis key")
    imap_host: str = _env("CRAWLER_IMAP_HOST", "imap.gmail.com", "Gmail IMAP host")
    imap_port: int = _env("CRAWLER_IMAP_PORT", 993, "Gmail IMAP port")
    imap_tls: bool = _env("CRAWLER_IMAP_TLS", True, "TLS (with certificate checks) to IMAP")
    oauth_token_url: str = _env(
        "CRAWLER_OAUTH_TOKEN_URL",
        "https://oauth2.googleapis.com/token",
        "OAuth2 token endpoint for refresh-token grants",
    )
    oauth_client_id: str = _env("CRAWLER_OAUTH_CLIENT_ID", "", "OAuth2 client id")
    oauth_client_secret: SecretStr = _env(
        "CRAWLER_OAUTH_CLIENT_SECRET", SecretStr(""), "OAuth2 client secret"
    )
    secret_key: SecretStr = _env(
        "CRAWLER_SECRET_KEY", SecretStr(""), "Fernet key that encrypts tokens at rest"
    )
    blob_dir: Path = _env("CRAWLER_BLOB_DIR", Path("var/blobs"), "filesystem blob store root")
    client_id: int | None = _env("CRAWLER_CLIENT_ID", None, "static shard id")
    client_count: int | None = _env("CRAWLER_CLIENT_COUNT", None, "static shard count")
    airbrake_project_id: int | None = _env("AIRBRAKE_PROJECT_ID", None, "Airbrake project id")
    airbrake_project_key: SecretStr = _env(
        "AIRBRAKE_PROJECT_KEY", SecretStr(""), "Airbrake project key"
    )
    airbrake_host: str = _env("AIRBRAKE_HOST", "https://api.airbrake.io", "Airbrake host")
    airbrake_environment: str = _env("AIRBRAKE_ENVIRONMENT", "production", "Airbrake environment")


def load_settings(**overrides: Any) -> Settings:
    """Build Settings from the environment and `.env`, with CLI flags (non-None) on top."""
    return Settings(**{key: value for key, value in overrides.items() if value is not None})
