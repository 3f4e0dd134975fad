"""Transactional enqueue with a plain SQLAlchemy ``Session``.

The order row and its ``confirm_order`` task are written in one transaction: both or neither.
The second order breaks a CHECK constraint after its task was queued; the rollback takes the
task with it, so no worker ever sees a task for an order that does not exist.

    DATABASE_URL=postgresql+psycopg://user@localhost/shop python -m examples.sqlalchemy_script
"""

from __future__ import annotations

import os

from sqlalchemy import create_engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import pgqueue
from examples.orders import Base, Order


def place_order(
    session: Session, backend: pgqueue.TaskBackend, item: str, amount_cents: int
) -> tuple[int, str | None]:
    """Write an order and queue its confirmation in the session's transaction."""
    order = Order(item=item, amount_cents=amount_cents)
    session.add(order)
    session.flush()  # the order gets its id; nothing is committed yet
    task_id = backend.queue_task("confirm_order", order_id=order.id, connection=session)
    return order.id, task_id


def main(url: str) -> None:
    """Place one good order and one bad one; print what exists afterwards."""
    engine = create_engine(url)
    Base.metadata.create_all(engine)
    with pgqueue.TaskBackend(url, task_paths=["examples.orders"]) as backend:
        with Session(engine) as session, session.begin():
            order_id, task_id = place_order(session, backend, "teapot", 2500)
        print(f"committed order {order_id} with task {task_id}")

        try:
            with Session(engine) as session, session.begin():
                order_id, task_id = place_order(session, backend, "kettle", 1)
                session.execute(
                    Order.__table__.update().where(Order.id == order_id).values(amount_cents=0)
                )  # breaks orders_amount_positive: the whole transaction rolls back
        except IntegrityError:
            print(
                f"rolled back order {order_id}; task {task_id} exists: "
                f"{backend.get_task(task_id or '') is not None}"
            )

        with Session(engine) as session:
            items = session.scalars(select(Order.item).order_by(Order.id)).all()
        print(f"orders: {', '.join(items)}")
    engine.dispose()


if __name__ == "__main__":
    main(os.environ["DATABASE_URL"])
