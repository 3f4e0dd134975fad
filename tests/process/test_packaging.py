"""Packaging (issue 17): users' own code type-checks against pgqueue installed with
``pip install -e .`` (the README's install) and from a wheel, and ``pgqueue.examples`` imports.

The editable install must be a plain ``.pth`` path: setuptools' import-hook finder (used when
packages are mapped from other directories) is invisible to mypy, which then reports
"Cannot find implementation or library stub for module named 'pgqueue'".
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

USER_MODULE = """
import pgqueue

#: Seconds per test (subprocesses, real workers): not in the quick loop.
pytestmark = pytest.mark.slow


@pgqueue.job()
def resize(consumer: pgqueue.TaskConsumer, path: str, width: int) -> str:
    return path


def queue(backend: pgqueue.TaskBackend) -> pgqueue.TaskId | None:
    return resize.enqueue(backend, path="cat.png", widht=200)
"""


def _run(args: list[str], cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _mypy(python: Path, cwd: Path) -> str:
    """mypy (this environment's) on the user's module, searching ``python``'s packages."""
    out = _run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental",
         "--python-executable", str(python), "user_code.py"],
        cwd,
    )  # fmt: skip
    return out.stdout + out.stderr


@pytest.mark.timeout(600)
def test_mypy_finds_pgqueue_from_an_editable_install_and_a_wheel(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    user = tmp_path / "user"
    user.mkdir()
    (user / "user_code.py").write_text(USER_MODULE)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--no-deps"]

    out = _run([*pip, "-e", str(ROOT)], tmp_path)
    assert out.returncode == 0, out.stderr
    pth = list((env_dir / "lib").glob("python3*/site-packages/__editable__.pgqueue-*.pth"))
    assert [p.read_text().strip() for p in pth] == [str(ROOT)]
    report = _mypy(python, user)
    assert "Cannot find implementation" not in report, report
    assert 'Unexpected keyword argument "widht"' in report, report

    wheels = tmp_path / "wheels"
    out = _run([str(python), "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels),
                str(ROOT)], tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    [wheel] = wheels.glob("pgqueue-*.whl")
    out = _run([*pip, "--force-reinstall", str(wheel)], tmp_path)
    assert out.returncode == 0, out.stderr
    site = next((env_dir / "lib").glob("python3*/site-packages"))
    assert (site / "pgqueue" / "py.typed").exists()
    assert (site / "pgqueue" / "migrations" / "script.py.mako").exists()
    report = _mypy(python, user)
    assert "Cannot find implementation" not in report, report
    assert 'Unexpected keyword argument "widht"' in report, report


def test_the_shipped_examples_import() -> None:
    """``pgqueue.examples`` used to map the repository's examples/, whose modules import
    ``examples.orders``: importing them from an installed pgqueue failed."""
    for name in ("pgqueue.examples", "pgqueue.examples.stdlib_jobs"):
        importlib.import_module(name)
    shipped = Path(importlib.import_module("pgqueue.examples").__file__ or "").parent
    for path in shipped.glob("*.py"):
        if path.stem != "__init__":
            importlib.import_module(f"pgqueue.examples.{path.stem}")
