"""
chenyu.cn (晨羽智云) Open API v2 workflow runs.

Every answer is an envelope ``{"code": 0, "msg", "data"}``; a non-zero ``code`` is an error even with
HTTP 200. Submit requires an ``idempotency_key`` and the platform returns the same run for the same key,
so retrying a submit can never start a second run. ``/workflow/run/execution`` is the poll target
(status, queue, progress, logs, costs as numbers); once a run is terminal ``/workflow/run/info`` gives
the settlement (quote, final and released amounts as 8-decimal strings, CNY). No cancel endpoint is
documented for workflow runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Annotated, Any, ClassVar

from pydantic import model_validator

from airflow_provider_wfrun.connection_form import ExtraFieldSpec
from airflow_provider_wfrun.exceptions import InvalidResponseError
from airflow_provider_wfrun.models import (
    OutputFile,
    RunCost,
    RunError,
    RunLogEntry,
    RunSettlement,
    RunStatus,
    WorkflowRun,
)
from airflow_provider_wfrun.platforms.base import (
    Amount,
    ApiRequest,
    ErrorInfo,
    IsoTime,
    Message,
    Outputs,
    Percent,
    PlatformAdapter,
    QueuePosition,
    Record,
    Records,
    Seconds,
    Text,
    WireFormat,
    duration,
    readable,
    url_files,
)

CURRENCY = "CNY"


class _Envelope(WireFormat):
    code: int
    msg: Message = None
    data: Annotated[dict[str, Any] | None, Record] = None


class _QueueInfo(WireFormat):
    position: QueuePosition = None
    estimated_wait_sec: Seconds = None


class _Error(WireFormat):
    reason: Message = None
    detail: Message = None
    engine_code: Text = None
    status_code: Text = None
    code: Text = None
    message: Message = None

    @model_validator(mode="before")
    @classmethod
    def _plain_text(cls, value: Any) -> Any:
        """An error given as plain text (not as the documented object) is its reason."""
        return {"reason": value} if isinstance(value, str) else value


class _Log(WireFormat):
    at: IsoTime = None
    event_type: Text = None
    level: Text = None
    message: Message = None
    node_id: Text = None


class _Execution(WireFormat):
    task_id: Text = None
    workflow_id: Text = None
    status: str
    queue_info: Annotated[_QueueInfo | None, Record] = None
    progress_percent: Percent = None
    logs: Annotated[list[_Log] | None, Records] = None
    actual_execution_duration_sec: Seconds = None
    compute_cost: Amount = None
    external_model_cost: Amount = None
    total_cost: Amount = None
    outputs: Outputs = None
    error: Annotated[_Error | None, Record] = None
    created_at: IsoTime = None
    started_at: IsoTime = None
    terminal_at: IsoTime = None


class _Submitted(WireFormat):
    run_order_id: str
    workflow_id: Text = None
    run_status: Text = None
    task_id: Text = None
    quote_amount: Amount = None
    quote_currency: Text = None
    freeze_status: Text = None


class _Info(WireFormat):
    run_order_id: Text = None
    quote_amount: Amount = None
    quote_currency: Text = None
    run_status: Text = None
    settlement_status: Text = None
    outputs: Outputs = None
    compute_cost: Amount = None
    external_model_cost: Amount = None
    total_cost: Amount = None
    final_amount: Amount = None
    released_amount: Amount = None
    error_code: Text = None
    error_message: Message = None


#: Billing is only worth recording when its amounts are; an unreadable one discards the settlement.
_SETTLEMENT_AMOUNTS = (
    "quote_amount",
    "compute_cost",
    "external_model_cost",
    "total_cost",
    "final_amount",
    "released_amount",
)


class _Asset(WireFormat):
    asset_uri: str


#: ``POST /assets`` takes files up to 100 MB, of these media types.
ASSET_LIMIT_BYTES = 100 * 1024 * 1024
_ASSET_MEDIA = ("image", "video", "audio")


class ChenyuAdapter(PlatformAdapter):
    name = "chenyu"
    display_name = "chenyu.cn"
    default_host = "https://www.chenyu.cn/api/open/v2"
    idempotent_submit = True
    extra_fields: ClassVar[Mapping[str, ExtraFieldSpec]] = {
        "accept_external_cost_risk": {
            "label": "Accept external model costs",
            "description": "Run workflows that may call paid external models",
            "kind": "bool",
        },
        "timezone": {
            "label": "Time zone of timestamps",
            "description": "Zone of chenyu timestamps written without an offset (default UTC)",
            "placeholder": "Asia/Shanghai",
        },
    }
    requires_workflow_id = True
    auth_error_codes = frozenset({"401", "403"})
    not_found_error_codes = frozenset({"404", "TASK_NOT_FOUND"})
    #: The execution document: "when the execution engine is temporarily unavailable or answers an error,
    #: the call returns a short reason and the detailed error" (``data.error``, inside an HTTP 200). An
    #: unavailable engine (its code, or the gateway statuses it reports) is worth another try.
    transient_error_codes = frozenset({"ENGINE_UNAVAILABLE", "502", "503", "504"})
    run_id_pattern = re.compile(r"wfrun_\w+")
    run_id_example = "wfrun_314ff7d8b7a5beff1388"
    statuses: ClassVar[Mapping[str, RunStatus]] = {
        "created": RunStatus.QUEUED,
        "queued": RunStatus.QUEUED,
        "running": RunStatus.RUNNING,
        "succeeded": RunStatus.SUCCEEDED,
        "failed": RunStatus.FAILED,
        "canceled": RunStatus.CANCELED,
        "cancelled": RunStatus.CANCELED,
    }
    status_path = ("data", "status")

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
                "chenyu needs workflow_id (e.g. 'wf_861ef31e94dcfb10e6e7') to submit a run"
            )
        if not idempotency_key:
            raise self.missing_input("chenyu needs an idempotency_key to submit a run")
        body: dict[str, Any] = {
            "workflow_id": workflow_id,
            "inputs": dict(inputs),
            "idempotency_key": idempotency_key,
        }
        if self._accepts_external_cost_risk():
            body["accept_external_cost_risk"] = True
        return ApiRequest("POST", "/workflow/run/submit", json=body)

    def _accepts_external_cost_risk(self) -> bool:
        """The connection extra, read strictly: the text "false" from a form must not accept costs."""
        value = self.extra.get("accept_external_cost_risk")
        text = str(value).strip().lower() if value is not None else ""
        if value is True or text in ("true", "1", "yes"):
            return True
        if value is False or text in ("false", "0", "no", "", "none"):
            return False
        raise self.missing_input(
            f"connection extra accept_external_cost_risk must be true or false, got {value!r}"
        )

    def get_request(self, run_id: str) -> ApiRequest:
        return ApiRequest("GET", "/workflow/run/execution", params={"run_order_id": run_id})

    def settlement_request(self, run: WorkflowRun) -> ApiRequest | None:
        if not run.is_terminal:
            return None
        return ApiRequest("GET", "/workflow/run/info", params={"run_order_id": run.run_id})

    def probe_request(self) -> ApiRequest:
        return ApiRequest("GET", "/balance/info")

    def upload_limit(self, name: str, media_type: str | None) -> int:
        self._require_media_type(name, media_type)
        return ASSET_LIMIT_BYTES

    def upload_request(self, name: str, content: bytes, media_type: str) -> ApiRequest:
        """``POST /assets`` as a temporary input (kept 48 h), its kind given rather than guessed."""
        kind = media_type.partition("/")[0]
        form = {"media_type": kind if kind in _ASSET_MEDIA else "file", "purpose": "temp_input"}
        return ApiRequest("POST", "/assets", form=form, files={"file": (name, content, media_type)})

    def parse_upload(self, payload: Any, *, media_type: str) -> Any:
        """chenyu takes the ``asset://`` URI itself as the input's value."""
        return self.validate(_Asset, self._data(payload), at="data").asset_uri

    def parse_submit(self, payload: Any) -> WorkflowRun:
        data = self.validate(_Submitted, self._data(payload), at="data")
        return WorkflowRun(
            platform=self.name,
            run_id=data.run_order_id,
            workflow_id=data.workflow_id,
            task_id=data.task_id,
            status=self.map_status(data.run_status or "queued", run_id=data.run_order_id),
            platform_status=data.run_status,
            settlement=RunSettlement(quote=data.quote_amount, currency=data.quote_currency),
            raw=payload,
        )

    def parse_run(self, payload: Any, *, run_id: str) -> WorkflowRun:
        data = self.validate(_Execution, self._data(payload, run_id=run_id), run_id=run_id, at="data")
        status = self.map_status(data.status, run_id=run_id)
        queue = data.queue_info or _QueueInfo()
        started, finished = data.started_at, data.terminal_at
        return WorkflowRun(
            platform=self.name,
            run_id=run_id,
            workflow_id=data.workflow_id,
            task_id=data.task_id,
            status=status,
            platform_status=data.status,
            outputs=data.outputs or {},
            cost=RunCost(
                total=data.total_cost,
                compute=data.compute_cost,
                external=data.external_model_cost,
                currency=CURRENCY,
            ),
            error=_run_error(status, data.error),
            progress=data.progress_percent,
            queue_position=queue.position,
            eta_seconds=queue.estimated_wait_sec,
            logs=tuple(_log_entry(line) for line in data.logs or ()),
            created_at=data.created_at,
            started_at=started,
            finished_at=finished,
            duration_seconds=duration(data.actual_execution_duration_sec, started, finished),
            raw=payload,
        )

    def apply_settlement(self, run: WorkflowRun, payload: Any) -> WorkflowRun:
        """
        Exact 8-decimal amounts from the run order replace the execution's float costs.

        An amount that cannot be read fails this call (``InvalidResponseError``): half a settlement would
        be wrong money. The hook then keeps the run as ``/execution`` described it, without settlement.
        """
        data = self._data(payload, run_id=run.run_id)
        info = self.validate(_Info, data, run_id=run.run_id, at="data", essential=_SETTLEMENT_AMOUNTS)
        if info.run_order_id is not None and info.run_order_id != run.run_id:
            raise InvalidResponseError(
                f"asked for the settlement of run {run.run_id!r}, the platform answered about run "
                f"{info.run_order_id!r}; the answer was not used",
                platform=self.name,
                run_id=run.run_id,
                field="data.run_order_id",
            )
        currency = info.quote_currency or CURRENCY
        update: dict[str, Any] = {
            "cost": run.cost.model_copy(
                update={
                    "total": _first(info.total_cost, run.cost.total),
                    "compute": _first(info.compute_cost, run.cost.compute),
                    "external": _first(info.external_model_cost, run.cost.external),
                    "currency": currency,
                }
            ),
            "settlement": RunSettlement(
                quote=info.quote_amount,
                final=info.final_amount,
                released=info.released_amount,
                currency=currency,
                status=info.settlement_status,
            ),
        }
        if not run.outputs and info.outputs:
            update["outputs"] = info.outputs
        if run.error is None and info.error_message:
            update["error"] = RunError(reason=info.error_message, code=info.error_code or None)
        return run.model_copy(update=update)

    def output_files(self, run: WorkflowRun, *, base_url: str) -> list[OutputFile]:
        """chenyu outputs images as URL strings (``n9_images``), one or a list per output node."""
        return url_files(run.outputs)

    def error_info(self, payload: Any) -> ErrorInfo | None:
        if not isinstance(payload, dict) or "code" not in payload:
            return None
        code = readable(payload.get("code"))
        if code == "0":
            return None
        error = self.validate(_ErrorBody, payload).error
        if error is not None:
            code = error.engine_code or error.status_code or code
        message = readable(payload.get("msg"))
        if error and error.detail:
            message = f"{error.reason or message}: {error.detail}"
        return ErrorInfo(code=code, message=message)

    def _data(self, payload: Any, *, run_id: str | None = None) -> Any:
        return self.validate(_Envelope, payload, run_id=run_id).data


class _ErrorData(WireFormat):
    error: Annotated[_Error | None, Record] = None


class _ErrorBody(WireFormat):
    data: Annotated[_ErrorData | None, Record] = None

    @property
    def error(self) -> _Error | None:
        return self.data.error if self.data else None


def _first(*values: Decimal | None) -> Decimal | None:
    return next((v for v in values if v is not None), None)


def _log_entry(line: _Log) -> RunLogEntry:
    return RunLogEntry(
        at=line.at,
        level=line.level,
        message=line.message or "",
        event_type=line.event_type,
        node_id=line.node_id,
    )


def _run_error(status: RunStatus, error: _Error | None) -> RunError | None:
    reason = error and (error.reason or error.message)
    if error is not None and reason:
        return RunError(reason=reason, detail=error.detail, code=error.engine_code or error.code)
    if status is RunStatus.FAILED:
        return RunError(reason="chenyu reported the run failed without a reason")
    if status is RunStatus.CANCELED:
        return RunError(reason="the run was canceled")
    return None
