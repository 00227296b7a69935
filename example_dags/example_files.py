"""
Files in and out: a local file goes into the workflow, its output files come back to durable storage.

* An input that is an ``ObjectStoragePath`` (or a ``pathlib.Path``) is uploaded to the platform first and
  passed in the platform's own file form (Dify: a ``local_file`` object from ``/files/upload``; chenyu: an
  ``asset://`` URI from ``/assets``; ComfyUI: the name ``/upload/image`` gave it, set on the load node).
  Size and type are checked before anything is sent.
* ``outputs_to`` copies every output file (any fsspec URL: ``s3://``, ``gs://``, ``file://``) under
  ``<run id>/``; the result's ``files`` lists each copy's path, size and SHA-256 beside the platform's
  expiring URL.

Against the emulator the workflows pass their input files through, so what goes in comes back out.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pendulum
from airflow.sdk import DAG, ObjectStoragePath, task

from airflow_provider_wfrun.operators.workflow_run import RunWorkflowOperator

#: Local storage for the example; in production, e.g. ObjectStoragePath("s3://bucket/ai", conn_id="aws").
STORAGE = ObjectStoragePath(
    f"file://{Path(os.environ.get('AIRFLOW_HOME') or tempfile.gettempdir()) / 'wfrun-example-files'}"
)
# A 1x1 PNG, standing in for a product photo.
_PIXEL = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de0000000c4944415478"
    "9c63f8cfc0f01f0005000201a5e8a4d10000000049454e44ae426082"
)

with DAG(
    dag_id="example_wfrun_files",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"workflow_id": "wf_861ef31e94dcfb10e6e7"},
    tags=["example", "wfrun", "files"],
):

    @task
    def prepare_inputs() -> None:
        (STORAGE / "inputs").mkdir(parents=True, exist_ok=True)
        (STORAGE / "inputs" / "brief.txt").write_text("Launch copy for a glass teapot, 50 words.")
        (STORAGE / "inputs" / "product.png").write_bytes(_PIXEL)

    summarize = RunWorkflowOperator(
        task_id="summarize_brief",
        conn_id="wfrun_dify",
        inputs={"brief": STORAGE / "inputs" / "brief.txt"},
        outputs_to=STORAGE / "outputs",
        poll_interval=1,
    )
    restyle = RunWorkflowOperator(
        task_id="restyle_photo",
        conn_id="wfrun_chenyu",
        workflow_id="{{ params.workflow_id }}",
        inputs={"n10_image": STORAGE / "inputs" / "product.png", "n6_text": "studio lighting"},
        outputs_to=STORAGE / "outputs",
        deferrable=True,
        poll_interval=1,
    )

    # ComfyUI runs the graph it is given: the photo goes to node 10 (LoadImage), node 11 saves the result.
    upscale = RunWorkflowOperator(
        task_id="upscale_photo",
        conn_id="wfrun_comfyui",
        workflow={
            "10": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
            "11": {"class_type": "SaveImage", "inputs": {"filename_prefix": "upscaled", "images": ["10", 0]}},
        },
        inputs={"10.image": STORAGE / "inputs" / "product.png"},
        outputs_to=STORAGE / "outputs",
        deferrable=True,
        poll_interval=1,
    )

    @task
    def report(*results: dict) -> list[str]:
        paths = [file["path"] for result in results for file in result["files"]]
        for result in results:
            for file in result["files"]:
                print(f"{result['platform']}: {file['output_key']} -> {file['path']} ({file['size']} bytes)")
        return paths

    prepare_inputs() >> [summarize, restyle, upscale]
    report(summarize.output, restyle.output, upscale.output)
