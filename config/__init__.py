"""Settings: one typed, validated object built from the environment, `.env` and CLI flags."""

from config.settings import Settings, load_settings

__all__ = ["Settings", "load_settings"]
