"""
Lineage and spend: with ``apache-airflow-providers-openlineage`` installed, every run task emits an
OpenLineage event naming the platform and workflow, with a ``wfrun_run`` facet carrying the run id, status,
run URL, cost and tokens. Point ``[openlineage] transport`` at Marquez, a file or the console.

Nothing in the DAG is lineage-specific: the operator and sensor provide the facets themselves.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_wfrun.operators.workflow_run import RunWorkflowOperator
from airflow_provider_wfrun.sensors.workflow_run import WorkflowRunSensor

with DAG(
    dag_id="example_wfrun_lineage",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"workflow_id": "wf_861ef31e94dcfb10e6e7"},
    tags=["example", "wfrun", "lineage"],
):
    # A paid run: the event's wfrun_run facet carries what it cost, in the platform's currency.
    render = RunWorkflowOperator(
        task_id="render",
        conn_id="wfrun_chenyu",
        workflow_id="{{ params.workflow_id }}",
        inputs={"n6_text": "a lighthouse at dawn", "n3_seed": 7},
        deferrable=True,
        poll_interval=2,
    )
    # A run started elsewhere and awaited by a sensor: its event names the run and its token count.
    start = RunWorkflowOperator(
        task_id="start",
        conn_id="wfrun_dify",
        inputs={"query": "Summarize: lineage makes spend visible"},
        wait=False,
    )
    await_summary = WorkflowRunSensor(
        task_id="await_summary", conn_id="wfrun_dify", run_id=start.output, poke_interval=1
    )
    start >> await_summary
