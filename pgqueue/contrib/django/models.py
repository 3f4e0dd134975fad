"""No Django models: pgqueue's tables are its own (Alembic revisions, ``pgqueue migrate``).

The module exists because Django sends ``post_migrate`` only to applications that have a
models module, and that signal is what creates and upgrades pgqueue's schema (see
:mod:`pgqueue.contrib.django.apps`).
"""
