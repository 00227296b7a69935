"""
ComfyUI's own server API (``server.py``), the engine behind many hosted image and video platforms.

There is no stored workflow: each run submits the whole API-format graph (``POST /prompt``, the
``workflow=`` document), with ``inputs`` overriding node inputs by ``"<node id>.<input name>"``. The run id is
the ``prompt_id``. ``GET /history/{prompt_id}`` is empty until the prompt has finished, so a poll that finds
nothing there reads ``GET /queue`` (running or pending, with the position), and if the prompt is in neither,
the history once more (it may have finished in between) before calling it unknown. A prompt seen running is
read from its history alone for :data:`RUNNING_RECHECK_SECONDS`, then from the queue again. A rejected
graph answers 400 with ``node_errors`` per node. Cancel is two harmless calls: delete it from the queue (if
pending), then interrupt it (only if it is the prompt running). An input file (an override whose value is
a path) is uploaded first with ``POST /upload/image`` (images, video and audio: what the load nodes read)
and the override set to the name the server gave it. Outputs are files (``filename``, ``subfolder``, ``type``)
per output node, served by ``GET /view``. ComfyUI charges nothing: ``cost`` is empty, the duration is the
time between the execution messages. The server has no authentication; a key, if set, is sent as a bearer
token for the proxy in front of it.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar
from urllib.parse import urlencode

import msgspec

from airflow_provider_wfrun.exceptions import InvalidInputError, RunNotFoundError
from airflow_provider_wfrun.models import OutputFile, RunError, RunStatus, WorkflowRun
from airflow_provider_wfrun.platforms.base import (
    MAX_OUTPUT_FILES,
    RUN_ID,
    ApiRequest,
    ErrorInfo,
    Message,
    PlatformAdapter,
    Record,
    Text,
    UnixMillis,
    WireFormat,
    absolute_url,
    media_type,
    readable,
    seconds_between,
)

#: ``platform_status`` of a prompt the history does not list yet, and of one the queue does not list either:
#: the steps of a poll's follow-up reads.
NOT_IN_HISTORY = "not in history"
NOT_QUEUED = "neither queued nor in history"
#: How long a prompt seen running in ``GET /queue`` is taken to be running while its history stays empty,
#: before the queue is read again: running is the last state before the history lists the prompt, so this
#: bounds only how late a prompt the server lost (a restart) is seen, and a poll of a running prompt is
#: one request, not two (the queue lists every prompt with its graph, so reading it is most of a poll).
RUNNING_RECHECK_SECONDS = 60.0
#: How long one reading of ``GET /queue`` serves every poll of a triggerer on the same server: a pending
#: prompt's position is at most this old. A reading that does not list the prompt is not trusted (the prompt
#: may be newer than it): such a poll reads the queue again itself.
QUEUE_SHARED_SECONDS = 2.0
#: Queue items read from ``GET /queue`` (a busy server's queue is long, a run is found well before).
MAX_QUEUE_ITEMS = 100_000
#: Node errors named in one message; the rest are counted.
MAX_NODE_ERRORS = 10
#: The server's default ``--max-upload-size`` (100 MB); one started with less answers 413 beyond its own.
UPLOAD_LIMIT = 100 * 1024 * 1024
#: What ``/upload/image`` is for: the files ComfyUI's load nodes (images, video, audio) read.
UPLOAD_KINDS = ("image/", "video/", "audio/")


class _Submitted(WireFormat):
    prompt_id: str
    number: Text = None


class _Uploaded(WireFormat):
    name: str
    subfolder: Text = None
    type: Text = None


class _Status(WireFormat):
    status_str: Text = None
    completed: bool | None = None
    messages: list[Any] | None = None


class _Entry(WireFormat):
    outputs: Annotated[dict[str, Any] | None, Record] = None
    status: Annotated[_Status | None, Record] = None


class _Event(WireFormat):
    """The data of one history message (``["execution_error", {...}]``)."""

    timestamp: UnixMillis = None
    node_id: Text = None
    node_type: Text = None
    exception_message: Message = None
    exception_type: Text = None
    traceback: Message = None


class ComfyuiAdapter(PlatformAdapter):
    name = "comfyui"
    display_name = "ComfyUI"
    default_host = "http://127.0.0.1:8188"
    requires_api_key = False
    supports_cancel = True
    takes_workflow = True
    statuses: ClassVar[Mapping[str, RunStatus]] = {
        "pending": RunStatus.QUEUED,
        "running": RunStatus.RUNNING,
        "success": RunStatus.SUCCEEDED,
        "error": RunStatus.FAILED,
        "interrupted": RunStatus.CANCELED,
        NOT_IN_HISTORY: RunStatus.UNKNOWN,
        NOT_QUEUED: RunStatus.UNKNOWN,
    }
    status_path = (RUN_ID, "status", "status_str")

    # --- requests ------------------------------------------------------------------------------
    def submit_request(
        self,
        inputs: Mapping[str, Any],
        *,
        workflow_id: str | None,
        idempotency_key: str | None,
        workflow: Mapping[str, Any] | None = None,
    ) -> ApiRequest:
        if workflow_id:
            raise self.missing_input(
                f"ComfyUI has no stored workflows, so workflow_id={workflow_id!r} cannot be honoured; pass "
                "the graph as workflow= (exported with 'Save (API)') and leave workflow_id empty"
            )
        if not workflow:
            raise self.missing_input(
                "ComfyUI needs the workflow graph: pass workflow= as the API-format JSON (a mapping, or a "
                "path or ObjectStoragePath of the file ComfyUI's 'Save (API)' writes)"
            )
        graph = _with_overrides(_checked_graph(workflow, self.name), inputs, self.name)
        # One client id per task (the operator's idempotency key derives from the task instance), so the
        # server's websocket messages and logs can be told apart per task.
        client_id = f"wfrun-{idempotency_key or uuid.uuid4().hex}"
        return ApiRequest("POST", "/prompt", json={"prompt": graph, "client_id": client_id})

    def get_request(self, run_id: str) -> ApiRequest:
        return ApiRequest("GET", f"/history/{run_id}")

    def followup_request(self, run: WorkflowRun, *, step: int) -> ApiRequest | None:
        if run.platform_status == NOT_IN_HISTORY:
            return ApiRequest("GET", "/queue", shared_seconds=QUEUE_SHARED_SECONDS)
        if run.platform_status == NOT_QUEUED:
            return self.get_request(run.run_id)
        return None

    def apply_followup(self, run: WorkflowRun, payload: Any, *, step: int) -> WorkflowRun:
        if run.platform_status == NOT_IN_HISTORY:
            return self._from_queue(run, payload)
        found = self.parse_run(payload, run_id=run.run_id)
        if found.platform_status == NOT_IN_HISTORY:
            raise RunNotFoundError(
                f"ComfyUI lists prompt {run.run_id} neither in its queue nor in its history: the id is from "
                "another server, or this one restarted (it keeps its history in memory)",
                platform=self.name,
                run_id=run.run_id,
            )
        return found

    def digest_shared(self, request: ApiRequest, body: bytes) -> QueueDigest:
        """
        The queue's prompt ids, running and pending (by position), read from its bytes without building
        its graphs: a busy server's queue is megabytes, nearly all of it graphs a poll never looks at.
        """
        return QueueDigest.read(body)

    def lasting_followup(self, run: WorkflowRun) -> float:
        """
        A prompt the queue lists as running is running until its history lists it (or the server loses it):
        it is not read from the queue again for :data:`RUNNING_RECHECK_SECONDS`. A pending prompt is read
        from the queue on every poll: its position moves, and it may start any moment.
        """
        return RUNNING_RECHECK_SECONDS if run.status is RunStatus.RUNNING else 0.0

    def cancel_requests(self, run_id: str, *, task_id: str | None) -> list[ApiRequest]:
        """Removed from the queue if pending, then interrupted if running; each call is a no-op otherwise."""
        return [
            ApiRequest("POST", "/queue", json={"delete": [run_id]}),
            ApiRequest("POST", "/interrupt", json={"prompt_id": run_id}),
        ]

    def cancel_request(self, run_id: str, *, task_id: str | None) -> ApiRequest:
        return self.cancel_requests(run_id, task_id=task_id)[-1]

    def removed_by_cancel(self, run_id: str) -> WorkflowRun | None:
        """A pending prompt deleted from the queue leaves no trace: no history, never a result."""
        return WorkflowRun(
            platform=self.name,
            run_id=run_id,
            status=RunStatus.CANCELED,
            error=RunError(reason="ComfyUI removed the prompt from its queue when asked to cancel it"),
        )

    def probe_request(self) -> ApiRequest:
        return ApiRequest("GET", "/system_stats")

    # --- input files ------------------------------------------------------------------------------
    def upload_limit(self, name: str, media_type: str | None) -> int:
        kind = self._require_media_type(name, media_type)
        if not kind.startswith(UPLOAD_KINDS):
            raise InvalidInputError(
                f"input file {name!r} is {kind}; ComfyUI's load nodes read images, video and audio, so "
                "pass one of those (or its URL as text to a node that downloads it)",
                platform=self.name,
            )
        return UPLOAD_LIMIT

    def upload_request(self, name: str, content: bytes, media_type: str) -> ApiRequest:
        """Into the server's input folder; a different file of the same name is kept under a new name."""
        return ApiRequest(
            "POST", "/upload/image", form={"type": "input"}, files={"image": (name, content, media_type)}
        )

    def parse_upload(self, payload: Any, *, media_type: str) -> Any:
        """The name a load node takes: ``subfolder/name``, annotated when not in the input folder."""
        uploaded = self.validate(_Uploaded, payload)
        path = f"{uploaded.subfolder}/{uploaded.name}" if uploaded.subfolder else uploaded.name
        return f"{path} [{uploaded.type}]" if uploaded.type and uploaded.type != "input" else path

    # --- responses -----------------------------------------------------------------------------
    def parse_submit(self, payload: Any) -> WorkflowRun:
        submitted = self.validate(_Submitted, payload)
        return WorkflowRun(
            platform=self.name,
            run_id=submitted.prompt_id,
            status=RunStatus.QUEUED,
            platform_status="pending",
            raw=payload,
        )

    def parse_run(self, payload: Any, *, run_id: str) -> WorkflowRun:
        if not isinstance(payload, dict):
            payload = {}
        entry = payload.get(run_id)
        if not entry:
            return WorkflowRun(
                platform=self.name, run_id=run_id, status=RunStatus.UNKNOWN, platform_status=NOT_IN_HISTORY
            )
        parsed = self.validate(_Entry, entry, run_id=run_id, at=run_id)
        status = parsed.status or _Status()
        events = self._events(status.messages or [], run_id)
        word = "interrupted" if "execution_interrupted" in events else status.status_str
        if word is None and status.completed:
            word = "success"
        finish = next((events[k] for k in _FINISH_EVENTS if k in events), None)
        started = events["execution_start"].timestamp if "execution_start" in events else None
        finished = finish.timestamp if finish else None
        state = self.map_status(word, run_id=run_id)
        return WorkflowRun(
            platform=self.name,
            run_id=run_id,
            status=state,
            platform_status=word,
            outputs=parsed.outputs or {},
            error=_run_error(state, events.get("execution_error")),
            started_at=started,
            finished_at=finished,
            duration_seconds=seconds_between(started, finished),
            raw=payload,
        )

    def _events(self, messages: list[Any], run_id: str) -> dict[str, _Event]:
        """The history's ``[event, data]`` messages by event name (the last of each), read tolerantly."""
        events: dict[str, _Event] = {}
        for message in messages[:1000]:
            if isinstance(message, list) and len(message) == 2 and isinstance(message[0], str):
                data = message[1] if isinstance(message[1], dict) else {}
                events[message[0]] = self.validate(_Event, data, run_id=run_id, at=f"messages.{message[0]}")
        return events

    def _from_queue(self, run: WorkflowRun, queue: QueueDigest) -> WorkflowRun:
        if run.run_id in queue.running:
            return run.model_copy(update={"status": RunStatus.RUNNING, "platform_status": "running"})
        position = queue.pending.get(run.run_id)
        if position is not None:
            update = {"status": RunStatus.QUEUED, "platform_status": "pending", "queue_position": position}
            return run.model_copy(update=update)
        return run.model_copy(update={"platform_status": NOT_QUEUED})

    def output_files(self, run: WorkflowRun, *, base_url: str) -> list[OutputFile]:
        """Each file an output node lists (``images``, ``gifs``, ``audio``...), behind ``GET /view``."""
        files = []
        for node_id, node_output in run.outputs.items():
            if not isinstance(node_output, dict):
                continue
            for key, items in node_output.items():
                for index, item in enumerate(items if isinstance(items, list) else ()):
                    file = _output_file(item, f"{node_id}.{key}[{index}]", base_url)
                    if file is not None:
                        files.append(file)
        return files[:MAX_OUTPUT_FILES]

    def error_info(self, payload: Any) -> ErrorInfo | None:
        if not isinstance(payload, dict) or "error" not in payload or "prompt_id" in payload:
            return None
        error = payload["error"]
        if isinstance(error, dict):
            return ErrorInfo(code=readable(error.get("type")), message=readable(error.get("message")))
        return ErrorInfo(code=None, message=readable(error))

    def raise_for_error(
        self,
        status_code: int,
        payload: Any,
        *,
        run_id: str | None = None,
        retry_after: float | None = None,
        fallback: str | None = None,
    ) -> None:
        """A graph ComfyUI rejected is bad input: the error names each node and what is wrong with it."""
        node_errors = payload.get("node_errors") if isinstance(payload, dict) else None
        if status_code == 400 and isinstance(payload, dict) and "error" in payload:
            info = self.error_info(payload)
            summary = _node_errors(node_errors) if isinstance(node_errors, dict) else ""
            message = (info.message if info else None) or "the graph was rejected"
            raise InvalidInputError(
                f"ComfyUI rejected the workflow: {message}{summary}; fix the graph or the inputs",
                platform=self.name,
            )
        super().raise_for_error(
            status_code, payload, run_id=run_id, retry_after=retry_after, fallback=fallback
        )


_FINISH_EVENTS = ("execution_success", "execution_error", "execution_interrupted")


def _checked_graph(workflow: Mapping[str, Any], platform: str) -> dict[str, Any]:
    """The API-format graph: node id -> ``{"class_type", "inputs"}``; the UI format is told apart."""
    if "nodes" in workflow and "links" in workflow:
        raise InvalidInputError(
            "the workflow is in ComfyUI's UI format (it has 'nodes' and 'links'); export it with "
            "'Save (API)' (enable the dev mode options) and pass that file",
            platform=platform,
        )
    for node_id, node in workflow.items():
        if (
            not isinstance(node, Mapping)
            or "class_type" not in node
            or not isinstance(node.get("inputs"), Mapping)
        ):
            raise InvalidInputError(
                f"workflow node {node_id!r} is not an API-format node (an object with 'class_type' and "
                "'inputs'); export the workflow with 'Save (API)'",
                platform=platform,
            )
    return copy.deepcopy(dict(workflow))


def _with_overrides(graph: dict[str, Any], inputs: Mapping[str, Any], platform: str) -> dict[str, Any]:
    """``graph`` with each ``"<node id>.<input name>"`` input set; every name is checked first."""
    for key, value in inputs.items():
        node_id, name = _split(str(key), graph)
        node = graph.get(node_id)
        if node is None:
            raise InvalidInputError(
                f"input {key!r} names node {node_id!r}, which the workflow does not have (nodes: "
                f"{', '.join(sorted(graph)[:30])}); inputs are keyed '<node id>.<input name>', e.g. '6.text'",
                platform=platform,
            )
        if name not in node["inputs"]:
            raise InvalidInputError(
                f"input {key!r}: node {node_id} ({node.get('class_type')}) has no input {name!r}; it has "
                f"{', '.join(sorted(node['inputs'])) or 'none'}",
                platform=platform,
            )
        node["inputs"][name] = value
    return graph


def _split(key: str, graph: Mapping[str, Any]) -> tuple[str, str]:
    """``"6.text"`` -> ``("6", "text")``; a node id with dots in it is matched whole first."""
    node_id, dot, name = key.rpartition(".")
    if not dot or not node_id or not name:
        first, _, rest = key.partition(".")
        if first in graph and rest:
            return first, rest
        raise InvalidInputError(
            f"input {key!r} does not name a node input; ComfyUI inputs are keyed '<node id>.<input name>', "
            "e.g. '6.text' for the text of node 6",
            platform=ComfyuiAdapter.name,
        )
    if node_id not in graph:
        first, _, rest = key.partition(".")
        if first in graph:
            return first, rest
    return node_id, name


def _node_errors(node_errors: Mapping[str, Any]) -> str:
    """``; node 6 (CLIPTextEncode): Required input is missing: clip`` for each node, bounded."""
    parts = []
    for node_id, error in list(node_errors.items())[:MAX_NODE_ERRORS]:
        errors = error.get("errors") if isinstance(error, dict) else None
        what = "; ".join(
            ": ".join(filter(None, (readable(item.get("message")), readable(item.get("details")))))
            for item in (errors if isinstance(errors, list) else [])[:5]
            if isinstance(item, dict)
        )
        kind = readable(error.get("class_type")) if isinstance(error, dict) else None
        parts.append(f"node {node_id}{f' ({kind})' if kind else ''}: {what or 'rejected'}")
    more = len(node_errors) - MAX_NODE_ERRORS
    return "; " + "; ".join(parts) + (f"; and {more} more nodes" if more > 0 else "") if parts else ""


@dataclass(frozen=True)
class QueueDigest:
    """``GET /queue`` as a poll needs it: which prompts run, and each pending one's position (from 1)."""

    running: frozenset[str]
    pending: Mapping[str, int]

    @classmethod
    def read(cls, body: bytes) -> QueueDigest:
        """
        From the answer's bytes, by msgspec: each queue item's number and prompt id are decoded, its graph
        and the rest are only checked to be JSON (``msgspec.Raw``). What is not JSON is an error; JSON of
        another shape reads as an empty queue.
        """
        if not body:
            return cls(frozenset(), {})
        try:
            whole = msgspec.json.decode(body, type=msgspec.Raw)  # the whole answer must be JSON
        except msgspec.DecodeError as exc:  # a ValueError from msgspec 0.20 on, not before
            raise ValueError(f"not JSON: {exc}") from None
        top = _decoded(whole, dict[str, msgspec.Raw]) or {}
        return cls.listing(*(_raw_items(top.get(key)) for key in ("queue_running", "queue_pending")))

    @classmethod
    def listing(cls, running: list[Any], pending: list[Any]) -> QueueDigest:
        """From the two lists' items, ``[number, prompt_id, ...]``."""
        by_position: dict[str, int] = {}
        for position, item in enumerate(sorted(pending, key=_number), 1):
            prompt_id = _prompt_id(item)
            if prompt_id is not None:
                by_position.setdefault(prompt_id, position)
        return cls(frozenset(filter(None, map(_prompt_id, running))), by_position)


def _decoded(raw: bytes | msgspec.Raw, kind: Any) -> Any:
    """``raw`` as ``kind``; None if it is JSON of another shape (malformed JSON raises ``DecodeError``)."""
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError:
        return None


def _raw_items(raw: msgspec.Raw | None) -> list[Any]:
    """A queue list's items as ``[number, prompt_id]`` (the rest left unread), bounded; odd items as None."""
    items = _decoded(raw, list[msgspec.Raw]) if raw is not None else None
    return [_raw_item(item) for item in (items or [])[:MAX_QUEUE_ITEMS]]


def _raw_item(raw: msgspec.Raw) -> list[Any] | None:
    fields = _decoded(raw, list[msgspec.Raw])
    return [msgspec.json.decode(field) for field in fields[:2]] if fields else None


def _prompt_id(item: Any) -> str | None:
    """A queue item ``[number, prompt_id, prompt, extra_data, outputs_to_execute]``'s prompt id."""
    if isinstance(item, list) and len(item) > 1:
        return readable(item[1])
    return None


def _number(item: Any) -> float:
    number = item[0] if isinstance(item, list) and item else None
    return (
        float(number) if isinstance(number, (int, float)) and not isinstance(number, bool) else float("inf")
    )


def _output_file(item: Any, output_key: str, base_url: str) -> OutputFile | None:
    if not isinstance(item, dict) or not isinstance(item.get("filename"), str) or not item["filename"]:
        return None
    name = item["filename"].replace("\\", "_").rpartition("/")[2]
    query = {
        "filename": item["filename"],
        "subfolder": str(item.get("subfolder") or ""),
        "type": str(item.get("type") or "output"),
    }
    return OutputFile(
        name=name,
        url=absolute_url(f"view?{urlencode(query)}", base_url),
        media_type=media_type(name),
        output_key=output_key,
        authenticated=True,
    )


def _run_error(status: RunStatus, event: _Event | None) -> RunError | None:
    if status is RunStatus.CANCELED:
        return RunError(reason="the prompt was interrupted")
    if status is not RunStatus.FAILED:
        return None
    if event is None:
        return RunError(reason="ComfyUI reported the prompt failed without an execution error")
    where = f"node {event.node_id}{f' ({event.node_type})' if event.node_type else ''}"
    return RunError(
        reason=f"{where} failed: {event.exception_message or 'no message'}",
        detail=event.traceback,
        code=event.exception_type,
    )
