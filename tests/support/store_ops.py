"""One op of every operation of the store, with values of the right types: what the store's
tests check statement by statement (without a database and on one)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pgqueue._store import Op, Store
from pgqueue._store.schedules import Definition
from pgqueue._store.tasks import TaskParams
from pgqueue._store.workers import Registration, RescueBackoff

NOW = datetime(2026, 1, 1, tzinfo=UTC)

TASK: TaskParams = {
    "name": "add",
    "queue": "tasks",
    "priority": 0,
    "meta_params": "{}",
    "run_at": None,
    "countdown": None,
    "expiry_at": None,
    "expiry_in": None,
    "max_retries": 0,
    "can_overlap": True,
    "kwargs": "{}",
    "concurrency": None,
    "rate_count": None,
    "rate_seconds": None,
    "limit_key": None,
    "unique_for": None,
}
REGISTRATION: Registration = {
    "id": "w",
    "hostname": "h",
    "pid": 1,
    "queues": ["tasks"],
    "backlog": 1,
    "lease": 30.0,
}
BACKOFF: RescueBackoff = {
    "backoff_base": 1.0,
    "backoff_factor": 2.0,
    "backoff_cap": 60.0,
    "backoff_jitter": 0.1,
    "backoff_max_exponent": 6,
}
DEFINITION: Definition = {
    "name": "tick",
    "run_every": timedelta(seconds=1),
    "anchor": None,
    "cron": None,
    "timezone": None,
    "missed": "skip",
    "backfill_limit": None,
    "misfire_grace": None,
    "next_tick": None,
    "now": None,
}


def every_op(store: Store) -> dict[str, Op[Any]]:
    """One op of every operation of the store, with values of the right types."""
    s = store
    return {
        "queue_task": s.queue_task(TASK),
        "queue_task_debounced": s.queue_task_debounced(TASK, debounce=1.0),
        "queue_tasks": s.queue_tasks(tasks="[]"),
        "get_tasks": s.get_tasks(ids=[]),
        "queue_workflow": s.queue_workflow(tasks="[]"),
        "task_parents": s.task_parents(id="x"),
        "task_children": s.task_children(id="x"),
        "flush_queue": s.flush_queue(queue="tasks"),
        "revoke_task": s.revoke_task(id="x", reason="r"),
        "claim_tasks": s.claim_tasks(
            queues=["tasks"], jobs=["add"], limit=1, worker="w", fair=True
        ),
        "claim_unlimited_tasks": s.claim_unlimited_tasks(
            queues=["tasks"], jobs=["add"], limit=1, worker="w"
        ),
        "finish_tasks": s.finish_tasks(
            ids=[],
            attempts=[],
            statuses=[],
            results=[],
            errors=[],
            tracebacks=[],
            delays=[],
            worker="w",
        ),
        "give_back_tasks": s.give_back_tasks(ids=[], attempts=[], worker="w"),
        "revoke_expired": s.revoke_expired(queues=["tasks"], limit=1),
        "next_run_at": s.next_run_at(queues=["tasks"]),
        "register_worker": s.register_worker(REGISTRATION),
        "reregister_worker": s.reregister_worker(REGISTRATION),
        "heartbeat_worker": s.heartbeat_worker(id="w"),
        "heartbeat_lock_timeout": s.heartbeat_lock_timeout(seconds=0.5),
        "stop_worker": s.stop_worker(id="w"),
        "wait_for_tasks": s.wait_for_tasks(queues=["tasks"], worker="w", lease=60.0),
        "settle_enqueues": s.settle_enqueues(queues=["tasks"]),
        "stop_waiting": s.stop_waiting(worker="w"),
        "rescue_lost_tasks": s.rescue_lost_tasks(worker="w", limit=1, backoff=BACKOFF),
        "rescue_orphaned_tasks": s.rescue_orphaned_tasks(
            worker="w", claimed=[], after=30.0, backoff=BACKOFF
        ),
        "prune_tasks": s.prune_tasks(states=[1], older_than=1.0, limit=1),
        "count_prunable": s.count_prunable(states=[1], older_than=1.0),
        "prune_flow_starts": s.prune_flow_starts(limit=1),
        "schedule_now": s.schedule_now(now=None),
        "schedule_for_define": s.schedule_for_define(name="tick"),
        "define_schedule": s.define_schedule(DEFINITION),
        "redefine_schedule": s.redefine_schedule(DEFINITION),
        "schedule_waits": s.schedule_waits(names=["tick"], now=None),
        "lock_due_schedule": s.lock_due_schedule(name="tick", now=None),
        "advance_schedule": s.advance_schedule(
            name="tick", seen=NOW, next_tick=NOW, last_tick=None, now=None
        ),
        "record_ticks": s.record_ticks(
            name="tick", queued=1, skipped=0, last_task=None, outcome="queued"
        ),
        "list_schedules": s.list_schedules(names=None),
        "set_schedule_paused": s.set_schedule_paused(name="tick", paused=True),
        "request_trigger": s.request_trigger(name="tick", actor="ops@host"),
        "clear_trigger": s.clear_trigger(name="tick"),
        "set_task_options": s.set_task_options(name="tick", options='{"queue": "tasks"}'),
        "lock_schedule": s.lock_schedule(name="tick"),
        "pause_queue": s.pause_queue(queue="tasks"),
        "resume_queue": s.resume_queue(queue="tasks"),
        "set_queue_limit": s.set_queue_limit(
            queue="tasks", concurrency=2, rate_count=None, rate_seconds=None
        ),
        "queue_flow": s.queue_flow(),
        "flow_limits": s.flow_limits(limit=20),
        "queue_stats": s.queue_stats(),
        "queue_throughput": s.queue_throughput(),
        "queue_overview": s.queue_overview(),
        "queue_throughput_recent": s.queue_throughput_recent(),
        "queue_timeline": s.queue_timeline(),
        "queue_depth": s.queue_depth(),
        "queue_activity": s.queue_activity(step=60.0, buckets=60),
        "roll_up_ended": s.roll_up_ended(),
        "queue_oldest_due": s.queue_oldest_due(),
        "notify_queue_usage": s.notify_queue_usage(),
        "workers": s.workers(recent=None),
        "worker_counts": s.worker_counts(recent=1.0),
        "stuck_tasks": s.stuck_tasks(),
        "list_tasks": s.list_tasks(
            states=None, jobs=None, queues=None, since=None, limit=1, offset=0, args=None
        ),
        "count_tasks": s.count_tasks(
            states=None, jobs=None, queues=None, since=None, args=None, cap=1
        ),
        "task_detail": s.task_detail(id="x", preview=None),
        "tasks_by_prefix": s.tasks_by_prefix(low="x", high="y", limit=1),
        "retry_task": s.retry_task(id="x"),
        "lock_holder": s.lock_holder(id="x"),
        "grant_attempts": s.grant_attempts(id="x", more=1),
        "run_now": s.run_now(id="x"),
        "retry_failed": s.retry_failed(jobs=None, queues=None, limit=1),
        "task_attempts": s.task_attempts(id="x"),
        "record_action": s.record_action(actor="a", action="retry", task_id=None, detail="{}"),
        "list_actions": s.list_actions(limit=1),
        "queue_names": s.queue_names(),
        "demo_reset": s.demo_reset(queue="demo"),
        "demo_progress": s.demo_progress(queue="demo"),
        "demo_states": s.demo_states(queue="demo"),
        "demo_totals": s.demo_totals(queue="demo"),
        "demo_workers": s.demo_workers(queue="demo"),
        "demo_largest": s.demo_largest(queue="demo", limit=1),
        "demo_failures": s.demo_failures(queue="demo"),
        "schema_has_revision": s.schema_has_revision(revision="r"),
        "server_role": s.server_role(),
    }
