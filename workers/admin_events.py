"""`crawler events tail`: the attachment and crawl events of the stream `<prefix>events`
(`crawler.events`), one JSON object a line, with the entry's stream id as `stream_id`.

Without `--group` it reads: the last `--count` events, then with `--follow` every new one. With
`--group G` it consumes as a member of the consumer group G (created at the stream's start when
missing): the events the group has not been given yet, each acknowledged once printed, so
that a next `tail --group G` goes on where this one stopped. Ctrl-C or SIGTERM ends `--follow`.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Annotated, Any

import redis
import typer

from workers.admin_context import RedisUrlOption, operator, operator_command
from workers.admin_watch import sigterm_as_ctrl_c

app = typer.Typer(help="The events of attachments stored and crawls ended.", no_args_is_help=True)

BLOCK_MS = 1000  # how long one read of --follow waits for new events

Entries = list[tuple[bytes, dict[bytes, bytes]]]


@app.command()
@operator_command
def tail(
    count: Annotated[
        int, typer.Option(min=1, help="Events to print (the last ones without --group).")
    ] = 10,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Then wait for new ones.")] = False,
    group: Annotated[
        str | None,
        typer.Option(help="Consume as a member of this consumer group, acknowledging each event."),
    ] = None,
    consumer: Annotated[
        str | None, typer.Option(help="This reader's name in the group (default: host:pid).")
    ] = None,
    redis_url: RedisUrlOption = None,
) -> None:
    """Print events, one JSON object a line: the last ones, or a consumer group's next ones."""
    with operator(redis_url=redis_url) as ops, sigterm_as_ctrl_c():
        stream = ops.keys.events
        reader = (
            GroupReader(
                ops.redis, stream, group, consumer or f"{socket.gethostname()}:{os.getpid()}"
            )
            if group
            else StreamReader(ops.redis, stream)
        )
        try:
            reader.done(_print(reader.first(count)))
            while follow:
                reader.done(_print(reader.next(count)))
        except KeyboardInterrupt:
            return


class StreamReader:
    """Reads the stream by ids: the last events, then those after the last one read."""

    def __init__(self, client: redis.Redis, stream: str) -> None:
        self.client, self.stream = client, stream
        self.last: bytes | str = "$"

    def first(self, count: int) -> Entries:
        newest: Any = self.client.xrevrange(self.stream, count=count)
        entries: Entries = list(reversed(newest))
        if entries:
            self.last = entries[-1][0]
        elif self.client.exists(self.stream):
            self.last = self.client.xinfo_stream(self.stream)["last-generated-id"]
        else:
            self.last = "0-0"
        return entries

    def next(self, count: int) -> Entries:
        entries = _entries(self.client.xread({self.stream: self.last}, count=count, block=BLOCK_MS))
        if entries:
            self.last = entries[-1][0]
        return entries

    def done(self, entries: Entries) -> None:
        """Nothing to acknowledge without a group."""


class GroupReader:
    """Reads as a member of a consumer group, acknowledging what it printed."""

    def __init__(self, client: redis.Redis, stream: str, group: str, consumer: str) -> None:
        self.client, self.stream, self.group, self.consumer = client, stream, group, consumer
        try:
            client.xgroup_create(stream, group, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):  # the group exists: go on where it is
                raise

    def first(self, count: int) -> Entries:
        return self._read(count, block=None)

    def next(self, count: int) -> Entries:
        return self._read(count, block=BLOCK_MS)

    def _read(self, count: int, block: int | None) -> Entries:
        return _entries(
            self.client.xreadgroup(
                self.group, self.consumer, {self.stream: ">"}, count=count, block=block
            )
        )

    def done(self, entries: Entries) -> None:
        """Acknowledge what was printed: the group does not give it again."""
        if entries:
            self.client.xack(self.stream, self.group, *(entry_id for entry_id, _ in entries))


def _entries(answer: Any) -> Entries:
    """The entries of an XREAD or XREADGROUP answer about one stream."""
    return list(answer[0][1]) if answer else []


def _print(entries: Entries) -> Entries:
    """Print each entry as a JSON line."""
    for line in event_lines(entries):
        typer.echo(line)
    return entries


def event_lines(entries: Entries) -> list[str]:
    """Each entry as a JSON object on one line, its stream id first (`stream_id`)."""
    lines = []
    for entry_id, fields in entries:
        event: dict[str, Any] = {"stream_id": entry_id.decode()}
        event.update((name.decode(), value.decode()) for name, value in fields.items())
        lines.append(json.dumps(event, ensure_ascii=False))
    return lines
