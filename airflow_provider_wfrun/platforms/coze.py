"""
Coze workflow runs (api.coze.com, api.coze.cn), after the coze-py SDK (``request.py``, ``workflows/runs``,
``workflows/runs/run_histories``).

Submit is asynchronous (``is_async``) and answers an ``execute_id``; the run is read back from
``/v1/workflows/{workflow_id}/run_histories/{execute_id}``, so this provider's run id carries both:
``"<workflow_id>:<execute_id>"``. Every answer is an envelope ``{code, msg, ...}`` in which any ``code``
other than 0 is an error whatever the HTTP status. A run's ``output`` is a JSON string whose object usually
holds ``Output``, itself a JSON string: both are decoded. ``usage`` counts tokens; Coze reports no money per
run. ``debug_url`` is the run's page. Coze has no API to cancel a workflow run.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

from airflow_provider_wfrun.exceptions import InvalidResponseError, RunNotFoundError
from airflow_provider_wfrun.models import RunCost, RunError, RunStatus, WorkflowRun
from airflow_provider_wfrun.platforms.base import (
    OUTPUT_VALUE_KEY,
    ApiRequest,
    Count,
    ErrorInfo,
    Message,
    PlatformAdapter,
    Record,
    Records,
    Text,
    UnixSeconds,
    WireFormat,
    readable,
    seconds_between,
)

#: Decoded ``output`` text larger than this is kept as text (``is_output_trimmed`` outputs are already cut).
MAX_OUTPUT_CHARS = 16 * 1024 * 1024


class _Submitted(WireFormat):
    execute_id: Text = None
    debug_url: Text = None


class _Usage(WireFormat):
    input_count: Count = None
    output_count: Count = None
    token_count: Count = None


class _History(WireFormat):
    execute_id: Text = None
    execute_status: str
    create_time: UnixSeconds = None
    update_time: UnixSeconds = None
    output: Any = None
    error_code: Text = None
    error_message: Message = None
    debug_url: Text = None
    is_output_trimmed: bool | None = None
    usage: Annotated[_Usage | None, Record] = None


class _Histories(WireFormat):
    data: Annotated[list[dict[str, Any]] | None, Records] = None


class CozeAdapter(PlatformAdapter):
    name = "coze"
    display_name = "Coze"
    default_host = "https://api.coze.com"
    requires_workflow_id = True
    auth_error_codes = frozenset({"4100", "4101"})
    not_found_error_codes = frozenset({"4200", "4314"})
    rate_limit_error_codes = frozenset({"4013"})
    transient_error_codes = frozenset({"5000"})
    run_id_pattern = re.compile(r"[^:\s]+:[^:\s]+")
    run_id_example = "7484523878849822754:7485110364436357130"
    statuses: ClassVar[Mapping[str, RunStatus]] = {
        "Running": RunStatus.RUNNING,
        "Success": RunStatus.SUCCEEDED,
        "Fail": RunStatus.FAILED,
    }
    status_path = ("data", 0, "execute_status")

    def submit_request(
        self,
        inputs: Mapping[str, Any],
        *,
        workflow_id: str | None,
        idempotency_key: str | None,
        workflow: Mapping[str, Any] | None = None,
    ) -> ApiRequest:
        if not workflow_id:
            raise self.missing_input(
                "Coze needs workflow_id (the number in the workflow editor's URL, e.g. 7484523878849822754)"
            )
        if ":" in workflow_id:
            raise self.missing_input(
                f"workflow_id {workflow_id!r} must not contain ':'; pass the workflow's id"
            )
        body = {"workflow_id": workflow_id, "parameters": dict(inputs), "is_async": True}
        return ApiRequest("POST", "/v1/workflow/run", json=body)

    def get_request(self, run_id: str) -> ApiRequest:
        workflow_id, execute_id = _split(run_id)
        return ApiRequest("GET", f"/v1/workflows/{workflow_id}/run_histories/{execute_id}")

    def probe_request(self) -> ApiRequest:
        return ApiRequest("GET", "/v1/users/me")

    # --- responses -----------------------------------------------------------------------------
    def parse_submit(self, payload: Any) -> WorkflowRun:
        raise InvalidResponseError(
            "a Coze submit answer names the run only with the request's workflow id", platform=self.name
        )

    def submitted(self, payload: Any, request: ApiRequest) -> WorkflowRun:
        """``"<workflow_id>:<execute_id>"``: the poll needs both, and only the request has the workflow id."""
        answer = self.validate(_Submitted, payload, essential=("execute_id",))
        if not answer.execute_id:
            raise InvalidResponseError(
                "unexpected response: the submit answer has no 'execute_id' (was is_async honoured?)",
                platform=self.name,
                field="execute_id",
            )
        workflow_id = str((request.json or {}).get("workflow_id") or "")
        return WorkflowRun(
            platform=self.name,
            run_id=f"{workflow_id}:{answer.execute_id}",
            workflow_id=workflow_id,
            status=RunStatus.RUNNING,
            platform_status="Running",
            run_url=answer.debug_url,
            raw=payload,
        )

    def parse_run(self, payload: Any, *, run_id: str) -> WorkflowRun:
        workflow_id, execute_id = _split(run_id)
        records = self.validate(_Histories, payload, run_id=run_id).data or []
        if not records:
            raise RunNotFoundError(
                f"Coze has no run history {execute_id} for workflow {workflow_id}",
                platform=self.name,
                run_id=run_id,
            )
        history = self.validate(_History, records[0], run_id=run_id, at="data[0]", essential=("execute_id",))
        if history.execute_id not in (None, execute_id):
            raise InvalidResponseError(
                f"asked for execution {execute_id!r}, Coze answered about {history.execute_id!r}; the answer "
                "was not used",
                platform=self.name,
                run_id=run_id,
                field="data[0].execute_id",
            )
        status = self.map_status(history.execute_status, run_id=run_id)
        usage = history.usage or _Usage()
        finished = history.update_time if status.is_terminal else None
        return WorkflowRun(
            platform=self.name,
            run_id=run_id,
            workflow_id=workflow_id,
            status=status,
            platform_status=history.execute_status,
            outputs=_outputs(history.output) if status.is_terminal else {},
            cost=RunCost(tokens=usage.token_count),
            error=_run_error(status, history),
            created_at=history.create_time,
            started_at=history.create_time,
            finished_at=finished,
            duration_seconds=seconds_between(history.create_time, finished),
            run_url=history.debug_url,
            raw=payload,
        )

    def with_run_url(self, run: WorkflowRun, *, base_url: str) -> WorkflowRun:
        """Coze's ``debug_url`` (the run's page) when the answer gave one; else the usual link."""
        if run.run_url and not self.extra.get("run_url_template"):
            return run
        return super().with_run_url(run, base_url=base_url)

    def error_info(self, payload: Any) -> ErrorInfo | None:
        if not isinstance(payload, dict) or "code" not in payload:
            return None
        code = readable(payload.get("code"))
        if code == "0":
            return None
        return ErrorInfo(code=code, message=readable(payload.get("msg") or payload.get("message")))


def _split(run_id: str) -> tuple[str, str]:
    workflow_id, _, execute_id = run_id.rpartition(":")
    return workflow_id, execute_id


def _decoded(value: Any) -> Any:
    """JSON text decoded, bounded; anything else (or text that is not JSON) as it is."""
    if isinstance(value, str) and len(value) <= MAX_OUTPUT_CHARS and value.strip()[:1] in ("{", "[", '"'):
        with contextlib.suppress(ValueError, RecursionError):
            return json.loads(value)
    return value


def _run_error(status: RunStatus, history: _History) -> RunError | None:
    if status is not RunStatus.FAILED:
        return None
    code = history.error_code if history.error_code not in (None, "", "0") else None
    return RunError(
        reason=history.error_message or "Coze reported the run failed without a message", code=code
    )


def _outputs(output: Any) -> dict[str, Any]:
    """``output`` decoded, and its ``Output`` too; text that is not JSON stays the text it is."""
    outer = _decoded(output)
    if not isinstance(outer, dict):
        return {} if outer in (None, "") else {OUTPUT_VALUE_KEY: outer}
    inner = _decoded(outer.get("Output"))
    if isinstance(inner, dict):
        return {**{k: v for k, v in outer.items() if k != "Output"}, **inner}
    return {**outer, "Output": inner} if "Output" in outer else outer
