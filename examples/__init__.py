"""Example job modules, shipped in the wheel as ``pgqueue.examples``.

Workers load them like any application's jobs:
``pgqueue-worker --task-paths pgqueue.examples.stdlib_jobs``.
"""
