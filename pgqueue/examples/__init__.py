"""Example job modules shipped with pgqueue, importable wherever pgqueue is installed.

``pgqueue.examples.stdlib_jobs`` holds the jobs of ``pgqueue demo``; workers load them like
any application's jobs: ``pgqueue-worker --task-paths pgqueue.examples.stdlib_jobs``. The
integration examples (FastAPI, a plain SQLAlchemy script) need extra packages and live in the
repository's ``examples/`` directory, not in the package.
"""
