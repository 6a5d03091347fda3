"""`.env` is read only when nobody but its owner (this user, or root) can have written it."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic_settings.sources.providers import dotenv

from config import Settings, load_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A `.env` in the working directory that sets the IMAP host; the environment does not."""
    monkeypatch.delenv("CRAWLER_IMAP_HOST", raising=False)
    monkeypatch.chdir(tmp_path)
    path = tmp_path / ".env"
    path.write_text("CRAWLER_IMAP_HOST=imap.attacker.example\n")
    path.chmod(0o600)
    yield path


def refusal(monkeypatch: pytest.MonkeyPatch) -> str:
    """The message of the settings' refusal; fails if any .env was read first."""
    read: list[object] = []
    monkeypatch.setattr(dotenv, "dotenv_values", lambda *args, **_: read.append(args) or {})
    with pytest.raises(ValidationError) as refused:
        load_settings()
    assert read == []  # refused before a byte of it was read
    [error] = refused.value.errors()
    return str(error["msg"])


def test_a_private_env_file_is_read(env_file: Path) -> None:
    assert load_settings().imap_host == "imap.attacker.example"


@pytest.mark.parametrize("mode", [0o666, 0o602, 0o620, 0o660], ids=lambda mode: f"{mode:04o}")
def test_an_env_file_others_can_write_is_refused(
    env_file: Path, monkeypatch: pytest.MonkeyPatch, mode: int
) -> None:
    env_file.chmod(mode)

    message = refusal(monkeypatch)

    assert f"{env_file} is writable by group or others (mode {mode:04o}" in message
    assert "refusing to read settings from it" in message


@pytest.mark.skipif(os.getuid() != 0, reason="giving a file away takes root")
def test_an_env_file_of_another_user_is_refused(
    env_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    os.chown(env_file, 12345, -1)

    message = refusal(monkeypatch)

    assert f"{env_file} is owned by uid 12345, not by this user (uid 0) or root" in message


def test_an_env_file_named_explicitly_is_checked_too(
    env_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other.env"
    other.write_text("CRAWLER_IMAP_HOST=imap.other.example\n")
    other.chmod(0o646)

    with pytest.raises(ValidationError, match=r"other\.env is writable by group or others"):
        Settings(_env_file=other)


def test_no_env_file_is_fine(env_file: Path) -> None:
    env_file.unlink()

    assert load_settings().imap_host == "imap.gmail.com"
