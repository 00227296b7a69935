"""
What a worker hands ``execute`` (task instance, ``task_state_store``), stood in for, and a trigger fired once.

Airflow's runtime pieces only; everything of ours runs for real against the emulator.
"""

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


def fire(trigger: WorkflowRunTrigger) -> dict[str, Any]:
    """Run the trigger until its first event, as a triggerer would, and return the event's payload."""

    async def first_event() -> dict[str, Any]:
        return await anext(event.payload async for event in trigger.run())

    return asyncio.run(first_event())
