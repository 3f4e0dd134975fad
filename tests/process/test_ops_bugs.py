"""Operators' bugs of issue 18: secrets out of ``ps`` and out of reach of an empty token, and
the command lines' answers to bad input and outages."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgqueue import TaskBackend, states
from tests.support.fixtures import bin_path, cli_env, run_cli, sql

from . import test_dashboard
from .test_dashboard import http
from .test_metrics import eventually

start_dashboard = test_dashboard.start_dashboard  # the fixture, shared

JOBS = "tests.support.ops_bugs_jobs"


# --- the dashboard's token ---------------------------------------------------------------


def test_dashboard_refuses_an_empty_or_blank_token_beyond_loopback(dsn: str) -> None:
    for token in ("", "   "):
        done = run_cli(
            ["pgqueue", "dashboard", "--host", "0.0.0.0", "--port", "1", "--token", token],
            dsn,
            timeout=30,
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("error: the dashboard token is empty"), done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_dashboard_refuses_an_empty_token_from_the_environment_or_a_file(
    dsn: str, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    for args, env in [
        (["--token-file", str(empty)], {}),
        ([], {"PGQUEUE_DASHBOARD_TOKEN": " "}),
    ]:
        done = run_cli(
            ["pgqueue", "dashboard", "--host", "0.0.0.0", "--port", "1", *args],
            dsn,
            timeout=30,
            **env,
        )
        assert done.returncode == 2, done.stderr
        assert "the dashboard token is empty" in done.stderr


def test_dashboard_reads_its_token_from_a_file_kept_out_of_ps(
    start_dashboard: Callable[..., str], tmp_path: Path
) -> None:
    secret = "file-secret-7c1d"
    token_file = tmp_path / "token"
    token_file.write_text(secret + "\n")
    url = start_dashboard("--token-file", str(token_file))
    assert http(url + "/")[0] == 401
    basic = base64.b64encode(f"ops:{secret}".encode()).decode()
    assert http(url + "/", headers={"Authorization": f"Basic {basic}"})[0] == 200
    assert http(url + "/", headers={"Authorization": f"Bearer {secret}"})[0] == 200
    assert http(url + "/", headers={"Authorization": "Bearer wrong"})[0] == 401
    both = run_cli(["pgqueue", "dashboard", "--token", "x", "--token-file", str(token_file)], None)
    assert both.returncode == 2 and "--token or --token-file" in both.stderr


# --- the worker's DSN --------------------------------------------------------------------


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def run_one_task(dsn: str, queue: str) -> None:
    with TaskBackend(dsn, task_paths=[JOBS]) as client:
        task_id = client.queue_task("echo", text="hi", queue=queue)
        done = client.wait_for_task(str(task_id), timeout=30)
    assert done is not None and done.status == states.SUCCESS


def test_a_worker_given_dsns_with_a_password_does_not_show_them_in_ps(dsn: str) -> None:
    password = "pw-in-argv-5e2b"
    with_password = make_conninfo(dsn, password=password)
    for extra in ([], ["--processes", "1"]):
        queue = f"argv{len(extra)}"
        proc = subprocess.Popen(
            [bin_path("pgqueue-worker"), "--task-paths", JOBS, "--queues", queue,
             "--dsn", with_password, f"--listen-dsn={with_password}",
             "--read-dsn", with_password, "--log-level", "WARNING", *extra],
            env=cli_env(None),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        try:
            run_one_task(dsn, queue)  # the worker runs, with the DSN it was given
            args = cmdline(proc.pid)
            assert not [arg for arg in args if password in arg], args
            assert not [
                arg for arg in args if arg.startswith(("--dsn", "--listen-dsn", "--read-dsn"))
            ]
            assert f"--queues={queue}" in args or queue in args
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert password not in err


# --- the command lines -------------------------------------------------------------------


def database_of(dsn: str) -> str:
    return str(sql(dsn, "SELECT current_database() AS db")[0]["db"])


def test_wait_during_an_outage_prints_one_clean_error(dsn: str) -> None:
    with TaskBackend(dsn, task_paths=[JOBS]) as client:
        task_id = str(client.queue_task("echo", queue="nobody-consumes"))
    proc = subprocess.Popen(
        [bin_path("pgqueue"), "wait", task_id],
        env=cli_env(dsn),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    database = database_of(dsn)
    admin = make_conninfo(dsn, dbname="postgres")
    mine = (
        f"SELECT pid FROM pg_stat_activity WHERE datname = '{database}' "
        "AND application_name LIKE 'pgqueue%%'"
    )
    try:
        eventually(lambda: bool(sql(admin, mine)))
        sql(admin, f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        sql(admin, f"SELECT pg_terminate_backend(pid) FROM ({mine}) AS t")
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        sql(admin, f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
    assert proc.returncode == 3, err
    assert err.startswith("error: "), err
    assert len(err.strip().splitlines()) == 1, err


def one_error_line(done: Any) -> str:
    """The single ``error: ...`` line a command printed on stderr (asserted)."""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr and "╭" not in done.stderr
    return str(lines[0])


def test_usage_errors_are_one_line_with_a_hint_and_exit_2(dsn: str) -> None:
    for args, says in [
        (["pgqueue", "status", "--nope"], "No such option: --nope"),
        (["pgqueue", "show"], "Missing argument 'ID'"),
        (["pgqueue", "list", "--limit", "many"], "'--limit'"),
        (["pgqueue-worker", "--task-paths", JOBS, "--backlog", "0"], "'--backlog'"),
        (["pgqueue-worker"], "Missing option '--task-paths'"),
    ]:
        done = run_cli(args, dsn)
        assert done.returncode == 2, (args, done.stderr)
        line = one_error_line(done)
        assert (
            says in line
            and f"see `{' '.join(args[: 2 if args[0] == 'pgqueue' else 1])} --help`" in line
        )


def test_an_unknown_log_level_is_a_usage_error(dsn: str) -> None:
    done = run_cli(["pgqueue-worker", "--task-paths", JOBS, "--log-level", "LOUD", "--burst"], dsn)
    assert done.returncode == 2, done.stderr
    assert "'LOUD' is not one of DEBUG, INFO, WARNING, ERROR" in one_error_line(done)
    quiet = run_cli(
        ["pgqueue-worker", "--task-paths", JOBS, "--log-level", "warning", "--burst"], dsn
    )
    assert quiet.returncode == 0 and "INFO" not in quiet.stderr, quiet.stderr


def test_the_worker_reads_its_task_paths_from_the_environment(dsn: str) -> None:
    with TaskBackend(dsn, task_paths=[JOBS]) as client:
        task_id = str(client.queue_task("echo", text="from env"))
    done = run_cli(["pgqueue-worker", "--burst"], dsn, PGQUEUE_TASK_PATHS=JOBS)
    assert done.returncode == 0, done.stderr
    row = sql(dsn, "SELECT status, result FROM pgqueue.task WHERE id = %s", (task_id,))[0]
    assert row["status"] == states.SUCCESS and row["result"] == "from env"


def test_an_unknown_job_is_a_bad_argument(dsn: str) -> None:
    done = run_cli(["pgqueue", "queue", "nosuchjob", "--task-paths", JOBS], dsn)
    assert done.returncode == 2, done.stderr
    assert "'nosuchjob' is not registered" in one_error_line(done)


def test_the_migrate_advice_names_the_schema(dsn: str) -> None:
    done = run_cli(["pgqueue", "status", "--schema", "nosuch"], dsn)
    assert done.returncode == 4, done.stderr
    assert "pgqueue migrate --dsn" in one_error_line(done)
    assert "--schema nosuch`" in done.stderr


def test_the_dashboard_exits_3_when_it_cannot_log_in(dsn: str) -> None:
    wrong = make_conninfo(dsn, user="nobody_here", password="wrong")
    done = run_cli(["pgqueue", "dashboard", "--port", "1"], wrong, timeout=30)
    assert done.returncode == 3, done.stderr
    line = one_error_line(done)
    assert "cannot connect" in line and "wrong" not in line


def test_schedule_periodic_warns_about_ticks_for_queues_it_does_not_consume(dsn: str) -> None:
    done = run_cli(["pgqueue-worker", "--task-paths", JOBS, "--schedule-periodic", "--burst"], dsn)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1, done.stderr
    assert "hourly_elsewhere (queue elsewhere)" in warnings[0]
    assert "claims only from tasks" in warnings[0]
    consumed = run_cli(
        ["pgqueue-worker", "--task-paths", JOBS, "--schedule-periodic", "--burst",
         "--queues", "tasks,elsewhere"],
        dsn,
    )  # fmt: skip
    assert consumed.returncode == 0 and "WARNING" not in consumed.stderr, consumed.stderr


# --- configuration -----------------------------------------------------------------------


def test_every_worker_option_reads_an_environment_variable(dsn: str) -> None:
    with TaskBackend(dsn, task_paths=[JOBS]) as client:
        ids = [str(client.queue_task("echo", text=str(n), queue="envq")) for n in range(3)]
    env = {
        "PGQUEUE_TASK_PATHS": JOBS,
        "PGQUEUE_QUEUES": "envq",
        "PGQUEUE_BURST": "1",
        "PGQUEUE_BACKLOG": "1",
        "PGQUEUE_PROCESSES": "1",
        "PGQUEUE_LOG_LEVEL": "WARNING",
    }
    done = run_cli(["pgqueue-worker"], dsn, **env)
    assert done.returncode == 0, done.stderr
    assert "INFO" not in done.stderr, done.stderr  # the level came from the environment
    rows = sql(dsn, "SELECT status FROM pgqueue.task WHERE id = ANY(%s::uuid[])", (ids,))
    assert [r["status"] for r in rows] == [states.SUCCESS] * 3
    bad = run_cli(["pgqueue-worker"], dsn, **{**env, "PGQUEUE_BACKLOG": "0"})
    assert bad.returncode == 2 and "'--backlog'" in one_error_line(bad)


def test_libpq_environment_and_service_files_work_without_a_dsn(dsn: str, tmp_path: Path) -> None:
    params = conninfo_to_dict(dsn)
    libpq = {"PGHOST": str(params["host"]), "PGDATABASE": str(params["dbname"])}
    libpq["PGUSER"] = str(params.get("user") or "postgres")
    if params.get("port"):
        libpq["PGPORT"] = str(params["port"])
    status = run_cli(["pgqueue", "status", "--json"], None, **libpq)
    assert status.returncode == 0, status.stderr
    services = tmp_path / "pg_service.conf"
    services.write_text(
        "[queue]\n"
        + "".join(f"{k.removeprefix('PG').lower()}={v}\n" for k, v in libpq.items()).replace(
            "database=", "dbname="
        )
    )
    with TaskBackend(dsn, task_paths=[JOBS]) as client:
        task_id = str(client.queue_task("echo", text="via service"))
    worker = run_cli(
        ["pgqueue-worker", "--task-paths", JOBS, "--burst"],
        None,
        PGSERVICEFILE=str(services),
        PGSERVICE="queue",
    )
    assert worker.returncode == 0, worker.stderr
    row = sql(dsn, "SELECT status FROM pgqueue.task WHERE id = %s", (task_id,))[0]
    assert row["status"] == states.SUCCESS
    unset = dict.fromkeys(
        ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE"), ""
    )
    nothing = run_cli(["pgqueue", "status"], None, **unset)
    assert nothing.returncode == 2 and "no database given" in one_error_line(nothing)


# --- logs --------------------------------------------------------------------------------


def queue_three_outcomes(dsn: str, tmp_path: Path) -> dict[str, str]:
    with TaskBackend(dsn, task_paths=[JOBS]) as client:
        return {
            "echo": str(client.queue_task("echo", text="ok")),
            "fails": str(client.queue_task("fails")),
            "flaky": str(client.queue_task("flaky", marker=str(tmp_path / "flaky"))),
        }


def test_json_logs_one_object_per_line_with_the_task_fields(dsn: str, tmp_path: Path) -> None:
    ids = queue_three_outcomes(dsn, tmp_path)
    command = ["pgqueue-worker", "--task-paths", JOBS, "--burst", "--log-format", "json"]
    done = run_cli([*command, "--log-level", "DEBUG"], dsn)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stderr.splitlines()]  # every line is JSON
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    by_task = [r for r in records if "task_id" in r]
    ended = {(r["task_id"], r["level"]) for r in by_task if " STARTED " not in r["message"]}
    assert (ids["echo"], "DEBUG") in ended  # a success: DEBUG (INFO has the summary)
    assert (ids["fails"], "ERROR") in ended  # a failure is an error
    assert (ids["flaky"], "WARNING") in ended  # a retried attempt is a warning
    assert (ids["flaky"], "DEBUG") in ended  # then it succeeded
    # The summary's numbers are fields of its record.
    (summary,) = [r for r in records if "ended" in r]
    assert summary["level"] == "INFO" and summary["logger"] == "pgqueue.worker"
    assert (summary["ended"], summary["SUCCESS"], summary["RETRY"], summary["FAILURE"]) == (
        4,
        2,
        1,
        1,
    )
    assert summary["per_second"] > 0 and summary["mean_run"] >= 0
    started = next(r for r in by_task if r["task_id"] == ids["echo"] and "duration" not in r)
    finished = next(r for r in by_task if r["task_id"] == ids["echo"] and "duration" in r)
    assert "SUCCESS" in finished["message"]
    assert started["job"] == "echo" and started["queue"] == "tasks"
    assert started["attempt"] == 1 and started["worker"]
    assert all(r["duration"] >= 0 for r in by_task if "duration" in r)


def test_text_logs_fold_every_record_onto_one_line(dsn: str, tmp_path: Path) -> None:
    ids = queue_three_outcomes(dsn, tmp_path)
    done = run_cli(["pgqueue-worker", "--task-paths", JOBS, "--burst"], dsn)
    assert done.returncode == 0, done.stderr
    stamp = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ +\S+: ")
    assert all(stamp.match(line) for line in done.stderr.splitlines()), done.stderr
    failed = [
        line for line in done.stderr.splitlines() if ids["fails"][:8] in line and "FAILURE" in line
    ]
    assert len(failed) == 1 and " ERROR " in failed[0], done.stderr
    # A library's Python warning (psycopg_pool warns during a failover) is one line too.
    warned = subprocess.run(
        [sys.executable, "-c", "import warnings; from pgqueue._cli_common import setup_logging; "
         "setup_logging('INFO'); warnings.warn('pool lost\\nreconnecting', RuntimeWarning)"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    lines = warned.stderr.splitlines()
    assert len(lines) == 1 and stamp.match(lines[0]) and "pool lost | reconnecting" in lines[0]
    bad = run_cli(["pgqueue-worker", "--task-paths", JOBS, "--log-format", "xml"], dsn)
    assert bad.returncode == 2 and "'xml' is not one of text, json" in one_error_line(bad)
