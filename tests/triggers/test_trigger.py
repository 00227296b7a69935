"""The trigger against the emulator over real HTTP: how waiting ends, what it logs, and restarts."""

from __future__ import annotations

import asyncio
import gc
import time

import psutil
import pytest
from conftest import ALL_PLATFORMS, PLATFORMS, WORKFLOW_IDS

from airflow_provider_wfrun.hooks.workflow_run import WorkflowRunHook
from airflow_provider_wfrun.triggers.workflow_run import WorkflowRunTrigger


def submit(conn_id: str, platform: str, **scenario: object):
    return WorkflowRunHook(conn_id).submit_run(
        {"q": "x", "_emulator": scenario}, workflow_id=WORKFLOW_IDS[platform]
    )


def trigger_for(conn_id: str, run, *, timeout: float = 30.0, **kwargs: object) -> WorkflowRunTrigger:
    return WorkflowRunTrigger(
        conn_id=conn_id,
        run_id=run.run_id,
        end_time=time.time() + timeout,
        poll_interval=kwargs.pop("poll_interval", 0.05),
        platform_task_id=run.task_id,
        **kwargs,
    )


async def events_of(trigger: WorkflowRunTrigger) -> list[dict]:
    return [event.payload async for event in trigger.run()]


def test_serialization_is_exact_and_has_no_secret(emulator):
    trigger = WorkflowRunTrigger(
        conn_id="wfrun_dify", run_id="r-1", end_time=1_800_000_000.5, poll_interval=7, platform_task_id="t-1"
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_wfrun.triggers.workflow_run.WorkflowRunTrigger"
    assert kwargs == {
        "conn_id": "wfrun_dify",
        "run_id": "r-1",
        "end_time": 1_800_000_000.5,
        "poll_interval": 7,
        "platform_task_id": "t-1",
        "cancel_on_kill": True,
        "max_consecutive_failures": 5,
        "max_poll_interval": 300.0,
        "adaptive": True,
        "hook_params": None,
        "stop_on_pause": False,
    }
    assert emulator.api_key not in repr(trigger)
    assert WorkflowRunTrigger(**kwargs).serialize() == (classpath, kwargs)


def test_kwargs_stored_by_an_older_release_still_build_a_trigger():
    """Stored triggers have only the original kwargs: every later kwarg must have a default."""
    trigger = WorkflowRunTrigger(conn_id="c", run_id="r", end_time=1.0)
    assert trigger.poll_interval == 10.0
    assert trigger.platform_task_id is None
    assert trigger.stop_on_pause is False  # a stored trigger waits through a pause, as it always did


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_success_fires_one_small_event(connections, platform):
    run = submit(connections[platform], platform, duration_seconds=0.3)
    events = await events_of(trigger_for(connections[platform], run))
    assert len(events) == 1
    assert events[0]["status"] == "succeeded"
    assert events[0]["run_id"] == run.run_id
    assert events[0]["error_type"] is None
    assert "outputs" not in events[0]


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_failure_event_carries_the_platform_reason(connections, platform):
    run = submit(
        connections[platform], platform, duration_seconds=0.1, outcome="failed", error_reason="GPU lost"
    )
    [event] = await events_of(trigger_for(connections[platform], run))
    assert event["status"] == "failed"
    if platform != "gptbots":  # GPTBots reports no reason for a failed run
        assert "GPU lost" in event["message"]


async def test_platform_side_cancel_is_a_canceled_event(connections, emulator):
    run = submit(connections["chenyu"], "chenyu", duration_seconds=5)
    trigger = trigger_for(connections["chenyu"], run)
    task = asyncio.ensure_future(events_of(trigger))
    await asyncio.sleep(0.3)
    assert emulator.state.cancel(run.run_id)
    [event] = await task
    assert event["status"] == "canceled"


async def test_deadline_fires_a_timeout_event_and_leaves_the_cancel_to_the_worker(connections, emulator):
    run = submit(connections["dify"], "dify", duration_seconds=10)
    started = time.monotonic()
    [event] = await events_of(trigger_for(connections["dify"], run, timeout=0.5))
    assert (event["status"], event["error_type"]) == ("timeout", "timeout")
    assert event["platform_task_id"] == run.task_id
    assert time.monotonic() - started < 5
    assert emulator.state.stats()["cancels"]["dify"] == 0


async def test_a_run_paused_for_a_form_fires_a_paused_event_when_asked_to(connections, emulator):
    run = submit(connections["dify"], "dify", duration_seconds=0.3, human_inputs=[{"at": 0.2}])
    [event] = await events_of(trigger_for(connections["dify"], run, stop_on_pause=True))
    assert (event["status"], event["run_id"], event["error_type"]) == ("paused", run.run_id, None)
    assert event["platform_task_id"] == run.task_id
    # Rebuilt from its kwargs (a triggerer restart), it still stops at the pause.
    _, kwargs = trigger_for(connections["dify"], run, stop_on_pause=True).serialize()
    [again] = await events_of(WorkflowRunTrigger(**kwargs))
    assert again["status"] == "paused"


async def test_without_stop_on_pause_a_paused_run_is_waited_through(connections, emulator):
    run = submit(connections["dify"], "dify", duration_seconds=0.3, human_inputs=[{"at": 0.2}])
    [event] = await events_of(trigger_for(connections["dify"], run, timeout=0.8))
    assert event["status"] == "timeout"


async def test_transient_poll_failures_are_tolerated(connections, emulator):
    run = submit(connections["gptbots"], "gptbots", duration_seconds=0.5)
    emulator.state.add_fault({"route": "gptbots.get", "kind": "503", "count": 4})
    [event] = await events_of(trigger_for(connections["gptbots"], run))
    assert event["status"] == "succeeded"
    assert emulator.state.stats()["faults"]["503"] == 4


async def test_a_bounded_run_of_failed_polls_ends_in_an_error_event(connections, emulator):
    run = submit(connections["chenyu"], "chenyu", duration_seconds=30)
    emulator.state.add_fault({"route": "chenyu.execution", "kind": "malformed"})
    trigger = trigger_for(connections["chenyu"], run, max_consecutive_failures=2)
    [event] = await events_of(trigger)
    assert event["status"] == "error"
    assert event["error_type"] == "invalid_response"
    assert event["message"].startswith("2 polls in a row failed")


async def test_a_rejected_key_ends_at_once(connections, emulator, monkeypatch):
    run = submit(connections["dify"], "dify", duration_seconds=30)
    from conftest import connection_json

    monkeypatch.setenv("AIRFLOW_CONN_WFRUN_DIFY", connection_json(emulator, "dify", password="wrong-key"))
    [event] = await events_of(trigger_for(connections["dify"], run))
    assert (event["status"], event["error_type"]) == ("error", "authentication")
    assert "wrong-key" not in event["message"]


async def test_a_rebuilt_trigger_carries_on_with_the_same_deadline(connections, emulator):
    """A triggerer restart: the trigger is rebuilt from its serialized kwargs and keeps polling."""
    run = submit(connections["chenyu"], "chenyu", duration_seconds=1.0)
    first = trigger_for(connections["chenyu"], run)
    poll = asyncio.ensure_future(events_of(first))
    await asyncio.sleep(0.3)
    poll.cancel()  # the triggerer died mid-wait
    _, kwargs = first.serialize()
    rebuilt = WorkflowRunTrigger(**kwargs)
    assert rebuilt.end_time == first.end_time
    [event] = await events_of(rebuilt)
    assert event["status"] == "succeeded"
    assert emulator.state.stats()["submissions"]["chenyu"] == 1


async def test_logs_status_progress_queue_and_new_log_lines_once_each(connections, capsys):
    # 2 s of queue: position 3 is shown for the first 0.5 s, long enough for the first poll on a busy machine
    run = submit(connections["chenyu"], "chenyu", queue_seconds=2.0, duration_seconds=0.8)
    await events_of(trigger_for(connections["chenyu"], run, poll_interval=0.02, max_poll_interval=0.1))
    output = capsys.readouterr().out  # Airflow's structured logging writes to stdout
    status_lines = [line for line in output.splitlines() if f"chenyu run {run.run_id}: status" in line]
    assert any("status queued, queue position 3" in line for line in status_lines)
    assert any("status running" in line for line in status_lines)
    assert any("status succeeded" in line and "progress 100%" in line for line in status_lines)
    for line in (
        "execution started",
        "executing node 3 (KSampler)",
        "node 3 progress 10/20",
        "execution succeeded",
    ):
        assert output.count(f"[info] {line} ") == 1, line
    assert len(status_lines) < 25  # dozens of polls, but only changes are logged


async def test_the_platform_queue_estimate_stretches_the_next_poll(connections, emulator):
    """chenyu says the wait is ~1 s: the trigger waits for it (capped) instead of polling every 20 ms."""
    run = submit(connections["chenyu"], "chenyu", queue_seconds=1.0, duration_seconds=0.1)
    await events_of(trigger_for(connections["chenyu"], run, poll_interval=0.02, max_poll_interval=0.5))
    polls = emulator.state.stats()["requests"]["chenyu.execution"]
    assert polls <= 8, polls  # ~1.1 s of waiting at 20 ms would be 55 polls


async def test_on_kill_cancels_where_the_platform_can(connections, emulator):
    run = submit(connections["dify"], "dify", duration_seconds=30)
    await trigger_for(connections["dify"], run).on_kill()
    assert emulator.state.stats()["cancels"]["dify"] == 1
    assert WorkflowRunHook(connections["dify"]).get_run(run.run_id).status.value == "canceled"


async def test_on_kill_without_cancel_api_or_when_disabled_sends_nothing(connections, emulator):
    run = submit(connections["gptbots"], "gptbots", duration_seconds=30)
    await trigger_for(connections["gptbots"], run).on_kill()
    dify_run = submit(connections["dify"], "dify", duration_seconds=30)
    await trigger_for(connections["dify"], dify_run, cancel_on_kill=False).on_kill()
    assert emulator.state.stats()["cancels"] == dict.fromkeys(ALL_PLATFORMS, 0)


async def test_waiting_triggers_share_one_session_and_close_it_when_the_last_is_done(
    connections, emulator, recwarn
):
    runs = [submit(connections["gptbots"], "gptbots", duration_seconds=0.5) for _ in range(5)]
    before = emulator.state.stats()
    triggers = [trigger_for(connections["gptbots"], run, poll_interval=0.05) for run in runs]
    events = await asyncio.gather(*(events_of(trigger) for trigger in triggers))
    after = emulator.state.stats()

    assert [e[0]["status"] for e in events] == ["succeeded"] * 5
    polls = sum(after["requests"].values()) - sum(before["requests"].values())
    # Five waits polled many times over at most one connection each: keep-alive across polls and triggers.
    assert polls >= 25
    assert after["connections"] - before["connections"] <= 5
    # The last wait closed the loop's session: no socket left open, nothing for the collector to warn of.
    assert open_sockets_to(emulator.port) == 0
    gc.collect()
    assert not [w for w in recwarn if "Unclosed" in str(w.message)]


async def test_a_waiting_trigger_keeps_its_connection_between_polls(connections, emulator):
    run = submit(connections["dify"], "dify", duration_seconds=1.0)
    waiting = asyncio.ensure_future(events_of(trigger_for(connections["dify"], run, poll_interval=0.1)))
    await asyncio.sleep(0.5)
    assert open_sockets_to(emulator.port) == 1
    assert (await waiting)[0]["status"] == "succeeded"
    assert open_sockets_to(emulator.port) == 0


def open_sockets_to(port: int) -> int:
    """This process's established TCP connections to ``port`` (sync hooks dropped by now are collected)."""
    gc.collect()
    return sum(
        1
        for conn in psutil.Process().net_connections(kind="tcp")
        if conn.raddr and conn.raddr.port == port and conn.status == psutil.CONN_ESTABLISHED
    )
