"""README's table of crawl states says what `crawler.store.status` does."""

import re
from pathlib import Path

import pytest

from crawler.store.status import ANY, TRANSITIONS, State

pytestmark = pytest.mark.unit

README = Path(__file__).parents[2] / "README.md"


def readme_states() -> dict[str, str]:
    """Each state of README's table, with its 'Entered by' cell."""
    text = README.read_text()
    table = text.split("| `state` | Meaning | Entered by | What brings it back |", 1)[1]
    rows = {}
    for line in table.split("\n\n", 1)[0].splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = cells[2]
    return rows


def test_the_readme_names_every_state() -> None:
    assert set(readme_states()) == {state.value for state in State}


def test_the_readme_names_the_transitions_into_each_state_and_where_they_come_from() -> None:
    for state, cell in readme_states().items():
        named = {
            name: "".join(sorted(re.findall(r"`(\w+)`", aside.partition("from ")[2])))
            for name, aside in re.findall(r"`(\w+)`(?: \(([^)]*)\))?", cell)
        }
        expected = {
            name: "" if leaves == ANY or not leaves else "".join(sorted(leaves))
            for name, (leaves, enters) in TRANSITIONS.items()
            if enters == state
        }
        assert named == expected, state
