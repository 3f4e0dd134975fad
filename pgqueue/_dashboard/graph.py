"""The workflow around one task, laid out for the task page's SVG: its parents in a column on
the left, the task in the middle, its children on the right, a line from each parent to the
task and from the task to each child. Each box is a link to that task's page and is coloured
by its state. At most :data:`SHOWN` tasks per side are drawn; the rest are counted by state
(a group's callback may have thousands of parents).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

#: Most parents, and most children, drawn as boxes.
SHOWN = 12
#: Box size and spacing, in SVG user units (pixels at 100%).
BOX_WIDTH = 220
BOX_HEIGHT = 24
ROW = 32
GAP = 70
MARGIN = 4
_NOT_ENDED = ("QUEUED", "STARTED", "RETRY")


@dataclass(frozen=True)
class Box:
    """One task of the graph: where it is drawn and what it says."""

    id: str
    name: str
    state: str
    x: int
    y: int
    role: str  # parent, task or child
    note: str = ""  # "runs even after a failure" for a run_after_failure edge


@dataclass(frozen=True)
class Line:
    """An edge, from the right middle of one box to the left middle of another."""

    x1: int
    y1: int
    x2: int
    y2: int


@dataclass(frozen=True)
class Graph:
    """What the template draws (sizes in SVG units) and the counts of the tasks not drawn."""

    width: int
    height: int
    boxes: list[Box]
    lines: list[Line]
    parents: int
    children: int
    waiting: int  # parents not ended yet (QUEUED, STARTED, RETRY)
    more_parents: dict[str, int]
    more_children: dict[str, int]


def workflow_graph(task: dict[str, Any]) -> Graph | None:
    """The graph of ``task`` (a row of :meth:`pgqueue._ops.Operations.task`, with its
    ``parents`` and ``children``), or None when it is in no workflow."""
    parents: list[dict[str, Any]] = task.get("parents") or []
    children: list[dict[str, Any]] = task.get("children") or []
    if not parents and not children:
        return None
    rows = max(min(len(parents), SHOWN), min(len(children), SHOWN), 1)
    height = rows * ROW + 2 * MARGIN
    column = BOX_WIDTH + GAP

    def top(index: int, count: int) -> int:
        """y of box ``index`` of a column of ``count`` boxes, centred on the graph."""
        return MARGIN + (rows - count) * ROW // 2 + index * ROW + (ROW - BOX_HEIGHT) // 2

    middle = Box(task["id"], task["name"], task["state"], MARGIN + column, top(0, 1), "task")
    boxes = [middle]
    lines = []
    mid_y = middle.y + BOX_HEIGHT // 2
    shown = parents[:SHOWN]
    for i, parent in enumerate(shown):
        box = Box(
            parent["id"],
            parent["name"],
            parent["state"],
            MARGIN,
            top(i, len(shown)),
            "parent",
            "runs even after a failure" if parent.get("run_after_failure") else "",
        )
        boxes.append(box)
        lines.append(Line(box.x + BOX_WIDTH, box.y + BOX_HEIGHT // 2, middle.x, mid_y))
    shown = children[:SHOWN]
    for i, child in enumerate(shown):
        box = Box(
            child["id"],
            child["name"],
            child["state"],
            MARGIN + 2 * column,
            top(i, len(shown)),
            "child",
        )
        boxes.append(box)
        lines.append(Line(middle.x + BOX_WIDTH, mid_y, box.x, box.y + BOX_HEIGHT // 2))
    return Graph(
        width=3 * BOX_WIDTH + 2 * GAP + 2 * MARGIN,
        height=height,
        boxes=boxes,
        lines=lines,
        parents=len(parents),
        children=len(children),
        waiting=sum(1 for p in parents if p["state"] in _NOT_ENDED),
        more_parents=dict(Counter(p["state"] for p in parents[SHOWN:])),
        more_children=dict(Counter(c["state"] for c in children[SHOWN:])),
    )
