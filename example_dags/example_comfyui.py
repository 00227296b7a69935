"""
Generate an image on a ComfyUI server from a graph exported with "Save (API)", and keep a copy of it.

``workflow`` is the graph's JSON file (a path or an ObjectStoragePath; a mapping works too), read once when
the task starts; ``inputs`` override node inputs by ``"<node id>.<input name>"``, checked against the graph
before anything is sent. ComfyUI charges nothing: the result's cost is empty, its duration is the run's.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pendulum
from airflow.sdk import DAG, ObjectStoragePath, task

from airflow_provider_wfrun.operators.workflow_run import RunWorkflowOperator

#: Local storage for the example; in production, e.g. ObjectStoragePath("s3://bucket/images", conn_id="aws").
IMAGES = ObjectStoragePath(f"file://{tempfile.gettempdir()}/wfrun-example-comfyui")

with DAG(
    dag_id="example_wfrun_comfyui",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "wfrun", "comfyui"],
):
    image = RunWorkflowOperator(
        task_id="txt2img",
        conn_id="wfrun_comfyui",
        workflow=Path(__file__).parent / "comfyui_txt2img_api.json",
        inputs={"6.text": "purple galaxy in a glass bottle", "3.seed": 42},
        outputs_to=IMAGES,
        deferrable=True,
        poll_interval=2,
    )

    @task
    def report(result: dict) -> str:
        copies = ", ".join(f"{entry['path']} ({entry['size']} bytes)" for entry in result["files"])
        print(f"ComfyUI prompt {result['run_id']} took {result['duration_seconds']} s: {copies}")
        return result["status"]

    report(image.output)
