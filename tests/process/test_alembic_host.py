"""Alembic both ways: pgqueue's revisions inside a host application's Alembic project, and
``pgqueue migrate --sql`` for teams that migrate by other means.

The host project is built in a temporary directory exactly as the upgrading guide
(docs/guides/upgrading.md) tells users to:
``version_locations`` naming ``pgqueue.migrations:versions``, ``create_schema()`` and
``include_name`` in its env.py, and a revision of its own that ``depends_on`` pgqueue's.
It is driven by the real ``alembic`` command.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pgqueue
from pgqueue._schema import SCHEMA_REVISION
from tests.support.fixtures import bin_path, cli_env, run_cli, sql

ALEMBIC_INI = """\
[alembic]
script_location = %(here)s/migrations
version_locations = %(here)s/migrations/versions pgqueue.migrations:versions
path_separator = space
"""

ENV_PY = """\
import os

import psycopg
import sqlalchemy as sa
from alembic import context

from pgqueue.alembic_host import create_schema, include_name

metadata = sa.MetaData()
sa.Table(
    "orders",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("note", sa.Text, nullable=False),
)

engine = sa.create_engine(
    "postgresql+psycopg://",
    creator=lambda: psycopg.connect(os.environ["HOST_DSN"]),
    poolclass=sa.pool.NullPool,
)
hooks = {} if os.environ.get("HOST_NO_FILTER") else {"include_name": include_name}
with engine.connect() as connection:
    context.configure(
        connection=connection, target_metadata=metadata, include_schemas=True, **hooks
    )
    with context.begin_transaction():
        create_schema()
        context.run_migrations()
"""

HOST_REVISION = '''\
"""orders, and a trigger that queues a pgqueue task for each new order"""
import sqlalchemy as sa
from alembic import op

revision = "host_0001_orders"
down_revision = None
branch_labels = ("app",)
depends_on = "pgqueue_0003_integration"  # for pgqueue.queue_task()


def upgrade():
    op.create_table(
        "orders",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("note", sa.Text, nullable=False),
    )
    op.execute("""
        CREATE FUNCTION order_queued() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pgqueue.queue_task('add', jsonb_build_object('a', NEW.id, 'b', 1));
            RETURN NULL;
        END $$""")
    op.execute(
        "CREATE TRIGGER order_queued AFTER INSERT ON orders "
        "FOR EACH ROW EXECUTE FUNCTION order_queued()"
    )


def downgrade():
    op.execute("DROP TRIGGER order_queued ON orders")
    op.execute("DROP FUNCTION order_queued()")
    op.drop_table("orders")
'''


def make_host_project(root: Path) -> Path:
    (root / "migrations" / "versions").mkdir(parents=True)
    (root / "alembic.ini").write_text(ALEMBIC_INI)
    (root / "migrations" / "env.py").write_text(ENV_PY)
    (root / "migrations" / "versions" / "host_0001_orders.py").write_text(HOST_REVISION)
    return root


def alembic(project: Path, dsn: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [bin_path("alembic"), "-c", str(project / "alembic.ini"), *args],
        env=cli_env(None, HOST_DSN=dsn, **env),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=project,
    )


@pytest.mark.slow
def test_host_alembic_project_upgrades_downgrades_and_autogenerates_nothing(
    empty_dsn: str, tmp_path: Path, start_worker: Any
) -> None:
    project = make_host_project(tmp_path)
    upgraded = alembic(project, empty_dsn, "upgrade", "heads")
    assert upgraded.returncode == 0, upgraded.stderr
    applied = sql(empty_dsn, "SELECT revision FROM pgqueue.schema_version")
    assert SCHEMA_REVISION in {row["revision"] for row in applied}
    heads = sql(empty_dsn, "SELECT version_num FROM public.alembic_version ORDER BY 1")
    assert [row["version_num"] for row in heads] == ["host_0001_orders", SCHEMA_REVISION]

    # autogenerate: nothing to do, although pgqueue's tables are not in the host's metadata
    check = alembic(project, empty_dsn, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "No new upgrade operations detected" in check.stdout
    # ... and it is include_name that keeps it so: without it Alembic would drop them
    unfiltered = alembic(project, empty_dsn, "check", HOST_NO_FILTER="1")
    assert unfiltered.returncode != 0
    proposed = unfiltered.stderr + unfiltered.stdout
    assert "remove_table" in proposed
    assert "Table('task'" in proposed and "schema='pgqueue'" in proposed

    # the host's trigger queues through pgqueue's SQL function; a worker runs the task
    sql(empty_dsn, "INSERT INTO orders (note) VALUES ('first')")
    with pgqueue.TaskBackend(empty_dsn, task_paths=["tests.support.jobs"]) as backend:
        rows = sql(empty_dsn, "SELECT id::text AS id FROM pgqueue.task")
        start_worker(dsn=empty_dsn, poll_timeout=30.0)
        task = backend.wait_for_task(rows[0]["id"], timeout=20)
        assert task.result == 2

    downgraded = alembic(project, empty_dsn, "downgrade", "base")
    assert downgraded.returncode == 0, downgraded.stderr
    left = sql(
        empty_dsn,
        "SELECT count(*) AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'pgqueue' OR (n.nspname = 'public' AND c.relname = 'orders')",
    )
    assert left == [{"n": 0}]
    again = alembic(project, empty_dsn, "upgrade", "heads")
    assert again.returncode == 0, again.stderr


def test_migrate_sql_prints_a_script_that_builds_a_working_schema(empty_dsn: str) -> None:
    """``pgqueue migrate --sql --schema jobs`` output, applied by other means (here psycopg),
    gives a schema pgqueue works with, enqueue from SQL included."""
    printed = run_cli(["pgqueue", "migrate", "--sql", "--schema", "jobs"], None)
    assert printed.returncode == 0, printed.stderr
    script = printed.stdout
    assert 'CREATE SCHEMA IF NOT EXISTS "jobs"' in script
    assert '"pgqueue"' not in script and "%%" not in script
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute(script.encode())
    applied = sql(empty_dsn, "SELECT revision FROM jobs.schema_version")
    assert SCHEMA_REVISION in {row["revision"] for row in applied}
    with pgqueue.TaskBackend(
        empty_dsn, task_paths=["tests.support.jobs"], schema="jobs"
    ) as backend:
        from_python = backend.queue_task("add", a=1, b=2)
        from_sql = sql(empty_dsn, """SELECT jobs.queue_task('add', '{"a": 3, "b": 4}') AS id""")
        tasks = backend.get_tasks([from_python or "", str(from_sql[0]["id"])])
    assert sorted(t.kwargs["a"] for t in tasks) == [1, 3]


def test_migrations_take_the_schema_from_x_argument(empty_dsn: str, tmp_path: Path) -> None:
    """``-x pgqueue_schema=NAME`` puts pgqueue's objects in NAME in a host project too."""
    project = make_host_project(tmp_path)
    (project / "migrations" / "versions" / "host_0001_orders.py").unlink()
    done = alembic(project, empty_dsn, "-x", "pgqueue_schema=queue_x", "upgrade", "pgqueue@head")
    assert done.returncode == 0, done.stderr
    tables = sql(
        empty_dsn,
        "SELECT table_schema, count(*) AS n FROM information_schema.tables "
        "WHERE table_name IN ('task', 'worker') GROUP BY 1",
    )
    assert tables == [{"table_schema": "queue_x", "n": 2}]
    # Only the host's own table (whose revision this project lacks) is proposed.
    check = alembic(project, empty_dsn, "-x", "pgqueue_schema=queue_x", "check")
    proposed = check.stdout + check.stderr
    assert "add_table" in proposed and "Table('orders'" in proposed
    assert "remove_table" not in proposed and "queue_x" not in proposed
