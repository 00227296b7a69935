"""
The operator and sensor against the emulator over real HTTP.

Airflow's own runtime pieces are stood in for by :class:`TaskInstanceStandIn` and :class:`StateStore`
(what a worker hands ``execute``); everything of ours runs for real. End-to-end runs through real Airflow
are in ``tests/dags``.
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowSensorTimeout, TaskDeferred
from conftest import PLATFORMS, WORKFLOW_IDS, needs_airflow
from worker_standins import StateStore, TaskInstanceStandIn, context, fire

from airflow_provider_wfrun.exceptions import (
    AuthenticationError,
    InvalidInputError,
    RunCanceledError,
    RunFailedError,
    RunTimeoutError,
)
from airflow_provider_wfrun.operators.workflow_run import RunWorkflowOperator
from airflow_provider_wfrun.sensors.workflow_run import WorkflowRunSensor
from airflow_provider_wfrun.triggers.workflow_run import WorkflowRunTrigger


def operator(conn_id: str, platform: str, scenario: dict | None = None, **kwargs: Any) -> RunWorkflowOperator:
    return RunWorkflowOperator(
        task_id="run",
        conn_id=conn_id,
        workflow_id=WORKFLOW_IDS[platform],
        inputs={"text": "hello", "_emulator": scenario or {}},
        poll_interval=kwargs.pop("poll_interval", 0.05),
        **kwargs,
    )


def defer(op: RunWorkflowOperator, ctx: dict[str, Any]) -> WorkflowRunTrigger:
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout is None  # our deadline, not the framework's
    return deferred.value.trigger


def submissions(emulator, platform: str) -> int:
    return emulator.state.stats()["submissions"][platform]


# --- deferrable path --------------------------------------------------------------------------------
#: Airflow 3.3's ResumableJobMixin stores the run's handle in task_state_store; before, nothing is stored.
STORES_THE_HANDLE = needs_airflow("3.3", "ResumableJobMixin stores the run handle in task_state_store")
REATTACHES = needs_airflow("3.3", "a retry reattaches through ResumableJobMixin and task_state_store")


@STORES_THE_HANDLE
@pytest.mark.parametrize("platform", PLATFORMS)
def test_deferred_then_completed_returns_outputs_and_cost(connections, emulator, platform):
    op = operator(connections[platform], platform, {"duration_seconds": 0.5}, deferrable=True)
    ti, store = TaskInstanceStandIn(), StateStore()
    trigger = defer(op, context(ti, store))

    handle = store["wfrun_run"]
    assert trigger.run_id == handle["run_id"] == ti.xcoms["run_id"]
    assert ti.xcoms["run_url"].startswith(emulator.base_url(platform))
    assert handle["end_time"] == pytest.approx(time.time() + 7 * 24 * 3600, abs=60)
    assert emulator.api_key not in repr(trigger.serialize())

    event = fire(trigger)
    result = RunWorkflowOperator(**_same_args(op)).execute_complete(context(ti, store), event)
    assert result["run_id"] == handle["run_id"]
    assert (result["platform"], result["status"]) == (platform, "succeeded")
    assert result["outputs"] == {"text": "hello"}
    assert ti.xcoms["cost"]["try_number"] == 1
    assert result["cost"] == {k: v for k, v in ti.xcoms["cost"].items() if k != "try_number"}
    if platform == "chenyu":
        assert (result["cost"]["total"], result["cost"]["currency"]) == ("0.00028780", "CNY")
        assert Decimal(result["cost"]["total"]) == Decimal("0.0002878")
    if platform == "gptbots":
        assert result["cost"]["currency"] == "credits"
    assert result["cost"]["tokens"] == (None if platform == "chenyu" else 150)
    assert submissions(emulator, platform) == 1


def _same_args(op: RunWorkflowOperator) -> dict[str, Any]:
    """A fresh operator for the resumed half, as a worker builds it from the DAG."""
    return {
        "task_id": op.task_id,
        "conn_id": op.conn_id,
        "workflow_id": op.workflow_id,
        "inputs": op.inputs,
        "poll_interval": op.poll_interval,
        "timeout": op.timeout,
        "allow_partial_success": op.allow_partial_success,
        "deferrable": True,
    }


def test_a_run_already_finished_is_not_deferred(connections):
    op = operator(
        connections["gptbots"], "gptbots", {"queue_seconds": 0, "duration_seconds": 0}, deferrable=True
    )
    result = op.execute(context(store=StateStore()))
    assert result["status"] == "succeeded"


@pytest.mark.parametrize(
    ("platform", "scenario", "error", "reason"),
    [
        (
            "chenyu",
            {"outcome": "failed", "error_reason": "node 9 OOM"},
            RunFailedError,
            "the run failed: node 9 OOM",
        ),
        (
            "dify",
            {"outcome": "failed", "error_reason": "LLM timeout"},
            RunFailedError,
            "the run failed: LLM timeout",
        ),
        ("chenyu", {"outcome": "canceled"}, RunCanceledError, "the run was canceled"),
        ("dify", {"outcome": "partial"}, RunFailedError, "allow_partial_success=True"),
    ],
)
def test_execute_complete_raises_the_platform_reason(connections, platform, scenario, error, reason):
    op = operator(connections[platform], platform, {"duration_seconds": 0.2, **scenario}, deferrable=True)
    ti, store = TaskInstanceStandIn(), StateStore()
    trigger = defer(op, context(ti, store))
    with pytest.raises(error, match=reason) as raised:
        op.execute_complete(context(store=store), fire(trigger))
    assert raised.value.run.run_id == ti.xcoms["run_id"]


@pytest.mark.parametrize("fault_count", [1, None])
def test_billing_that_fails_is_tried_once_more_and_never_fails_the_task(connections, emulator, fault_count):
    """chenyu's /info failing after the run finished: one more try when the result is built; never fatal."""
    op = operator(
        connections["chenyu"],
        "chenyu",
        {"duration_seconds": 0.2},
        deferrable=True,
        hook_params={"retry_limit": 1},
    )
    ti, store = TaskInstanceStandIn(), StateStore()
    event = fire(defer(op, context(ti, store)))  # the trigger's last poll settles the run once
    emulator.state.add_fault({"route": "chenyu.info", "kind": "500", "count": fault_count})
    result = RunWorkflowOperator(**_same_args(op), hook_params={"retry_limit": 1}).execute_complete(
        context(ti, store), event
    )
    assert (result["status"], result["outputs"]) == ("succeeded", {"text": "hello"})
    if fault_count == 1:  # failed in get_run, then settled by the second try
        assert emulator.state.stats()["requests"]["chenyu.info"] == 3
        assert result["settlement"] == {
            "quote": "0.03000000",
            "final": "0.00028780",
            "released": "0.02971220",
            "currency": "CNY",
        }
        assert result["cost"]["total"] == "0.00028780"
    else:  # both tries failed: the execution's own costs, no settlement, and the task still succeeds
        assert emulator.state.stats()["requests"]["chenyu.info"] == 3
        assert result["settlement"] is None
        assert (result["cost"]["total"], ti.xcoms["cost"]["total"]) == ("0.0002878", "0.0002878")
    assert result["run_url"] == ti.xcoms["run_url"]
    assert result["finished_at"] is not None
    assert result["started_at"] is not None


def test_partial_success_is_accepted_when_asked(connections):
    scenario = {"duration_seconds": 0.2, "outcome": "partial"}
    op = operator(connections["dify"], "dify", scenario, deferrable=True, allow_partial_success=True)
    store = StateStore()
    trigger = defer(op, context(store=store))
    assert op.execute_complete(context(store=store), fire(trigger))["status"] == "partially_succeeded"


def test_an_error_event_becomes_its_typed_error(connections):
    op = operator(connections["chenyu"], "chenyu", deferrable=True)
    event = {
        "status": "error",
        "run_id": "wfrun_1",
        "message": "[chenyu] key rejected",
        "error_type": "authentication",
    }
    with pytest.raises(AuthenticationError, match="key rejected"):
        op.execute_complete(context(), event)


def test_an_event_for_another_run_is_refused(connections):
    op = operator(connections["chenyu"], "chenyu", deferrable=True)
    store = StateStore(wfrun_run={"run_id": "wfrun_aaa"})
    with pytest.raises(Exception, match="while waiting for run 'wfrun_aaa'"):
        op.execute_complete(context(store=store), {"status": "succeeded", "run_id": "wfrun_bbb"})


def test_deadline_cancels_the_run_and_fails_clearly(connections, emulator):
    op = operator(connections["dify"], "dify", {"duration_seconds": 30}, deferrable=True, timeout=0.5)
    ti, store = TaskInstanceStandIn(), StateStore()
    event = fire(defer(op, context(ti, store)))
    assert event["status"] == "timeout"
    with pytest.raises(RunTimeoutError, match=r"did not finish within 0:00:00; it was canceled"):
        op.execute_complete(context(store=store), event)
    assert emulator.state.stats()["cancels"]["dify"] == 1
    run_id = ti.xcoms["run_id"]
    assert emulator.state.status_word(emulator.state.runs[run_id]) == "stopped"


def test_deadline_on_a_platform_without_cancel_says_the_run_may_go_on(connections, emulator):
    op = operator(connections["gptbots"], "gptbots", {"duration_seconds": 30}, deferrable=True, timeout=0.3)
    store = StateStore()
    event = fire(defer(op, context(store=store)))
    with pytest.raises(RunTimeoutError, match="could not be canceled and may still be running"):
        op.execute_complete(context(store=store), event)


def test_execution_timeout_shortens_the_deadline(connections):
    from datetime import timedelta

    op = operator(connections["chenyu"], "chenyu", {"duration_seconds": 30}, deferrable=True)
    op.execution_timeout = timedelta(seconds=90)
    trigger = defer(op, context(store=StateStore()))
    assert trigger.end_time == pytest.approx(time.time() + 90, abs=5)


# --- never submits twice ------------------------------------------------------------------------------
@REATTACHES
@pytest.mark.parametrize("platform", PLATFORMS)
def test_a_retry_reattaches_to_the_running_run(connections, emulator, platform):
    store = StateStore()
    first = defer(
        operator(connections[platform], platform, {"duration_seconds": 5}, deferrable=True),
        context(store=store),
    )
    # the worker died; the retry builds the operator anew and gets the same task_state_store
    retry_ti = TaskInstanceStandIn(try_number=2)
    second = defer(
        operator(connections[platform], platform, {"duration_seconds": 5}, deferrable=True),
        context(retry_ti, store),
    )
    assert second.run_id == first.run_id
    assert second.end_time == first.end_time  # the deadline does not restart
    assert retry_ti.xcoms["run_id"] == first.run_id  # the link works again on the retry
    assert submissions(emulator, platform) == 1


def test_a_retry_after_success_returns_the_result_without_submitting(connections, emulator):
    store = StateStore()
    op = operator(connections["chenyu"], "chenyu", {"duration_seconds": 0.2}, deferrable=False)
    first = op.execute(context(store=store))
    again = operator(connections["chenyu"], "chenyu", {"duration_seconds": 0.2}).execute(
        context(TaskInstanceStandIn(try_number=2), store)
    )
    assert again == first
    assert submissions(emulator, "chenyu") == 1


@REATTACHES
def test_a_retry_that_finds_the_run_finished_still_pushes_its_reference(connections, emulator):
    store = StateStore()
    first = defer(
        operator(connections["gptbots"], "gptbots", {"duration_seconds": 0.2}, deferrable=True),
        context(store=store),
    )
    time.sleep(1.0)  # the worker died; by the retry the run has finished
    retry_ti = TaskInstanceStandIn(try_number=2)
    result = operator(connections["gptbots"], "gptbots", deferrable=True).execute(context(retry_ti, store))
    assert result["run_id"] == first.run_id
    assert retry_ti.xcoms["run_id"] == first.run_id
    assert retry_ti.xcoms["run_url"].startswith(emulator.base_url("gptbots"))
    assert submissions(emulator, "gptbots") == 1


def test_the_same_try_entering_execute_again_ends_with_its_own_failed_run(connections, emulator):
    """A resume rescheduled at start-up re-enters execute() in the same try: no second paid run."""
    store, ti = StateStore(), TaskInstanceStandIn(try_number=1)
    scenario = {"duration_seconds": 0.2, "outcome": "failed", "error_reason": "GPU lost"}
    first = defer(operator(connections["chenyu"], "chenyu", scenario, deferrable=True), context(ti, store))
    time.sleep(1.0)
    with pytest.raises(RunFailedError, match="GPU lost") as raised:
        operator(connections["chenyu"], "chenyu", scenario, deferrable=True).execute(context(ti, store))
    assert raised.value.run.run_id == first.run_id
    assert submissions(emulator, "chenyu") == 1


@STORES_THE_HANDLE
def test_a_retry_after_a_failed_run_submits_a_fresh_one_with_a_new_idempotency_key(connections, emulator):
    store = StateStore()
    scenario = {"duration_seconds": 0.1, "outcome": "failed"}
    with pytest.raises(RunFailedError):
        operator(connections["chenyu"], "chenyu", scenario).execute(context(store=store))
    failed_run = store["wfrun_run"]["run_id"]
    with pytest.raises(RunFailedError):
        operator(connections["chenyu"], "chenyu", scenario).execute(context(TaskInstanceStandIn(2), store))
    assert store["wfrun_run"]["run_id"] != failed_run
    assert store["wfrun_run"]["generation"] == 1
    assert submissions(emulator, "chenyu") == 2


def test_chenyu_idempotency_key_prevents_a_duplicate_without_a_state_store(connections, emulator):
    """Airflow below 3.3 (no task_state_store): the key derived from the task instance still dedupes."""
    first = defer(
        operator(connections["chenyu"], "chenyu", {"duration_seconds": 5}, deferrable=True), context()
    )
    second = defer(
        operator(connections["chenyu"], "chenyu", {"duration_seconds": 5}, deferrable=True),
        context(TaskInstanceStandIn(try_number=2)),
    )
    assert second.run_id == first.run_id
    assert emulator.state.stats()["idempotent_replays"]["chenyu"] == 1
    assert submissions(emulator, "chenyu") == 1


def test_mapped_instances_get_their_own_chenyu_runs(connections, emulator):
    runs = {
        defer(
            operator(connections["chenyu"], "chenyu", {"duration_seconds": 5}, deferrable=True), context(ti)
        ).run_id
        for ti in (TaskInstanceStandIn(map_index=0), TaskInstanceStandIn(map_index=1))
    }
    assert len(runs) == 2
    assert submissions(emulator, "chenyu") == 2


# --- worker path --------------------------------------------------------------------------------------
@pytest.mark.parametrize("platform", PLATFORMS)
def test_waiting_in_the_worker_returns_the_result(connections, platform):
    op = operator(connections[platform], platform, {"duration_seconds": 0.3}, deferrable=False)
    ti = TaskInstanceStandIn()
    result = op.execute(context(ti, StateStore()))
    assert (result["status"], result["outputs"]) == ("succeeded", {"text": "hello"})
    assert ti.xcoms["run_id"] == result["run_id"]


def test_deadline_in_the_worker_cancels(connections, emulator):
    op = operator(connections["dify"], "dify", {"duration_seconds": 30}, deferrable=False, timeout=0.4)
    with pytest.raises(RunTimeoutError, match="it was canceled"):
        op.execute(context(store=StateStore()))
    assert emulator.state.stats()["cancels"]["dify"] == 1


def test_on_kill_in_the_worker_cancels_the_run(connections, emulator):
    op = operator(connections["dify"], "dify", {"duration_seconds": 30}, deferrable=False)
    outcome: dict[str, BaseException] = {}

    def run_task() -> None:
        try:
            op.execute(context(store=StateStore()))
        except BaseException as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=run_task)
    worker.start()
    deadline = time.monotonic() + 5
    while op._handle is None and time.monotonic() < deadline:
        time.sleep(0.02)
    op.on_kill()
    worker.join(timeout=10)
    assert emulator.state.stats()["cancels"]["dify"] == 1
    assert isinstance(outcome["error"], RunCanceledError)


def test_wait_false_returns_the_run_id_at_once(connections, emulator):
    op = operator(connections["gptbots"], "gptbots", {"duration_seconds": 30}, wait=False)
    ti = TaskInstanceStandIn()
    run_id = op.execute(context(ti, StateStore()))
    assert run_id == ti.xcoms["run_id"]
    assert emulator.state.status_word(emulator.state.runs[run_id]) in ("PENDING", "RUNNING")


# --- bad input, before any request --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"poll_interval": 0}, "poll_interval must be a positive number"),
        ({"poll_interval": -5}, "poll_interval must be a positive number"),
        ({"timeout": 0}, "timeout must be a positive number"),
        ({"inputs": ["a", "b"]}, "inputs must be a mapping"),
        ({"conn_id": " "}, "conn_id must name a connection"),
    ],
)
def test_bad_parameters_fail_at_construction(kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        RunWorkflowOperator(**{"task_id": "t", "conn_id": "wfrun_dify", **kwargs})


def test_inputs_rendering_to_text_fail_before_submitting(connections, emulator):
    op = RunWorkflowOperator(task_id="t", conn_id=connections["dify"], inputs="{{ params.inputs }}")
    op.inputs = "{'query': 'rendered as text'}"  # what a template renders without native rendering
    with pytest.raises(InvalidInputError, match="render_template_as_native_obj=True"):
        op.execute(context())
    assert emulator.state.stats()["requests"] == {}


# --- sensor -------------------------------------------------------------------------------------------
def started_run(conn_id: str, platform: str, **scenario: Any) -> str:
    op = operator(conn_id, platform, scenario, wait=False)
    return op.execute(context())


@pytest.mark.parametrize("platform", PLATFORMS)
def test_sensor_poke_mode_returns_the_result(connections, platform):
    run_id = started_run(connections[platform], platform, duration_seconds=0.3)
    sensor = WorkflowRunSensor(
        task_id="wait", conn_id=connections[platform], run_id=run_id, poke_interval=0.05
    )
    result = sensor.execute(context())
    assert (result["run_id"], result["status"]) == (run_id, "succeeded")


def test_sensor_fails_with_the_platform_reason(connections):
    run_id = started_run(
        connections["chenyu"], "chenyu", duration_seconds=0.1, outcome="failed", error_reason="bad seed"
    )
    sensor = WorkflowRunSensor(
        task_id="wait", conn_id=connections["chenyu"], run_id=run_id, poke_interval=0.05
    )
    with pytest.raises(RunFailedError, match="bad seed"):
        sensor.execute(context())


def test_sensor_deferrable_mode(connections, emulator):
    run_id = started_run(connections["dify"], "dify", duration_seconds=0.5)
    sensor = WorkflowRunSensor(
        task_id="wait", conn_id=connections["dify"], run_id=run_id, poke_interval=0.05, deferrable=True
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context())
    trigger = deferred.value.trigger
    assert trigger.cancel_on_kill is False  # the sensor did not start the run, it never cancels it
    result = sensor.execute_complete(context(), fire(trigger))
    assert (result["run_id"], result["status"]) == (run_id, "succeeded")


def test_sensor_deferrable_timeout_stops_waiting_without_canceling(connections, emulator):
    run_id = started_run(connections["dify"], "dify", duration_seconds=30)
    sensor = WorkflowRunSensor(
        task_id="wait",
        conn_id=connections["dify"],
        run_id=run_id,
        poke_interval=0.05,
        timeout=0.3,
        deferrable=True,
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context())
    with pytest.raises(AirflowSensorTimeout, match=f"run {run_id} did not finish"):
        sensor.execute_complete(context(), fire(deferred.value.trigger))
    assert emulator.state.stats()["cancels"]["dify"] == 0


def test_sensor_refuses_a_run_id_of_another_platform(connections, emulator):
    sensor = WorkflowRunSensor(
        task_id="wait", conn_id=connections["chenyu"], run_id="fb47b2e6-5e43-4f90-be01-d5c5a088d156"
    )
    with pytest.raises(InvalidInputError, match=r"is not a chenyu\.cn run id"):
        sensor.execute(context())
    # Nothing reached chenyu (a poll of an earlier test still in flight on a loaded machine may reach Dify).
    assert [route for route in emulator.state.stats()["requests"] if route.startswith("chenyu")] == []
