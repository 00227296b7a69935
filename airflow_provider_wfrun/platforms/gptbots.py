"""
GPTBots workflows.

The API key belongs to one workflow, so requests carry no workflow id. Submit is asynchronous
(``isAsync``) and returns the pending run. Times are Unix milliseconds and durations milliseconds;
``totalCost`` is in GPTBots credits, not money. GPTBots documents no cancel endpoint and no error field
on failed runs. Errors may arrive as ``{"code", "message"}`` bodies with HTTP 200.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from airflow_provider_wfrun.connection_form import ExtraFieldSpec
from airflow_provider_wfrun.models import RunCost, RunError, RunStatus, WorkflowRun
from airflow_provider_wfrun.platforms.base import (
    Amount,
    ApiRequest,
    Count,
    ErrorInfo,
    Message,
    Millis,
    Outputs,
    PlatformAdapter,
    Text,
    UnixMillis,
    WireFormat,
    duration,
    readable,
)

CREDITS = "credits"


class _RunResult(WireFormat):
    workflowId: Text = None
    workflowName: Text = None
    workflowVersion: Text = None
    workflowRunId: str
    output: Outputs = None
    workflowExecutionTime: Millis = None
    status: str
    totalCost: Amount = None
    totalTokens: Count = None
    startTime: UnixMillis = None
    endTime: UnixMillis = None
    #: Not documented; read if a deployment sends one.
    message: Message = None
    errorMessage: Message = None


class GptbotsAdapter(PlatformAdapter):
    name = "gptbots"
    display_name = "GPTBots"
    default_host = "https://api-sg.gptbots.ai/v1"
    auth_error_codes = frozenset({"40127"})
    extra_fields: ClassVar[Mapping[str, ExtraFieldSpec]] = {
        "user_id": {"label": "User id", "description": "userId sent with each run (optional)"}
    }
    statuses: ClassVar[Mapping[str, RunStatus]] = {
        "PENDING": RunStatus.QUEUED,
        "RUNNING": RunStatus.RUNNING,
        "SUCCEED": RunStatus.SUCCEEDED,
        "FAILED": RunStatus.FAILED,
    }
    status_path = ("status",)

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
                f"GPTBots picks the workflow by the API key, so workflow_id={workflow_id!r} cannot be "
                "honoured; leave it empty and use a connection holding that workflow's key"
            )
        body: dict[str, Any] = {"input": dict(inputs), "isAsync": True}
        if self.extra.get("user_id"):
            body["userId"] = str(self.extra["user_id"])
        return ApiRequest("POST", "/workflow/invoke", json=body)

    def get_request(self, run_id: str) -> ApiRequest:
        return ApiRequest("POST", "/workflow/query/result", json={"workflowRunId": run_id})

    def probe_request(self) -> ApiRequest:
        return ApiRequest("GET", "/api-key/verify")

    def parse_submit(self, payload: Any) -> WorkflowRun:
        return self.parse_run(payload, run_id="")

    def parse_run(self, payload: Any, *, run_id: str) -> WorkflowRun:
        result = self.validate(_RunResult, payload, run_id=run_id or None)
        status = self.map_status(result.status, run_id=result.workflowRunId)
        started, finished = result.startTime, result.endTime
        reported = result.workflowExecutionTime
        return WorkflowRun(
            platform=self.name,
            run_id=result.workflowRunId,
            workflow_id=result.workflowId,
            status=status,
            platform_status=result.status,
            outputs=result.output or {},
            cost=RunCost(
                total=result.totalCost,
                currency=CREDITS if result.totalCost is not None else None,
                tokens=result.totalTokens,
            ),
            error=_run_error(status, result.message or result.errorMessage),
            created_at=started,
            started_at=started,
            finished_at=finished,
            duration_seconds=duration(None if reported is None else reported / 1000, started, finished),
            raw=payload,
        )

    def error_info(self, payload: Any) -> ErrorInfo | None:
        if not isinstance(payload, dict) or "code" not in payload or "workflowRunId" in payload:
            return None
        code = readable(payload["code"])
        if code == "0":
            return None
        return ErrorInfo(code=code, message=readable(payload.get("message") or payload.get("msg")))


def _run_error(status: RunStatus, message: str | None) -> RunError | None:
    if status is not RunStatus.FAILED:
        return None
    return RunError(reason=message or "GPTBots reported FAILED and gives no reason; see the run's log there")
