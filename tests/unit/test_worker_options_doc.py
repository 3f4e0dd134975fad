"""The operations guide's table of ``pgqueue-worker`` options (docs/guides/operations.md, "one
place that lists them all", issue 18) says what the command really does: every option with an
environment variable has its row, under that variable, with the command's own default."""

from __future__ import annotations

import re

import typer.main

from pgqueue._worker_cli import app
from pgqueue.worker import Worker
from pgqueue.worker.options import DEFAULT_BACKLOG
from tests.support.fixtures import ROOT

ROW = re.compile(r"^\| `(PGQUEUE_\w+)` \| `(--[\w-]+)`[^|]*\| (.+?) \|$", re.MULTILINE)


def _table() -> dict[str, tuple[str, str]]:
    """Variable -> (option, default as written) of the guide's table."""
    page = (ROOT / "docs" / "guides" / "operations.md").read_text()
    return {var: (option, default) for var, option, default in ROW.findall(page)}


def _written(default: object) -> str | None:
    """How the table writes a default: numbers first (units and notes may follow), ``off``
    for a flag, text as it is; None when the option has no default of its own."""
    if isinstance(default, bool):
        return "off" if not default else "on"
    if isinstance(default, (int, float)):
        return f"{default:g}"
    return None if default is None else str(default)


def test_every_worker_option_is_in_the_table_with_its_default() -> None:
    table = _table()
    command = typer.main.get_command(app)
    checked = 0
    for param in command.params:
        if not param.envvar:
            continue
        assert param.envvar in table, f"{param.envvar} ({param.opts[0]}) is not in the table"
        option, written = table[param.envvar]
        assert option == param.opts[0]
        expected = _written(param.default)
        if expected is None:
            continue
        first = written.strip("`").split()[0].strip("`")
        assert first == expected, f"{param.envvar}: the table says {written!r}, the CLI {expected}"
        checked += 1
    assert checked >= 10


def test_the_worker_and_its_command_share_the_default_backlog() -> None:
    command = typer.main.get_command(app)
    (backlog,) = [p for p in command.params if p.name == "backlog"]
    assert backlog.default == DEFAULT_BACKLOG
    assert Worker.__init__.__kwdefaults__["backlog"] == DEFAULT_BACKLOG
