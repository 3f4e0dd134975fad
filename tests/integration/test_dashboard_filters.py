"""The dashboard given filters the database cannot take: a 400 page saying why, not a 500."""

from __future__ import annotations

import warnings

import pytest

from pgqueue._dashboard.app import create_app

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
