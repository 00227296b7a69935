"""Summarize many documents with one mapped task per document, then add up what it cost."""

from __future__ import annotations

from decimal import Decimal

import pendulum
from airflow.sdk import DAG, task

from airflow_provider_wfrun.operators.workflow_run import RunWorkflowOperator

DOCUMENTS = ["Quarterly report", "Release notes", "Incident review", "Roadmap", "Customer feedback"]

with DAG(
    dag_id="example_wfrun_fan_out",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"workflow_id": "wf_861ef31e94dcfb10e6e7"},
    tags=["example", "wfrun", "mapping"],
):
    summaries = RunWorkflowOperator.partial(
        task_id="summarize",
        conn_id="wfrun_chenyu",
        workflow_id="{{ params.workflow_id }}",
        deferrable=True,
        poll_interval=2,
    ).expand(inputs=[{"n6_text": f"Summarize: {doc}"} for doc in DOCUMENTS])

    @task
    def total_cost(results: list[dict]) -> dict:
        """Money stays exact: amounts arrive as decimal strings and are added as Decimals."""
        total = sum((Decimal(r["cost"]["total"] or "0") for r in results), Decimal("0"))
        currencies = sorted({r["cost"]["currency"] for r in results})
        print(f"{len(results)} runs cost {total} {'/'.join(currencies)}")
        return {"runs": len(results), "total": str(total), "currency": "/".join(currencies)}

    total_cost(summaries.output)
