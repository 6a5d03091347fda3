"""`crawler events tail`: the last events, a consumer group's next ones, and --follow until
SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import redis

from crawler.events import EventStream
from tests.integration.test_cli_watch import DEADLINE, Output
from tests.plugins.admin import ENTRY, Admin
from workers.admin_events import StreamReader, event_lines

pytestmark = pytest.mark.integration


def add(admin: Admin, server: redis.Redis, *names: str) -> None:
    EventStream(server, admin.keys, maxlen=1000).publish(
        {"type": "attachment", "filename": name} for name in names
    )


def printed(output: str) -> list[str]:
    """The file names of the events printed, one JSON object a line."""
    events = [json.loads(line) for line in output.splitlines()]
    assert all(event["stream_id"] for event in events)
    return [event["filename"] for event in events]


def test_tail_prints_the_last_events_as_json_lines(admin: Admin, redis_server: redis.Redis) -> None:
    add(admin, redis_server, *(f"f{n}.pdf" for n in range(15)))

    result = admin.run("events tail")

    assert result.exit_code == 0, result.output
    assert printed(result.output) == [f"f{n}.pdf" for n in range(5, 15)]
    assert printed(admin.run("events tail --count 2").output) == ["f13.pdf", "f14.pdf"]


def test_tail_of_no_stream_prints_nothing(admin: Admin) -> None:
    result = admin.run("events tail")
    assert (result.exit_code, result.output) == (0, "")


def test_a_group_gets_each_event_once_and_goes_on_where_it_stopped(
    admin: Admin, redis_server: redis.Redis
) -> None:
    add(admin, redis_server, "a.pdf", "b.pdf", "c.pdf")

    assert printed(admin.run("events tail --group indexer --count 2").output) == ["a.pdf", "b.pdf"]
    assert printed(admin.run("events tail --group indexer").output) == ["c.pdf"]
    assert admin.run("events tail --group indexer").output == ""
    # Another group reads the stream from its start; the first group acknowledged everything.
    assert printed(admin.run("events tail --group scanner").output) == ["a.pdf", "b.pdf", "c.pdf"]
    assert redis_server.xpending(admin.keys.events, "indexer")["pending"] == 0


def test_follow_prints_new_events_until_sigterm(admin: Admin, redis_server: redis.Redis) -> None:
    add(admin, redis_server, "old.pdf")
    with subprocess.Popen(
        [sys.executable, "-c", ENTRY, "events", "tail", "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ | admin.env,
        cwd=admin.cwd,
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        output = Output(process.stdout)
        output.wait_for(lambda text: "old.pdf" in text)
        add(admin, redis_server, "new.pdf")
        output.wait_for(lambda text: "new.pdf" in text)
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=DEADLINE)
        output.finish()
        assert (code, process.stderr.read()) == (0, b"")
    assert printed(output.text) == ["old.pdf", "new.pdf"]


def test_a_reader_of_a_stream_not_yet_made_gets_its_first_events(
    admin: Admin, redis_server: redis.Redis
) -> None:
    reader = StreamReader(redis_server, admin.keys.events)
    assert reader.first(10) == []  # no stream yet: --follow waits for one
    assert reader.next(10) == []  # a blocking read that ends empty

    add(admin, redis_server, "first.pdf", "second.pdf")

    assert printed("\n".join(event_lines(reader.next(10)))) == ["first.pdf", "second.pdf"]
    assert reader.next(10) == []
