"""Translate a sentence with a Dify workflow app and use its output and token count downstream."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

from airflow_provider_wfrun.operators.workflow_run import RunWorkflowOperator

with DAG(
    dag_id="example_wfrun_dify",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "wfrun", "dify"],
):
    translate = RunWorkflowOperator(
        task_id="translate",
        conn_id="wfrun_dify",
        inputs={"query": "Translate this to French: good morning"},
        deferrable=True,
        poll_interval=2,
    )

    @task
    def report(result: dict) -> str:
        print(f"Dify answered {result['outputs']} using {result['cost']['tokens']} tokens")
        return result["status"]

    report(translate.output)
