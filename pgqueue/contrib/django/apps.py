"""The Django application ``pgqueue.contrib.django`` (label ``pgqueue``)."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class PgQueueConfig(AppConfig):
    """Brings the ``pgqueue_worker`` command, and runs pgqueue's own migrations at the end of
    every ``manage.py migrate`` of the queue's database."""

    name = "pgqueue.contrib.django"
    label = "pgqueue"
    verbose_name = "pgqueue"

    def ready(self) -> None:
        post_migrate.connect(upgrade_schema, sender=self)


def upgrade_schema(sender: AppConfig, using: str, **kwargs: Any) -> None:
    """Create or upgrade pgqueue's schema (its Alembic revisions, as ``pgqueue migrate``
    runs them) on the database ``manage.py migrate`` just migrated, when that is the queue's
    (``PGQUEUE['DATABASE']``). pgqueue's revisions keep their own version table, so this is
    idempotent and a newer pgqueue's revisions run at the next ``migrate``. Under Django's
    test runner it runs on the test database.

    :raises ConfigurationError: ``settings.PGQUEUE`` is invalid.
    """
    from ... import _schema as schema
    from . import get_settings

    config = get_settings()
    if using == config.database:
        schema.migrate(config.dsn, config.schema)
