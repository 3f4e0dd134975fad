"""The package's shape: imports point one way (core <- client <- worker <- command line,
dashboard, metrics), ``import pgqueue`` stays lean, and the public surface is pinned."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pgqueue

ROOT = Path(__file__).resolve().parents[2]

#: The public names of ``pgqueue``: adding or removing one is an API change, made here on purpose.
PUBLIC_NAMES = [
    "Call",
    "ConfigurationError",
    "ConnectionFailed",
    "DependencyError",
    "EnqueueOptions",
    "ExponentialBackoff",
    "InvalidTaskId",
    "Job",
    "JobArgumentError",
    "JobRegistry",
    "PeriodicJob",
    "PgQueueError",
    "QueuedTasks",
    "Retry",
    "RevokeResult",
    "Revoked",
    "SchemaError",
    "SerializationError",
    "Task",
    "TaskBackend",
    "TaskConsumer",
    "TaskId",
    "TaskNotAvailable",
    "TaskNotFound",
    "TaskTimeout",
    "TimeLimitExceeded",
    "UnknownQueue",
    "UnknownSchedule",
    "Worker",
    "format_time",
    "get_task_backend",
    "job",
    "nice_task_message",
    "periodic_job",
    "register_task_backend",
    "states",
    "task_backends",
]

#: What ``import pgqueue`` must not load: the command line's and the dashboard's frameworks.
FRAMEWORKS = ("typer", "rich", "click", "starlette", "uvicorn", "jinja2")
#: The worker side: the worker package and the services beside it.
WORKER_MODULES = (
    "pgqueue.worker",
    "pgqueue._pruner",
    "pgqueue._rescuer",
    "pgqueue._scheduler",
    "pgqueue._supervisor",
)


def loaded_after(code: str) -> list[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    return list(json.loads(done.stdout.splitlines()[-1]))


def test_import_contracts_hold() -> None:
    """The contracts of ``[tool.importlinter]`` in pyproject.toml: layers, no cycles (also
    through TYPE_CHECKING imports), no framework below the command line."""
    lint = Path(sys.executable).with_name("lint-imports")
    command = str(lint) if lint.exists() else shutil.which("lint-imports")
    assert command, "lint-imports is missing: install the test extra (pip install -e '.[test]')"
    done = subprocess.run(
        [command, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_import_pgqueue_loads_no_framework_and_no_worker_code() -> None:
    loaded = loaded_after("import pgqueue")
    assert [name for name in loaded if name.split(".")[0] in FRAMEWORKS] == []
    assert [name for name in loaded if name.startswith(WORKER_MODULES)] == []
    # what an application that only queues tasks uses is there
    assert {"pgqueue._backend", "pgqueue._jobs", "pgqueue._task"} <= set(loaded)


def test_croniter_loads_with_the_first_cron_schedule() -> None:
    """croniter (with dateutil) is ~9 ms of every worker's start-up: only a cron schedule
    loads it."""
    assert "croniter" not in loaded_after("import pgqueue._worker_cli")
    loaded = loaded_after(
        "import pgqueue\n"
        "@pgqueue.periodic_job(cron='30 9 * * mon-fri', timezone='UTC')\n"
        "def report(consumer): pass\n"
    )
    assert "croniter" in loaded


def test_worker_loads_on_first_use() -> None:
    loaded = loaded_after(
        "import pgqueue\n"
        "assert 'pgqueue.worker' not in sys.modules\n"
        "from pgqueue import Worker\n"
        "from pgqueue.worker import Worker as Defined\n"
        "assert Worker is Defined is pgqueue.Worker\n"
    )
    assert "pgqueue.worker" in loaded
    assert "typer" not in loaded and "rich" not in loaded  # the worker needs no CLI either


def test_public_names_are_pinned() -> None:
    assert pgqueue.__all__ == PUBLIC_NAMES
    for name in PUBLIC_NAMES:
        assert getattr(pgqueue, name) is not None, name
    assert set(PUBLIC_NAMES) <= set(dir(pgqueue))


def test_unknown_name_is_an_attribute_error() -> None:
    try:
        pgqueue.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("pgqueue.NoSuchThing did not raise AttributeError")


def test_version_is_the_installed_distribution_s() -> None:
    assert pgqueue.__version__ == metadata.version("pgqueue")
