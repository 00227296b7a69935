"""Helpers of the fault tests: a rebuilt trigger and the emulator's counters (stand-ins: worker_standins)."""

from __future__ import annotations

from typing import Any

from worker_standins import StateStore, TaskInstanceStandIn, context, fire  # noqa: F401 (re-exported)

from airflow_provider_wfrun.triggers.workflow_run import WorkflowRunTrigger


def rebuilt(trigger: WorkflowRunTrigger, **overrides: Any) -> WorkflowRunTrigger:
    """The trigger as a triggerer rebuilds it: from its serialized kwargs only."""
    classpath, kwargs = trigger.serialize()
    assert classpath.endswith(".WorkflowRunTrigger")
    return WorkflowRunTrigger(**{**kwargs, **overrides})


def counters(emulator: Any) -> dict[str, Any]:
    """The emulator's counters that a side effect would move."""
    stats = emulator.state.stats()
    return {
        "requests": sum(stats["requests"].values()),
        "submissions": sum(stats["submissions"].values()),
        "cancels": sum(stats["cancels"].values()),
    }
