"""Set Django up in a worker process before its jobs are imported.

``manage.py pgqueue_worker`` puts this module first in the worker's task paths, so every
worker process (each child of ``--processes`` too, started as ``python -m
pgqueue._worker_cli``) has the project's settings and apps loaded before the jobs, which may use
the ORM. It defines no job.
"""

from __future__ import annotations

import django
from django.apps import apps

if not apps.ready:
    django.setup()
