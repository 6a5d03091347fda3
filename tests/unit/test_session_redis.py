"""Which Redis the test session uses (tests/conftest.py): the one that answers, else a private
`redis-server`, else none, said in one line."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import choose_redis, redis_answers

pytestmark = pytest.mark.unit

URL = "redis://127.0.0.1:6379/0"
SERVER = "/usr/bin/redis-server"


def test_the_redis_that_answers_is_used() -> None:
    choice = choose_redis(URL, lambda url: url == URL, SERVER)
    assert (choice.url, choice.start, choice.missing) == (URL, None, None)


def test_a_private_server_is_started_where_none_answers() -> None:
    choice = choose_redis(URL, lambda _: False, SERVER)
    assert (choice.start, choice.missing) == (SERVER, None)


def test_without_a_server_to_start_the_reason_is_one_line() -> None:
    choice = choose_redis(URL, lambda _: False, None)
    assert choice.start is None
    assert choice.missing is not None
    assert "\n" not in choice.missing
    assert URL in choice.missing
    assert "redis-server" in choice.missing


def test_nothing_listening_does_not_answer() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert not redis_answers(f"redis://127.0.0.1:{port}/0")
