"""Exit statuses of pgqueue's programs (``pgqueue``, ``pgqueue-worker`` and its supervisor).

They live in the core so that the supervisor and the worker read them without loading the
command-line layer (typer, rich).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1  # the command ran and reports a failure (e.g. a task that failed)
EXIT_USAGE = 2  # bad arguments or configuration
EXIT_UNAVAILABLE = 3  # the database cannot be reached
EXIT_SCHEMA = 4  # the schema is missing or outdated
#: A worker ended itself to kill a job thread past its hard time limit
#: (``--hard-time-limits``); its supervisor replaces it at once.
EXIT_REPLACE = 75
#: A supervised worker reached ``--max-tasks`` (a standalone one exits 0): its supervisor
#: replaces it at once, with ``--burst`` too, since work may be left.
EXIT_RECYCLE = 76
