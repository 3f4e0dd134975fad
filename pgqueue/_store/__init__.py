"""The store: every statement pgqueue runs at run time, one typed operation per thing the
database does, the SQL beside it. DDL lives only in the Alembic revisions.

``Store(schema)`` binds the statements to a schema; each method takes keyword parameters and
returns an :class:`Op` (statement, parameters, row decoder) that runs on a sync psycopg
connection (``op.run(conn)``) or, through :mod:`pgqueue._connections`, on any connection a
caller gives, sync or async. Statements are rendered once per store. By area:

* :mod:`.tasks`: enqueue one or many, read, flush, revoke;
* :mod:`.workflows`: enqueue with dependencies, a task's parents and children;
* :mod:`.claims`: the worker's claim, finish, give back, expiry sweep, next due time;
* :mod:`.flow`: pause and resume queues, their flow settings;
* :mod:`.workers`: register, heartbeat, stop, rescue the tasks of lost workers;
* :mod:`.waiters`: workers waiting for work, so that enqueues notify only when needed;
* :mod:`.retention`: prune finished tasks;
* :mod:`.schedules`: define, tick and list periodic schedules;
* :mod:`.operator`: the operators' views, lists, counts and actions;
* :mod:`.demo`: ``pgqueue demo``'s reads;
* :mod:`.session`: connection-level statements (generic plans, LISTEN, schema check).
"""

from __future__ import annotations

from ._op import Op
from .claims import ClaimOps
from .demo import DemoOps
from .flow import FlowOps
from .operator import OperatorOps
from .retention import RetentionOps
from .schedules import ScheduleOps
from .session import SessionOps
from .tasks import TaskOps
from .waiters import WaiterOps
from .workers import WorkerOps
from .workflows import WorkflowOps

__all__ = ["Op", "Store"]


class Store(
    TaskOps,
    ClaimOps,
    FlowOps,
    WorkerOps,
    WaiterOps,
    RetentionOps,
    ScheduleOps,
    OperatorOps,
    DemoOps,
    SessionOps,
    WorkflowOps,
):
    """Every operation of :mod:`pgqueue._store`, bound to schema ``schema`` (its name; it is
    quoted as an identifier when rendered).

    ``Store("pgqueue").claim_tasks(queues=[...], jobs=[...], limit=10, worker="w").run(conn)``
    claims tasks on ``conn``. Nothing is sent before an op runs.
    """
