"""
A DAG with a typo in a template, for the bad-input catalogue (``tests/faults``).

``params.promt`` does not exist. Airflow's default renders it as an error already, but a DAG with a lenient
``template_undefined`` (as here) would send an empty prompt to a paid workflow; the operator refuses.
"""

from __future__ import annotations

import jinja2
import pendulum
from airflow.sdk import DAG

from airflow_provider_wfrun.operators.workflow_run import RunWorkflowOperator

with DAG(
    dag_id="wfrun_test_undefined_template",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"prompt": "hello"},
    template_undefined=jinja2.Undefined,
):
    RunWorkflowOperator(
        task_id="run",
        conn_id="wfrun_chenyu",
        workflow_id="wf_861ef31e94dcfb10e6e7",
        inputs={"prompt": "{{ params.promt }}"},
        poll_interval=0.2,
    )
