"""
GPTBots' Workflow API as the emulator speaks it (``/gptbots/v1``).

A GPTBots API key belongs to one workflow, so requests carry no workflow id: every run is a run of
:data:`WORKFLOW_ID`, and per-run behaviour comes from the ``_emulator`` input key. Times are Unix
milliseconds, cost is in credits, and some errors arrive inside an HTTP 200 body, as on the real API.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse, Response

from airflow_provider_wfrun.emulator.core import (
    TERMINAL_PHASES,
    ApiError,
    Dialect,
    EmulatorState,
    Run,
    json_object,
    platform_route,
)

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.routing import Route

NAME = "gptbots"
ROOT = "/gptbots/v1"
WORKFLOW_ID = "wf-gptbots-emulated"
WORKFLOW_NAME = "todayNews"
WORKFLOW_VERSION = "1.0.1"
DEFAULT_CREDITS = 0.6928
#: Fields the real API leaves out while a run is PENDING or RUNNING.
_RESULT_ONLY = ("output", "workflowExecutionTime", "totalCost", "totalTokens", "endTime")

STATUSES = {
    "queued": "PENDING",
    "running": "RUNNING",
    "succeeded": "SUCCEED",
    "partial": "SUCCEED",
    "failed": "FAILED",
    "canceled": "FAILED",
}
_ERRORS = {
    400: (40000, "Invalid parameter"),
    401: (40127, "Developer authentication failed"),
    404: (40400, "Not found"),
    429: (42900, "Too many requests, please try again later"),
    500: (50000, "Internal server error"),
    502: (50200, "Bad gateway"),
    503: (50300, "Service unavailable"),
    504: (50400, "Gateway timeout"),
}


def _error(status: int, message: str | None, code: str | int | None) -> Response:
    default_code, default_message = _ERRORS.get(status, (status * 100, "Error"))
    body = {"code": code if isinstance(code, int) else default_code, "message": message or default_message}
    return JSONResponse(body, status_code=status)


DIALECT = Dialect(
    name=NAME,
    root=ROOT,
    statuses=STATUSES,
    error=_error,
    accepts_bare_key=True,
    default_cost=DEFAULT_CREDITS,
    essential=frozenset({"workflowRunId", "status"}),
)


def routes(state: EmulatorState) -> list[Route]:
    return [
        platform_route(state, DIALECT, "submit", "/workflow/invoke", _invoke, "POST"),
        platform_route(state, DIALECT, "get", "/workflow/query/result", _query, "POST"),
        platform_route(state, DIALECT, "verify", "/api-key/verify", _verify, "GET"),
    ]


async def _invoke(state: EmulatorState, request: Request) -> Response:
    body = await json_object(request)
    inputs = body.get("input")
    if not isinstance(inputs, dict):
        raise ApiError(400)
    run = state.create_run(DIALECT, WORKFLOW_ID, inputs, extra={"userId": body.get("userId")})
    if body.get("isAsync") is True:
        return JSONResponse({**_identity(run), "status": "PENDING"})
    await state.wait_done(run)
    return JSONResponse(run.served(DIALECT, _result(run, time.monotonic())))


async def _query(state: EmulatorState, request: Request) -> Response:
    body = await json_object(request)
    run_id = body.get("workflowRunId")
    if not isinstance(run_id, str) or not run_id:
        raise ApiError(400, "Invalid parameter: workflowRunId is required")
    run = state.get_run(run_id, NAME)
    if run is None:
        # GPTBots documents no "run not found" answer; its documented code for a request it cannot serve
        # is 40000 "Invalid parameter" (an HTTP 200 body, as its own scripts expect), so that is the answer.
        return JSONResponse({"code": 40000, "message": "Invalid parameter"})
    return JSONResponse(run.served(DIALECT, _result(run, time.monotonic())))


async def _verify(state: EmulatorState, request: Request) -> Response:
    return JSONResponse({"type": "workflow", "id": WORKFLOW_ID})


def _identity(run: Run) -> dict[str, Any]:
    return {
        "workflowId": WORKFLOW_ID,
        "workflowName": WORKFLOW_NAME,
        "workflowVersion": WORKFLOW_VERSION,
        "workflowRunId": run.run_id,
    }


def _result(run: Run, now: float) -> dict[str, Any]:
    """The query/sync-invoke object; the result fields appear only once the run is over."""
    phase = run.phase(now)
    started = run.has_started(now)
    # startTime and endTime bracket the execution (end - start = workflowExecutionTime), as in the
    # documented example; a queued run has not started, so it has no startTime yet.
    start_ms = _ms(run.wall(run.start_mono))
    execution_ms = round(run.running_seconds(now) * 1000)
    result: dict[str, Any] = {
        **_identity(run),
        "input": run.inputs,
        "output": run.outputs if phase in ("succeeded", "partial") else {},
        "workflowExecutionTime": execution_ms,
        "status": STATUSES[phase],
        "totalCost": run.cost if started else 0,
        "totalTokens": run.scenario.tokens if started else 0,
        "startTime": start_ms,
        "endTime": start_ms + execution_ms,
    }
    if phase not in TERMINAL_PHASES:
        for key in _RESULT_ONLY:
            del result[key]
    if not started:
        del result["startTime"]
    return result


def _ms(unix_seconds: float) -> int:
    return round(unix_seconds * 1000)
