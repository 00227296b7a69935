"""
Run a Coze workflow and pass its answer on; Coze counts tokens, so that is the run's cost.

``workflow_id`` is the number in the workflow editor's URL (a DAG run's conf can set another); the inputs are
the workflow's parameters. The result's ``run_url`` is Coze's debug page of the run.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

from airflow_provider_wfrun.operators.workflow_run import RunWorkflowOperator

with DAG(
    dag_id="example_wfrun_coze",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"workflow_id": "7484523878849822754"},
    tags=["example", "wfrun", "coze"],
):
    digest = RunWorkflowOperator(
        task_id="digest",
        conn_id="wfrun_coze",
        workflow_id="{{ params.workflow_id }}",
        inputs={"topic": "AI workflow platforms", "language": "en"},
        deferrable=True,
        poll_interval=2,
    )

    @task
    def report(result: dict) -> str:
        print(f"Coze run {result['run_id']}: {result['cost']['tokens']} tokens; see {result['run_url']}")
        return result["status"]

    report(digest.output)
