"""
Dify's workflow-app Service API as the emulator speaks it (``/dify/v1``).

Dify describes a run as a sequence of node executions, both on the SSE stream and in the run detail
(steps, tokens). One planned node timeline per run feeds both, so a stream and a poll of the same run
always agree, and a stop simply cuts the timeline short.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from airflow_provider_wfrun.emulator import files
from airflow_provider_wfrun.emulator.core import (
    SCENARIO_INPUT_KEY,
    ApiError,
    Dialect,
    EmulatorState,
    Pause,
    Run,
    json_object,
    new_uuid,
    platform_route,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request

NAME = "dify"
ROOT = "/dify/v1"
#: The app's published workflow (the id in Dify's own documentation examples).
DEFAULT_WORKFLOW_ID = "7c3e33d4-2a8b-4e5f-9b1a-d3c6e8f12345"
#: Price of the LLM node when the scenario sets no ``cost`` (USD, node-level like Dify).
DEFAULT_PRICE_USD = 0.000225
APP_INFO = {
    "name": "Emulated Workflow",
    "description": "A Dify workflow app served by the airflow_provider_wfrun emulator.",
    "tags": [],
    "mode": "workflow",
    "author_name": "wfrun emulator",
}

#: ``GET /parameters`` besides the input form (the documented example's feature switches and limits).
APP_PARAMETERS: dict[str, Any] = {
    "opening_statement": "",
    "suggested_questions": [],
    "suggested_questions_after_answer": {"enabled": False},
    "speech_to_text": {"enabled": False},
    "text_to_speech": {"enabled": False},
    "retriever_resource": {"enabled": False},
    "annotation_reply": {"enabled": False},
    "more_like_this": {"enabled": False},
    "sensitive_word_avoidance": {"enabled": False},
    "file_upload": {"image": {"enabled": False}},
    "system_parameters": {
        "file_size_limit": 15,
        "image_file_size_limit": 10,
        "audio_file_size_limit": 50,
        "video_file_size_limit": 100,
        "workflow_file_upload_limit": 10,
    },
}

STATUSES = {
    "queued": "running",
    "running": "running",
    "paused": "paused",
    "succeeded": "succeeded",
    "failed": "failed",
    "canceled": "stopped",
    "partial": "partial-succeeded",
}
_CODES = {
    400: "invalid_param",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    429: "too_many_requests",
}
_MESSAGES = {
    400: "Invalid parameter.",
    401: "Access token is invalid",
    403: "Forbidden.",
    404: "Not found.",
    429: "Too many requests. Please try again later.",
}
_SERVER_ERROR = (
    "The server encountered an internal error and was unable to complete your request. "
    "Either the server is overloaded or there is an error in the application."
)


def _error(status: int, message: str | None, code: str | int | None) -> Response:
    body = {
        "status": status,
        "code": code if isinstance(code, str) else _default_code(status),
        "message": message or _MESSAGES.get(status, _SERVER_ERROR),
    }
    headers = {"WWW-Authenticate": 'Bearer realm="api"'} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


def _default_code(status: int) -> str:
    return _CODES.get(status, "internal_server_error" if status >= 500 else "bad_request")


DIALECT = Dialect(
    name=NAME,
    root=ROOT,
    statuses=STATUSES,
    error=_error,
    has_queue=False,
    default_cost=DEFAULT_PRICE_USD,
    essential=frozenset({"id", "status"}),
)


def routes(state: EmulatorState) -> list[Route]:
    return [
        platform_route(state, DIALECT, "submit", "/workflows/run", _run_published, "POST"),
        platform_route(state, DIALECT, "submit", "/workflows/{workflow_id}/run", _run_version, "POST"),
        platform_route(state, DIALECT, "get", "/workflows/run/{workflow_run_id}", _get_run, "GET"),
        platform_route(state, DIALECT, "stop", "/workflows/tasks/{task_id}/stop", _stop, "POST"),
        platform_route(state, DIALECT, "info", "/info", _info, "GET"),
        platform_route(state, DIALECT, "upload", "/files/upload", _upload, "POST"),
        Route(f"{FILES_ROOT}/{{file_id}}/file-preview", _file_preview(state), methods=["GET"]),
        platform_route(state, DIALECT, "parameters", "/parameters", _parameters, "GET"),
        platform_route(state, DIALECT, "logs", "/workflows/logs", _logs, "GET"),
        platform_route(state, DIALECT, "events", "/workflow/{workflow_run_id}/events", _events, "GET"),
        platform_route(state, DIALECT, "form", "/form/human_input/{form_token}", _get_form, "GET"),
        platform_route(state, DIALECT, "answer", "/form/human_input/{form_token}", _answer_form, "POST"),
    ]


# ------------------------------------------------------------------------------------------- files
#: Where file links point (Dify's ``FILES_URL``), beside the API root; links are signed, not keyed.
FILES_ROOT = "/dify/files"
_UPLOAD_LIMIT_MB = {"image": 10, "audio": 50, "video": 100}
_IMAGE_EXTENSIONS = {"jpg", "jpeg", "png", "gif", "webp", "svg"}


def _category(name: str, media_type: str) -> str:
    extension = name.rpartition(".")[2].lower()
    if extension in _IMAGE_EXTENSIONS:
        return "image"
    kind = media_type.partition("/")[0]
    return kind if kind in ("audio", "video") else "document"


async def _upload(state: EmulatorState, request: Request) -> Response:
    def limit(name: str, media_type: str) -> int:
        return _UPLOAD_LIMIT_MB.get(_category(name, media_type), 15) * 1024 * 1024

    stored = await files.read_upload(request, state, "", limit)
    return JSONResponse(_upload_record(stored), status_code=201)


def _upload_record(stored: files.StoredFile) -> dict[str, Any]:
    return {
        "id": stored.file_id,
        "name": stored.name,
        "size": len(stored.content),
        "extension": stored.extension,
        "mime_type": stored.media_type,
        "created_by": new_uuid(),
        "created_at": int(time.time()),
        "preview_url": None,
        "source_url": _file_link(stored),
    }


def _file_link(stored: files.StoredFile) -> str:
    return f"{FILES_ROOT}/{stored.file_id}/file-preview?timestamp={int(time.time())}&nonce=n&sign=s"


def _file_preview(state: EmulatorState) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        if "sign" not in request.query_params:
            return JSONResponse({"code": "forbidden", "message": "Invalid request."}, status_code=403)
        return files.serve(state, request.path_params["file_id"])

    return endpoint


def _output_file(state: EmulatorState, value: Any) -> dict[str, Any] | None:
    """An uploaded file given as input, or ``emulator:png``, as the file object Dify outputs."""
    if value == files.GENERATE_PNG:
        stored = files.generated_png(state, "")
    elif isinstance(value, dict) and value.get("transfer_method") == "local_file":
        found = state.files.get(str(value.get("upload_file_id")))
        if not isinstance(found, files.StoredFile):
            raise ApiError(400, f"File {value.get('upload_file_id')} not found.", "invalid_param")
        stored = found
    else:
        return None
    return {
        "dify_model_identity": "__dify__file__",
        "id": stored.file_id,
        "type": _category(stored.name, stored.media_type),
        "transfer_method": "local_file",
        "filename": stored.name,
        "extension": f".{stored.extension}",
        "mime_type": stored.media_type,
        "size": len(stored.content),
        "url": _file_link(stored),
    }


# ------------------------------------------------------------------------------------------ endpoints
async def _run_published(state: EmulatorState, request: Request) -> Response:
    return await _submit(state, request, DEFAULT_WORKFLOW_ID)


async def _run_version(state: EmulatorState, request: Request) -> Response:
    return await _submit(state, request, request.path_params["workflow_id"])


async def _submit(state: EmulatorState, request: Request, workflow_id: str) -> Response:
    body = await json_object(request)
    inputs, user, mode = _validated(body)
    if workflow_id != DEFAULT_WORKFLOW_ID and not state.knows_workflow(workflow_id):
        raise ApiError(404, f"Workflow not found with id: {workflow_id}", "not_found")
    inputs = files.replace_files(inputs, lambda value: _output_file(state, value))
    task_id = new_uuid()
    run = state.create_run(
        DIALECT, workflow_id, inputs, extra={"task_id": task_id, "user": user}, aliases=[task_id]
    )
    if mode == "streaming":
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(_stream(state, run), media_type="text/event-stream", headers=headers)
    await state.wait_done(run)
    return JSONResponse(
        {"task_id": task_id, "workflow_run_id": run.run_id, "data": _finished(run, _plan(run), stream=False)}
    )


def _validated(body: dict[str, Any]) -> tuple[dict[str, Any], str, str]:
    inputs = body.get("inputs")
    if not isinstance(inputs, dict):
        raise ApiError(400, "Arg inputs must be provided as a JSON object.", "invalid_param")
    user = body.get("user")
    if not isinstance(user, str) or not user:
        raise ApiError(400, "Arg user must be provided.", "invalid_param")
    mode = body.get("response_mode") or "blocking"
    if mode not in ("blocking", "streaming"):
        raise ApiError(400, "response_mode must be 'blocking' or 'streaming'.", "invalid_param")
    return inputs, user, mode


async def _events(state: EmulatorState, request: Request) -> Response:
    """
    ``GET /workflow/{id}/events``: a run's stream reopened by the user who started it. A finished run
    gets its ``workflow_finished`` alone; ``include_state_snapshot`` replays what already happened.
    """
    query = request.query_params
    run = state.get_run(request.path_params["workflow_run_id"], NAME)
    if run is None or not query.get("user") or run.extra.get("user") != query["user"]:
        raise ApiError(404, "Workflow run not found.", "not_found")
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    if run.is_done():
        finished = _event(run, "workflow_finished", _finished(run, _plan(run), stream=True))
        return Response(_sse(finished), media_type="text/event-stream", headers=headers)
    now = time.monotonic()
    sent = 0 if _flag(query, "include_state_snapshot") else sum(due <= now for due, _, _ in _timeline(run))
    body = _follow(state, run, sent=sent, continue_on_pause=_flag(query, "continue_on_pause"))
    return StreamingResponse(body, media_type="text/event-stream", headers=headers)


def _flag(query: Any, name: str) -> bool:
    return str(query.get(name, "false")).lower() == "true"


def _waiting_form(state: EmulatorState, token: str) -> tuple[Run, Pause]:
    """The run and pause a form token names; 404 before it is reached, 412 once answered or expired."""
    run = state.find(token)
    now = time.monotonic()
    found = next((pause for pause in run.pauses() if pause.token == token), None) if run else None
    if run is None or found is None or found.reached > now or (run.is_done(now) and found.resumed > now):
        raise ApiError(404, "Form not found.", "not_found")
    if found.answer is not None:
        raise ApiError(412, "This form has already been submitted.", "human_input_form_submitted")
    if now >= found.resumed:
        raise ApiError(412, "This form has expired.", "human_input_form_expired")
    return run, found


async def _get_form(state: EmulatorState, request: Request) -> Response:
    run, pause = _waiting_form(state, request.path_params["form_token"])
    form = _form(run, pause)
    del form["actions"]
    return JSONResponse(form)


async def _answer_form(state: EmulatorState, request: Request) -> Response:
    """Answer a waiting form: the run resumes along the action's branch. One-shot."""
    body = await json_object(request)
    if not isinstance(body.get("user"), str) or not body["user"]:
        raise ApiError(400, "Arg user must be provided.", "invalid_param")
    run, pause = _waiting_form(state, request.path_params["form_token"])
    action, inputs = body.get("action"), body.get("inputs", {})
    if action not in pause.node.actions:
        raise ApiError(400, f"Invalid action: {action}", "invalid_form_data")
    if not isinstance(inputs, dict):
        raise ApiError(400, "inputs must be an object", "invalid_form_data")
    state.answer(run, pause.index, action, {**pause.node.inputs, **inputs})
    return JSONResponse({})


async def _get_run(state: EmulatorState, request: Request) -> Response:
    run = state.get_run(request.path_params["workflow_run_id"], NAME)
    if run is None:
        raise ApiError(404, "Workflow run not found.", "not_found")
    return JSONResponse(run.served(DIALECT, _detail(run, time.monotonic())))


async def _stop(state: EmulatorState, request: Request) -> Response:
    body = await json_object(request)
    if not isinstance(body.get("user"), str) or not body["user"]:
        raise ApiError(400, "Arg user must be provided.", "invalid_param")
    run = state.find(request.path_params["task_id"])
    if run is not None and run.platform == NAME:
        state.cancel(run.run_id)
    return JSONResponse({"result": "success"})


async def _info(state: EmulatorState, request: Request) -> Response:
    return JSONResponse(APP_INFO)


async def _parameters(state: EmulatorState, request: Request) -> Response:
    """The app's input form: one required text input per name in the scenario's ``declared_inputs``."""
    names = state.scenario_for(DEFAULT_WORKFLOW_ID).declared_inputs
    form = [
        {"text-input": {"label": name, "variable": name, "required": True, "default": ""}} for name in names
    ]
    return JSONResponse({**APP_PARAMETERS, "user_input_form": form})


_LOG_STATUSES = ("succeeded", "failed", "stopped")


async def _logs(state: EmulatorState, request: Request) -> Response:
    """The runs this app holds, newest first, with the documented filters and page/limit paging."""
    query = request.query_params
    page, limit = _bounded_int(query, "page", 1, 99999, 1), _bounded_int(query, "limit", 1, 100, 20)
    status = query.get("status")
    if status is not None and status not in _LOG_STATUSES:
        raise ApiError(400, f"status must be one of {', '.join(_LOG_STATUSES)}", "invalid_param")
    if query.get("created_by_account"):
        raise ApiError(400, f"Account not found: {query['created_by_account']}", "invalid_param")
    before, after = _instant(query, "created_at__before"), _instant(query, "created_at__after")
    now = time.monotonic()
    runs = [run for run in state.runs.values() if run.platform == NAME]
    matching = [
        run
        for run in sorted(runs, key=lambda run: run.created_wall, reverse=True)
        if (status is None or STATUSES[run.phase(now)] == status)
        and (before is None or run.created_wall < before)
        and (after is None or run.created_wall > after)
        and query.get("created_by_end_user_session_id") in (None, run.extra.get("user"))
        and (not query.get("keyword") or query["keyword"] in _searchable(run))
    ]
    shown = matching[(page - 1) * limit : page * limit]
    return JSONResponse(
        {
            "page": page,
            "limit": limit,
            "total": len(matching),
            "has_more": page * limit < len(matching),
            "data": [_log_entry(run, now) for run in shown],
        }
    )


def _bounded_int(query: Any, name: str, low: int, high: int, default: int) -> int:
    text = query.get(name)
    if text is None:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise ApiError(400, f"{name} must be an integer from {low} to {high}", "invalid_param")
    return int(text)


def _instant(query: Any, name: str) -> float | None:
    text = query.get(name)
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"{name} must be an ISO 8601 date-time", "invalid_param") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def _searchable(run: Run) -> str:
    return json.dumps([run.run_id, run.inputs, run.outputs], ensure_ascii=False, default=str)


def _log_entry(run: Run, now: float) -> dict[str, Any]:
    detail = _detail(run, now)
    user = run.extra.get("user", "")
    created = int(run.created_wall)
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_OID, f"log:{run.run_id}")),
        "workflow_run": {
            "id": run.run_id,
            "version": time.strftime("%Y-%m-%d %H:%M:%S.000000", time.gmtime(created)),
            "status": detail["status"],
            "error": detail["error"],
            "elapsed_time": detail["elapsed_time"],
            "total_tokens": detail["total_tokens"],
            "total_steps": detail["total_steps"],
            "created_at": created,
            "finished_at": detail["finished_at"],
            "exceptions_count": sum(node.status == "exception" for node in _plan(run))
            if run.is_done(now)
            else 0,
            "triggered_from": "app-run",
        },
        "created_from": "service-api",
        "created_by_role": "end_user",
        "created_by_account": None,
        "created_by_end_user": {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"dify-user:{user}")),
            "type": "service-api",
            "is_anonymous": False,
            "session_id": user,
        },
        "created_at": created,
    }


# ----------------------------------------------------------------------------------------- node model
@dataclass(frozen=True, slots=True)
class _Node:
    node_id: str
    node_type: str
    title: str
    index: int
    predecessor: str | None
    start: float
    end: float
    status: str
    chunks: tuple[tuple[float, str], ...] = ()

    @property
    def consumed(self) -> bool:
        return self.node_type == "llm" and self.status != "stopped"


_GRAPH = (("start", "start", "Start"), ("llm", "llm", "LLM"), ("end", "end", "End"))
_CHUNKS = 3


def _plan(run: Run) -> list[_Node]:
    """The run's node executions, cut short where the run was stopped."""
    outcome = run.scenario.outcome
    layout = _GRAPH if outcome in ("succeeded", "partial") else _GRAPH[:2]
    duration, cut = run.scenario.duration_seconds, run.end_mono
    share = duration / len(_GRAPH)
    nodes: list[_Node] = []
    for position, (node_id, node_type, title) in enumerate(layout):
        start = run.moment(position * share)
        if start > cut:
            break
        last = position == len(layout) - 1
        natural_end = run.moment(duration if last else (position + 1) * share)
        status = _natural_status(node_id, outcome, last=position == len(layout) - 1)
        chunks = _chunks(run, start, natural_end) if node_type == "llm" and status == "succeeded" else ()
        if natural_end > cut:
            natural_end, status = cut, "stopped"
        predecessor = layout[position - 1][0] if position else None
        node = _Node(node_id, node_type, title, position + 1, predecessor, start, natural_end, status, chunks)
        nodes.append(node)
    return nodes


def _natural_status(node_id: str, outcome: str, *, last: bool) -> str:
    if outcome == "failed" and last:
        return "failed"
    if outcome == "canceled" and last:
        return "stopped"
    if outcome == "partial" and node_id == "llm":
        return "exception"
    return "succeeded"


def _chunks(run: Run, start: float, end: float) -> tuple[tuple[float, str], ...]:
    text = _llm_text(run)
    size = max(-(-len(text) // _CHUNKS), 1)
    pieces = [text[offset : offset + size] for offset in range(0, len(text), size)] or [""]
    step = (end - start) / (len(pieces) + 1)
    return tuple((start + step * (number + 1), piece) for number, piece in enumerate(pieces))


def _llm_text(run: Run) -> str:
    for value in run.outputs.values():
        if isinstance(value, str):
            return value
    return json.dumps(run.outputs, ensure_ascii=False)


# ------------------------------------------------------------------------------------------- payloads
def _detail(run: Run, now: float) -> dict[str, Any]:
    """``GET /workflows/run/{id}``: inputs as a JSON string, outputs ``{}`` until done."""
    done = run.is_done(now)
    finished = [node for node in _plan(run) if done or node.end <= now]
    return {
        "id": run.run_id,
        "workflow_id": run.workflow_id,
        "status": STATUSES[run.phase(now)],
        "inputs": json.dumps(run.inputs, ensure_ascii=False),
        "outputs": _outputs(run) if done else {},
        "error": _run_error(run) if done else None,
        "total_steps": len(finished),
        "total_tokens": _tokens(run, finished),
        "created_at": int(run.created_wall),
        "finished_at": int(run.wall(run.end_mono)) if done else None,
        "elapsed_time": round(run.end_mono - run.start_mono, 6) if done else None,
    }


def _finished(run: Run, plan: list[_Node], *, stream: bool) -> dict[str, Any]:
    """``data`` of ``workflow_finished`` (stream) and of the blocking response."""
    data: dict[str, Any] = {
        "id": run.run_id,
        "workflow_id": run.workflow_id,
        "status": STATUSES[run.final_phase],
        "outputs": _outputs(run),
        "error": _run_error(run),
        "elapsed_time": round(run.end_mono - run.start_mono, 6),
        "total_tokens": _tokens(run, plan),
        "total_steps": len(plan),
        "created_at": int(run.created_wall),
        "finished_at": int(run.wall(run.end_mono)),
    }
    if stream:
        user = run.extra.get("user", "")
        data["created_by"] = {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"dify-user:{user}")), "user": user}
        data["exceptions_count"] = sum(node.status == "exception" for node in plan)
        data["files"] = []
    return data


def _outputs(run: Run) -> dict[str, Any]:
    """The run's outputs, with each Human Input node's answer (its action, its inputs) under its node id."""
    if run.final_phase not in ("succeeded", "partial"):
        return {}
    outputs = dict(run.outputs)
    for pause in run.pauses():
        outputs[pause.node.node_id] = (
            {"action": pause.answer[0], **pause.answer[1]} if pause.answer else {"action": "timeout"}
        )
    return outputs


def _run_error(run: Run) -> str | None:
    return run.scenario.error_reason if run.final_phase == "failed" else None


def _tokens(run: Run, nodes: list[_Node]) -> int:
    return run.scenario.tokens if any(node.consumed for node in nodes) else 0


def _node_data(run: Run, node: _Node) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_OID, f"{run.run_id}:{node.node_id}")),
        "node_id": node.node_id,
        "node_type": node.node_type,
        "title": node.title,
        "index": node.index,
        "predecessor_node_id": node.predecessor,
        "inputs": _node_inputs(run, node),
        "inputs_truncated": False,
        "created_at": int(run.wall(node.start)),
        "extras": {},
        "iteration_id": None,
        "loop_id": None,
    }


def _node_inputs(run: Run, node: _Node) -> dict[str, Any] | None:
    if node.node_type == "start":
        return {key: value for key, value in run.inputs.items() if key != SCENARIO_INPUT_KEY}
    return None


def _node_finished_data(run: Run, node: _Node) -> dict[str, Any]:
    consumed = node.consumed
    failed = node.status in ("failed", "exception")
    return {
        **_node_data(run, node),
        "process_data": None,
        "process_data_truncated": False,
        "outputs": _node_outputs(run, node),
        "outputs_truncated": False,
        "status": node.status,
        "error": run.scenario.error_reason if failed else None,
        "elapsed_time": round(node.end - node.start, 6),
        "execution_metadata": {
            "total_tokens": run.scenario.tokens if consumed else 0,
            "total_price": run.cost if consumed else 0,
            "currency": "USD",
        },
        "finished_at": int(run.wall(node.end)),
        "files": [],
    }


def _node_outputs(run: Run, node: _Node) -> dict[str, Any] | None:
    if node.status != "succeeded":
        return None
    if node.node_type == "start":
        return _node_inputs(run, node)
    return {"text": _llm_text(run)} if node.node_type == "llm" else run.outputs


# -------------------------------------------------------------------------------------------- streaming
def _event(run: Run, name: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"event": name, "task_id": run.extra["task_id"], "workflow_run_id": run.run_id, "data": data}


#: One event of a run's stream: when it is due, its payload, and the pause it announces (if any).
_Due = tuple[float, dict[str, Any], Pause | None]


def _timeline(run: Run) -> list[_Due]:
    """Every event after ``workflow_started``, with the monotonic instant it becomes due."""
    plan = _plan(run)
    events: list[_Due] = []
    for node in plan:
        events.append((node.start, _event(run, "node_started", _node_data(run, node)), None))
        for due, text in node.chunks:
            if due < node.end:
                chunk = {"text": text, "from_variable_selector": [node.node_id, "text"]}
                events.append((due, _event(run, "text_chunk", chunk), None))
        events.append((node.end, _event(run, "node_finished", _node_finished_data(run, node)), None))
    for pause in run.pauses():
        if pause.reached <= run.end_mono:
            events.extend(_pause_events(run, pause, plan))
    events.sort(key=lambda due: due[0])
    events.append((run.end_mono, _event(run, "workflow_finished", _finished(run, plan, stream=True)), None))
    return events


def _pause_events(run: Run, pause: Pause, plan: list[_Node]) -> list[_Due]:
    """``human_input_required`` and ``workflow_paused`` where it pauses; how it resumed, where it did."""
    node = pause.node
    required = {**_form(run, pause), "form_id": _form_id(pause.token), "node_id": node.node_id}
    required |= {"node_title": node.title, "display_in_ui": True}
    required["form_token"] = pause.token if node.delivery == "webapp" else None
    finished = [step for step in plan if step.end <= pause.reached]
    paused = {
        "workflow_run_id": run.run_id,
        "paused_nodes": [node.node_id],
        "outputs": {},
        "reasons": [{"type": "human_input_required", "node_id": node.node_id}],
        "status": "paused",
        "created_at": int(run.created_wall),
        "elapsed_time": round(pause.reached - run.start_mono, 6),
        "total_tokens": _tokens(run, finished),
        "total_steps": len(finished),
    }
    events: list[_Due] = [
        (pause.reached, _event(run, "human_input_required", required), None),
        (pause.reached, _event(run, "workflow_paused", paused), pause),
    ]
    if pause.resumed > run.end_mono:
        return events
    title = {"node_id": node.node_id, "node_title": node.title}
    if pause.answer is None:
        timeout = {**title, "expiration_time": int(run.wall(pause.expires))}
        events.append((pause.resumed, _event(run, "human_input_form_timeout", timeout), None))
    else:
        action, inputs = pause.answer
        filled: dict[str, Any] = {**title, "rendered_content": node.content, "action_id": action}
        filled |= {"action_text": _action_title(action), "submitted_data": inputs}
        events.append((pause.resumed, _event(run, "human_input_form_filled", filled), None))
    return events


def _form_id(token: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_OID, f"form-id:{token}"))


def _action_title(action: str) -> str:
    return action.replace("_", " ").capitalize()


def _form(run: Run, pause: Pause) -> dict[str, Any]:
    """The form as ``GET /form/human_input/{token}`` serves it (and the event carries it)."""
    node = pause.node
    actions = [
        {"id": action, "title": _action_title(action), "button_style": "default" if position else "primary"}
        for position, action in enumerate(node.actions)
    ]
    return {
        "form_content": node.content,
        "inputs": [
            {
                "type": "paragraph",
                "output_variable_name": name,
                "default": {"type": "constant", "selector": [], "value": default},
            }
            for name, default in node.inputs.items()
        ],
        "resolved_default_values": {name: default for name, default in node.inputs.items() if default},
        "user_actions": actions,
        "actions": actions,
        "expiration_time": int(run.wall(pause.expires)),
    }


def _sse(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


async def _stream(state: EmulatorState, run: Run) -> AsyncIterator[bytes]:
    """The submit's SSE body, from ``workflow_started``; it closes at the first pause, as Dify's does."""
    started = {
        "id": run.run_id,
        "workflow_id": run.workflow_id,
        "inputs": run.inputs,
        "created_at": int(run.created_wall),
        "reason": "initial",
    }
    yield _sse(_event(run, "workflow_started", started))
    async for chunk in _follow(state, run, sent=0, continue_on_pause=False):
        yield chunk


async def _follow(
    state: EmulatorState, run: Run, *, sent: int, continue_on_pause: bool
) -> AsyncIterator[bytes]:
    """
    The run's events from the ``sent``-th on, as they fall due. The timeline is recomputed on each
    wake-up, so a stop or an answered form shows up at once.
    """
    next_ping = time.monotonic() + state.ping_interval
    while True:
        events, now = _timeline(run), time.monotonic()
        while sent < len(events) and events[sent][0] <= now:
            _, payload, pause = events[sent]
            yield _sse(payload)
            sent += 1
            if pause is not None and pause.waiting(now) and not continue_on_pause:
                return
        if sent >= len(events):
            return
        if now >= next_ping:
            yield b"event: ping\n\n"
            next_ping = now + state.ping_interval
        await state.wait_until(run, min(events[sent][0], next_ping))
