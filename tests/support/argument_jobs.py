"""Jobs of the breaker tests (``tests/test_breaker_*.py``)."""

from __future__ import annotations

from typing import Any

import pgqueue


@pgqueue.job()
def echo_kwargs(consumer: pgqueue.TaskConsumer, **kwargs: Any) -> dict[str, Any]:
    """Return the arguments the job was given."""
    return kwargs
