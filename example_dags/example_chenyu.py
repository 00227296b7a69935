"""
Generate an image on chenyu.cn: submit without waiting, then wait with the sensor.

The two-step form shows ``wait=False`` and :class:`WorkflowRunSensor`; a single
``RunWorkflowOperator`` with the default ``wait=True`` does the same in one task.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

from airflow_provider_wfrun.operators.workflow_run import RunWorkflowOperator
from airflow_provider_wfrun.sensors.workflow_run import WorkflowRunSensor

with DAG(
    dag_id="example_wfrun_chenyu",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"workflow_id": "wf_861ef31e94dcfb10e6e7"},
    tags=["example", "wfrun", "chenyu"],
):
    submit = RunWorkflowOperator(
        task_id="submit",
        conn_id="wfrun_chenyu",
        workflow_id="{{ params.workflow_id }}",
        inputs={"n6_text": "purple galaxy in a glass bottle", "n7_text": "text, watermark", "n3_seed": 42},
        wait=False,
    )
    wait = WorkflowRunSensor(
        task_id="wait",
        conn_id="wfrun_chenyu",
        run_id=submit.output,
        poke_interval=2,
        deferrable=True,
    )

    @task
    def report(result: dict) -> str:
        cost = result["cost"]
        print(f"Image ready: {result['outputs']}; charged {cost['total']} {cost['currency']}")
        return result["status"]

    report(wait.output)
