"""The stand-ins are a package and an extra of their own: the crawler runs without them.

`standins` (the fakes) and what its extra installs (mongomock, mockupdb, fakeredis with Lua) serve
tests, the demo, the benchmarks and the commands that run a stand-in. No production module may
import them, the stand-in commands say which extra to install when it is missing, and the fakes
never import the crawler's own protocol code.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

from workers.cli import STANDINS_EXTRA, STANDINS_MODULES

pytestmark = pytest.mark.unit

ROOT = Path(__file__).parents[2]
PRODUCTION = ("config", "crawler", "workers")
NOT_PRODUCTION = ("workers.demo",)  # `crawler demo` runs on the stand-ins
EXTRA_LINE = f"pip install '{STANDINS_EXTRA}'"
# The module a requirement's own extra brings: fakeredis's `lua` is lupa.
EXTRA_MODULES = {("fakeredis", "lua"): "lupa", ("moto", "server"): "flask"}

# None in sys.modules: importing the module fails as if it were not installed.
BLOCK = """
import sys
BLOCKED = {blocked!r}
sys.modules.update(dict.fromkeys(BLOCKED))
"""

IMPORT_PRODUCTION = """
import importlib, pkgutil
for package in {packages!r}:
    module = importlib.import_module(package)
    for info in pkgutil.walk_packages(module.__path__, package + "."):
        if info.name not in {skipped!r}:
            importlib.import_module(info.name)
loaded = sorted(
    name for name, module in sys.modules.items()
    if module is not None and name.partition(".")[0] in BLOCKED
)
assert not loaded, loaded
print("ok")
"""


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_no_production_module_imports_the_standins_or_their_extra() -> None:
    code = BLOCK.format(blocked=set(STANDINS_MODULES)) + IMPORT_PRODUCTION.format(
        packages=PRODUCTION, skipped=NOT_PRODUCTION
    )
    result = python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_the_cli_helps_without_the_standins() -> None:
    code = BLOCK.format(blocked=set(STANDINS_MODULES)) + (
        "import sys; from workers.cli import main; sys.argv = ['crawler', '--help']; main()"
    )
    result = python(code)
    assert result.returncode == 0, result.stderr
    assert "fake-gmail" in result.stdout


STAND_IN_COMMANDS = {
    "demo": ["demo"],
    "fake-gmail": ["fake-gmail", "--port", "0"],
    "fake-oauth": ["fake-oauth", "--port", "0", "--config", "deploy/dev/oauth.json"],
    "fake-directory": ["fake-directory", "--port", "0", "--config", "deploy/dev/oauth.json"],
    "embedded-mongo": ["embedded-mongo", "--port", "0"],
    "embedded-redis": ["embedded-redis", "--port", "0"],
    "fake-s3": ["fake-s3", "--port", "0"],
}


@pytest.mark.parametrize(
    ("command", "blocked"),
    [
        *((command, "standins") for command in STAND_IN_COMMANDS.values()),
        # The package installed without its extra: what a plain `pip install` gives.
        (STAND_IN_COMMANDS["embedded-mongo"], "mongomock"),
        (STAND_IN_COMMANDS["fake-gmail"], "mockupdb"),
        (STAND_IN_COMMANDS["embedded-redis"], "fakeredis"),
        (STAND_IN_COMMANDS["embedded-redis"], "lupa"),  # fakeredis without its `lua` extra
        (STAND_IN_COMMANDS["demo"], "lupa"),
        (STAND_IN_COMMANDS["fake-s3"], "moto"),
        (STAND_IN_COMMANDS["fake-s3"], "flask"),  # moto without its `server` extra
    ],
    ids=lambda value: value[0] if isinstance(value, list) else value,
)
def test_a_stand_in_command_names_the_extra_it_needs(command: list[str], blocked: str) -> None:
    code = BLOCK.format(blocked={blocked}) + (
        f"from workers.cli import main; sys.argv = ['crawler', *{command!r}]; main()"
    )
    result = python(code)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: crawler {command[0]} runs on the stand-ins")
    assert f"no module named {blocked}" in line
    assert line.endswith(EXTRA_LINE)


def requirement_modules(requirement: str) -> set[str]:
    """The modules a requirement installs: its own, and those of the extras it names."""
    match = re.match(r"\s*([\w.-]+)\s*(?:\[([^\]]*)\])?", requirement)
    assert match is not None, requirement
    name, extras = match[1], [extra.strip() for extra in (match[2] or "").split(",") if extra]
    return {name, *(EXTRA_MODULES[name, extra] for extra in extras)}


def test_requirement_modules_reads_names_and_extras() -> None:
    assert requirement_modules("mongomock>=4.1") == {"mongomock"}
    assert requirement_modules("fakeredis[lua]>=2.26") == {"fakeredis", "lupa"}


def test_the_cli_checks_for_what_the_extra_installs() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extra = project["project"]["optional-dependencies"]["standins"]
    names = set().union(*map(requirement_modules, extra))
    assert set(STANDINS_MODULES) == {"standins", *names}
    assert project["project"]["name"] == STANDINS_EXTRA.partition("[")[0]
    for requirement in project["project"]["dependencies"]:
        assert not any(name in requirement for name in names), requirement


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports (absolute imports; the stand-ins use no relative ones)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            names.add(node.module or "")
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_fakes_never_import_the_crawlers_protocol_code() -> None:
    sources = sorted((ROOT / "standins").rglob("*.py"))
    assert sources
    for path in sources:
        for name in imported_modules(path):
            assert not name.startswith(("crawler.gmail", "crawler.mime")), f"{path}: {name}"
            assert not name.startswith("workers"), f"{path}: {name}"


def test_the_cli_prints_the_installed_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    result = python(
        "import sys; from workers.cli import main; sys.argv = ['crawler', '--version']; main()"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{project['name']} {version(project['name'])}\n"
    assert version(project["name"]) == project["version"]  # reinstall after a version change
