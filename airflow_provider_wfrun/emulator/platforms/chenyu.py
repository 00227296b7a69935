"""
chenyu.cn (晨羽智云) Open API v2 workflow runs as the emulator speaks it (``/chenyu/api/open/v2``).

chenyu pre-charges a quote at submit and settles the real cost at the end, and it reports the same
run twice: live engine progress (``/workflow/run/execution``, numbers) and the billing record
(``/workflow/run/info``, 8-decimal strings). Both views are derived from one run so they never
disagree. Submits are idempotent per (workflow, ``idempotency_key``), like the real service.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from airflow_provider_wfrun.emulator import files
from airflow_provider_wfrun.emulator.core import (
    DEFAULT_LOG_LINES,
    GPU_RUNS,
    TERMINAL_PHASES,
    ApiError,
    Dialect,
    EmulatorState,
    Run,
    hex_id,
    iso_utc,
    json_object,
    platform_route,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request

NAME = "chenyu"
ROOT = "/chenyu/api/open/v2"
#: GPU workflows: a run waits for a GPU, then runs.
TYPICAL_RUNS = GPU_RUNS
DEFAULT_COST_CNY = 0.0002878
#: The workflow tests and the demo run (chenyu needs one; any id is accepted).
EXAMPLE_WORKFLOW_ID = "wf_861ef31e94dcfb10e6e7"
TOTAL_NODES = 7
BALANCE = {"balance": 100.0, "card_balance": 0.0}

STATUSES = {
    "queued": "queued",
    "running": "running",
    "succeeded": "succeeded",
    "partial": "succeeded",
    "failed": "failed",
    "canceled": "canceled",
}
_MESSAGES = {
    400: "参数错误",
    401: "API Key 无效或已过期",
    403: "无权限访问",
    404: "资源不存在",
    429: "请求过于频繁，请稍后再试",  # noqa: RUF001 (Chinese punctuation)
    500: "服务器内部错误",
    502: "网关错误",
    503: "服务暂不可用",
    504: "网关超时",
}
_TERMINAL_LOG = {
    "succeeded": ("execution_success", "info", "execution succeeded"),
    "partial": ("execution_success", "info", "execution succeeded"),
    "failed": ("execution_error", "error", "execution failed"),
    "canceled": ("execution_interrupted", "warning", "execution interrupted"),
}
_EIGHT_DECIMALS = Decimal("0.00000001")


def _error(status: int, message: str | None, code: str | int | None) -> Response:
    body = {
        "code": code if isinstance(code, int) else status,
        "msg": message or _MESSAGES.get(status, "请求失败"),
        "data": None,
    }
    return JSONResponse(body, status_code=status)


DIALECT = Dialect(name=NAME, root=ROOT, statuses=STATUSES, error=_error, default_cost=DEFAULT_COST_CNY)


def routes(state: EmulatorState) -> list[Route]:
    return [
        platform_route(state, DIALECT, "submit", "/workflow/run/submit", _submit, "POST"),
        platform_route(state, DIALECT, "execution", "/workflow/run/execution", _execution, "GET"),
        platform_route(state, DIALECT, "info", "/workflow/run/info", _info, "GET"),
        platform_route(state, DIALECT, "balance", "/balance/info", _balance, "GET"),
        platform_route(state, DIALECT, "assets", "/assets", _upload_asset, "POST"),
        Route(f"{ASSETS_ROOT}/{{asset_id}}/{{name}}", _asset_content(state), methods=["GET"]),
    ]


# ------------------------------------------------------------------------------------------ assets
#: Where asset and output image links point (a CDN beside the API on the real service).
ASSETS_ROOT = "/chenyu/assets"
ASSET_LIMIT_BYTES = 100 * 1024 * 1024


async def _upload_asset(state: EmulatorState, request: Request) -> Response:
    stored = await files.read_upload(request, state, "asset_", lambda name, kind: ASSET_LIMIT_BYTES)
    url = _asset_url(request, stored)
    return _ok(
        {
            "asset_id": stored.file_id,
            "asset_uri": f"asset://{stored.file_id}",
            "url": url,
            "content_url": url,
            "media_type": stored.media_type.partition("/")[0],
            "mime_type": stored.media_type,
            "size_bytes": len(stored.content),
            "purpose": "temp_input",
            "persistent": False,
            "status": "confirmed",
            "original_filename": stored.name,
        },
        "success",
    )


def _asset_url(request: Request, stored: files.StoredFile) -> str:
    return f"{str(request.base_url).rstrip('/')}{ASSETS_ROOT}/{stored.file_id}/{stored.name}"


def _asset_content(state: EmulatorState) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return files.serve(state, request.path_params["asset_id"])

    return endpoint


def _output_url(state: EmulatorState, request: Request, value: Any) -> str | None:
    """An ``asset://`` input, or ``emulator:png``, as the image URL chenyu outputs."""
    if value == files.GENERATE_PNG:
        return _asset_url(request, files.generated_png(state, "asset_"))
    if isinstance(value, str) and value.startswith("asset://"):
        stored = state.files.get(value.removeprefix("asset://"))
        if not isinstance(stored, files.StoredFile):
            raise ApiError(400, f"资源不存在: {value}")
        return _asset_url(request, stored)
    return None


# ------------------------------------------------------------------------------------------ endpoints
async def _submit(state: EmulatorState, request: Request) -> Response:
    body = await json_object(request)
    workflow_id = _required_text(body, "workflow_id")
    key = _required_text(body, "idempotency_key")
    inputs = body.get("inputs")
    inputs = {} if inputs is None else inputs
    if not isinstance(inputs, dict):
        raise ApiError(400, "inputs 必须是对象")
    alias = f"chenyu.idempotency:{workflow_id}\x00{key}"
    run = state.find(alias)
    if run is not None:
        state.count_replay(NAME)
        return _ok(_order(run, time.monotonic(), replay=True), "success")
    inputs = files.replace_files(inputs, lambda value: _output_url(state, request, value))
    stamp = time.time_ns()
    extra = {
        "revision_id": body.get("revision_id") or _revision(workflow_id),
        "task_id": f"task_{stamp}_{secrets.token_hex(8)}",
        "prompt_id": f"prompt_{stamp}_{secrets.token_hex(8)}",
        "billing_run_id": hex_id("wfbill_"),
        "idempotency_key": key,
    }
    run = state.create_run(
        DIALECT, workflow_id, inputs, run_id=hex_id("wfrun_"), extra=extra, aliases=[alias]
    )
    return _ok(_order(run, time.monotonic(), replay=False), "success")


async def _execution(state: EmulatorState, request: Request) -> Response:
    run_order_id = _run_order_id(request)
    run = state.get_run(run_order_id, NAME)
    if run is None:
        return JSONResponse(_task_not_found(run_order_id), status_code=404)
    return _ok(run.served(DIALECT, _progress(run, time.monotonic())))


async def _info(state: EmulatorState, request: Request) -> Response:
    run_order_id = _run_order_id(request)
    run = state.get_run(run_order_id, NAME)
    if run is None:
        raise ApiError(404, "运行订单不存在")
    return _ok(run.served(DIALECT, _billing(run, time.monotonic())))


async def _balance(state: EmulatorState, request: Request) -> Response:
    return _ok(dict(BALANCE))


def _ok(data: dict[str, Any], message: str = "查询成功") -> Response:
    return JSONResponse({"code": 0, "msg": message, "data": data})


def _required_text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise ApiError(400, f"{name} 不能为空")
    return value


def _run_order_id(request: Request) -> str:
    run_order_id = request.query_params.get("run_order_id")
    if not run_order_id:
        raise ApiError(400, "run_order_id 不能为空")
    return run_order_id


def _revision(workflow_id: str) -> str:
    """The 'current published revision' of a workflow: stable per workflow id."""
    return "wfr_" + hashlib.sha256(workflow_id.encode()).hexdigest()[:20]


def _task_not_found(run_order_id: str) -> dict[str, Any]:
    return {
        "code": 1,
        "msg": "Task not found.",
        "data": {
            "error": {
                "reason": "Task not found.",
                "detail": f"execution task {run_order_id} does not exist",
                "engine_code": "TASK_NOT_FOUND",
                "status_code": 404,
            }
        },
    }


# ------------------------------------------------------------------------------------------- payloads
def _order(run: Run, now: float, *, replay: bool) -> dict[str, Any]:
    """``data`` of a submit (and of its idempotent replays)."""
    done = run.is_done(now)
    return {
        "run_order_id": run.run_id,
        "workflow_id": run.workflow_id,
        "revision_id": run.extra["revision_id"],
        "quote_currency": "CNY",
        "quote_amount": _money(Decimal(run.scenario.quote_amount)),
        "freeze_status": "released" if done else "frozen",
        "run_status": STATUSES[run.phase(now)],
        "task_id": run.extra["task_id"],
        "prompt_id": run.extra["prompt_id"],
        "billing_run_id": run.extra["billing_run_id"],
        "idempotent_replay": replay,
    }


def _progress(run: Run, now: float) -> dict[str, Any]:
    """``data`` of ``/workflow/run/execution``: engine status, queue, logs, numeric costs."""
    phase = run.phase(now)
    done = phase in TERMINAL_PHASES
    logs = _logs(run, now)
    compute, external = _costs(run, now)
    return {
        "task_id": run.extra["task_id"],
        "workflow_id": run.workflow_id,
        "status": STATUSES[phase],
        "queue_info": _queue_info(run, now) if phase == "queued" else None,
        "progress_percent": _percent(run, now),
        "progress_snapshot": _snapshot(run, now, logs),
        "logs": logs,
        "actual_execution_duration_sec": round(run.running_seconds(now), 3),
        "compute_cost": compute,
        "external_model_cost": external,
        "total_cost": round(compute + external, 8),
        "outputs": run.outputs if phase in ("succeeded", "partial") else {},
        "error": _engine_error(run) if phase == "failed" else None,
        "created_at": iso_utc(run.created_wall),
        "started_at": iso_utc(run.wall(run.start_mono)) if run.has_started(now) else None,
        "terminal_at": iso_utc(run.wall(run.end_mono)) if done else None,
    }


def _billing(run: Run, now: float) -> dict[str, Any]:
    """``data`` of ``/workflow/run/info``: the run order, money as 8-decimal strings."""
    phase = run.phase(now)
    done = phase in TERMINAL_PHASES
    compute, external = (Decimal(repr(value)) for value in _costs(run, now))
    quote = Decimal(run.scenario.quote_amount)
    final = compute + external
    error_code, error_message = _order_error(run) if done else ("", "")
    return {
        "run_order_id": run.run_id,
        "workflow_id": run.workflow_id,
        "revision_id": run.extra["revision_id"],
        "quote_amount": _money(quote),
        "quote_currency": "CNY",
        "freeze_status": "released" if done else "frozen",
        "submission_status": "submitted",
        "run_status": STATUSES[phase],
        "settlement_status": _settlement_status(phase),
        "task_id": run.extra["task_id"],
        "prompt_id": run.extra["prompt_id"],
        "inputs": run.inputs,
        "outputs": run.outputs if phase in ("succeeded", "partial") else {},
        "compute_cost": _money(compute),
        "external_model_cost": _money(external),
        "total_cost": _money(final),
        "final_amount": _money(final if done else Decimal(0)),
        "released_amount": _money(max(quote - final, Decimal(0)) if done else Decimal(0)),
        "error_code": error_code,
        "error_message": error_message,
        "created_at": iso_utc(run.created_wall),
        "updated_at": iso_utc(run.wall(_last_change(run, now))),
    }


def _settlement_status(phase: str) -> str:
    """A canceled run releases its frozen quote (as the documented model-run cancel does); others settle."""
    if phase == "canceled":
        return "released"
    return "settled" if phase in TERMINAL_PHASES else "pending"


def _money(amount: Decimal) -> str:
    return format(amount.quantize(_EIGHT_DECIMALS), "f")


def _costs(run: Run, now: float) -> tuple[float, float]:
    """
    (compute, external) cost in CNY: charged at the end; nothing for a run that never started, nor for a
    canceled one, whose whole quote is released (the documented cancel: ``released_amount`` = the freeze).
    """
    if not run.is_done(now) or not run.has_started(now) or run.phase(now) == "canceled":
        return 0.0, 0.0
    return run.cost, run.scenario.external_cost


def _queue_info(run: Run, now: float) -> dict[str, Any]:
    """Position falls through ahead+1 equal slices of the queue time: ahead, ..., 1, 0."""
    queue, ahead = run.scenario.queue_seconds, run.scenario.queue_position
    remaining = max(run.start_mono - now, 0.0)
    position = min(int((ahead + 1) * remaining / queue), ahead) if queue > 0 else 0
    return {"position": position, "estimated_wait_sec": math.ceil(remaining)}


def _percent(run: Run, now: float) -> int:
    phase = run.phase(now)
    if phase in ("succeeded", "partial"):
        return 100
    percent = int(run.progress(now) * 100)
    return min(percent, 99) if phase in TERMINAL_PHASES else percent


def _snapshot(run: Run, now: float, logs: list[dict[str, Any]]) -> dict[str, Any]:
    phase = run.phase(now)
    if phase == "queued":
        return {}
    completed = TOTAL_NODES if phase in ("succeeded", "partial") else min(int(run.progress(now) * 7), 6)
    return {
        "internal_status": STATUSES[phase],
        "completed_node_count": completed,
        "total_runnable_nodes": TOTAL_NODES,
        "last_event_type": logs[-1]["event_type"] if logs else None,
    }


def _logs(run: Run, now: float) -> list[dict[str, Any]]:
    """Log lines due so far; the terminal line comes from how the run ended."""
    lines = run.scenario.log_lines if run.scenario.log_lines is not None else DEFAULT_LOG_LINES
    horizon = min(now, run.end_mono)
    logs = []
    for line in lines:
        due = run.start_mono + line.offset * run.scenario.duration_seconds
        if run.has_started(now) and due <= horizon:
            percent = line.progress_percent if line.progress_percent is not None else int(line.offset * 100)
            logs.append(_log(run, due, line.event_type, line.level, line.message, percent, line.node_id))
    phase = run.phase(now)
    if phase in TERMINAL_PHASES:
        event_type, level, message = _TERMINAL_LOG[phase]
        if phase == "failed":
            message = f"{message}: {run.scenario.error_reason}"
        logs.append(_log(run, run.end_mono, event_type, level, message, _percent(run, now), None))
    return logs


def _log(
    run: Run, due: float, event_type: str, level: str, message: str, percent: float, node_id: str | None
) -> dict[str, Any]:
    entry: dict[str, Any] = {"at": iso_utc(run.wall(due)), "event_type": event_type, "level": level}
    entry["message"] = message
    if node_id is not None:
        entry["node_id"] = node_id
    entry["progress_percent"] = percent
    return entry


def _engine_error(run: Run) -> dict[str, Any]:
    scenario = run.scenario
    return {
        "reason": scenario.error_reason,
        "detail": scenario.error_detail,
        "engine_code": scenario.error_code,
        "status_code": 500,
    }


def _order_error(run: Run) -> tuple[str, str]:
    phase = run.final_phase
    if phase == "failed":
        return run.scenario.error_code, run.scenario.error_reason
    if phase == "canceled":
        return "user_cancelled", "用户取消任务"
    return "", ""


def _last_change(run: Run, now: float) -> float:
    if run.is_done(now):
        return run.end_mono
    return run.start_mono if run.has_started(now) else run.created_mono
