"""FastAPI: an endpoint that writes an order and queues its task in one transaction.

``POST /orders`` inserts the order through an ``AsyncSession`` and queues ``confirm_order``
with ``aqueue_task(..., connection=session)``; both commit together, or neither does (an
order over the credit limit is refused after its task was queued, and leaves no task).
``GET /tasks/{id}`` reads a task through the backend's own async pool.

    DATABASE_URL=postgresql+psycopg://user@localhost/shop \\
        uvicorn --factory examples.fastapi_app:create_app
    pgqueue-worker --task-paths examples.orders --queues orders --dsn "$DATABASE_URL"
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

import pgqueue
from examples.orders import Base, Order

#: Orders above this amount are refused (after the task was queued: it goes too).
CREDIT_LIMIT_CENTS = 100_000


class OrderIn(BaseModel):
    """The body of ``POST /orders``."""

    item: str
    amount_cents: int


def create_app(url: str | None = None) -> FastAPI:
    """The application, on ``url`` (a SQLAlchemy URL such as
    ``postgresql+psycopg://user@host/db``; default ``$DATABASE_URL``)."""
    url = url or os.environ["DATABASE_URL"]
    engine = create_async_engine(url)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    backend = pgqueue.TaskBackend(url, task_paths=["examples.orders"])

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        yield
        await backend.aclose()
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)

    @app.post("/orders", status_code=201)
    async def place_order(body: OrderIn) -> dict[str, Any]:
        async with sessions() as session, session.begin():
            order = Order(item=body.item, amount_cents=body.amount_cents)
            session.add(order)
            await session.flush()
            task_id = await backend.aqueue_task(
                "confirm_order", order_id=order.id, connection=session
            )
            if body.amount_cents > CREDIT_LIMIT_CENTS:
                # Leaving the block with an exception rolls back the order and its task.
                raise HTTPException(402, "over the credit limit")
        return {"order_id": order.id, "task_id": task_id}

    @app.get("/tasks/{task_id}")
    async def task_status(task_id: str) -> dict[str, Any]:
        task = await backend.aget_task(task_id)
        if task is None:
            raise HTTPException(404, "no such task")
        return {"id": task.id, "status": task.status_string(), "result": task.result}

    return app
