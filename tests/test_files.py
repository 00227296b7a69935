"""
Files in and out over real HTTP: uploads to the emulator's Dify and chenyu, output files streamed back
into object storage (``file://``), with the limits and failures a user would meet.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
from airflow.sdk import ObjectStoragePath
from conftest import WORKFLOW_IDS

from airflow_provider_wfrun import files
from airflow_provider_wfrun.emulator.files import GENERATE_PNG, png
from airflow_provider_wfrun.exceptions import FileTransferError, InvalidInputError, NotSupportedError
from airflow_provider_wfrun.hooks.workflow_run import WorkflowRunHook
from airflow_provider_wfrun.models import WorkflowRun

MB = 1024 * 1024


def finished(hook: WorkflowRunHook, inputs: dict, platform: str) -> WorkflowRun:
    run = hook.submit_run(inputs, workflow_id=WORKFLOW_IDS[platform], idempotency_key=str(time.time_ns()))
    while not run.is_terminal:
        time.sleep(0.1)
        run = hook.get_run(run.run_id)
    return run


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "in" / "photo.png"
    path.parent.mkdir()
    path.write_bytes(png("photo"))
    return path


@pytest.mark.parametrize("platform", ["dify", "chenyu"])
def test_an_input_file_goes_up_and_the_outputs_come_back_byte_for_byte(
    connections, emulator, platform, photo, tmp_path
):
    hook = WorkflowRunHook(connections[platform])
    as_storage = ObjectStoragePath(f"file://{photo}")
    inputs = files.upload_input_files(hook, {"photo": as_storage, "more": [photo], "prompt": "hi"})
    assert inputs["prompt"] == "hi"
    if platform == "dify":  # Dify's own files input shape
        assert inputs["photo"]["transfer_method"] == "local_file"
        assert inputs["photo"]["type"] == "image"
        assert inputs["photo"]["upload_file_id"]
    else:  # chenyu's asset URI, straight into inputs
        assert inputs["photo"].startswith("asset://asset_")
    assert len(inputs["more"]) == 1

    run = finished(hook, {**inputs, "generated": GENERATE_PNG}, platform)
    storage = ObjectStoragePath(f"file://{tmp_path / 'out'}")
    copied = files.copy_output_files(hook, run, storage, max_file_bytes=MB)

    by_key = {entry["output_key"]: entry for entry in copied}
    assert set(by_key) == {"photo", "more[0]", "generated"}
    original = photo.read_bytes()
    for key in ("photo", "more[0]"):
        path = Path(by_key[key]["path"].removeprefix("file://"))
        assert path.read_bytes() == original
        assert by_key[key]["sha256"] == hashlib.sha256(original).hexdigest()
        assert by_key[key]["size"] == len(original)
        assert path.parent.name == run.run_id
    assert by_key["photo"]["name"] == "photo.png"
    assert by_key["more[0]"]["name"] == "photo-2.png"  # same name twice in one run: both kept
    assert by_key["generated"]["platform_url"].startswith("http://127.0.0.1")
    assert Path(by_key["generated"]["path"].removeprefix("file://")).read_bytes().startswith(b"\x89PNG")
    assert not list((tmp_path / "out").rglob("*.part"))


def test_a_file_over_the_platforms_limit_is_refused_before_anything_is_sent(connections, emulator, tmp_path):
    hook = WorkflowRunHook(connections["dify"])
    big = tmp_path / "huge.png"
    with big.open("wb") as out:
        out.truncate(10 * MB + 1)  # Dify takes images up to 10 MB (sparse: nothing is written)
    with pytest.raises(InvalidInputError, match=r"huge.png is 10485761 bytes, more than the 10485760"):
        files.check_input_files({"image": big}, hook.adapter)
    with pytest.raises(InvalidInputError, match="10485760"):
        files.upload_input_files(hook, {"image": big})
    document = tmp_path / "notes.txt"
    with document.open("wb") as out:
        out.truncate(10 * MB + 1)  # documents may be 15 MB
    files.check_input_files({"notes": document}, hook.adapter)
    assert emulator.state.stats()["requests"] == {}


def test_a_missing_file_or_one_of_unknown_type_is_a_clear_input_error(connections, emulator, tmp_path):
    hook = WorkflowRunHook(connections["chenyu"])
    with pytest.raises(InvalidInputError, match="is not a file"):
        files.check_input_files({"image": tmp_path / "absent.png"}, hook.adapter)
    odd = tmp_path / "blob"
    odd.write_bytes(b"x")
    with pytest.raises(InvalidInputError, match="cannot be told from its name"):
        files.check_input_files({"image": odd}, hook.adapter)


def test_a_platform_without_uploads_says_so(connections, emulator, photo):
    hook = WorkflowRunHook(connections["gptbots"])
    with pytest.raises(NotSupportedError, match="GPTBots documents no API to upload input files"):
        files.check_input_files({"image": photo}, hook.adapter)


def test_the_emulators_upload_limits_answer_as_difys(connections, emulator, tmp_path):
    hook = WorkflowRunHook(connections["dify"], retry_limit=1)
    # Sent anyway (the check is skipped here on purpose), the platform refuses it: 413 file_too_large.
    with pytest.raises(Exception, match="file_too_large"):
        hook.upload_file("big.png", b"\0" * (10 * MB + 1), "image/png")


def test_a_copy_that_fails_keeps_the_run_id_and_leaves_nothing_under_the_final_name(
    connections, emulator, tmp_path
):
    hook = WorkflowRunHook(connections["chenyu"])
    run = finished(hook, {"image": GENERATE_PNG}, "chenyu")
    storage = ObjectStoragePath(f"file://{tmp_path / 'out'}")
    with pytest.raises(FileTransferError, match="larger than max_file_bytes=16") as caught:
        files.copy_output_files(hook, run, storage, max_file_bytes=16)
    assert caught.value.run_id == run.run_id
    assert [path for path in (tmp_path / "out").rglob("*") if path.is_file()] == []


def test_an_expired_link_fails_the_copy_with_its_http_status(connections, emulator, tmp_path):
    hook = WorkflowRunHook(connections["chenyu"])
    run = finished(hook, {"image": GENERATE_PNG}, "chenyu")
    emulator.state.files.clear()  # the platform cleaned its storage: the link now answers 404
    with pytest.raises(FileTransferError, match="HTTP 404"):
        files.copy_output_files(hook, run, ObjectStoragePath(f"file://{tmp_path}"), max_file_bytes=MB)


def test_unusable_outputs_to_or_max_file_bytes_fail_when_the_dag_is_parsed():
    from airflow_provider_wfrun.operators.workflow_run import RunWorkflowOperator

    with pytest.raises(InvalidInputError, match="outputs_to must be an ObjectStoragePath or a storage URL"):
        RunWorkflowOperator(task_id="run", conn_id="wfrun_dify", outputs_to=42)
    with pytest.raises(InvalidInputError, match="max_file_bytes must be a positive number of bytes"):
        RunWorkflowOperator(task_id="run", conn_id="wfrun_dify", max_file_bytes=0)
    operator = RunWorkflowOperator(task_id="run", conn_id="wfrun_dify", outputs_to="file:///tmp/out")
    assert isinstance(operator.outputs_to, ObjectStoragePath)
