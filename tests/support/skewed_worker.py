"""``python -m tests.support.skewed_worker ARGS``: ``pgqueue-worker ARGS`` on a host whose wall
clock is ``$SKEW_SECONDS`` off (F17): ``time.time``, ``time.time_ns`` and ``datetime.now`` (and
``utcnow``, ``today``) are shifted before pgqueue is imported. The monotonic clock, which
measures intervals, is left alone, as a host's clock skew leaves it."""

from __future__ import annotations

import datetime as dt
import os
import time

OFFSET = float(os.environ["SKEW_SECONDS"])
_time, _time_ns = time.time, time.time_ns


class SkewedDatetime(dt.datetime):
    """``datetime`` whose constructors from the host clock are shifted by OFFSET."""

    @classmethod
    def now(cls, tz: dt.tzinfo | None = None) -> SkewedDatetime:
        return super().now(tz) + dt.timedelta(seconds=OFFSET)

    @classmethod
    def utcnow(cls) -> SkewedDatetime:
        return super().utcnow() + dt.timedelta(seconds=OFFSET)

    @classmethod
    def today(cls) -> SkewedDatetime:
        return cls.now()


time.time = lambda: _time() + OFFSET
time.time_ns = lambda: _time_ns() + int(OFFSET * 1e9)
dt.datetime = SkewedDatetime  # type: ignore[misc]

if __name__ == "__main__":
    from pgqueue._worker_cli import main

    main()
