"""The operations guide's "Operating with SQL" queries (docs/guides/operations.md), run as
written on a known set of tasks."""

from __future__ import annotations

import re
from datetime import timedelta

from pgqueue import states
from tests.support.fixtures import ROOT, sql
from tests.support.ops_data import add_task, add_worker, transaction


def operations_sql() -> list[str]:
    """The ```sql blocks of the operations guide's section, in order."""
    page = (ROOT / "docs" / "guides" / "operations.md").read_text()
    section = page.split("<!-- section: operations")[1].split("<!-- /section: operations")[0]
    return re.findall(r"```sql\n(.*?)```", section, flags=re.DOTALL)


def test_every_operations_query_answers_its_question(dsn: str) -> None:
    with transaction(dsn) as conn:
        add_worker(conn, "w-alive", heartbeat=1, lease=30)
        add_worker(conn, "w-lost", heartbeat=300, lease=30)
        add_task(
            conn,
            "resize",
            states.FAILURE,
            queued=5,
            started=4,
            ended=0,
            error="OSError: disk full",
            traceback="Traceback ...\nOSError: disk full\n",
        )
        add_task(conn, "resize", states.SUCCESS, queued=40, started=30, ended=0)  # the slow one
        add_task(conn, "resize", states.SUCCESS, queued=2, started=1, ended=0)
        add_task(conn, "resize", states.QUEUED, queued=90)  # waiting for 90 s
        add_task(conn, "report", states.STARTED, queued=400, started=350, worker="w-lost")
        conn.commit()
    blocks = operations_sql()
    assert len(blocks) == 7
    answers = [sql(dsn, block) for block in blocks]
    assert all(answers), [b for b, a in zip(blocks, answers, strict=True) if not a]
    failed_today, tracebacks, percentiles, slowest, lag, stuck, workers = answers
    assert [(r["name"], r["error"], r["failures"]) for r in failed_today] == [
        ("resize", "OSError: disk full", 1)
    ]
    assert "OSError: disk full" in tracebacks[0]["traceback"]
    assert percentiles[0]["name"] == "resize" and percentiles[0]["finished"] == 3
    assert slowest[0]["run"] == timedelta(seconds=30)
    assert (lag[0]["queue"], lag[0]["due"], lag[0]["running"]) == ("tasks", 1, 1)
    assert lag[0]["lag"] >= timedelta(seconds=90)
    assert [(r["name"], r["reason"]) for r in stuck] == [("report", "worker lost")]
    assert {r["id"]: r["state"] for r in workers} == {"w-alive": "alive", "w-lost": "lost"}
    assert workers[0]["id"] == "w-alive"
