"""A DAG whose output files cannot be copied (each file is larger than ``max_file_bytes``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pendulum
from airflow.sdk import DAG, ObjectStoragePath

from airflow_provider_wfrun.operators.workflow_run import RunWorkflowOperator

#: Where the tests' DAGs copy output files: inside the session's AIRFLOW_HOME.
OUTPUTS = Path(os.environ.get("AIRFLOW_HOME") or tempfile.gettempdir()) / "wfrun-test-outputs"

with DAG(
    dag_id="wfrun_test_files_too_large",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"conn_id": "wfrun_chenyu", "workflow_id": None, "inputs": {}},
    render_template_as_native_obj=True,
):
    RunWorkflowOperator(
        task_id="run",
        conn_id="{{ params.conn_id }}",
        workflow_id="{{ params.workflow_id }}",
        inputs="{{ params.inputs }}",
        outputs_to=ObjectStoragePath(f"file://{OUTPUTS}"),
        max_file_bytes=16,
        poll_interval=0.2,
        retries=0,
    )
