"""ComfyUI through the hook over real HTTP against the emulator: graph, queue, history, cancel, files."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import connection_json

from airflow_provider_wfrun import files
from airflow_provider_wfrun.emulator import EmulatorServer
from airflow_provider_wfrun.emulator.files import png
from airflow_provider_wfrun.exceptions import InvalidInputError, RunNotFoundError
from airflow_provider_wfrun.hooks.workflow_run import WorkflowRunHook
from airflow_provider_wfrun.models import RunStatus, WorkflowRun
from airflow_provider_wfrun.platforms import comfyui

GRAPH_FILE = Path(__file__).parent.parent.parent / "example_dags" / "comfyui_txt2img_api.json"
#: The emulator's echo node, carrying a run's scenario (see emulator/platforms/comfyui.py).
ECHO = {"wfrun": {"class_type": "WfrunEcho", "inputs": {"_emulator": "", "prompt": ""}}}


@pytest.fixture
def hook(emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[WorkflowRunHook]:
    """A connection without a key: a ComfyUI server needs none."""
    conn = json.loads(connection_json(emulator, "comfyui"))
    del conn["password"]
    monkeypatch.setenv("AIRFLOW_CONN_WFRUN_COMFYUI_OPEN", json.dumps(conn))
    made = WorkflowRunHook("wfrun_comfyui_open", retry_delay=0.01, timeout=5.0)
    yield made
    made.close()


def graph_with_scenario() -> dict[str, Any]:
    return {**json.loads(GRAPH_FILE.read_text()), **ECHO}


def submit(hook: WorkflowRunHook, **scenario: Any) -> WorkflowRun:
    inputs = {"6.text": "a red fox", "wfrun._emulator": scenario, "wfrun.prompt": "fox"}
    return hook.submit_run(inputs, workflow=graph_with_scenario())


def wait(hook: WorkflowRunHook, run_id: str, timeout: float = 10.0) -> tuple[WorkflowRun, list[Any]]:
    seen: list[Any] = []
    deadline = time.monotonic() + timeout
    while True:
        run = hook.get_run(run_id)
        if not seen or seen[-1][0] is not run.status:
            seen.append((run.status, run.queue_position))
        if run.is_terminal or time.monotonic() > deadline:
            return run, seen
        time.sleep(0.05)


def test_a_graph_file_runs_with_its_overrides_and_its_image_is_downloadable(emulator, hook):
    run = hook.submit_run({"6.text": "a red fox", "9.filename_prefix": "fox"}, workflow=GRAPH_FILE)
    (stored,) = emulator.state.runs.values()
    assert stored.extra["graph"]["6"]["inputs"]["text"] == "a red fox"
    assert stored.extra["client_id"].startswith("wfrun-")
    final, _ = wait(hook, run.run_id)
    assert final.status is RunStatus.SUCCEEDED
    assert final.cost.total is None
    assert final.duration_seconds is not None
    assert final.run_url == f"{emulator.base_url('comfyui')}/history/{run.run_id}"
    (image,) = hook.output_files(final)
    assert image.name.startswith("fox_")
    with hook.open_file(image, run_id=run.run_id, max_bytes=10_000) as chunks:
        content = b"".join(chunks)
    assert content.startswith(b"\x89PNG")


def test_a_poll_reads_the_queue_while_the_history_is_empty(emulator, hook):
    blocker = submit(hook, queue_seconds=0.0, duration_seconds=0.6)
    run = submit(hook, queue_seconds=0.4, duration_seconds=0.3)
    final, seen = wait(hook, run.run_id)
    assert final.status is RunStatus.SUCCEEDED
    assert seen[0] == (RunStatus.QUEUED, 1)
    assert [status for status, _ in seen] == [RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.SUCCEEDED]
    requests = emulator.state.stats()["requests"]
    assert requests["comfyui.queue"] >= 2  # the history said nothing until the end
    assert hook.get_run(blocker.run_id).status is RunStatus.SUCCEEDED


def test_a_running_prompt_is_read_from_the_history_alone_until_its_queue_recheck_is_due(
    emulator, hook, monkeypatch
):
    recheck = 2.0  # long enough for the polls below on a loaded machine
    monkeypatch.setattr(comfyui, "RUNNING_RECHECK_SECONDS", recheck)
    run = submit(hook, queue_seconds=0.0, duration_seconds=30)
    assert hook.get_run(run.run_id).status is RunStatus.RUNNING  # the history is empty: the queue says so
    seen_running = time.monotonic()  # the hook's recheck counts from within that call: it is due by then
    queue_reads = emulator.state.stats()["requests"]["comfyui.queue"]
    for _ in range(3):
        again = asyncio.run(hook.aget_run(run.run_id))
        assert (again.status, again.platform_status) == (RunStatus.RUNNING, "running")
    assert emulator.state.stats()["requests"]["comfyui.queue"] == queue_reads  # one request per poll
    # The server restarts and loses the prompt: seen once the recheck is due, not before.
    emulator.state.reset()
    assert hook.get_run(run.run_id).status is RunStatus.RUNNING
    time.sleep(max(0.0, seen_running + recheck - time.monotonic()) + 0.1)
    with pytest.raises(RunNotFoundError, match="neither in its queue nor in its history"):
        hook.get_run(run.run_id)


def test_a_failed_prompt_names_the_failing_node(emulator, hook):
    run = submit(hook, outcome="failed", error_reason="CUDA out of memory", duration_seconds=0.1)
    final, _ = wait(hook, run.run_id)
    assert final.status is RunStatus.FAILED
    assert final.error.reason == "node 3 (KSampler) failed: CUDA out of memory"


def test_a_graph_the_server_rejects_is_bad_input_naming_the_node_and_starts_nothing(emulator, hook):
    with pytest.raises(
        InvalidInputError, match=r"node 6 \(CLIPTextEncode\): Required input is missing: text"
    ):
        hook.submit_run({"6.text": None}, workflow=GRAPH_FILE)
    with pytest.raises(InvalidInputError, match="names node '60'"):
        hook.submit_run({"60.text": "x"}, workflow=GRAPH_FILE)
    assert emulator.state.stats()["submissions"]["comfyui"] == 0
    assert emulator.state.stats()["requests"].get("comfyui.submit") == 1  # the second never left


def test_cancel_interrupts_a_running_prompt(emulator, hook):
    run = submit(hook, queue_seconds=0.0, duration_seconds=30)
    wait_until = time.monotonic() + 5
    while hook.get_run(run.run_id).status is not RunStatus.RUNNING and time.monotonic() < wait_until:
        time.sleep(0.05)
    canceled = hook.cancel_run(run.run_id)
    assert (canceled.status, canceled.platform_status) == (RunStatus.CANCELED, "interrupted")
    assert emulator.state.stats()["cancels"]["comfyui"] == 1


def test_cancel_removes_a_pending_prompt_which_then_vanishes(emulator, hook):
    run = submit(hook, queue_seconds=30, duration_seconds=1)
    canceled = asyncio.run(hook.acancel_run(run.run_id))
    assert canceled.status is RunStatus.CANCELED
    assert canceled.error.reason == "ComfyUI removed the prompt from its queue when asked to cancel it"
    assert emulator.state.runs[run.run_id].phase() == "canceled"
    with pytest.raises(RunNotFoundError, match="neither in its queue nor in its history"):
        hook.get_run(run.run_id)


def test_the_async_poll_follows_the_same_reads(emulator, hook):
    run = submit(hook, queue_seconds=0.0, duration_seconds=5)

    async def poll() -> WorkflowRun:
        return await hook.aget_run(run.run_id)

    assert asyncio.run(poll()).status is RunStatus.RUNNING


def test_a_key_when_given_must_be_right(emulator, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_WFRUN_COMFYUI_KEYED", connection_json(emulator, "comfyui"))
    assert WorkflowRunHook("wfrun_comfyui_keyed").test_connection()[0]
    monkeypatch.setenv(
        "AIRFLOW_CONN_WFRUN_COMFYUI_WRONG", connection_json(emulator, "comfyui", password="nope-key")
    )
    ok, message = WorkflowRunHook("wfrun_comfyui_wrong").test_connection()
    assert not ok
    assert "rejected" in message


# --- input files -----------------------------------------------------------------------------------------
#: An img2img-shaped graph: the loaded image is what the save node writes (on the emulator).
LOAD_AND_SAVE = {
    "10": {"class_type": "LoadImage", "inputs": {"image": "example.png", "upload": "image"}},
    "11": {"class_type": "SaveImage", "inputs": {"filename_prefix": "restyled", "images": ["10", 0]}},
}


def test_an_input_file_is_uploaded_named_in_its_node_and_comes_back_as_the_saved_image(
    emulator, hook, tmp_path
):
    photo = tmp_path / "cat.png"
    photo.write_bytes(png("cat"))
    inputs = files.upload_input_files(hook, {"10.image": photo})
    assert inputs == {"10.image": "cat.png"}
    run = hook.submit_run(inputs, workflow=LOAD_AND_SAVE)
    (stored,) = emulator.state.runs.values()
    assert stored.extra["graph"]["10"]["inputs"]["image"] == "cat.png"
    final, _ = wait(hook, run.run_id)
    assert final.status is RunStatus.SUCCEEDED
    (image,) = hook.output_files(final)
    with hook.open_file(image, run_id=run.run_id, max_bytes=10_000) as chunks:
        assert b"".join(chunks) == photo.read_bytes()
    assert emulator.state.stats()["requests"]["comfyui.upload"] == 1


def test_a_different_file_of_the_same_name_is_kept_apart_and_the_same_file_is_not_stored_twice(
    emulator, hook, tmp_path
):
    first, second = tmp_path / "a" / "cat.png", tmp_path / "b" / "cat.png"
    for path, label in ((first, "one"), (second, "two")):
        path.parent.mkdir()
        path.write_bytes(png(label))
    assert files.upload_input_files(hook, {"10.image": first}) == {"10.image": "cat.png"}
    assert files.upload_input_files(hook, {"10.image": second}) == {"10.image": "cat (1).png"}
    assert files.upload_input_files(hook, {"10.image": first}) == {"10.image": "cat.png"}
    view = f"{emulator.base_url('comfyui')}/view"
    for name, path in (("cat.png", first), ("cat (1).png", second)):
        answer = httpx.get(view, params={"filename": name, "type": "input"}, timeout=5)
        assert answer.content == path.read_bytes()


def test_a_load_node_naming_a_file_the_server_does_not_hold_is_bad_input_and_starts_nothing(emulator, hook):
    with pytest.raises(InvalidInputError, match=r"node 10 \(LoadImage\): .*Invalid image file: example.png"):
        hook.submit_run({}, workflow=LOAD_AND_SAVE)
    assert emulator.state.stats()["submissions"]["comfyui"] == 0


def test_a_file_no_load_node_reads_is_refused_before_anything_is_sent(emulator, hook, tmp_path):
    notes = tmp_path / "notes.pdf"
    notes.write_bytes(b"%PDF-1.4")
    with pytest.raises(InvalidInputError, match="ComfyUI's load nodes read images, video and audio"):
        files.check_input_files({"10.image": notes}, hook.adapter)
    assert emulator.state.stats()["requests"].get("comfyui.upload") is None
