"""Files in and out through real Airflow (``dag.test()``) against the emulator."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from airflow.utils.state import DagRunState
from conftest import ALL_PLATFORMS
from e2e.test_dag_runs import run_dag, xcom

from airflow_provider_wfrun.emulator.files import GENERATE_PNG

pytestmark = pytest.mark.airflow_db


def local(url: str) -> Path:
    return Path(url.removeprefix("file://"))


def test_the_example_uploads_its_inputs_and_keeps_every_output_file(airflow_db, connections, emulator):
    dag_run = run_dag("example_wfrun_files", bundle="wfrun_examples")
    assert dag_run.state == DagRunState.SUCCESS
    inputs = airflow_db / "wfrun-example-files" / "inputs"
    for task_id, key, source in (
        ("summarize_brief", "brief", "brief.txt"),
        ("restyle_photo", "n10_image", "product.png"),
        ("upscale_photo", "11.images[0]", "product.png"),
    ):
        result = xcom(dag_run, task_id)
        (entry,) = result["files"]
        assert entry["output_key"] == key
        assert local(entry["path"]).read_bytes() == (inputs / source).read_bytes()
        assert entry["sha256"] == hashlib.sha256((inputs / source).read_bytes()).hexdigest()
        assert local(entry["path"]).parent.name == result["run_id"]
        assert entry["platform_url"].startswith("http://127.0.0.1")
    assert sorted(xcom(dag_run, "report")) == sorted(
        entry["path"]
        for task in ("summarize_brief", "restyle_photo", "upscale_photo")
        for entry in xcom(dag_run, task)["files"]
    )
    stats = emulator.state.stats()
    assert stats["requests"]["dify.upload"] == 1
    assert stats["requests"]["chenyu.assets"] == 1
    assert stats["requests"]["comfyui.upload"] == 1
    assert stats["submissions"] == dict.fromkeys(ALL_PLATFORMS, 0) | {"dify": 1, "chenyu": 1, "comfyui": 1}


def test_a_copy_that_fails_fails_the_task_and_keeps_the_run_id(airflow_db, connections, emulator, capfd):
    dag_run = run_dag(
        "wfrun_test_files_too_large",
        bundle="wfrun_test_dags",
        conn_id=connections["chenyu"],
        workflow_id="wf_861ef31e94dcfb10e6e7",
        inputs={"image": GENERATE_PNG, "_emulator": {"duration_seconds": 0.2}},
    )
    assert dag_run.state == DagRunState.FAILED
    out = capfd.readouterr().out
    assert "FileTransferError" in out
    assert "larger than max_file_bytes=16" in out
    run_id = xcom(dag_run, "run", key="run_id")
    assert run_id.startswith("wfrun_")
    assert run_id in out
    folder = airflow_db / "wfrun-test-outputs" / run_id
    assert [path for path in folder.rglob("*") if path.is_file()] == []
    assert emulator.state.stats()["submissions"]["chenyu"] == 1
