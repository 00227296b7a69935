"""
OpenLineage facets for a workflow run: which platform and workflow ran, what it cost, which files it read
and wrote.

Imported only from ``get_openlineage_facets_on_complete`` (as Airflow's own providers do), so OpenLineage
stays optional: without ``apache-airflow-providers-openlineage`` nothing here is ever loaded.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from attrs import define
from openlineage.client.facet_v2 import JobFacet, RunFacet, external_query_run

from airflow_provider_wfrun.exceptions import WorkflowRunError

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage

    from airflow_provider_wfrun.hooks.workflow_run import WorkflowRunHook
    from airflow_provider_wfrun.models import WorkflowRun

log = logging.getLogger(__name__)

#: Where the custom facets are described (docs/lineage.md ships in the project description).
_SCHEMA_ROOT = "https://pypi.org/project/airflow-provider-wfrun/"
#: Keys of the custom facets in emitted events.
RUN_FACET = "wfrun_run"
JOB_FACET = "wfrun_workflow"


@define
class WorkflowRunFacet(RunFacet):
    """One workflow run: its ids, outcome and spend, in the units the platform reported."""

    platform: str
    runId: str
    status: str | None = None
    platformStatus: str | None = None
    runUrl: str | None = None
    costTotal: str | None = None
    costCurrency: str | None = None
    tokens: int | None = None
    durationSeconds: float | None = None

    # Ids and URLs are not secrets; the client would otherwise scrub strings that look like keys.
    _additional_skip_redact = ["platform", "runId", "runUrl", "status", "platformStatus"]

    @staticmethod
    def _get_schema() -> str:
        return f"{_SCHEMA_ROOT}#workflowrunfacet"


@define
class WorkflowJobFacet(JobFacet):
    """What the task runs: a workflow on a platform (the Airflow job name is the DAG's and task's)."""

    platform: str
    platformName: str
    workflowId: str | None = None

    _additional_skip_redact = ["platform", "platformName", "workflowId"]

    @staticmethod
    def _get_schema() -> str:
        return f"{_SCHEMA_ROOT}#workflowjobfacet"


def operator_lineage(
    hook: WorkflowRunHook,
    run_id: str | None,
    *,
    workflow_id: str | None = None,
    run: WorkflowRun | None = None,
    inputs: Iterable[str] = (),
    outputs: Iterable[str] = (),
) -> OperatorLineage:
    """
    The lineage of one task's run. ``run`` is the final run when the task fetched it (else only the id is
    known: ``wait=False``, or a task that failed before the run ended); ``inputs``/``outputs`` are the URLs
    of the files the run read and wrote.
    """
    from airflow.providers.common.compat.openlineage.facet import Dataset
    from airflow.providers.openlineage.extractors import OperatorLineage

    adapter = hook.adapter
    run_facets: dict[str, Any] = {}
    if run_id:
        run_facets[RUN_FACET] = _run_facet(adapter.name, run_id, _run_url(hook, run_id, workflow_id), run)
        run_facets["externalQuery"] = external_query_run.ExternalQueryRunFacet(
            externalQueryId=run_id, source=adapter.name
        )
    job = WorkflowJobFacet(
        platform=adapter.name,
        platformName=adapter.display_name,
        workflowId=workflow_id or (run.workflow_id if run else None),
    )
    return OperatorLineage(
        inputs=[Dataset(*dataset_name(url)) for url in inputs],
        outputs=[Dataset(*dataset_name(url)) for url in outputs],
        run_facets=run_facets,
        job_facets={JOB_FACET: job},
    )


def _run_url(hook: WorkflowRunHook, run_id: str, workflow_id: str | None) -> str | None:
    try:
        return hook.run_url(run_id, workflow_id)
    except WorkflowRunError as exc:  # lineage enriches the task's record, it never fails it
        log.warning("No run URL for lineage: %s", exc)
        return None


def _run_facet(platform: str, run_id: str, run_url: str | None, run: WorkflowRun | None) -> WorkflowRunFacet:
    if run is None:
        return WorkflowRunFacet(platform=platform, runId=run_id, runUrl=run_url)
    return WorkflowRunFacet(
        platform=platform,
        runId=run_id,
        status=run.status.value,
        platformStatus=run.platform_status,
        runUrl=run_url,
        costTotal=None if run.cost.total is None else format(run.cost.total, "f"),
        costCurrency=run.cost.currency,
        tokens=run.cost.tokens,
        durationSeconds=run.duration_seconds,
    )


def dataset_name(url: str) -> tuple[str, str]:
    """
    OpenLineage's naming of a stored file: namespace ``scheme://authority``, name the path
    (``s3://bucket`` + ``key``; local files are ``file`` + absolute path).
    """
    parts = urlsplit(url)
    if not parts.scheme or parts.scheme == "file":
        return "file", parts.path
    return f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/")


__all__ = ["WorkflowJobFacet", "WorkflowRunFacet", "dataset_name", "operator_lineage"]
