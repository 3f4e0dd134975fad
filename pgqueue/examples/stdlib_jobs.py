"""A real job: read one Python source file and describe it (what ``pgqueue demo`` runs).

Queue one task per file, then run workers on it::

    backend = pgqueue.TaskBackend(dsn, task_paths=["pgqueue.examples.stdlib_jobs"])
    backend.queue_task("inspect_source", path="/usr/lib/python3.12/json/decoder.py")

    $ pgqueue-worker --task-paths pgqueue.examples.stdlib_jobs --burst

A file Python cannot parse (a syntax error, an unknown or wrong encoding declaration) makes
the task end FAILURE with the ``SyntaxError`` naming the file and line in ``task.error``. A
file that cannot be read ends FAILURE with the ``OSError``.

The result is JSON, so it can be queried in SQL, e.g. the ten longest modules::

    SELECT kwargs->>'path', (result->>'lines')::int AS lines
    FROM pgqueue.task WHERE name = 'inspect_source' AND status = 1
    ORDER BY lines DESC LIMIT 10;
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path
from typing import Any

import pgqueue

#: ``ast`` node type -> the ``kind`` reported for a top-level definition.
DEFINITION_KINDS: dict[type[ast.stmt], str] = {
    ast.ClassDef: "class",
    ast.FunctionDef: "function",
    ast.AsyncFunctionDef: "async function",
}


def count_lines(data: bytes) -> int:
    """Lines in ``data``, counting a last line without a newline (``b"a\\nb"`` has 2)."""
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def top_level_definitions(tree: ast.Module) -> list[dict[str, Any]]:
    """The classes and (async) functions defined at the top of a module, in source order,
    as ``{"kind": "class" | "function" | "async function", "name": str, "line": int}``."""
    return [
        {"kind": DEFINITION_KINDS[type(node)], "name": node.name, "line": node.lineno}
        for node in tree.body
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
    ]


@pgqueue.job()
def inspect_source(consumer: pgqueue.TaskConsumer, path: str) -> dict[str, Any]:
    """Describe one Python source file: its size, lines, sha256 and top-level definitions.

    :param path: the file, absolute or relative to the worker's directory.
    :return: ``{"path", "bytes", "lines", "sha256" (hex), "definitions" (see
        :func:`top_level_definitions`)}``.
    :raises SyntaxError: Python cannot parse the file; the message names the file and line.
        The bytes are parsed as Python reads them, honouring a PEP 263 encoding declaration.
    :raises OSError: the file cannot be read.
    """
    data = Path(path).read_bytes()
    tree = ast.parse(data, filename=path)
    return {
        "path": path,
        "bytes": len(data),
        "lines": count_lines(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "definitions": top_level_definitions(tree),
    }
