"""What a worker hands ``execute``, stood in for (as in ``tests/operators``), and the emulator's counters."""

from __future__ import annotations

import asyncio
from typing import Any

from airflow_provider_wfrun.triggers.workflow_run import WorkflowRunTrigger


class TaskInstanceStandIn:
    def __init__(self, try_number: int = 1, map_index: int = -1) -> None:
        self.dag_id, self.task_id, self.run_id = "dag", "task", "manual__1"
        self.map_index = map_index
        self.try_number = try_number
        self.stats_tags: dict[str, str] = {}
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


class StateStore(dict):
    """``task_state_store``: survives retries of one task instance."""

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        self[key] = value


def context(ti: TaskInstanceStandIn | None = None, store: StateStore | None = None) -> dict[str, Any]:
    return {"ti": ti or TaskInstanceStandIn(), "task_state_store": store}


def rebuilt(trigger: WorkflowRunTrigger, **overrides: Any) -> WorkflowRunTrigger:
    """The trigger as a triggerer rebuilds it: from its serialized kwargs only."""
    classpath, kwargs = trigger.serialize()
    assert classpath.endswith(".WorkflowRunTrigger")
    return WorkflowRunTrigger(**{**kwargs, **overrides})


def fire(trigger: WorkflowRunTrigger) -> dict[str, Any]:
    async def first_event() -> dict[str, Any]:
        return await anext(event.payload async for event in trigger.run())

    return asyncio.run(first_event())


def counters(emulator: Any) -> dict[str, Any]:
    """The emulator's counters that a side effect would move."""
    stats = emulator.state.stats()
    return {
        "requests": sum(stats["requests"].values()),
        "submissions": sum(stats["submissions"].values()),
        "cancels": sum(stats["cancels"].values()),
    }
