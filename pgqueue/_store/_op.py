"""What every operation of the store is: a statement rendered for one schema, its bound
parameters and the decoder of its rows (:class:`Op`), and the schema-bound base that renders
each statement once (:class:`StoreBase`).

Statements use ``%(name)s`` parameters (bound by the driver, never formatted in) and cast each
one explicitly, so they run unchanged on psycopg, psycopg2 or SQLAlchemy's ``text()``. ``{s}``
stands for the quoted schema and is filled in once per :class:`StoreBase` and statement.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Generic, NamedTuple, TypeVar

import psycopg
from psycopg.rows import RowFactory, dict_row
from psycopg.sql import Identifier

R = TypeVar("R")

#: A parameter of a statement: ``%(name)s``.
PARAM = re.compile(r"%\((\w+)\)s")

#: Decodes the rows a statement returned (dicts, or what the op's row factory makes) and its
#: row count into the op's result.
Decoder = Callable[[list[Any], int], R]


def quote_ident(name: str) -> str:
    """Quote an SQL identifier (``tasks`` -> ``"tasks"``)."""
    return Identifier(name).as_string(None)


class Op(NamedTuple, Generic[R]):
    """One database operation ready to run: ``sql`` (rendered for a schema), ``params`` (the
    values of its ``%(name)s`` parameters) and ``decode`` (rows, rowcount -> the result).

    The same op runs on a sync psycopg connection (:meth:`run`), or on any connection a caller
    gives, sync or async (:mod:`pgqueue._connections`); ``row_factory``, when set, is the
    psycopg row factory :meth:`run` reads rows with (the claim's ``task_row``).
    """

    sql: str
    params: Mapping[str, Any]
    decode: Decoder[R]
    row_factory: RowFactory[Any] | None = None

    def run(self, conn: psycopg.Connection[Any]) -> R:
        """Execute on ``conn`` (a sync psycopg connection, in whatever transaction it has
        open) and return the decoded result. Raises the driver's ``psycopg.Error``.

        The statement goes in PostgreSQL's own form (:func:`native`, through psycopg's
        ``RawCursor``), so psycopg does not parse its ``%(name)s`` parameters at every
        execution: it caches that parse only for statements of up to 4,096 characters, and
        the flow-controlled claims are longer."""
        query, names = native(self.sql)
        with psycopg.RawCursor(conn, row_factory=self.row_factory or dict_row) as cur:
            cur.execute(query, [self.params[name] for name in names])
            return self.decode(cur.fetchall() if returns_rows(cur) else [], cur.rowcount)


#: ``%(name)s`` parameters and ``%%`` (a literal ``%``), as psycopg reads them.
_PLACEHOLDER = re.compile(r"%%|%\((\w+)\)s")

#: Each statement :func:`native` converted, by its text.
_NATIVE: dict[str, tuple[str, tuple[str, ...]]] = {}


def native(sql: str) -> tuple[str, tuple[str, ...]]:
    """``sql`` with its ``%(name)s`` parameters numbered ``$1``, ``$2``... (one number per
    name, in order of first use) and ``%%`` made ``%``, and the names in that order;
    converted once per statement text (the store renders each statement once)."""
    found = _NATIVE.get(sql)
    if found is None:
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            name = match.group(1)
            if name is None:
                return "%"
            if name not in names:
                names.append(name)
            return f"${names.index(name) + 1}"

        found = _NATIVE[sql] = (_PLACEHOLDER.sub(number, sql), tuple(names))
    return found


def returns_rows(cur: psycopg.Cursor[Any] | psycopg.AsyncCursor[Any]) -> bool:
    """Whether the statement ``cur`` just ran has result columns (its rows may be none: a
    ``RETURNING`` that matched nothing), so that ``fetchall`` may be called. The truth of
    ``cur.description``, read from the result's field count: ``description`` builds a column
    object per column on every call (a claim returns two dozen)."""
    result = cur.pgresult
    return result is not None and result.nfields > 0


class StoreBase:
    """Binds statements to the schema ``schema`` (a name, quoted here)."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self._quoted = quote_ident(schema)
        self._rendered: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"<Store {self.schema}>"

    def _sql(self, template: str) -> str:
        """``template`` with the schema filled in and :func:`compact`, rendered on first use
        only."""
        rendered = self._rendered.get(template)
        if rendered is None:
            rendered = self._rendered[template] = compact(template.replace("{s}", self._quoted))
        return rendered


#: The pieces :func:`compact` tells apart: quoted strings and identifiers (kept as they are),
#: comments and runs of white space (each made one space), anything else.
_SQL_PIECES = re.compile(r"""('(?:[^']|'')*'|"(?:[^"]|"")*")|(--[^\n]*|\s+)|([^'"\s-]+|-)""")


def compact(sql: str) -> str:
    """``sql`` without its comments and with each run of white space outside quotes made one
    space. The statements are written to be read, with comments; what is sent is shorter
    (the claim of a worker of several jobs: 4,647 characters as written, 3,667 compacted):
    sent whole at every execution where nothing is prepared (through a transaction pooler),
    and short enough for psycopg's cache of parsed statements (``MAX_CACHED_STATEMENT_LENGTH``,
    4,096) on the paths that hand ``sql`` to psycopg or SQLAlchemy as written (a caller's
    async or SQLAlchemy connection; :meth:`Op.run` sends :func:`native` text). Raises
    ValueError for a quote left open."""
    parts: list[str] = []
    end = 0
    for piece in _SQL_PIECES.finditer(sql):
        if piece.start() != end:  # only a quote left open gets here: nothing matches it
            raise ValueError(f"unbalanced quote in SQL at {end}: {sql[end : end + 40]!r}")
        end = piece.end()
        quoted, blank, other = piece.groups()
        if blank:
            if parts and parts[-1] != " ":
                parts.append(" ")
        else:
            parts.append(quoted or other)
    if end != len(sql):
        raise ValueError(f"unbalanced quote in SQL at {end}: {sql[end : end + 40]!r}")
    return "".join(parts).strip()


# -- decoders shared by the areas ------------------------------------------------------------


def rows(found: list[Any], count: int) -> list[Any]:
    """Every row as it came."""
    return found


def first(found: list[Any], count: int) -> Any:
    """The first row, or None when there is none."""
    return found[0] if found else None


def any_row(found: list[Any], count: int) -> bool:
    """Whether the statement returned a row."""
    return bool(found)


def rowcount(found: list[Any], count: int) -> int:
    """How many rows the statement changed."""
    return count


def nothing(found: list[Any], count: int) -> None:
    """No result."""
    return None
