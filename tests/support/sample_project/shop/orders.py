"""The shop's code that queues tasks."""

from __future__ import annotations

import pgqueue

from .jobs import send_receipt


def place_order(backend: pgqueue.TaskBackend, order_id: int, email: str) -> pgqueue.TaskId | None:
    """Record an order (elided) and queue its receipt."""
    return send_receipt.enqueue(backend, order_id=order_id, email=email)
