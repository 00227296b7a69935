"""
The normalized run model shared by every platform.

Each platform reports a run in its own words and units (GPTBots milliseconds and credits, Dify Unix
seconds and tokens, chenyu ISO strings and CNY as numbers or 8-decimal strings). The adapters in
:mod:`airflow_provider_wfrun.platforms` translate those into :class:`WorkflowRun`, so hooks, triggers,
operators and users only ever see one shape: timestamps are tz-aware UTC, durations are seconds and
money is an exact :class:`~decimal.Decimal`.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, computed_field

#: Exact money. JSON renders it as fixed-point text (``"0.00000000"``, never ``"0E-8"``) so no digit is lost.
Money = Annotated[
    Decimal, PlainSerializer(lambda value: format(value, "f"), return_type=str, when_used="json")
]


class RunStatus(str, Enum):
    """Lifecycle of a run, common to all platforms."""

    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    PARTIALLY_SUCCEEDED = "partially_succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    #: A status word this provider does not know yet; the word itself is kept in
    #: ``WorkflowRun.platform_status``. Never terminal, so waiting goes on rather than guessing.
    UNKNOWN = "unknown"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL

    @property
    def is_success(self) -> bool:
        return self is RunStatus.SUCCEEDED


_TERMINAL = frozenset(
    {RunStatus.SUCCEEDED, RunStatus.PARTIALLY_SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELED}
)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RunCost(_Model):
    """
    What a run cost.

    ``currency`` is an ISO code for money (chenyu: ``CNY``, Dify node prices: e.g. ``USD``) or
    ``"credits"`` for GPTBots, whose ``totalCost`` is not money.
    """

    total: Money | None = None
    compute: Money | None = None
    external: Money | None = None
    currency: str | None = None
    tokens: int | None = None


class RunSettlement(_Model):
    """Billing settlement of a finished run (chenyu pre-charges a quote and refunds the difference)."""

    quote: Money | None = None
    final: Money | None = None
    released: Money | None = None
    currency: str | None = None
    status: str | None = None


class RunError(_Model):
    """Why a run did not succeed, in the platform's own words."""

    reason: str
    detail: str | None = None
    code: str | None = None


class RunLogEntry(_Model):
    """One line of a platform's run log (chenyu reports these while a run executes)."""

    at: datetime | None = None
    level: str | None = None
    message: str = ""
    event_type: str | None = None
    node_id: str | None = None


class OutputFile(_Model):
    """
    A file a run produced, as the platform names it: what issue 14's ``outputs_to`` copies.

    Platform URLs often expire (signed links, ComfyUI's output folder being cleaned), so a durable copy is
    made from ``url`` soon after the run; ``authenticated`` says the URL is on the platform's own API and
    must be fetched with the connection's authentication headers (ComfyUI ``/view`` behind a proxy).
    """

    #: File name to store it under (no directories): the platform's name, or the URL's last segment.
    name: str
    #: Absolute URL to download it from.
    url: str
    #: MIME type when the platform says it or the name implies it, else None.
    media_type: str | None = None
    #: Where in ``outputs`` it came from: ``"n9_images"``, ``"9.images[0]"``, ``"file"``.
    output_key: str
    size: int | None = None
    authenticated: bool = False


class WorkflowRun(_Model):
    """One run on one platform, normalized."""

    platform: str
    run_id: str
    workflow_id: str | None = None
    #: A second handle some platforms need besides ``run_id`` (Dify stops a run by its task id).
    task_id: str | None = None
    status: RunStatus
    #: The platform's own status word, kept verbatim (``SUCCEED``, ``partial-succeeded``, ...).
    platform_status: str | None = None
    outputs: dict[str, Any] = Field(default_factory=dict)
    cost: RunCost = Field(default_factory=RunCost)
    settlement: RunSettlement | None = None
    error: RunError | None = None
    progress: float | None = None
    queue_position: int | None = None
    eta_seconds: float | None = None
    logs: tuple[RunLogEntry, ...] = ()
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_seconds: float | None = None
    #: Where a person can look at the run (the connection's ``run_url_template``, else the API address of
    #: its status). Set by the hook on the terminal runs ``get_run`` returns, which is where results are
    #: built; polls of a running run skip it (they are the hot path of a triggerer).
    run_url: str | None = None
    raw: dict[str, Any] = Field(default_factory=dict, repr=False)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    def result_dict(self) -> dict[str, Any]:
        """
        The small, JSON-serializable summary operators and sensors return to XCom.

        Money is rendered as decimal strings so that ``0.00028780`` stays exactly that downstream; times
        are ISO 8601 in UTC. ``settlement`` is chenyu's billing (None elsewhere, and None when the billing
        call failed: the run's own ``cost`` still stands).
        """
        return {
            "run_id": self.run_id,
            "platform": self.platform,
            "workflow_id": self.workflow_id,
            "status": self.status.value,
            "outputs": self.outputs,
            "cost": self.cost.model_dump(mode="json"),
            "duration_seconds": self.duration_seconds,
            "error": self.error.model_dump(mode="json") if self.error else None,
            "settlement": (
                self.settlement.model_dump(mode="json", include={"quote", "final", "released", "currency"})
                if self.settlement
                else None
            ),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "platform_status": self.platform_status,
            "run_url": self.run_url,
        }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
