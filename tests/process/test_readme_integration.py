"""The transactional-enqueue example (docs/guides/transactions.md, on the README tour's jobs)
runs as written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.callers import sqlalchemy_url
from tests.support.fixtures import cli_env, sql

from .test_readme_tour import readme_block


@pytest.mark.slow
def test_readme_sqlalchemy_session_example(dsn: str, tmp_path: Path) -> None:
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "__init__.py").write_text("")
    (tmp_path / "myapp" / "jobs.py").write_text(readme_block("file: myapp/jobs.py"))
    (tmp_path / "shop.py").write_text(readme_block("file: shop.py", "docs/guides/transactions.md"))
    done = subprocess.run(
        [sys.executable, "shop.py"],
        cwd=tmp_path,
        env=cli_env(None, PYTHONPATH=str(tmp_path), DATABASE_URL=sqlalchemy_url(dsn)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["committed: QUEUED", "rolled back: None", "uploads: 1"]
    rows = sql(dsn, "SELECT name, kwargs FROM pgqueue.task")
    assert rows == [{"name": "resize", "kwargs": {"path": "dog.png", "width": 64}}]
