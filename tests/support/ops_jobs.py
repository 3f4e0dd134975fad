"""Jobs the operations tests run (CLI, metrics, dashboard)."""

from __future__ import annotations

from pathlib import Path

import pgqueue


@pgqueue.job()
def fail_once(consumer: pgqueue.TaskConsumer, marker: str) -> str:
    """Fail on the first run (creating ``marker``), succeed on every later one."""
    path = Path(marker)
    if not path.exists():
        path.write_text("ran once")
        raise RuntimeError(f"first attempt fails on purpose ({path.name})")
    return "second time lucky"


@pgqueue.job()
def double(consumer: pgqueue.TaskConsumer, n: int) -> int:
    """Return twice ``n``."""
    return 2 * n


@pgqueue.job()
def broken(consumer: pgqueue.TaskConsumer, reason: str = "disk full") -> None:
    """Always raise OSError(reason)."""
    raise OSError(reason)


@pgqueue.job(can_overlap=False)
def single(consumer: pgqueue.TaskConsumer, key: str) -> str:
    """A non-overlapping job: one live task per key."""
    return key
