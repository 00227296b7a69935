"""
DAGs the test suite runs through real Airflow (``dag.test()``), one per way of waiting.

Each takes its connection, workflow and inputs as params, and hands the task's result to a downstream
task, which returns what it received: the test reads that downstream XCom, so it checks what a user's
next task really gets.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

from airflow_provider_wfrun.operators.workflow_run import RunWorkflowOperator
from airflow_provider_wfrun.sensors.workflow_run import WorkflowRunSensor

PARAMS = {"conn_id": "wfrun_dify", "workflow_id": None, "workflow": None, "inputs": {}}


def _dag(dag_id: str) -> DAG:
    return DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        params=PARAMS,
        render_template_as_native_obj=True,
    )


@task
def downstream(result: dict) -> dict:
    return {"received": result}


for mode, deferrable in (("deferrable", True), ("worker", False)):
    with _dag(f"wfrun_test_operator_{mode}"):
        run = RunWorkflowOperator(
            task_id="run",
            conn_id="{{ params.conn_id }}",
            workflow_id="{{ params.workflow_id }}",
            workflow="{{ params.workflow }}",
            inputs="{{ params.inputs }}",
            deferrable=deferrable,
            poll_interval=0.2,
        )
        downstream(run.output)


for mode in ("poke", "reschedule", "deferrable"):
    with _dag(f"wfrun_test_sensor_{mode}"):
        started = RunWorkflowOperator(
            task_id="start",
            conn_id="{{ params.conn_id }}",
            workflow_id="{{ params.workflow_id }}",
            workflow="{{ params.workflow }}",
            inputs="{{ params.inputs }}",
            wait=False,
        )
        waited = WorkflowRunSensor(
            task_id="wait",
            conn_id="{{ params.conn_id }}",
            run_id=started.output,
            poke_interval=0.5 if mode != "reschedule" else 1,
            mode="reschedule" if mode == "reschedule" else "poke",
            deferrable=mode == "deferrable",
        )
        downstream(waited.output)
