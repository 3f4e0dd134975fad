"""How the ``pgqueue`` subcommands print: rich tables for people, JSON for programs."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from ._ops import jsonable

#: Where tables go; wide enough when stdout is a pipe (rich would otherwise use 80 columns).
console = Console(width=None if Console().is_terminal else 200, highlight=False)

#: State name -> rich style.
STATE_STYLES = {
    "QUEUED": "cyan",
    "STARTED": "blue",
    "RETRY": "yellow",
    "REVOKED": "magenta",
    "FAILURE": "red",
    "SUCCESS": "green",
}

Column = tuple[str, str, Callable[[Any], str]]


def print_json(data: Any) -> None:
    """Print ``data`` (rows, dicts of row values) as indented JSON on stdout."""
    print(json.dumps(jsonable(data), indent=2, sort_keys=True, default=str))


def stamp(value: datetime | None) -> str:
    """A timestamp for people, in UTC to the second: ``2026-11-29 17:45:03``."""
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def state(name: str | None) -> str:
    """A state name coloured by :data:`STATE_STYLES`."""
    if not name:
        return "-"
    return f"[{STATE_STYLES.get(name, 'white')}]{name}[/]"


def text(value: Any) -> str:
    """Any value as table text (None as ``-``); square brackets are escaped for rich."""
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        value = ", ".join(str(v) for v in value)
    return str(value).replace("[", "\\[")


#: The most characters of a long text (an error message) a table cell shows.
BRIEF_CHARS = 120


def brief(value: Any) -> str:
    """Like :func:`text`, cut to the first line and at most :data:`BRIEF_CHARS` characters
    (``…`` marks a cut): a task's error can be megabytes, which a table must not lay out."""
    if value is None:
        return "-"
    whole = str(value).strip()
    line = whole.split("\n", 1)[0]
    if len(line) > BRIEF_CHARS:
        line = line[: BRIEF_CHARS - 1] + "…"
    elif len(line) < len(whole):
        line += " …"
    return text(line)


def table(title: str, rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> Table:
    """A rich table of ``rows``; each column is (heading, key, formatter)."""
    out = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for heading, _key, _fmt in columns:
        out.add_column(heading, overflow="fold")
    for row in rows:
        out.add_row(*(fmt(row.get(key)) for _heading, key, fmt in columns))
    return out
