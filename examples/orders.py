"""The shop of the integration examples: an ``orders`` table (SQLAlchemy) and the job that
confirms an order once it is committed.

Run a worker for it with::

    pgqueue-worker --task-paths examples.orders --dsn "$DATABASE_URL"
"""

from __future__ import annotations

from sqlalchemy import CheckConstraint, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import pgqueue


class Base(DeclarativeBase):
    """The application's own metadata (pgqueue's tables are not in it)."""


class Order(Base):
    """An order: written by the application, confirmed by the ``confirm_order`` task."""

    __tablename__ = "orders"
    __table_args__ = (CheckConstraint("amount_cents > 0", name="orders_amount_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    item: Mapped[str] = mapped_column(String(200))
    amount_cents: Mapped[int]
    status: Mapped[str] = mapped_column(String(20), default="new")


@pgqueue.job(queue="orders", priority=10, max_retries=3)
def confirm_order(consumer: pgqueue.TaskConsumer, order_id: int) -> str:
    """Mark an order confirmed (stand-in for e-mail, invoicing, ...)."""
    with consumer.backend.connection() as conn:
        conn.execute("UPDATE orders SET status = 'confirmed' WHERE id = %s", (order_id,))
    return f"order {order_id} confirmed"
