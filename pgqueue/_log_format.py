"""How pgqueue's programs format log records: one line each, as text or as JSON.

* ``text``: ``time level logger: message``; a record spanning several lines (a library's
  multi-line message, a traceback) is folded onto one line, its line breaks shown as `` | ``,
  so a log shipper never splits a record.
* ``json``: one JSON object per line (python-json-logger): ``time``, ``level``, ``logger``,
  ``message``, ``exc_info`` when there is a traceback, and the fields a record carries in
  ``extra``: for the worker's task records ``task_id``, ``job``, ``queue``, ``attempt``,
  ``worker`` and, when the task ended, ``duration`` (seconds, database clock), see
  :func:`pgqueue._task.task_log_fields`.
"""

from __future__ import annotations

import logging

from pythonjsonlogger.json import JsonFormatter

#: The values of ``--log-format``.
LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
#: What separates the lines of a folded multi-line record.
FOLD = " | "


class OneLineFormatter(logging.Formatter):
    """:class:`logging.Formatter` whose output is always one line (see the module)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as :data:`TEXT_FORMAT`, line breaks folded into :data:`FOLD`."""
        return FOLD.join(line for line in super().format(record).splitlines() if line.strip())


def formatter(log_format: str) -> logging.Formatter:
    """The formatter of ``log_format`` (one of :data:`LOG_FORMATS`); ValueError otherwise."""
    if log_format == "text":
        return OneLineFormatter(TEXT_FORMAT)
    if log_format == "json":
        return JsonFormatter(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",  # ISO 8601, UTC
        )
    raise ValueError(f"unknown log format {log_format!r}")
