"""
Turning a finished run or a trigger event into a task outcome, on the worker.

The trigger event only says how waiting ended; the final run is fetched again on the worker, so outputs
never travel through the triggerer or the trigger event table.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from airflow_provider_wfrun.exceptions import (
    EXCEPTIONS_BY_ERROR_TYPE,
    InvalidResponseError,
    OutputTooLargeError,
    RunCanceledError,
    RunFailedError,
    RunTimeoutError,
    WorkflowRunError,
)
from airflow_provider_wfrun.models import RunStatus, WorkflowRun
from airflow_provider_wfrun.triggers.workflow_run import ERROR, TIMEOUT

#: Default cap on a result pushed to XCom: the metadata database is not an object store.
DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024

#: Errors a trigger event can name whose constructor takes just a message.
_SIMPLE_ERRORS = {
    name: cls
    for name, cls in EXCEPTIONS_BY_ERROR_TYPE.items()
    if not issubclass(cls, (RunFailedError, RunTimeoutError, OutputTooLargeError))
}


def check_event(event: Any, run_id: str) -> dict[str, Any]:
    """The trigger's event, validated: a mapping about this run with a status."""
    if not isinstance(event, Mapping) or "status" not in event:
        raise InvalidResponseError(f"the trigger sent an unreadable event for run {run_id}: {event!r}")
    if event.get("run_id") != run_id:
        raise InvalidResponseError(
            f"the trigger sent an event for run {event.get('run_id')!r} while waiting for run {run_id!r}"
        )
    return dict(event)


def is_timeout(event: Mapping[str, Any]) -> bool:
    return bool(event["status"] == TIMEOUT)


def raise_if_error(event: Mapping[str, Any]) -> None:
    """A polling failure the trigger gave up on becomes the typed error it named."""
    if event["status"] != ERROR:
        return
    error_class = _SIMPLE_ERRORS.get(str(event.get("error_type")), WorkflowRunError)
    raise error_class(str(event.get("message") or "waiting for the run failed"))


def result_of(
    run: WorkflowRun, *, allow_partial_success: bool, max_output_bytes: int | None = None
) -> dict[str, Any]:
    """The result dict of a terminal run, or the typed error carrying the platform's reason."""
    reason = f": {run.error.reason}" if run.error else ""
    if run.status is RunStatus.SUCCEEDED:
        return _fitting(run, max_output_bytes)
    if run.status is RunStatus.PARTIALLY_SUCCEEDED:
        if allow_partial_success:
            return _fitting(run, max_output_bytes)
        raise RunFailedError(
            f"the run only partially succeeded{reason}; pass allow_partial_success=True to accept that",
            run=run,
        )
    if run.status is RunStatus.CANCELED:
        raise RunCanceledError(f"the run was canceled{reason}", run=run)
    if run.status is RunStatus.FAILED:
        raise RunFailedError(f"the run failed{reason}", run=run)
    raise InvalidResponseError(
        f"the run is not finished (status {run.platform_status or run.status.value})",
        platform=run.platform,
        run_id=run.run_id,
    )


def _fitting(run: WorkflowRun, max_output_bytes: int | None) -> dict[str, Any]:
    """The result dict, unless it is too large for XCom: then a typed error saying where the outputs are."""
    result = run.result_dict()
    if max_output_bytes is None:
        return result
    size = len(json.dumps(result, separators=(",", ":"), ensure_ascii=False, default=str).encode())
    if size <= max_output_bytes:
        return result
    raise OutputTooLargeError(
        f"the run {run.status.value}, but its result is {_size(size)} of JSON, more than "
        f"max_output_bytes={max_output_bytes} ({_size(max_output_bytes)}) allows in XCom, so it was not "
        "returned. Nothing is lost: XCom 'run_id' and 'run_url' name the run, and its outputs stay on the "
        "platform (WorkflowRunHook(conn_id).get_run(run_id).outputs). To return them, use an XCom backend "
        "that keeps large values in object storage and raise max_output_bytes (None: no limit), or have "
        "the workflow write large outputs to storage and return a reference",
        run=run,
        size=size,
        limit=max_output_bytes,
    )


def _size(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MiB" if size >= 1024 * 1024 else f"{size / 1024:.1f} KiB"


def summary(run: WorkflowRun) -> str:
    """One log line a person reads at the end of a task."""
    parts = [f"{run.platform} run {run.run_id} {run.status.value}"]
    if run.duration_seconds is not None:
        parts.append(f"in {run.duration_seconds:.1f} s")
    if run.cost.total is not None:
        parts.append(f"cost {format(run.cost.total, 'f')} {run.cost.currency or ''}".rstrip())
    if run.cost.tokens is not None:
        parts.append(f"{run.cost.tokens} tokens")
    return ", ".join(parts)
