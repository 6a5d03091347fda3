"""Settings that name where a secret goes: AIRBRAKE_HOST is https://, or http:// to loopback."""

import pytest
from pydantic import ValidationError

from config.endpoints import is_loopback_host, is_secure_endpoint
from config.settings import Settings

pytestmark = pytest.mark.unit

SECURE = [
    "https://api.airbrake.io",
    "https://airbrake.example.com:8443/",
    "http://127.0.0.1:8080",
    "http://127.9.9.9",
    "http://[::1]:1234",
    "http://localhost:9",
    "http://LOCALHOST",
]
INSECURE = [
    "http://api.airbrake.io",
    "http://10.0.0.5:8080",
    "http://0.0.0.0:80",
    "http://127.0.0.1.example.com",
    "http://localhost.example.com",
    "http://[::ffff:8.8.8.8]",
    "api.airbrake.io",
    "ftp://127.0.0.1",
    "",
]


@pytest.mark.parametrize("url", SECURE)
def test_https_or_loopback_http_is_a_secure_endpoint(url: str) -> None:
    assert is_secure_endpoint(url)


@pytest.mark.parametrize("url", INSECURE)
def test_anything_else_is_not(url: str) -> None:
    assert not is_secure_endpoint(url)


def test_loopback_hosts() -> None:
    assert all(map(is_loopback_host, ["localhost", "127.0.0.1", "127.255.0.1", "::1"]))
    assert not any(map(is_loopback_host, ["", "10.0.0.1", "::", "example.com", "128.0.0.1"]))


@pytest.mark.parametrize("url", ["http://api.airbrake.io", "http://10.0.0.5:8080", "api.io"])
def test_airbrake_host_in_clear_is_refused(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRBRAKE_HOST", url)

    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None)

    [error] = refused.value.errors()
    assert error["loc"] == ("AIRBRAKE_HOST",)
    assert "AIRBRAKE_HOST must be https:// (http:// only to a loopback address)" in error["msg"]
    assert repr(url) in error["msg"]


@pytest.mark.parametrize(
    "url", ["https://api.airbrake.io", "http://127.0.0.1:5000", "http://[::1]"]
)
def test_airbrake_host_over_https_or_to_loopback_is_taken(url: str) -> None:
    assert Settings(_env_file=None, airbrake_host=url).airbrake_host == url
