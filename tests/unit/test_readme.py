"""README's configuration table is Settings, field for field, in order."""

from pathlib import Path

import pytest
from pydantic import SecretStr

from config.settings import Settings

pytestmark = pytest.mark.unit

README = (Path(__file__).parents[2] / "README.md").read_text()


def settings_table() -> str:
    """The table README must hold, built from the Settings fields."""
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for field in Settings.model_fields.values():
        default = field.default
        if default is None or (isinstance(default, SecretStr | str) and not str(default)):
            shown = "(unset)"
        elif isinstance(default, SecretStr):
            shown = "(secret)"
        else:
            shown = f"`{default}`"
        rows.append(f"| `{field.validation_alias}` | {shown} | {field.description} |")
    return "\n".join(rows) + "\n"


def test_the_settings_table_matches_settings() -> None:
    table = settings_table()
    assert table in README, f"README's configuration table should read:\n{table}"


def test_the_two_commands_are_stated() -> None:
    assert "make demo" in README
    assert "make test" in README
