"""Retry policy arithmetic, with no database: backoff delays and the retry decision."""

from __future__ import annotations

import pytest

from pgqueue._retry import ExponentialBackoff, Retry, TimeLimitExceeded, decide


def test_exponential_backoff_grows_caps_and_jitters() -> None:
    backoff = ExponentialBackoff(base=1, factor=2, cap=5, jitter=0.5)
    for attempt, full in [(1, 1), (2, 2), (3, 4), (4, 5), (10, 5)]:
        delays = {backoff(attempt) for _ in range(50)}
        assert all(full / 2 <= d <= full for d in delays)
        assert len(delays) > 1  # jittered
    assert ExponentialBackoff(base=3, jitter=0)(1) == 3
    with pytest.raises(ValueError):
        ExponentialBackoff(jitter=2)


def test_decide_follows_retry_on_and_the_cap() -> None:
    def rule(exc: BaseException, attempt: int) -> float | None:
        return decide(
            exc, attempt=attempt, max_retries=2, retry_on=(OSError,), backoff=lambda a: a * 10
        ).delay

    assert rule(OSError("x"), 1) == 10
    assert rule(OSError("x"), 2) == 20
    assert rule(OSError("x"), 3) is None  # third attempt was the last
    assert rule(ValueError("x"), 1) is None  # not retried
    assert rule(Retry(countdown=0.5), 1) == 0.5  # asked for, whatever retry_on says
    assert rule(TimeLimitExceeded(), 1) == 10
