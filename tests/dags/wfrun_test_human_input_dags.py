"""DAGs whose Dify run pauses for a form a person answers in Airflow (human-in-the-loop)."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_wfrun.operators.workflow_run import RunWorkflowOperator

for dag_id, options in {
    "wfrun_test_human_input": {"deferrable": True},
    "wfrun_test_human_input_worker": {"deferrable": False},
    # The run's deadline comes while the person is still being asked.
    "wfrun_test_human_input_deadline": {"deferrable": True, "timeout": 4},
}.items():
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        params={"conn_id": "wfrun_dify", "inputs": {}},
        render_template_as_native_obj=True,
    ):
        RunWorkflowOperator(
            task_id="run",
            conn_id="{{ params.conn_id }}",
            inputs="{{ params.inputs }}",
            poll_interval=0.2,
            retries=0,
            **options,
        )
