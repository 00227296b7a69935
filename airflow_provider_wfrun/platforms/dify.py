"""
Dify workflow apps (Service API).

Submit uses ``response_mode: streaming`` and reads only up to ``workflow_started``: that event carries the
run id (to poll) and the task id (to stop), and the run keeps going after the stream is closed. A blocking
submit would hold a worker slot for the whole run and is cut at 100 s on Dify Cloud. Dify reports tokens,
not money, at run level.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import ValidationError

from airflow_provider_wfrun.connection_form import ExtraFieldSpec
from airflow_provider_wfrun.exceptions import NotSupportedError
from airflow_provider_wfrun.human_input import HumanInputAction, HumanInputField, HumanInputForm
from airflow_provider_wfrun.models import OutputFile, RunCost, RunError, RunStatus, WorkflowRun
from airflow_provider_wfrun.platforms.base import (
    ApiRequest,
    Count,
    ErrorInfo,
    Message,
    Outputs,
    PlatformAdapter,
    Seconds,
    Text,
    UnixSeconds,
    WireFormat,
    absolute_url,
    duration,
    file_name,
    media_type,
    readable,
    walk_outputs,
)

log = logging.getLogger(__name__)

DEFAULT_USER = "airflow"
#: How Dify marks a file object in workflow outputs (its ``File`` model serialized).
FILE_IDENTITY = "__dify__file__"


class _RunDetail(WireFormat):
    id: str
    workflow_id: Text = None
    status: str
    outputs: Outputs = None
    error: Message = None
    total_steps: Count = None
    total_tokens: Count = None
    created_at: UnixSeconds = None
    finished_at: UnixSeconds = None
    elapsed_time: Seconds = None


class _StartedData(WireFormat):
    id: str
    workflow_id: Text = None
    created_at: UnixSeconds = None


class _ErrorEvent(WireFormat):
    status: Count = None


class _StartedEvent(WireFormat):
    task_id: str
    workflow_run_id: str
    data: _StartedData


class _BlockingAnswer(WireFormat):
    task_id: str
    workflow_run_id: str
    data: _RunDetail


class _FileObject(WireFormat):
    """A file in Dify's outputs; ``url`` is signed and expires, and may be relative to the API host."""

    url: str | None = None
    remote_url: str | None = None
    filename: str | None = None
    mime_type: str | None = None
    size: int | None = None


class _OptionSource(WireFormat):
    type: str | None = None
    value: list[str] | None = None


class _FormInput(WireFormat):
    type: str
    output_variable_name: str
    option_source: _OptionSource | None = None


class _FormAction(WireFormat):
    id: str
    title: Text = None


class _Form(WireFormat):
    """``GET /form/human_input/{token}``, and the ``data`` of a ``human_input_required`` event."""

    form_token: str | None = None
    node_title: Text = None
    form_content: Text = None
    inputs: list[_FormInput] | None = None
    resolved_default_values: dict[str, Any] | None = None
    user_actions: list[_FormAction] | None = None
    actions: list[_FormAction] | None = None
    expiration_time: UnixSeconds = None


class _Uploaded(WireFormat):
    id: str
    mime_type: str | None = None


#: Dify's file categories by extension (its ``FileType``); anything else is ``custom``.
_CATEGORIES: Mapping[str, frozenset[str]] = {
    "image": frozenset({"jpg", "jpeg", "png", "gif", "webp", "svg"}),
    "document": frozenset(
        {"txt", "md", "mdx", "markdown", "pdf", "html", "xlsx", "xls", "doc", "docx", "csv", "eml", "msg"}
        | {"pptx", "ppt", "xml", "epub"}
    ),
    "audio": frozenset({"mp3", "m4a", "wav", "amr", "mpga"}),
    "video": frozenset({"mp4", "mov", "mpeg", "webm"}),
}
#: Upload limits per category (Dify's defaults, also Dify Cloud's); other files 15 MB.
_UPLOAD_LIMIT_MB: Mapping[str, int] = {"image": 10, "audio": 50, "video": 100}
_OTHER_LIMIT_MB = 15
_MB = 1024 * 1024


def file_category(name: str) -> str:
    """Dify's category of a file, from its extension: image, document, audio, video or custom."""
    extension = name.rpartition(".")[2].lower() if "." in name else ""
    return next((kind for kind, known in _CATEGORIES.items() if extension in known), "custom")


#: Events saying the form announced before is no longer waiting.
_FORM_CLOSED = frozenset({"human_input_form_filled", "human_input_form_timeout"})


class DifyAdapter(PlatformAdapter):
    name = "dify"
    display_name = "Dify"
    default_host = "https://api.dify.ai/v1"
    supports_cancel = True
    supports_human_input = True
    extra_fields: ClassVar[Mapping[str, ExtraFieldSpec]] = {
        "user": {"label": "End-user id", "description": "Dify scopes runs to it", "placeholder": "airflow"}
    }
    auth_error_codes = frozenset({"unauthorized", "forbidden"})
    not_found_error_codes = frozenset({"not_found"})
    quota_error_codes = frozenset({"rate_limit_error"})
    run_id_pattern = re.compile(
        r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    )
    run_id_example = "fb47b2e6-5e43-4f90-be01-d5c5a088d156"
    statuses: ClassVar[Mapping[str, RunStatus]] = {
        "running": RunStatus.RUNNING,
        "paused": RunStatus.PAUSED,
        "succeeded": RunStatus.SUCCEEDED,
        "partial-succeeded": RunStatus.PARTIALLY_SUCCEEDED,
        "failed": RunStatus.FAILED,
        "stopped": RunStatus.CANCELED,
    }
    status_path = ("status",)

    @property
    def user(self) -> str:
        """Dify's end-user id: scopes who may see the run. From the connection extra ``user``."""
        return str(self.extra.get("user") or DEFAULT_USER)

    def submit_request(
        self,
        inputs: Mapping[str, Any],
        *,
        workflow_id: str | None,
        idempotency_key: str | None,
        workflow: Mapping[str, Any] | None = None,
    ) -> ApiRequest:
        path = f"/workflows/{workflow_id}/run" if workflow_id else "/workflows/run"
        body = {"inputs": dict(inputs), "response_mode": "streaming", "user": self.user}
        return ApiRequest("POST", path, json=body, stream=True)

    def get_request(self, run_id: str) -> ApiRequest:
        return ApiRequest("GET", f"/workflows/run/{run_id}")

    def cancel_request(self, run_id: str, *, task_id: str | None) -> ApiRequest:
        if not task_id:
            raise self.missing_input(
                f"Dify stops run {run_id} by its task id, which only the submitting task knows; "
                "pass task_id (the operator and trigger keep it for you)"
            )
        return ApiRequest("POST", f"/workflows/tasks/{task_id}/stop", json={"user": self.user})

    def probe_request(self) -> ApiRequest:
        return ApiRequest("GET", "/info")

    # --- human input (paused runs) -------------------------------------------------------------
    def events_request(self, run_id: str) -> ApiRequest:
        """
        The run's event stream, reopened by the user who started it, replaying what already happened (so
        the pause it waits at is announced again); it closes at that pause.
        """
        params = {"user": self.user, "include_state_snapshot": "true"}
        return ApiRequest("GET", f"/workflow/{run_id}/events", params=params, stream=True)

    def follow_form(
        self, payload: Any, pending: HumanInputForm | None, *, run_id: str
    ) -> tuple[HumanInputForm | None, bool]:
        """A replay announces every form the run met; one answered or timed out is no longer waiting."""
        form = self.read_form_event(payload, run_id=run_id)
        if form is not None:
            return form, False
        event = payload.get("event") if isinstance(payload, dict) else None
        if event in _FORM_CLOSED:
            return None, False
        if event == "error":
            self.raise_for_error(self.validate(_ErrorEvent, payload).status or 500, payload, run_id=run_id)
        # Not ``workflow_paused``: a replay carries those of earlier pauses too, each followed by how that
        # pause ended. The stream closes at the pause the run waits at now.
        return (None, True) if event == "workflow_finished" else (pending, False)

    def read_form_event(self, payload: Any, *, run_id: str) -> HumanInputForm | None:
        """The form a ``human_input_required`` event announces; None for any other event."""
        if not isinstance(payload, dict) or payload.get("event") != "human_input_required":
            return None
        form = self.validate(_Form, payload.get("data"), run_id=run_id, at="data")
        if not form.form_token:
            raise NotSupportedError(
                f"run {run_id} waits for a Human Input form delivered by e-mail or the console, which "
                "cannot be answered through the API; answer it in Dify, or set the node's delivery to WebApp",
                platform=self.name,
                run_id=run_id,
            )
        return self._form(form, form.form_token)

    def form_request(self, token: str) -> ApiRequest:
        return ApiRequest("GET", f"/form/human_input/{token}")

    def parse_form(self, payload: Any, *, token: str) -> HumanInputForm:
        return self._form(self.validate(_Form, payload), token)

    def answer_request(self, token: str, *, action: str, inputs: Mapping[str, Any]) -> ApiRequest:
        """One-shot: a 412 means answered elsewhere first (``human_input_form_submitted``) or expired."""
        body = {"inputs": dict(inputs), "action": action, "user": self.user}
        return ApiRequest("POST", f"/form/human_input/{token}", json=body)

    def _form(self, form: _Form, token: str) -> HumanInputForm:
        defaults = form.resolved_default_values or {}
        return HumanInputForm(
            token=token,
            content=form.form_content or "",
            node_title=form.node_title,
            fields=tuple(
                HumanInputField(
                    name=field.output_variable_name,
                    kind=field.type,
                    default=None
                    if defaults.get(field.output_variable_name) is None
                    else str(defaults[field.output_variable_name]),
                    options=tuple(field.option_source.value or ())
                    if field.option_source and field.option_source.type == "constant"
                    else (),
                )
                for field in form.inputs or ()
            ),
            actions=tuple(
                HumanInputAction(id=action.id, title=action.title or action.id)
                for action in (form.user_actions or form.actions or ())
            ),
            expires_at=form.expiration_time,
        )

    # --- input files ------------------------------------------------------------------------------
    def upload_limit(self, name: str, media_type: str | None) -> int:
        self._require_media_type(name, media_type)
        return _UPLOAD_LIMIT_MB.get(file_category(name), _OTHER_LIMIT_MB) * _MB

    def upload_request(self, name: str, content: bytes, media_type: str) -> ApiRequest:
        """``POST /files/upload``, owned by the connection's ``user`` (only that user's runs can use it)."""
        return ApiRequest(
            "POST", "/files/upload", form={"user": self.user}, files={"file": (name, content, media_type)}
        )

    def parse_upload(self, payload: Any, *, media_type: str) -> Any:
        """The ``files`` input shape: a local file by its upload id, with Dify's category."""
        uploaded = self.validate(_Uploaded, payload)
        name = payload.get("name") if isinstance(payload, dict) else None
        return {
            "type": file_category(str(name or "")),
            "transfer_method": "local_file",
            "upload_file_id": uploaded.id,
        }

    def read_submit_event(self, payload: Any) -> WorkflowRun | None:
        event = payload.get("event") if isinstance(payload, dict) else None
        if event == "error":
            self.raise_for_error(self.validate(_ErrorEvent, payload).status or 500, payload)
        if event != "workflow_started":
            return None
        started = self.validate(_StartedEvent, payload)
        return WorkflowRun(
            platform=self.name,
            run_id=started.workflow_run_id,
            task_id=started.task_id,
            workflow_id=started.data.workflow_id,
            status=RunStatus.RUNNING,
            platform_status="running",
            created_at=started.data.created_at,
            started_at=started.data.created_at,
            raw=payload,
        )

    def parse_submit(self, payload: Any) -> WorkflowRun:
        """The blocking-mode answer (kept for completeness; the hook submits in streaming mode)."""
        answer = self.validate(_BlockingAnswer, payload)
        run = self._from_detail(answer.data, raw=payload)
        return run.model_copy(update={"task_id": answer.task_id})

    def parse_run(self, payload: Any, *, run_id: str) -> WorkflowRun:
        return self._from_detail(self.validate(_RunDetail, payload, run_id=run_id), raw=payload)

    def output_files(self, run: WorkflowRun, *, base_url: str) -> list[OutputFile]:
        """File objects (``dify_model_identity: __dify__file__``) anywhere in the outputs, alone or listed."""
        files = []
        for path, value in walk_outputs(run.outputs):
            if not isinstance(value, dict) or value.get("dify_model_identity") != FILE_IDENTITY:
                continue
            try:
                file = _FileObject.model_validate(value)
            except ValidationError:
                log.warning("Dify output %s looks like a file but could not be read; skipped", path)
                continue
            link = file.url or file.remote_url
            if not link:
                continue
            url = absolute_url(link, base_url)
            name = file.filename or file_name(url)
            files.append(
                OutputFile(
                    name=name,
                    url=url,
                    media_type=file.mime_type or media_type(name),
                    output_key=path,
                    size=file.size,
                )
            )
        return files

    def error_info(self, payload: Any) -> ErrorInfo | None:
        if isinstance(payload, dict) and "code" in payload and "message" in payload:
            return ErrorInfo(code=readable(payload["code"]), message=readable(payload["message"]))
        return None

    def _from_detail(self, detail: _RunDetail, *, raw: Any) -> WorkflowRun:
        status = self.map_status(detail.status, run_id=detail.id)
        return WorkflowRun(
            platform=self.name,
            run_id=detail.id,
            workflow_id=detail.workflow_id,
            status=status,
            platform_status=detail.status,
            outputs=detail.outputs or {},
            cost=RunCost(tokens=detail.total_tokens),
            error=_run_error(status, detail.error),
            created_at=detail.created_at,
            started_at=detail.created_at,
            finished_at=detail.finished_at,
            duration_seconds=duration(detail.elapsed_time, detail.created_at, detail.finished_at),
            raw=raw,
        )


def _run_error(status: RunStatus, error: str | None) -> RunError | None:
    if error:
        return RunError(reason=error)
    if status is RunStatus.FAILED:
        return RunError(reason="Dify reported the run failed without a message")
    if status is RunStatus.CANCELED:
        return RunError(reason="the run was stopped")
    return None
