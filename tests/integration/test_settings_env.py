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


# -- unknown CRAWLER_* names ------------------------------------------------------------------


def unknown(monkeypatch: pytest.MonkeyPatch, **env: str) -> list[tuple[str, str]]:
    """(where, message) of each name the settings refuse, with `env` in the environment."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as refused:
        load_settings()
    return [(str(error["loc"][0]), str(error["msg"])) for error in refused.value.errors()]


def test_a_misspelt_variable_is_refused_with_the_closest_setting(
    env_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert unknown(monkeypatch, CRAWLER_CONCURENCY="8") == [
        (
            "environment",
            "CRAWLER_CONCURENCY is not a setting; did you mean CRAWLER_CONCURRENCY?",
        )
    ]


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("CRAWLER_MONGO_URL", "CRAWLER_MONGODB_URL"),
        ("CRAWLER_REDIS_URI", "CRAWLER_REDIS_URL"),
        ("CRAWLER_SECRET", "CRAWLER_SECRET_KEY"),
        ("CRAWLER_CLIENTCOUNT", "CRAWLER_CLIENT_COUNT"),
        ("CRAWLER_LOGLEVEL", "CRAWLER_LOG_LEVEL"),
        ("crawler_imap_hostname", "CRAWLER_IMAP_HOST"),  # settings are read in any case
    ],
)
def test_the_suggestion_is_the_setting_meant(
    env_file: Path, monkeypatch: pytest.MonkeyPatch, name: str, meant: str
) -> None:
    [(_, message)] = unknown(monkeypatch, **{name: "1"})

    assert message == f"{name} is not a setting; did you mean {meant}?"


def test_a_name_like_no_setting_is_refused_without_a_guess(
    env_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    [(_, message)] = unknown(monkeypatch, CRAWLER_XYZZY="1")

    assert message.startswith("CRAWLER_XYZZY is not a setting (")
    assert "did you mean" not in message


def test_every_unknown_name_is_refused_at_once(
    env_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = unknown(monkeypatch, CRAWLER_CONCURENCY="8", CRAWLER_REDIS_URI="redis://x")

    assert [message.split()[0] for _, message in refused] == [
        "CRAWLER_CONCURENCY",
        "CRAWLER_REDIS_URI",
    ]


def test_a_misspelt_name_in_the_env_file_is_refused_naming_the_file(
    env_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file.write_text("CRAWLER_IMAP_HOST=imap.example\nCRAWLER_CONCURENCY=8\nOTHER_TOOL=1\n")

    assert unknown(monkeypatch) == [
        (".env", "CRAWLER_CONCURENCY is not a setting; did you mean CRAWLER_CONCURRENCY?")
    ]


def test_an_env_file_named_explicitly_is_checked_for_unknown_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other.env"
    other.write_text("export CRAWLER_LOG_LEVL=DEBUG\n")
    other.chmod(0o600)

    with pytest.raises(ValidationError, match="did you mean CRAWLER_LOG_LEVEL") as refused:
        Settings(_env_file=other)
    assert refused.value.errors()[0]["loc"] == (str(other),)


def test_known_names_and_other_prefixes_are_taken(
    env_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("crawler_concurrency", "8")  # any case, as pydantic-settings reads them
    monkeypatch.setenv("DEV_MONGO_PORT", "27117")  # deploy/dev/env.sh's own variables
    monkeypatch.setenv("HONCHO_PROCESS_NAME", "worker.1")
    monkeypatch.setenv("CRAWLERS", "many")  # not the prefix: CRAWLER_

    assert load_settings().concurrency == 8


KUBERNETES_SERVICE_LINKS = {
    # A Service `crawler` with a port named `metrics`, as Kubernetes announces it to each pod.
    "CRAWLER_SERVICE_HOST": "10.96.0.17",
    "CRAWLER_SERVICE_PORT": "9100",
    "CRAWLER_SERVICE_PORT_METRICS": "9100",
    "CRAWLER_PORT": "tcp://10.96.0.17:9100",
    "CRAWLER_PORT_9100_TCP": "tcp://10.96.0.17:9100",
    "CRAWLER_PORT_9100_TCP_PROTO": "tcp",
    "CRAWLER_PORT_9100_TCP_PORT": "9100",
    "CRAWLER_PORT_9100_TCP_ADDR": "10.96.0.17",
    # and a Service `crawler-monitor`, over IPv6
    "CRAWLER_MONITOR_SERVICE_HOST": "fd00::17",
    "CRAWLER_MONITOR_PORT": "tcp://[fd00::17]:9100",
}


def test_kubernetes_service_links_are_not_taken_for_settings(
    env_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in KUBERNETES_SERVICE_LINKS.items():
        monkeypatch.setenv(name, value)

    assert load_settings().imap_host == "imap.attacker.example"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CRAWLER_IMAPS_PORT", "993"),  # a port, but no service link's value
        ("CRAWLER_SERVICE_HOST", "mongo.example.net"),  # a service link's value is an address
        ("CRAWLER_MONGO_PORT", "27017"),
    ],
)
def test_only_a_service_link_s_name_and_value_together_are_let_through(
    env_file: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    [(where, message)] = unknown(monkeypatch, **{name: value})

    assert where == "environment" and message.startswith(f"{name} is not a setting")


def test_service_links_in_an_env_file_are_refused(
    env_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kubernetes sets them in the environment; in a file somebody wrote them."""
    env_file.write_text("CRAWLER_SERVICE_HOST=10.96.0.17\n")

    assert [where for where, _ in unknown(monkeypatch)] == [".env"]
