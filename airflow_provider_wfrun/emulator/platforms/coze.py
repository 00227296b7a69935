"""
Coze's workflow API as the emulator speaks it (``/coze``), after the coze-py SDK.

``POST /v1/workflow/run`` with ``is_async`` answers ``execute_id`` and ``debug_url``; the run is read from
``GET /v1/workflows/{workflow_id}/run_histories/{execute_id}`` as a one-item list. Every answer is an
envelope ``{code, msg, ..., detail: {logid}}``; errors carry a non-zero ``code``, some with HTTP 200 (an
unknown execution: 4314), as on the real API. ``output`` is a JSON string whose ``Output`` is a JSON string
of the end node's variables. Coze has no queue state (a run is ``Running`` at once) and no cancel API.
Per-run behaviour comes from the ``_emulator`` parameter.
"""

from __future__ import annotations

import json
import secrets
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

NAME = "coze"
ROOT = "/coze"
#: The workflow tests and the demo run (Coze needs one; any id is accepted).
EXAMPLE_WORKFLOW_ID = "7484523878849822754"
DEBUG_URL = "https://www.coze.com/work_flow?execute_id={execute_id}&space_id=7345427862138912772&workflow_id={workflow_id}"

STATUSES = {
    "queued": "Running",
    "running": "Running",
    "succeeded": "Success",
    "partial": "Success",
    "failed": "Fail",
    "canceled": "Fail",
}
_ERRORS = {
    400: (4000, "The request parameters are incorrect."),
    401: (4100, "authentication is invalid"),
    404: (4200, "The requested resource does not exist."),
    429: (4013, "The request rate exceeds the limit."),
    500: (5000, "internal error"),
    502: (5000, "Bad Gateway"),
    503: (5000, "Service Unavailable"),
    504: (5000, "Gateway Timeout"),
}


def _error(status: int, message: str | None, code: str | int | None) -> Response:
    default_code, default_message = _ERRORS.get(status, (5000, "internal error"))
    body = {
        "code": code if isinstance(code, int) else default_code,
        "msg": message or default_message,
        "detail": {"logid": _logid()},
    }
    return JSONResponse(body, status_code=status)


DIALECT = Dialect(
    name=NAME,
    root=ROOT,
    statuses=STATUSES,
    error=_error,
    has_queue=False,
    essential=frozenset({"execute_id", "execute_status"}),
)


def routes(state: EmulatorState) -> list[Route]:
    return [
        platform_route(state, DIALECT, "submit", "/v1/workflow/run", _run, "POST"),
        platform_route(
            state, DIALECT, "get", "/v1/workflows/{workflow_id}/run_histories/{execute_id}", _history, "GET"
        ),
        platform_route(state, DIALECT, "verify", "/v1/users/me", _me, "GET"),
    ]


async def _run(state: EmulatorState, request: Request) -> Response:
    body = await json_object(request)
    workflow_id = body.get("workflow_id")
    parameters = body.get("parameters", {})
    if not isinstance(workflow_id, str) or not workflow_id or not isinstance(parameters, dict):
        raise ApiError(400, "workflow_id is required and parameters must be an object", code=4000)
    execute_id = str(secrets.randbelow(9 * 10**18) + 10**18)
    run = state.create_run(DIALECT, workflow_id, parameters, run_id=execute_id)
    debug_url = DEBUG_URL.format(execute_id=execute_id, workflow_id=workflow_id)
    if body.get("is_async") is True:
        return _ok({"execute_id": execute_id, "debug_url": debug_url})
    await state.wait_done(run)
    record = _record(run, time.monotonic())
    return _ok({"data": record["output"], "debug_url": debug_url, "usage": record["usage"]})


async def _history(state: EmulatorState, request: Request) -> Response:
    run = state.get_run(request.path_params["execute_id"], NAME)
    if run is None or run.workflow_id != request.path_params["workflow_id"]:
        # The real API's answer for an execution it does not know: HTTP 200, code 4314.
        return JSONResponse({"code": 4314, "msg": "execute record not found", "detail": {"logid": _logid()}})
    return _ok({"data": [run.served(DIALECT, _record(run, time.monotonic()))]})


async def _me(state: EmulatorState, request: Request) -> Response:
    return _ok({"data": {"user_id": "7345427862138912771", "user_name": "emulator", "nick_name": "Emulator"}})


def _record(run: Run, now: float) -> dict[str, Any]:
    phase = run.phase(now)
    done = phase in TERMINAL_PHASES
    succeeded = phase in ("succeeded", "partial")
    tokens = run.scenario.tokens if done else 0
    failed = done and not succeeded
    return {
        "execute_id": run.run_id,
        "execute_status": STATUSES[phase],
        "bot_id": "0",
        "connector_id": "1024",
        "connector_uid": "airflow",
        "run_mode": 2,
        "logid": _logid(),
        "create_time": int(run.created_wall),
        "update_time": int(run.wall(run.end_mono if done else now)),
        "output": json.dumps({"Output": json.dumps(run.outputs, ensure_ascii=False)}) if succeeded else "",
        "token": str(tokens),
        "cost": "0",
        "error_code": (run.scenario.error_code if phase == "failed" else "canceled") if failed else "",
        "error_message": (run.scenario.error_reason if phase == "failed" else "the run was canceled")
        if failed
        else "",
        "debug_url": DEBUG_URL.format(execute_id=run.run_id, workflow_id=run.workflow_id),
        "is_output_trimmed": False,
        "usage": {"input_count": tokens // 3, "output_count": tokens - tokens // 3, "token_count": tokens},
    }


def _ok(fields: dict[str, Any]) -> Response:
    return JSONResponse({"code": 0, "msg": "", **fields, "detail": {"logid": _logid()}})


def _logid() -> str:
    return time.strftime("%Y%m%d%H%M%S", time.gmtime()) + secrets.token_hex(10).upper()
