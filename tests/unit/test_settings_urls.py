"""Settings that name where a secret goes: AIRBRAKE_HOST is https://, or http:// to loopback;
and the MongoDB URL, which must name its database."""

import pytest
from pydantic import ValidationError
from pymongo import uri_parser

from config.endpoints import is_loopback_host, is_secure_endpoint
from config.settings import Settings, mongodb_database

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


# -- CRAWLER_MONGODB_URL names its database ---------------------------------------------------


@pytest.mark.parametrize(
    ("url", "database"),
    [
        ("mongodb://127.0.0.1:27017/crawler", "crawler"),
        ("mongodb://u:p%2F@db1,db2,db3/crawler?replicaSet=rs0&w=majority", "crawler"),
        ("mongodb+srv://cluster0.example.net/crawler?retryWrites=true", "crawler"),
        ("mongodb://127.0.0.1/crawler.accounts", "crawler"),  # a collection after the dot
        ("mongodb://127.0.0.1/crawler%5Fdev", "crawler_dev"),
        ("mongodb://127.0.0.1:27017", ""),
        ("mongodb://127.0.0.1:27017/", ""),
        ("mongodb://127.0.0.1:27017/?replicaSet=rs0", ""),
        ("mongodb://127.0.0.1:27017?authSource=/admin", ""),  # a slash among the options
    ],
)
def test_the_database_of_a_mongodb_url_is_read_as_pymongo_reads_it(url: str, database: str) -> None:
    assert mongodb_database(url) == database
    if database:
        assert uri_parser.parse_uri(url.replace("+srv", ""))["database"] == database


@pytest.mark.parametrize(
    "url",
    [
        "mongodb://127.0.0.1:27017",
        "mongodb://crawler:PASSWORD@db1,db2/?replicaSet=rs0",
        "mongodb+srv://crawler:PASSWORD@cluster0.example.net/",
    ],
)
def test_a_mongodb_url_without_a_database_is_refused(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRAWLER_MONGODB_URL", url)

    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None)

    [error] = refused.value.errors()
    assert error["loc"] == ("CRAWLER_MONGODB_URL",)
    assert "the URL names no database" in error["msg"]
    assert "as in mongodb://127.0.0.1:27017/crawler" in error["msg"]  # an example to follow
    assert "PASSWORD" not in error["msg"]


def test_a_mongodb_url_given_by_field_is_refused_under_the_field_s_name() -> None:
    """How a command's `--mongodb-url` reaches the settings: the error names the field, which
    the command's error line turns into the option (workers.admin_context)."""
    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None, mongodb_url="mongodb://127.0.0.1:27017")

    [error] = refused.value.errors()
    assert error["loc"] == ("mongodb_url",)


def test_a_mongodb_url_with_a_database_is_taken() -> None:
    url = "mongodb://127.0.0.1:27017/elsewhere"

    assert Settings(_env_file=None, mongodb_url=url).mongodb_url == url
    assert Settings(_env_file=None).mongodb_url.endswith("/crawler")  # the default names one
