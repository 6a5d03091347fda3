"""What operator commands print: times for people, plain-text tables, store hosts."""

import pytest
from rich.console import Console

from workers.admin_output import duration, print_json, printable, relative, table, timestamp
from workers.connections import where

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (45.9, "45s"), (252, "4m 12s"), (7500, "2h 5m"), (3 * 86400 + 4 * 3600, "3d 4h")],
)
def test_durations_are_coarse(seconds: float, text: str) -> None:
    assert duration(seconds) == duration(-seconds) == text


def test_times_read_as_utc_and_relative_to_now() -> None:
    assert timestamp(1_700_000_000) == "2023-11-14 22:13:20 UTC"
    assert relative(1_000_300, now=1_000_000) == "in 5m 0s"
    assert relative(1_000_000, now=1_000_060) == "1m 0s ago"
    assert timestamp(None) == relative("soon", now=0) == "-"


def test_stored_text_in_a_table_is_never_markup() -> None:
    console = Console(width=80, record=True)
    console.print(table("T", ["name"], [["[bold]x[/bold] [link=file:///etc]y"], [None]]))
    text = console.export_text()
    assert "[bold]x[/bold] [link=file:///etc]y" in text and "-" in text


def test_stored_text_never_reaches_the_terminal_as_control_characters() -> None:
    assert printable("a\x1b[2Jb\x9b31mc\x00d\te") == "a\\x1b[2Jb\\x9b31mc\\x00d\\x09e"
    assert printable("Zoë 文件.pdf") == "Zoë 文件.pdf"


def test_json_is_ascii(capsys: pytest.CaptureFixture[str]) -> None:
    print_json({"name": "\x1b[2Jë\x9b"})
    assert capsys.readouterr().out == '{\n  "name": "\\u001b[2J\\u00eb\\u009b"\n}\n'


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("mongodb://user:secret@db1:27017,db2:27017/crawler?tls=true", "db1:27017,db2:27017"),
        ("redis://:secret@127.0.0.1:6379/0", "127.0.0.1:6379"),
        ("unix:///run/redis.sock", "/run/redis.sock"),
    ],
)
def test_store_hosts_are_shown_without_credentials(url: str, host: str) -> None:
    assert where(url) == host
