"""Run pgqueue's benchmarks side by side with its peers and PostgreSQL itself.

    python benchmarks/run.py                  # embedded throwaway PostgreSQL, every system
    python benchmarks/run.py --dsn postgresql://postgres@localhost/postgres
    python benchmarks/run.py --scale --scale-rows 1000000 --memory-tasks 100000
    python benchmarks/run.py --systems pgqueue --flow-tasks 5000   # what limits cost
    python benchmarks/run.py --systems pgqueue,celery,dramatiq --redis-url redis://localhost/0

Each system gets a fresh database on one server; every figure is the median of ``--repeat``
runs. Peers are measured when installed (``pip install -e '.[bench]'``); Celery and dramatiq
also need a Redis: ``--redis-url`` (flushed before each system), or else a throwaway
``redis-server`` from PATH with the append-only file fsynced every second. See the README,
section performance, for what each column means.
"""

from __future__ import annotations

import platform
import statistics
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import (
    bench_pgbench,
    bench_pgqueue,
    bench_workflow,
    dependency_free,
    flow,
    producers,
    scale,
)
from benchmarks.common import Figures, Row, Server, Sizes, installed, log
from benchmarks.redis_server import RedisServer

console = Console(width=150)

#: (label, figure, system it is compared with, figure of that system, least ratio wanted)
TARGETS = (
    ("drain >= 2.5x pgqueuer-asyncpg (in process)", "drain", "pgqueuer-asyncpg", "drain", 2.5),
    (
        "pgqueue-worker drain (defaults) >= 2x pgqueuer-asyncpg",
        "drain_cli",
        "pgqueuer-asyncpg",
        "drain",
        2.0,
    ),
    ("drain >= 10x procrastinate", "drain", "procrastinate", "drain", 10.0),
    ("drain >= 40% of pgbench lifecycle (100/statement)", "drain", "pgbench", "cycle_100", 0.4),
    ("enqueue one >= pgqueuer-asyncpg", "enqueue_one", "pgqueuer-asyncpg", "enqueue_one", 1.0),
    ("enqueue one >= 70% of pgbench single INSERT", "enqueue_one", "pgbench", "insert_1", 0.7),
    (
        "bulk enqueue >= 1.5x pgqueuer-asyncpg",
        "enqueue_bulk",
        "pgqueuer-asyncpg",
        "enqueue_bulk",
        1.5,
    ),
)
HISTOGRAM_MS = (1, 2, 3, 5, 10, 20, 50, 100, 1000)
#: Systems measured on Redis rather than PostgreSQL.
REDIS_SYSTEMS = ("celery", "dramatiq")


def measure(
    server: Server, redis: RedisServer | None, sizes: Sizes, systems: list[str]
) -> tuple[list[Row], dict[str, float]]:
    rows: dict[str, Row] = {name: Row(name) for name in systems if name != "pgbench"}
    pgbench: dict[str, list[float]] = {}
    for attempt in range(sizes.repeat):
        for name, row in rows.items():
            log(f"run {attempt + 1}/{sizes.repeat}: {name}")
            if name in REDIS_SYSTEMS:
                assert redis is not None
                if name == "celery":
                    from benchmarks import bench_celery

                    bench_celery.run(redis.fresh(), sizes, row)
                else:
                    from benchmarks import bench_dramatiq

                    bench_dramatiq.run(redis.fresh(), sizes, row)
                continue
            dsn = server.fresh_database(f"bench_{name.replace('-', '_')}")
            if name == "pgqueue":
                bench_pgqueue.run(dsn, sizes, row)
            elif name.startswith("pgqueuer-"):
                from benchmarks import bench_pgqueuer

                bench_pgqueuer.run(dsn, name.removeprefix("pgqueuer-"), sizes, row)
            elif name == "procrastinate":
                from benchmarks import bench_procrastinate

                bench_procrastinate.run(dsn, sizes, row)
        bin_dir = server.bin_dir()
        if "pgbench" in systems and bin_dir is None:
            log("pgbench not found beside the server nor on PATH; skipping the pgbench rows")
        elif "pgbench" in systems and bin_dir is not None:
            log(f"run {attempt + 1}/{sizes.repeat}: pgbench")
            figures = bench_pgbench.run(
                bin_dir, server.fresh_database("bench_pgbench"), sizes.pgbench_seconds
            )
            for key, value in figures.items():
                pgbench.setdefault(key, []).append(value)
    medians = {key: sorted(v)[len(v) // 2] for key, v in pgbench.items()}
    return list(rows.values()), medians


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}{unit}" if value < 100 else f"{value:,.0f}{unit}"


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}" if base else "-"


def print_table(rows: list[Row], pgbench: dict[str, float]) -> None:
    table = Table(title="jobs/s (median) and pickup latency (ms)")
    for column in (
        "system",
        "enqueue/s one at a time",
        "enqueue/s bulk",
        "drain/s",
        "drain/s pgqueue-worker",
        "pickup p50 / p99 ms",
    ):
        table.add_column(column, justify="left" if column == "system" else "right")
    for row in rows:
        pickup = f"{_fmt(row.pickup_ms(0.5))} / {_fmt(row.pickup_ms(0.99))}" if row.pickup else "-"
        table.add_row(
            row.system,
            _fmt(row.median("enqueue_one")),
            _fmt(row.median("enqueue_bulk")),
            _fmt(row.median("drain")),
            _fmt(row.median("drain_cli")),
            pickup,
        )
    for scenario in bench_pgbench.SCENARIOS:
        if scenario.key in pgbench:
            value = _fmt(pgbench[scenario.key])
            cells = {"insert_1": (value, "", ""), "insert_100": ("", value, "")}.get(
                scenario.key, ("", "", value)
            )
            table.add_row(scenario.label, *cells, "", "")
    console.print(table)
    for row in rows:
        for note in row.notes:
            console.print(f"  {row.system}: {note}")


def print_histogram(rows: list[Row]) -> None:
    table = Table(title="pickup latency histogram (share of samples)")
    table.add_column("latency")
    measured = [row for row in rows if row.pickup]
    for row in measured:
        table.add_column(row.system, justify="right")
    low = 0.0
    for high in (*HISTOGRAM_MS, float("inf")):
        label = f"{low:g}-{high:g} ms" if high != float("inf") else f">= {low:g} ms"
        cells = []
        for row in measured:
            n = sum(1 for s in row.pickup if low <= s * 1000 < high)
            cells.append(f"{100 * n / len(row.pickup):.0f}%" if n else "")
        table.add_row(label, *cells)
        low = high
    console.print(table)


def print_ratios(rows: list[Row], pgbench: dict[str, float]) -> None:
    by_name = {row.system: row for row in rows}
    mine = by_name.get("pgqueue")
    if mine is None:
        return
    table = Table(title="pgqueue against the targets")
    for column in ("target", "ratio", "met"):
        table.add_column(column)
    for label, figure, other, other_figure, least in TARGETS:
        ours = mine.median(figure)
        theirs = (
            pgbench.get(other_figure)
            if other == "pgbench"
            else (by_name[other].median(other_figure) if other in by_name else None)
        )
        if ours is None or not theirs:
            table.add_row(label, "not measured", "")
            continue
        ratio = ours / theirs
        table.add_row(label, f"{ratio:.2f}", "yes" if ratio >= least else "NO")
    peers = [row for row in rows if row.system != "pgqueue" and row.pickup]
    for q in (0.5, 0.99):
        ours = mine.pickup_ms(q)
        best = min((row.pickup_ms(q) or float("inf") for row in peers), default=None)
        if ours is not None and best is not None and best != float("inf"):
            table.add_row(
                f"pickup p{int(q * 100)} <= best measured peer ({best:.2f} ms)",
                f"{ours:.2f} ms",
                "yes" if ours <= best else "NO",
            )
    console.print(table)


def print_scale(result: scale.ScaleResult) -> None:
    table = Table(
        title=f"scale: {result.rows:,} finished rows ({result.table_size}, "
        f"{result.dead_tuples:,} dead tuples at the end)"
    )
    for column in (
        "figure",
        "empty table",
        "with history",
        "ratio",
        "history + open transaction",
        "ratio ",
    ):
        table.add_column(column, justify="right")
    for label, empty, full, held in (
        ("claims/s", result.claim_empty, result.claim_full, result.claim_held),
        ("pages read per claim", result.pages_empty, result.pages_full, result.pages_held),
        ("drain/s", result.drain_empty, result.drain_full, result.drain_held),
    ):
        table.add_row(
            label, _fmt(empty), _fmt(full), _ratio(full, empty), _fmt(held), _ratio(held, empty)
        )
    console.print(table)


def print_figures(
    title: str, result: Figures, targets: tuple[tuple[str, str, float | None], ...]
) -> None:
    """The table of a scenario measured side by side: each figure against its twin."""
    size = f"{result.tasks:,} tasks per figure, " if result.tasks else ""
    table = Table(title=f"{title}: {size}medians (ratio: the median of the runs' ratios)")
    for column in ("figure", "value", "against", "value ", "ratio", "target", "met"):
        table.add_column(column, justify="left" if column in ("figure", "against") else "right")
    for figure, base, least in targets:
        ours, theirs = result.median(figure), result.median(base)
        ratio = result.ratio(figure, base)
        if ours is None or theirs is None or ratio is None:
            table.add_row(figure, "not measured", base, "", "", "", "")
            continue
        met = "" if least is None else ("yes" if ratio >= least else "NO")
        wanted = "" if least is None else f">= {least:.2f}"
        table.add_row(figure, _fmt(ours), base, _fmt(theirs), f"{ratio:.2f}", wanted, met)
    console.print(table)


def print_trigger_share(result: Figures) -> None:
    """The dependency-free scenario's server time in the workflow triggers, per drained task."""
    spent = result.median("drain, trigger microseconds per task")
    per_task = result.median("drain, microseconds per task")
    if spent is None or not per_task:
        return
    console.print(
        f"server time in the workflow triggers' functions while draining: {spent:.2f} µs per "
        f"task, {100 * spent / per_task:.2f}% of the drain's {per_task:.0f} µs per task"
    )


def print_workflow(result: bench_workflow.WorkflowResult) -> None:
    table = Table(
        title=f"workflow: {result.tasks:,} tasks on {result.workers} pgqueue-worker processes "
        f"(--backlog {result.backlog}), seconds from first queued to last ended"
    )
    for column in ("scenario", "runs (s)", "median s", "ratio", "target"):
        table.add_column(column, justify="left" if column == "scenario" else "right")
    plain = statistics.median(result.plain)
    table.add_row(
        f"{result.tasks:,} plain tasks",
        " ".join(f"{s:.2f}" for s in result.plain),
        f"{plain:.2f}",
        "1.00",
        "",
    )
    ratio = result.ratio() or 0.0
    table.add_row(
        f"group of {result.tasks:,} with a callback",
        " ".join(f"{s:.2f}" for s in result.group),
        f"{statistics.median(result.group):.2f}",
        f"{ratio:.2f}",
        "<= 1.10 " + ("yes" if ratio <= 1.10 else "NO"),
    )
    chain = result.chain_ratio()
    if chain is not None:
        table.add_row(
            f"chain of {result.chain_steps:,} steps: seconds per step",
            " ".join(f"{s:.4f}" for s in result.chain),
            f"{statistics.median(result.chain):.4f}",
            f"{chain:.2f}",
            "<= 1.50 " + ("yes" if chain <= 1.50 else "NO"),
        )
        table.add_row(
            "one task queued to ended, one after another (the per-step floor)",
            " ".join(f"{s:.4f}" for s in result.single),
            f"{statistics.median(result.single):.4f}",
            "1.00",
            "",
        )
    console.print(table)


def print_memory(samples: list[tuple[int, int]]) -> None:
    if not samples:
        return
    table = Table(title=f"worker RSS while draining {samples[-1][0]:,} tasks")
    table.add_column("tasks done", justify="right")
    table.add_column("RSS MiB", justify="right")
    step = max(1, len(samples) // 10)
    for done, rss in [*samples[::step], samples[-1]]:
        table.add_row(f"{done:,}", f"{rss / 1024:.1f}")
    console.print(table)


def main(
    dsn: Annotated[
        str | None,
        typer.Option(
            help="Server to use (a superuser DSN); default: a throwaway embedded PostgreSQL"
        ),
    ] = None,
    systems: Annotated[str, typer.Option(help="Comma-separated systems to measure")] = (
        "pgqueue,pgqueuer-asyncpg,pgqueuer-psycopg,procrastinate,celery,dramatiq,pgbench"
    ),
    redis_url: Annotated[
        str | None,
        typer.Option(
            help="Redis for celery and dramatiq (flushed before each system); default: a "
            "throwaway redis-server from PATH (append-only file, fsync every second)"
        ),
    ] = None,
    repeat: Annotated[int, typer.Option(help="Runs per figure (median shown)")] = 3,
    jobs: Annotated[int, typer.Option(help="Jobs per drain and bulk enqueue")] = 10_000,
    single: Annotated[int, typer.Option(help="Jobs enqueued one at a time per run")] = 2_000,
    samples: Annotated[int, typer.Option(help="Pickup-latency samples per run")] = 100,
    concurrency: Annotated[int, typer.Option(help="Worker concurrency for drains")] = 20,
    pgbench_seconds: Annotated[float, typer.Option(help="Seconds per pgbench scenario")] = 4.0,
    scale_rows: Annotated[
        int, typer.Option(help="Finished rows for the scale scenario (0: skip it)")
    ] = 0,
    memory_tasks: Annotated[
        int, typer.Option(help="Tasks for the worker-memory run (0: skip it)")
    ] = 0,
    flow_tasks: Annotated[
        int,
        typer.Option(help="Tasks per figure of the flow-control scenario (0: skip it)"),
    ] = 0,
    workflow_tasks: Annotated[
        int,
        typer.Option(
            help="Members of the group-with-callback scenario, run against as many plain "
            "tasks (0: skip it)"
        ),
    ] = 10_000,
    producer_seconds: Annotated[
        float,
        typer.Option(
            help="Seconds per figure of the producers scenario (F32: 8 and 32 pgbench clients "
            "and 8 queue_task processes, each against the same INSERT without the enqueue "
            "trigger; 0: skip it)"
        ),
    ] = 4.0,
    dependency_free_tasks: Annotated[
        int,
        typer.Option(
            help="Tasks per figure of the dependency-free scenario: what workflows cost "
            "tasks without dependencies, against a twin database without their triggers "
            "(0: skip it)"
        ),
    ] = 10_000,
    workflow_workers: Annotated[
        int, typer.Option(help="pgqueue-worker processes of the workflow scenario")
    ] = 4,
    chain_steps: Annotated[
        int,
        typer.Option(
            help="Steps of the workflow scenario's chain, timed per step against single "
            "tasks queued one after another (0: skip it)"
        ),
    ] = 1_000,
) -> None:
    """Measure pgqueue, its peers and pgbench on one PostgreSQL; print the table and ratios."""
    sizes = Sizes(
        jobs=jobs,
        single=single,
        batch=min(1_000, jobs),
        concurrency=concurrency,
        samples=samples,
        repeat=repeat,
        pgbench_seconds=pgbench_seconds,
    )
    wanted = [s.strip() for s in systems.split(",") if s.strip()]
    for name, modules in (
        ("pgqueuer", ("pgqueuer",)),
        ("procrastinate", ("procrastinate",)),
        ("celery", ("celery", "redis")),
        ("dramatiq", ("dramatiq", "redis")),
    ):
        missing = [m for m in modules if not installed(m)]
        if any(w.startswith(name) for w in wanted) and missing:
            log(f"{', '.join(missing)} not installed (pip install -e '.[bench]'); skipping {name}")
            wanted = [w for w in wanted if not w.startswith(name)]
    redis: RedisServer | None = None
    if any(w in REDIS_SYSTEMS for w in wanted):
        redis, why = _redis(redis_url)
        if redis is None:
            skipped = ", ".join(w for w in wanted if w in REDIS_SYSTEMS)
            log(f"{why}; skipping {skipped}")
            wanted = [w for w in wanted if w not in REDIS_SYSTEMS]
    server = Server(dsn)
    try:
        info = server.describe()
        console.print(
            f"machine: {platform.machine()}, {_cpus()} CPUs, Python "
            f"{platform.python_version()}; PostgreSQL {info.pop('server_version')} ("
            + ", ".join(f"{k}={v}" for k, v in info.items())
            + ")"
        )
        if redis is not None:
            rinfo = redis.describe()
            console.print(
                f"Redis {rinfo.pop('redis_version')} for celery and dramatiq ("
                + ("--redis-url" if redis_url else "throwaway redis-server")
                + ", "
                + ", ".join(f"{k}={v}" for k, v in rinfo.items())
                + ")"
            )
        console.print(f"sizes: {sizes}")
        rows, pgbench = measure(server, redis, sizes, wanted)
        print_table(rows, pgbench)
        print_histogram(rows)
        print_ratios(rows, pgbench)
        if scale_rows:
            print_scale(scale.run(server.fresh_database("bench_scale"), sizes, scale_rows))
        if memory_tasks:
            print_memory(scale.memory(server.fresh_database("bench_memory"), memory_tasks, sizes))
        if flow_tasks:
            result = flow.run(server.fresh_database("bench_flow"), sizes, flow_tasks)
            print_figures("flow control (claims/s, jobs/s)", result, flow.TARGETS)
        if producer_seconds and "pgqueue" in wanted:
            bin_dir = server.bin_dir()
            if bin_dir is None:
                log("pgbench not found beside the server nor on PATH; skipping producers")
            else:
                result = producers.run(server, bin_dir, producer_seconds, sizes.repeat)
                print_figures(
                    "enqueue from many producers, one task per transaction (tasks/s)",
                    result,
                    producers.TARGETS,
                )
        if dependency_free_tasks and "pgqueue" in wanted:
            result = dependency_free.run(server, sizes, dependency_free_tasks)
            print_figures(
                "workflows' cost to tasks without dependencies (jobs/s)",
                result,
                dependency_free.TARGETS,
            )
            print_trigger_share(result)
        if workflow_tasks and "pgqueue" in wanted:
            print_workflow(
                bench_workflow.run(
                    server.fresh_database("bench_workflow"),
                    workflow_tasks,
                    sizes.repeat,
                    workers=workflow_workers,
                    backlog=concurrency,
                    chain_steps=chain_steps,
                )
            )
    finally:
        server.close()
        if redis is not None:
            redis.close()


def _redis(url: str | None) -> tuple[RedisServer | None, str]:
    """The Redis for celery and dramatiq, or None and why there is none."""
    try:
        redis = RedisServer(url)
    except RuntimeError as exc:
        return None, f"could not start redis-server ({exc})"
    if not redis.available:
        return None, redis.why
    try:
        redis.describe()
    except Exception as exc:  # any failure to reach it: the other systems still run
        redis.close()
        return None, f"Redis at --redis-url not reachable ({type(exc).__name__}: {exc})"
    return redis, ""


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    typer.run(main)
