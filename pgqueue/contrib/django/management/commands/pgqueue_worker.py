"""``manage.py pgqueue_worker [pgqueue-worker options]``: a worker with the project loaded.

The DSN, task paths, queue and schema come from ``settings.PGQUEUE`` (passed to the worker in
its ``PGQUEUE_*`` environment variables, which its ``--processes`` children inherit); every
other ``pgqueue-worker`` option is given as usual, e.g. ``manage.py pgqueue_worker --burst
--backlog 8``. Exit statuses are ``pgqueue-worker``'s. Django's ``--settings`` and
``--pythonpath``, which ``manage.py`` applies before any command runs, are not passed on.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from pgqueue._errors import ConfigurationError
from pgqueue.contrib.django import get_settings

#: Options that settings.PGQUEUE provides; given on the command line they would disagree.
FROM_SETTINGS = ("--dsn", "--task-paths", "--name", "--schema")
#: manage.py's own options that take a value, applied by manage.py before the command runs.
DJANGO_OPTIONS = ("--settings", "--pythonpath")


def worker_arguments(argv: list[str]) -> list[str]:
    """The ``pgqueue-worker`` arguments in ``manage.py pgqueue_worker ...``'s ``argv``:
    everything after the command's name but Django's :data:`DJANGO_OPTIONS`."""
    args: list[str] = []
    rest = iter(argv[2:])
    for arg in rest:
        if arg in DJANGO_OPTIONS:
            next(rest, None)
        elif arg.split("=", 1)[0] not in DJANGO_OPTIONS:
            args.append(arg)
    return args


class Command(BaseCommand):
    help = "Run a pgqueue worker on the queue configured in settings.PGQUEUE."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "worker_args",
            nargs=argparse.REMAINDER,
            help="pgqueue-worker options (see pgqueue-worker --help), e.g. --burst",
        )

    worker_args: list[str] | None = None

    def run_from_argv(self, argv: list[str]) -> None:
        """Hand every option to the worker: Django's parser would refuse ``--burst`` and the
        others it does not know."""
        if "-h" in argv[2:] or "--help" in argv[2:]:
            super().run_from_argv(argv)
            return
        self.worker_args = worker_arguments(argv)
        super().run_from_argv(argv[:2])

    def handle(self, *args: Any, **options: Any) -> None:
        worker_args = self.worker_args if self.worker_args is not None else options["worker_args"]
        given = [arg for arg in worker_args if arg.split("=", 1)[0] in FROM_SETTINGS]
        if given:
            raise CommandError(f"{given[0].split('=', 1)[0]} comes from settings.PGQUEUE")
        try:
            config = get_settings()
        except ConfigurationError as exc:
            raise CommandError(str(exc)) from None
        os.environ.update(
            PGQUEUE_DSN=config.dsn,
            PGQUEUE_TASK_PATHS=",".join(["pgqueue.contrib.django.setup", *config.task_paths]),
            PGQUEUE_NAME=config.queue,
            PGQUEUE_SCHEMA=config.schema,
        )
        from pgqueue._worker_cli import main

        sys.argv = ["pgqueue-worker", *worker_args]
        main()
