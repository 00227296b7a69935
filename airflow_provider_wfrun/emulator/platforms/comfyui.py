"""
ComfyUI's server API as the emulator speaks it (``/comfyui``), after ``server.py`` and ``execution.py``.

A run is a prompt: the API-format graph posted to ``/prompt``. ``/history/{prompt_id}`` is ``{}`` until the
prompt has finished; ``/queue`` lists running and pending prompts as ``[number, prompt_id, prompt,
extra_data, outputs_to_execute]``. A prompt deleted from the queue vanishes (no history), an interrupted
one ends with ``status_str`` ``error`` and an ``execution_interrupted`` message. A rejected graph answers
400 with ``node_errors`` per node: here a node input set to null, or a graph without an output node.

Per-run behaviour comes from the ``_emulator`` input of a ``WfrunEcho`` node, an emulator-only output node
that echoes its inputs as text (as a "show text" custom node would); ``SaveImage`` nodes produce small PNGs
served by ``/view``. The server needs no key; one that is sent must be right (an authenticating proxy).
"""

from __future__ import annotations

import itertools
import time
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse, PlainTextResponse, Response

from airflow_provider_wfrun.emulator.core import (
    GPU_RUNS,
    SCENARIO_INPUT_KEY,
    ApiError,
    Dialect,
    EmulatorState,
    Run,
    json_object,
    platform_route,
)
from airflow_provider_wfrun.emulator.files import png

if TYPE_CHECKING:
    from collections.abc import Mapping

    from starlette.requests import Request
    from starlette.routing import Route

NAME = "comfyui"
ROOT = "/comfyui"
#: GPU workflows: a run waits for a GPU, then runs.
TYPICAL_RUNS = GPU_RUNS
#: Nodes whose results appear in a prompt's history outputs.
ECHO_NODE = "WfrunEcho"
OUTPUT_NODES = frozenset({"SaveImage", "PreviewImage", ECHO_NODE})
#: The node id the example graph gives its echo node.
EXAMPLE_NODE = "wfrun"

STATUSES = {
    "queued": "pending",
    "running": "running",
    "succeeded": "success",
    "partial": "success",
    "failed": "error",
    "canceled": "error",
}
_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
_numbers = itertools.count(1)


def _error(status: int, message: str | None, code: str | int | None) -> Response:
    """aiohttp's plain-text errors (``404: Not Found``), as ComfyUI's server and a proxy answer them."""
    return PlainTextResponse(f"{status}: {message or _REASONS.get(status, 'Error')}", status_code=status)


DIALECT = Dialect(
    name=NAME, root=ROOT, statuses=STATUSES, error=_error, auth_optional=True, essential=frozenset({"status"})
)


def example_run(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """``inputs`` as overrides of an echo node's inputs in a one-node graph (see ``emulator.app``)."""
    graph = {EXAMPLE_NODE: {"class_type": ECHO_NODE, "inputs": dict.fromkeys(inputs, "")}}
    return {
        "workflow": graph,
        "workflow_id": None,
        "inputs": {f"{EXAMPLE_NODE}.{key}": value for key, value in inputs.items()},
    }


def example_outputs(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """What the echo node of :func:`example_run`'s graph shows: each input as a one-item list."""
    return {EXAMPLE_NODE: {key: [value] for key, value in inputs.items()}}


def routes(state: EmulatorState) -> list[Route]:
    return [
        platform_route(state, DIALECT, "submit", "/prompt", _prompt, "POST"),
        platform_route(state, DIALECT, "get", "/history/{prompt_id}", _history, "GET"),
        platform_route(state, DIALECT, "queue", "/queue", _queue, "GET"),
        platform_route(state, DIALECT, "delete", "/queue", _delete, "POST"),
        platform_route(state, DIALECT, "interrupt", "/interrupt", _interrupt, "POST"),
        platform_route(state, DIALECT, "view", "/view", _view, "GET"),
        platform_route(state, DIALECT, "verify", "/system_stats", _system_stats, "GET"),
    ]


# --- submit --------------------------------------------------------------------------------------------
async def _prompt(state: EmulatorState, request: Request) -> Response:
    body = await json_object(request)
    graph = body.get("prompt")
    if not isinstance(graph, dict) or not graph:
        return _rejected("invalid_prompt", "Invalid prompt", "the prompt is not a graph of nodes", {})
    for node_id, node in graph.items():
        if not isinstance(node, dict) or "class_type" not in node or not isinstance(node.get("inputs"), dict):
            message = "Cannot execute because a node is missing the class_type property."
            return _rejected("invalid_prompt", message, f"Node ID '#{node_id}'", {})
    outputs = [node_id for node_id, node in graph.items() if node["class_type"] in OUTPUT_NODES]
    if not outputs:
        return _rejected("prompt_no_outputs", "Prompt has no outputs", "", {})
    node_errors = {
        node_id: _node_error(node, [name for name, value in node["inputs"].items() if value is None])
        for node_id, node in graph.items()
        if any(value is None for value in node["inputs"].values())
    }
    if node_errors:
        return _rejected(
            "prompt_outputs_failed_validation", "Prompt outputs failed validation", "", node_errors
        )
    inputs = _echoed(graph)
    number = next(_numbers)
    extra = {"client_id": body.get("client_id"), "number": number, "graph": graph, "output_nodes": outputs}
    run = state.create_run(DIALECT, "", inputs, extra=extra)
    return JSONResponse({"prompt_id": run.run_id, "number": number, "node_errors": {}})


def _rejected(kind: str, message: str, details: str, node_errors: dict[str, Any]) -> Response:
    error = {"type": kind, "message": message, "details": details, "extra_info": {}}
    return JSONResponse({"error": error, "node_errors": node_errors}, status_code=400)


def _node_error(node: dict[str, Any], missing: list[str]) -> dict[str, Any]:
    errors = [
        {
            "type": "required_input_missing",
            "message": "Required input is missing",
            "details": name,
            "extra_info": {"input_name": name},
        }
        for name in missing
    ]
    return {"errors": errors, "dependent_outputs": [], "class_type": node["class_type"]}


def _echoed(graph: dict[str, Any]) -> dict[str, Any]:
    """The inputs of the graph's echo nodes (with the scenario, if one is given there)."""
    inputs: dict[str, Any] = {}
    for node in graph.values():
        if node["class_type"] == ECHO_NODE:
            inputs.update(node["inputs"])
    if inputs.get(SCENARIO_INPUT_KEY) == "":
        del inputs[SCENARIO_INPUT_KEY]
    return inputs


# --- status --------------------------------------------------------------------------------------------
async def _history(state: EmulatorState, request: Request) -> Response:
    run = state.get_run(request.path_params["prompt_id"], NAME)
    now = time.monotonic()
    if run is None or run.extra.get("deleted") or not run.is_done(now):
        return JSONResponse({})
    return JSONResponse({run.run_id: _entry(run)})


def _entry(run: Run) -> dict[str, Any]:
    phase = run.phase()
    succeeded = phase in ("succeeded", "partial")
    stamp = {"prompt_id": run.run_id}
    messages: list[Any] = [["execution_start", {**stamp, "timestamp": _ms(run.wall(run.start_mono))}]]
    messages.append(["execution_cached", {"nodes": [], **stamp, "timestamp": _ms(run.wall(run.start_mono))}])
    end = _ms(run.wall(run.end_mono))
    if succeeded:
        messages.append(["execution_success", {**stamp, "timestamp": end}])
    elif phase == "canceled":
        node = {"node_id": "3", "node_type": "KSampler", "executed": []}
        messages.append(["execution_interrupted", {**stamp, **node, "timestamp": end}])
    else:
        messages.append(["execution_error", {**stamp, **_failure(run), "timestamp": end}])
    status = {"status_str": "success" if succeeded else "error", "completed": succeeded, "messages": messages}
    meta = {node_id: {"node_id": node_id, "display_node": node_id} for node_id in run.extra["output_nodes"]}
    return {
        "prompt": _queue_item(run),
        "outputs": _outputs(run) if succeeded else {},
        "status": status,
        "meta": meta,
    }


def _failure(run: Run) -> dict[str, Any]:
    scenario = run.scenario
    return {
        "node_id": "3",
        "node_type": "KSampler",
        "executed": [],
        "exception_message": scenario.error_reason,
        "exception_type": scenario.error_code,
        "traceback": [scenario.error_detail],
        "current_inputs": {},
        "current_outputs": {},
    }


def _outputs(run: Run) -> dict[str, Any]:
    """Echo nodes show their inputs; image nodes list their PNGs. A scenario's outputs replace both."""
    if run.scenario.outputs is not None:
        return run.scenario.outputs
    outputs: dict[str, Any] = {}
    for node_id in run.extra["output_nodes"]:
        node = run.extra["graph"][node_id]
        if node["class_type"] == ECHO_NODE:
            shown = {key: value for key, value in node["inputs"].items() if key != SCENARIO_INPUT_KEY}
            outputs[node_id] = {key: [value] for key, value in shown.items()}
        else:
            prefix = str(node["inputs"].get("filename_prefix") or "ComfyUI").replace("/", "_")
            kind = "output" if node["class_type"] == "SaveImage" else "temp"
            name = f"{prefix}_{run.extra['number']:05}_.png"
            outputs[node_id] = {"images": [{"filename": name, "subfolder": "", "type": kind}]}
    return outputs


async def _queue(state: EmulatorState, request: Request) -> Response:
    now = time.monotonic()
    runs = [run for run in list(state.runs.values()) if run.platform == NAME and not run.extra.get("deleted")]
    running = [_queue_item(run) for run in runs if run.phase(now) == "running"]
    pending = [_queue_item(run) for run in runs if run.phase(now) == "queued"]
    return JSONResponse({"queue_running": running, "queue_pending": pending})


def _queue_item(run: Run) -> list[Any]:
    extra = run.extra
    return [
        extra["number"],
        run.run_id,
        extra["graph"],
        {"client_id": extra["client_id"]},
        extra["output_nodes"],
    ]


# --- cancel --------------------------------------------------------------------------------------------
async def _delete(state: EmulatorState, request: Request) -> Response:
    """``{"delete": [ids]}`` removes pending prompts (they vanish); ``{"clear": true}`` all of them."""
    body = await json_object(request)
    now = time.monotonic()
    pending = [
        run for run in list(state.runs.values()) if run.platform == NAME and run.phase(now) == "queued"
    ]
    wanted = body.get("delete")
    ids = {str(item) for item in wanted} if isinstance(wanted, list) else set()
    for run in pending:
        if body.get("clear") is True or run.run_id in ids:
            run.extra["deleted"] = True
            state.cancel(run.run_id)
    return Response(status_code=200)


async def _interrupt(state: EmulatorState, request: Request) -> Response:
    """Stops the running prompt; with ``prompt_id``, only if that is the one running."""
    body = await json_object(request)
    wanted = body.get("prompt_id")
    now = time.monotonic()
    for run in list(state.runs.values()):
        if run.platform == NAME and run.phase(now) == "running" and wanted in (None, run.run_id):
            state.cancel(run.run_id)
    return Response(status_code=200)


# --- files and probe -----------------------------------------------------------------------------------
async def _view(state: EmulatorState, request: Request) -> Response:
    """The PNG a finished prompt's image node lists (by its name), generated from that name."""
    name = request.query_params.get("filename", "")
    if not name.endswith(".png") or not _was_output(state, name, request.query_params.get("type", "output")):
        raise ApiError(404)
    return Response(png(name), media_type="image/png")


def _was_output(state: EmulatorState, name: str, kind: str) -> bool:
    for run in list(state.runs.values()):
        if run.platform == NAME and run.is_done() and run.phase() in ("succeeded", "partial"):
            for node_output in _outputs(run).values():
                images = node_output.get("images") if isinstance(node_output, dict) else None
                if any(
                    isinstance(i, dict) and (i.get("filename"), i.get("type")) == (name, kind)
                    for i in images or ()
                ):
                    return True
    return False


async def _system_stats(state: EmulatorState, request: Request) -> Response:
    system = {"os": "posix", "comfyui_version": "0.3.40", "python_version": "3.12", "embedded_python": False}
    devices = [{"name": "cpu", "type": "cpu", "index": None, "vram_total": 0, "vram_free": 0}]
    return JSONResponse({"system": system, "devices": devices})


def _ms(unix_seconds: float) -> int:
    return round(unix_seconds * 1000)
