"""
ComfyUI's server API as the emulator speaks it (``/comfyui``), after ``server.py`` and ``execution.py``.

A run is a prompt: the API-format graph posted to ``/prompt``. ``/history/{prompt_id}`` is ``{}`` until the
prompt has finished; ``/queue`` lists running and pending prompts as ``[number, prompt_id, prompt,
extra_data, outputs_to_execute]``. A prompt deleted from the queue vanishes (no history), an interrupted
one ends with ``status_str`` ``error`` and an ``execution_interrupted`` message. A rejected graph answers
400 with ``node_errors`` per node: here a node input set to null, a ``LoadImage`` of a file the input folder
does not hold, or a graph without an output node.

``/upload/image`` stores a file in the input folder the way ``server.py`` does: a different file of the
same name is kept as ``name (1).ext``, the same file again is not stored twice. A ``SaveImage`` whose
images come from a ``LoadImage`` saves that file, so what goes in comes back out through ``/view``.

Per-run behaviour comes from the ``_emulator`` input of a ``WfrunEcho`` node, an emulator-only output node
that echoes its inputs as text (as a "show text" custom node would); ``SaveImage`` nodes produce small PNGs
served by ``/view``. The server needs no key; one that is sent must be right (an authenticating proxy).
"""

from __future__ import annotations

import itertools
import time
from typing import TYPE_CHECKING, Any

from starlette.datastructures import UploadFile
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
from airflow_provider_wfrun.emulator.files import StoredFile, png

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
LOAD_NODE = "LoadImage"
#: The server's default ``--max-upload-size``.
UPLOAD_LIMIT = 100 * 1024 * 1024
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
    413: "Request Entity Too Large",
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
        platform_route(state, DIALECT, "upload", "/upload/image", _upload, "POST"),
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
    node_errors |= _unreadable_images(state, graph)
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


def _unreadable_images(state: EmulatorState, graph: dict[str, Any]) -> dict[str, Any]:
    """``LoadImage`` nodes whose file is not in the input folder (``execution.py``'s custom validation)."""
    errors = {}
    for node_id, node in graph.items():
        image = node["inputs"].get("image")
        if node["class_type"] == LOAD_NODE and isinstance(image, str) and _input_file(state, image) is None:
            error = {
                "type": "custom_validation_failed",
                "message": "Custom validation failed for node",
                "details": f"image - Invalid image file: {image}",
                "extra_info": {"input_name": "image"},
            }
            errors[node_id] = {"errors": [error], "dependent_outputs": [], "class_type": LOAD_NODE}
    return errors


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
            loaded = _loaded_file(run.extra["graph"], node)
            extension = loaded.rpartition(".")[2] if loaded and "." in loaded else "png"
            name = f"{prefix}_{run.extra['number']:05}_.{extension}"
            outputs[node_id] = {"images": [{"filename": name, "subfolder": "", "type": kind}]}
    return outputs


def _loaded_file(graph: dict[str, Any], node: dict[str, Any]) -> str | None:
    """The input file an image node saves, when its images come straight from a ``LoadImage``."""
    link = node["inputs"].get("images")
    source = graph.get(str(link[0])) if isinstance(link, list) and link else None
    if isinstance(source, dict) and source.get("class_type") == LOAD_NODE:
        image = source.get("inputs", {}).get("image")
        return image if isinstance(image, str) else None
    return None


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
    """
    An uploaded input file, or the file a finished prompt's image node lists: the input it saved, else a
    PNG generated from its name.
    """
    query = request.query_params
    name, kind = query.get("filename", ""), query.get("type", "output")
    if kind == "input":
        stored = _input_file(state, _joined(query.get("subfolder", ""), name))
        if stored is None:
            raise ApiError(404)
        return Response(stored.content, media_type=stored.media_type)
    found = _output(state, name, kind)
    if found is None:
        raise ApiError(404)
    loaded = _input_file(state, found) if found else None
    if loaded is not None:
        return Response(loaded.content, media_type=loaded.media_type)
    return Response(png(name), media_type="image/png")


def _output(state: EmulatorState, name: str, kind: str) -> str | None:
    """``""`` for a generated output of that name, the input file's name for a saved input, else None."""
    for run in list(state.runs.values()):
        if run.platform == NAME and run.is_done() and run.phase() in ("succeeded", "partial"):
            for node_id, node_output in _outputs(run).items():
                images = node_output.get("images") if isinstance(node_output, dict) else None
                if any(
                    isinstance(i, dict) and (i.get("filename"), i.get("type")) == (name, kind)
                    for i in images or ()
                ):
                    node = run.extra["graph"].get(node_id)
                    return (_loaded_file(run.extra["graph"], node) if isinstance(node, dict) else None) or ""
    return None


# --- uploads -------------------------------------------------------------------------------------------
def _joined(subfolder: str, name: str) -> str:
    """A file's path in the input folder, as a load node names it: ``subfolder/name`` or ``name``."""
    return f"{subfolder}/{name}" if subfolder else name


def _input_key(path: str) -> str:
    return f"{NAME}:input/{path.removesuffix(' [input]')}"


def _input_file(state: EmulatorState, path: str) -> StoredFile | None:
    stored = state.files.get(_input_key(path))
    return stored if isinstance(stored, StoredFile) else None


async def _upload(state: EmulatorState, request: Request) -> Response:
    """``server.py``'s ``image_upload``: the ``image`` part into the input folder (or ``type``'s)."""
    form = await request.form(max_files=1, max_fields=10)
    image = form.get("image")
    if not isinstance(image, UploadFile) or not image.filename or "/" in image.filename:
        raise ApiError(400)
    content = await image.read(UPLOAD_LIMIT + 1)  # never more than the cap (plus one byte to see past it)
    if len(content) > UPLOAD_LIMIT:
        raise ApiError(413)
    subfolder = str(form.get("subfolder") or "")
    kind = str(form.get("type") or "input")
    filename = image.filename
    stem, dot, extension = filename.rpartition(".") if "." in filename else (filename, "", "")
    name, copy = filename, 0
    while (existing := _input_file(state, _joined(subfolder, name))) is not None:
        if existing.content == content:
            break
        copy += 1
        name = f"{stem} ({copy}){dot}{extension}"
    path = _joined(subfolder, name)
    media_type = image.content_type or "application/octet-stream"
    if kind == "input":
        state.files[_input_key(path)] = StoredFile(_input_key(path), name, content, media_type)
    return JSONResponse({"name": name, "subfolder": subfolder, "type": kind})


async def _system_stats(state: EmulatorState, request: Request) -> Response:
    system = {"os": "posix", "comfyui_version": "0.3.40", "python_version": "3.12", "embedded_python": False}
    devices = [{"name": "cpu", "type": "cpu", "index": None, "vram_total": 0, "vram_free": 0}]
    return JSONResponse({"system": system, "devices": devices})


def _ms(unix_seconds: float) -> int:
    return round(unix_seconds * 1000)
