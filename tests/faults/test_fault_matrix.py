"""
The fault matrix: every fault the emulator injects, on submit and on poll, on every platform.

Each cell drives one task through its whole life against the emulator: ``execute`` submits and defers,
the trigger (rebuilt from its serialized kwargs, as a triggerer does) polls, and a fresh operator runs
``execute_complete`` on the "worker". The fault is injected on the platform's submit route before
``execute``, or on its poll route once the task has deferred.

* **transient** (``count=2``): the task must recover wherever a retry is safe. A submit on Dify or
  GPTBots is not idempotent: once the request was sent (5xx, reset, timeout, garbled answer) it is not
  retried, and the task fails with a typed error naming the fault and saying a run may have started.
  chenyu deduplicates submits by idempotency key, so it recovers without a second run.
* **persistent** (every request): the task fails with a typed error naming the fault, after a bounded
  number of attempts, unless the fault only slows it down.

Faults that stand for work done on the server (5xx, reset, timeout, malformed, HTML, truncated) use
phase ``after``: the platform did the work, then the answer was lost. That is the case that must not
start a second run. 429 is a refusal, so phase ``before``. The matrix prints at the end of the run.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred
from conftest import ALL_PLATFORMS

from airflow_provider_wfrun.emulator.app import example_outputs, example_run
from airflow_provider_wfrun.exceptions import (
    InvalidResponseError,
    PlatformError,
    RateLimitedError,
    WorkflowRunConnectionError,
    WorkflowRunError,
)
from airflow_provider_wfrun.operators.workflow_run import RunWorkflowOperator
from airflow_provider_wfrun.platforms import adapter_classes

from ._support import StateStore, TaskInstanceStandIn, context, fire, rebuilt
from .reporting import Cell

#: Per-request timeout the task's hook uses; "read timeout" faults stall longer, "slow" ones less.
HOOK_TIMEOUT = 0.8
STALL = 1.6
SLOW = 0.2
#: How long a run takes (it queues 0.1 s first): short, but longer than a submit, so every task defers.
BASE_DURATION = 0.5
HOOK_PARAMS = {"timeout": HOOK_TIMEOUT, "retry_delay": 0.02, "retry_limit": 3, "retry_max_seconds": 10}
#: Persistent poll faults: fewer failed polls before the trigger gives up than the default 5, to keep
#: the matrix fast. The triggerer rebuilds the trigger from its kwargs, so this is a real setting.
PERSISTENT_POLL_FAILURES = 2

FAULTS: dict[str, dict[str, Any]] = {
    "429": {"kind": "429", "retry_after": 0.1, "phase": "before"},
    "500": {"kind": "500", "phase": "after"},
    "502": {"kind": "502", "phase": "after"},
    "503": {"kind": "503", "phase": "after"},
    "504": {"kind": "504", "phase": "after"},
    "reset": {"kind": "reset", "phase": "after"},
    "read-timeout": {"kind": "delay", "delay_seconds": STALL, "phase": "after"},
    "malformed": {"kind": "malformed", "phase": "after"},
    "html": {"kind": "html", "phase": "after"},
    "truncated": {"kind": "truncated", "phase": "after"},
    "slow": {"kind": "delay", "delay_seconds": SLOW, "phase": "after"},
}
POLL_ROUTES = {platform: f"{platform}.get" for platform in ALL_PLATFORMS} | {"chenyu": "chenyu.execution"}

#: The typed error a fault becomes, and what its message must say to name the fault.
SIGNATURES: dict[str, tuple[type[WorkflowRunError], str]] = {
    "429": (RateLimitedError, r"rate limited"),
    "500": (PlatformError, r"HTTP 500|\b500\b"),
    "502": (PlatformError, r"HTTP 502|\b502\b"),
    "503": (PlatformError, r"HTTP 503|\b503\b"),
    "504": (PlatformError, r"HTTP 504|\b504\b"),
    "reset": (WorkflowRunConnectionError, r"RemoteProtocolError|ReadError|reset|disconnected"),
    "read-timeout": (WorkflowRunConnectionError, r"within the [0-9.]+ s deadline"),
    "malformed": (InvalidResponseError, r"not JSON"),
    "html": (PlatformError, r"HTTP 502, text/html"),
    "truncated": (InvalidResponseError, r"not JSON"),
}


def expectation(platform: str, fault: str, phase: str, mode: str) -> str:
    """``succeeds`` (slower), ``recovers`` (after retries) or ``fails`` (typed error)."""
    if fault == "slow":
        return "succeeds"
    if mode == "persistent":
        return "fails"
    # A submit is retried whatever failed where the platform deduplicates it (chenyu's idempotency key).
    if phase == "poll" or adapter_classes()[platform].idempotent_submit or fault == "429":
        return "recovers"
    return "fails"


def cells() -> list[Any]:
    params = []
    for mode in ("transient", "persistent"):
        for phase in ("submit", "poll"):
            for platform in ALL_PLATFORMS:
                for fault in FAULTS:
                    params.append(
                        pytest.param(platform, fault, phase, mode, id=f"{mode}-{phase}-{platform}-{fault}")
                    )
    return params


def operator(conn_id: str, platform: str, duration: float) -> RunWorkflowOperator:
    return RunWorkflowOperator(
        task_id="run",
        conn_id=conn_id,
        **example_run(platform, {"text": "hello", "_emulator": {"duration_seconds": duration}}),
        poll_interval=0.05,
        deferrable=True,
        hook_params=HOOK_PARAMS,
    )


def run_duration(fault: str, phase: str, mode: str) -> float:
    """Long enough for the run to still be going when the task defers, whatever the submit costs."""
    if phase == "submit" and fault == "read-timeout":
        return BASE_DURATION + HOOK_PARAMS["retry_limit"] * HOOK_TIMEOUT
    if phase == "submit" and fault == "slow":
        return BASE_DURATION + SLOW
    return BASE_DURATION


@pytest.mark.parametrize(("platform", "fault", "phase", "mode"), cells())
def test_fault(request, connections, emulator, reports, platform, fault, phase, mode):
    spec = {**FAULTS[fault], "count": 2 if mode == "transient" else None}
    route = f"{platform}.submit" if phase == "submit" else POLL_ROUTES[platform]
    cell = Cell(platform=platform, fault=fault, phase=phase, mode=mode, xfail=bool(xfail_marks(request)))
    reports.cells.append(cell)
    ti, store = TaskInstanceStandIn(), StateStore()
    op = operator(connections[platform], platform, run_duration(fault, phase, mode))

    started = time.monotonic()
    deferred, submit_seconds, poll_seconds, result, error = False, 0.0, 0.0, None, None
    if phase == "submit":
        emulator.state.add_fault({"route": route, **spec})
    try:
        try:
            result = op.execute(context(ti, store))
        except TaskDeferred as deferral:
            deferred = True
            submit_seconds = time.monotonic() - started
            if phase == "poll":
                emulator.state.add_fault({"route": route, **spec})
            overrides = {"max_consecutive_failures": PERSISTENT_POLL_FAILURES} if mode == "persistent" else {}
            trigger = rebuilt(deferral.trigger, **overrides)
            poll_started = time.monotonic()
            event = fire(trigger)
            poll_seconds = time.monotonic() - poll_started
            worker = operator(connections[platform], platform, BASE_DURATION)
            result = worker.execute_complete(context(ti, store), event, **(deferral.kwargs or {}))
    except WorkflowRunError as exc:
        error = exc
    cell.seconds = time.monotonic() - started

    stats = emulator.state.stats()
    fired = stats["faults"].get(spec["kind"], 0)
    cell.submissions = stats["submissions"][platform]
    if error is None:
        cell.retries = 0 if fault == "slow" else fired
        cell.outcome = "succeeded (slower)" if fault == "slow" else f"recovered ({fired} retries)"
    else:
        cell.outcome = "failed"
        cell.error, cell.message = type(error).__name__, str(error)
        cell.named = naming(fault, cell.message)
        if phase == "poll" and (polls := re.match(r"(\d+) polls in a row failed", cell.message)):
            cell.named = f"{cell.named or 'no HTTP status'} x {polls.group(1)} polls"
        cell.retries = max(fired - 1, 0)

    if phase == "poll" and fault == "read-timeout":
        if error is None and poll_seconds >= fired * STALL:
            cell.note = "stalls waited out: trigger ignores hook timeout"
        elif error is not None and "polls in a row" not in cell.message:
            cell.note = "trigger waited out the stalls, the worker's get_run timed out"

    expected = expectation(platform, fault, phase, mode)
    if expected in ("succeeds", "recovers"):
        assert error is None, f"expected the task to recover, got {error!r}"
        assert deferred, "the run finished before the task deferred: the cell did not cover polling"
        expected_outputs = example_outputs(platform, {"text": "hello"})
        assert (result["status"], result["outputs"]) == ("succeeded", expected_outputs)
        assert cell.submissions == 1, "exactly one run, however many retries"
        assert fired >= (1 if expected == "succeeds" else 2), "the fault never hit the task"
        if fault == "read-timeout":
            # Had the stalled requests been waited out, this phase would have taken fired * STALL.
            stalled = poll_seconds if phase == "poll" else submit_seconds
            assert stalled < fired * STALL, f"stalled requests were not cut at the {HOOK_TIMEOUT} s timeout"
    else:
        error_type, marker = SIGNATURES[fault]
        assert isinstance(error, error_type), f"expected {error_type.__name__}, got {error!r}"
        assert re.search(marker, str(error)), str(error)
        assert f"[{platform}" in str(error), "the message must name the platform"
        if phase == "submit" and mode == "transient":
            # Not retried: the request reached a platform that cannot deduplicate it.
            assert fired == 1
        if phase == "submit" and fault != "429":
            assert "may have started a run" in str(error)
            assert "wfrun_run" not in store  # nothing to reattach to: the platform never said which run
        if phase == "poll":
            # The trigger gave up on its failure budget; the worker did not have to find out itself.
            assert deferred
            assert "polls in a row failed" in str(error)
    # Never a second run, whatever happened.
    assert cell.submissions <= 1
    if phase == "submit" and error is not None and fault != "429":
        cell.note = task_retry_note(connections[platform], platform, emulator, store)


def naming(fault: str, message: str) -> str:
    """The part of the message that names the fault (the first alternative of its signature that matches)."""
    for alternative in SIGNATURES[fault][1].split("|"):
        found = re.search(alternative, message)
        if found:
            return found.group(0)
    return ""


def xfail_marks(request: pytest.FixtureRequest) -> list[Any]:
    return list(request.node.iter_markers("xfail"))


def task_retry_note(conn_id: str, platform: str, emulator, store: StateStore) -> str:
    """What Airflow's retry of the failed task does: chenyu reattaches by key; the others start anew."""
    emulator.state.clear_faults()
    before = emulator.state.stats()["submissions"][platform]
    retry = operator(conn_id, platform, BASE_DURATION)
    with pytest.raises(TaskDeferred):
        retry.execute(context(TaskInstanceStandIn(try_number=2), store))
    started = emulator.state.stats()["submissions"][platform] - before
    if platform == "chenyu":
        assert started == 0, "chenyu's retry must reattach to the run by its idempotency key"
        return "retry: same run"
    assert started == 1
    return "retry: new run"
