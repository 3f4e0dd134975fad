"""The dashboard given filters the database cannot take: a 400 page saying why, not a 500."""

from __future__ import annotations

import warnings

import pytest

from pgqueue._dashboard.app import create_app
from pgqueue._db import connect

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


@pytest.mark.parametrize("query", ["job=a%00b", "queue=%00", "job=ok&queue=x%00"])
def test_a_filter_with_a_nul_character_is_a_bad_request(dsn: str, query: str) -> None:
    """PostgreSQL text cannot hold NUL: the query used to fail inside the page (HTTP 500)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with TestClient(create_app(dsn), raise_server_exceptions=False) as client:
            response = client.get(f"/tasks?{query}")
    assert response.status_code == 400
    assert "NUL" in response.text


@pytest.mark.parametrize("sort", ["queued", "queued_asc", "changed"])
def test_a_page_past_the_end_is_empty_in_every_order(dsn: str, sort: str) -> None:
    """A page number whose first row lies past PostgreSQL's largest integer of rows sampled
    (the queue-time orders size a sample by the page's end) is an empty page, not a 500."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with TestClient(create_app(dsn), raise_server_exceptions=False) as client:
            response = client.get(f"/tasks?sort={sort}&page=20000000")
    assert response.status_code == 200


def test_a_read_only_dashboard_draws_the_week_without_writing_the_summary(dsn: str) -> None:
    """Read-only mode refuses every action, and does not roll up the per-minute summary."""
    with connect(dsn) as conn:
        conn.execute(
            "INSERT INTO pgqueue.task (name, status, time_ended) "
            "SELECT 'a', 1, now() - i * interval '1 hour' FROM generate_series(1, 50) AS i"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with TestClient(create_app(dsn, read_only=True)) as client:
            assert client.get("/?range=week").status_code == 200
        with connect(dsn) as conn:
            assert conn.execute("SELECT through FROM pgqueue.ended_rollup").fetchall() == [
                {"through": None}
            ]
        with TestClient(create_app(dsn)) as client:
            assert client.get("/?range=week").status_code == 200
        with connect(dsn) as conn:
            (row,) = conn.execute("SELECT through FROM pgqueue.ended_rollup").fetchall()
    assert row["through"] is not None
