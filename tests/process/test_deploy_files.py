"""The Grafana dashboard and Prometheus alert rules in ``deploy/``: they load, and every metric
they query is one a real ``pgqueue-worker`` exposes (scraped from a running worker that ran
tasks, retried one, ticked a periodic job and pruned). ``promtool`` checks the rules when it is
installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from pgqueue import TaskBackend
from tests.support.fixtures import bin_path, cli_env

from .test_metrics import eventually, free_port

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
GRAFANA = DEPLOY / "grafana" / "pgqueue.json"
JOBS = "tests.support.deploy_jobs"

#: A metric name as the files use them (pgqueue's own series).
METRIC = re.compile(r"\bpgqueue_[a-z0-9_]+\b")


def alert_exprs() -> dict[str, str]:
    rules = yaml.safe_load(ALERTS.read_text())
    return {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"]}


def grafana_exprs() -> list[str]:
    def walk(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("expr", "definition") and isinstance(value, str):
                    yield value
                else:
                    yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    return list(walk(json.loads(GRAFANA.read_text())))


def scraped_names(port: int) -> set[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def test_the_alert_rules_cover_what_operators_alert_on() -> None:
    exprs = alert_exprs()
    used = {name for expr in exprs.values() for name in METRIC.findall(expr)}
    for metric in (
        "pgqueue_oldest_due_task_age_seconds",  # backlog age
        "pgqueue_tasks_finished_total",  # failure rate
        "pgqueue_worker_info",  # no live worker
        "pgqueue_notify_queue_usage",
        "pgqueue_workers",  # lost workers
    ):
        assert metric in used, metric
    assert len(grafana_exprs()) >= 10


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_rules() -> None:
    done = subprocess.run(
        ["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_exprs())} rules found" in done.stdout


@pytest.mark.timeout(120)
def test_every_metric_the_files_use_is_exposed_by_a_worker(dsn: str) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [bin_path("pgqueue-worker"), "--task-paths", JOBS, "--metrics-port", str(port),
         "--schedule-periodic", "--prune-after", "1h", "--poll-timeout", "1",
         "--log-level", "WARNING"],
        env=cli_env(dsn),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        with TaskBackend(dsn, task_paths=[JOBS]) as client:
            for task_id in (client.queue_task("succeed"), client.queue_task("always_fail")):
                client.wait_for_task(str(task_id), timeout=60)
            # a due task no worker claims, so the backlog-age series has a queue to report
            client.queue_task("succeed", queue="parked")
        exposed: set[str] = set()

        def everything_used_is_exposed() -> bool:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                exposed.update(scraped_names(port))
            except OSError:
                return False
            return used <= exposed

        used = {n for e in [*alert_exprs().values(), *grafana_exprs()] for n in METRIC.findall(e)}
        try:
            eventually(everything_used_is_exposed, timeout=60)
        except AssertionError:
            raise AssertionError(f"not exposed by a worker: {sorted(used - exposed)}") from None
        assert "pgqueue_tasks_retried_total" in exposed
    finally:
        proc.terminate()
        proc.wait(30)
