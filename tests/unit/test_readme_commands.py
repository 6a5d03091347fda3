"""README documents the `crawler` command line as it is: every command has an example, every
option is named, and every command README shows exists."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from workers.cli import app

pytestmark = pytest.mark.unit

README = (Path(__file__).parents[2] / "README.md").read_text()
ROOT = get_command(app)
# What every click program has: not the crawler's to document.
GENERIC = {"--help", "--install-completion", "--show-completion"}


def commands(command: Any = ROOT, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    """(`accounts add`, the command) for every command under `command`."""
    subcommands = getattr(command, "commands", None)
    if subcommands is None:
        yield " ".join(path), command
        return
    for name, subcommand in subcommands.items():
        yield from commands(subcommand, (*path, name))


COMMANDS = dict(commands())


def examples() -> Iterator[list[str]]:
    """The words of each `crawler ...` line README shows as code: in a shell block, or in
    backticks, after any variables set before it."""
    code = re.findall(r"```sh\n(.*?)```", README, re.DOTALL)
    lines = [line for block in code for line in block.replace("\\\n", " ").splitlines()]
    lines += re.findall(r"`(crawler [^`]+)`", README)
    for line in lines:
        words = shlex.split(line.partition("#")[0], posix=True) if "'" in line else line.split()
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
            words = words[1:]
        if words[:1] == ["crawler"]:
            yield words[1:]


def command_of(words: list[str]) -> str | None:
    """The command `crawler WORDS` runs, if any: its longest prefix that names one."""
    for length in range(len(words), 0, -1):
        name = " ".join(words[:length])
        if name in COMMANDS:
            return name
    return None


def test_every_command_has_an_example_in_readme() -> None:
    shown = {command_of(words) for words in examples()}

    missing = sorted(set(COMMANDS) - shown)

    assert not missing, f"README shows no `crawler ...` example of: {missing}"


def test_every_command_readme_shows_exists() -> None:
    groups = {name.split()[0] for name in COMMANDS if " " in name}
    unknown = sorted(
        " ".join(words[:2])
        for words in examples()
        if words
        and not words[0].startswith("-")
        and not words[0].isupper()  # a placeholder: `crawler COMMAND --help`
        and command_of(words) is None
        # a group with a made-up subcommand, or a command with no group at all
        and (words[0] in groups or words[0] not in COMMANDS)
    )

    assert not unknown, f"README shows commands that do not exist: {unknown}"


def named(option: str) -> bool:
    return re.search(rf"{re.escape(option)}(?![\w-])", README) is not None


def test_every_option_is_named_in_readme() -> None:
    # A flag with two forms (`--prune/--no-prune`) is documented by the one that acts.
    missing = sorted(
        f"{name} {'/'.join(options)}"
        for name, command in COMMANDS.items()
        for parameter in command.params
        if (options := [o for o in (*parameter.opts, *parameter.secondary_opts) if o[:2] == "--"])
        and not set(options) & GENERIC
        and not any(named(option) for option in options)
    )

    assert not missing, f"README never names these options: {missing}"


def test_the_version_and_help_are_documented_and_help_lists_every_command() -> None:
    shown = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})

    assert "`crawler --help`" in README and "`crawler --version`" in README
    assert shown.exit_code == 0
    for name in {name.split()[0] for name in COMMANDS}:
        assert re.search(rf"│ {re.escape(name)} ", shown.stdout), name
