"""Inline SVG charts of the ``queue_timeline`` view (the last hour: finished tasks per minute as
bars, the queue depth as a line) or of the store's ``queue_activity`` (a day or a week in 60
periods, bars only), one small chart per queue, drawn on the server, with time labels (UTC)
along the x axis and the scale's maximum on the y axis."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: Chart size in SVG units (the page scales it to its column).
WIDTH = 600
HEIGHT = 80
#: Minutes shown (the view's span).
MINUTES = 60


@dataclass(frozen=True)
class Bar:
    """One minute's finished tasks: position and height in SVG units, and its tooltip."""

    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True)
class QueueChart:
    """The last hour of one queue: bars of finished tasks, a polyline of depth."""

    queue: str
    bars: list[Bar]
    depth_points: str
    max_finished: int
    max_depth: int
    total_finished: int
    total_failed: int
    #: Time labels along the x axis, left to right, evenly spaced (the start of every tenth
    #: period, then the end).
    ticks: list[str]


def queue_charts(rows: Sequence[dict[str, Any]], stamp: str = "%H:%M") -> list[QueueChart]:
    """Charts for the rows of ``queue_timeline`` or of the store's ``queue_activity`` (60
    periods per queue, ordered by queue, then period); ``stamp`` formats the time labels."""
    by_queue: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_queue.setdefault(row["queue"], []).append(row)
    return [_chart(queue, minutes, stamp) for queue, minutes in by_queue.items()]


def _ticks(minutes: list[dict[str, Any]], stamp: str) -> list[str]:
    """Labels at periods 0, 10, ..., 50 and the end of the last one (UTC)."""
    if not minutes:
        return []
    labels = [minutes[i]["minute"].strftime(stamp) for i in range(0, len(minutes), 10)]
    if len(minutes) > 1:
        step = minutes[-1]["minute"] - minutes[-2]["minute"]
        labels.append((minutes[-1]["minute"] + step).strftime(stamp))
    return labels


def _chart(queue: str, minutes: list[dict[str, Any]], stamp: str) -> QueueChart:
    step = WIDTH / MINUTES
    top_finished = max((int(m["finished"]) for m in minutes), default=0)
    top_depth = max((int(m["depth"]) for m in minutes), default=0)
    bars = []
    points = []
    for i, minute in enumerate(minutes[-MINUTES:]):
        finished = int(minute["finished"])
        height = (HEIGHT - 4) * finished / top_finished if top_finished else 0.0
        when = minute["minute"].strftime(stamp)
        bars.append(
            Bar(
                x=round(i * step + 1, 1),
                y=round(HEIGHT - height, 1),
                width=round(step - 2, 1),
                height=round(height, 1),
                title=f"{when}: {finished} finished, {minute['failed']} failed, "
                f"depth {minute['depth']}",
            )
        )
        depth = (HEIGHT - 4) * int(minute["depth"]) / top_depth if top_depth else 0.0
        points.append(f"{i * step + step / 2:.1f},{HEIGHT - depth:.1f}")
    return QueueChart(
        queue=queue,
        bars=bars,
        depth_points=" ".join(points),
        max_finished=top_finished,
        max_depth=top_depth,
        total_finished=sum(int(m["finished"]) for m in minutes),
        total_failed=sum(int(m["failed"]) for m in minutes),
        ticks=_ticks(minutes[-MINUTES:], stamp),
    )
