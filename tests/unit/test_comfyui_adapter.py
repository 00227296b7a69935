"""The ComfyUI adapter on the server's own answers (tests/fixtures/comfyui, shaped after server.py)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from airflow_provider_wfrun.exceptions import InvalidInputError, RunNotFoundError
from airflow_provider_wfrun.models import RunStatus
from airflow_provider_wfrun.platforms import get_adapter
from airflow_provider_wfrun.platforms.comfyui import NOT_IN_HISTORY, NOT_QUEUED

FIXTURES = Path(__file__).parent.parent / "fixtures" / "comfyui"
EXAMPLE_GRAPH = Path(__file__).parent.parent.parent / "example_dags" / "comfyui_txt2img_api.json"
PROMPT_ID = "5b4e3c8a-2f6d-4b8e-9a71-3c2d1e0f9a88"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def adapter():
    return get_adapter("comfyui")


@pytest.fixture
def graph() -> dict[str, Any]:
    return json.loads(EXAMPLE_GRAPH.read_text())


def test_submit_sends_the_graph_with_the_overrides_and_a_client_id_per_task(adapter, graph):
    request = adapter.submit_request(
        {"6.text": "a red fox", "3.seed": 7}, workflow_id=None, idempotency_key="task-key", workflow=graph
    )
    assert (request.method, request.path) == ("POST", "/prompt")
    sent = request.json["prompt"]
    assert sent["6"]["inputs"]["text"] == "a red fox"
    assert sent["3"]["inputs"]["seed"] == 7
    assert sent["7"] == graph["7"]
    assert graph["6"]["inputs"]["text"] == "masterpiece best quality girl"  # the caller's graph is untouched
    assert request.json["client_id"] == "wfrun-task-key"


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (
            {"12.text": "x"},
            r"names node '12', which the workflow does not have \(nodes: 3, 4, 5, 6, 7, 8, 9\)",
        ),
        ({"6.prompt": "x"}, r"node 6 \(CLIPTextEncode\) has no input 'prompt'; it has clip, text"),
        ({"text": "x"}, r"does not name a node input; ComfyUI inputs are keyed '<node id>.<input name>'"),
    ],
)
def test_an_override_that_names_no_node_input_is_refused_before_sending(adapter, graph, inputs, message):
    with pytest.raises(InvalidInputError, match=message):
        adapter.submit_request(inputs, workflow_id=None, idempotency_key=None, workflow=graph)


def test_the_graph_is_required_and_must_be_the_api_format(adapter, graph):
    with pytest.raises(InvalidInputError, match="needs the workflow graph"):
        adapter.submit_request({}, workflow_id=None, idempotency_key=None, workflow=None)
    with pytest.raises(InvalidInputError, match="UI format"):
        adapter.submit_request(
            {}, workflow_id=None, idempotency_key=None, workflow={"nodes": [], "links": []}
        )
    with pytest.raises(InvalidInputError, match="workflow_id='wf' cannot be honoured"):
        adapter.submit_request({}, workflow_id="wf", idempotency_key=None, workflow=graph)


def test_a_rejected_graph_names_the_node_and_what_is_wrong(adapter):
    with pytest.raises(InvalidInputError) as caught:
        adapter.raise_for_error(400, fixture("prompt_node_errors.json"))
    message = str(caught.value)
    assert "Prompt outputs failed validation" in message
    assert (
        "node 4 (CheckpointLoaderSimple): Value not in list: ckpt_name: 'sd_xl_base_1.0.safetensors'"
        in message
    )
    with pytest.raises(InvalidInputError, match="Prompt has no outputs"):
        adapter.raise_for_error(400, fixture("prompt_no_outputs.json"))


def test_the_accepted_prompt_is_the_queued_run(adapter):
    run = adapter.parse_submit(fixture("prompt_accepted.json"))
    assert (run.run_id, run.status) == (PROMPT_ID, RunStatus.QUEUED)


def test_a_finished_prompt_has_its_files_its_times_and_no_cost(adapter):
    run = adapter.parse_run(fixture("history_success.json"), run_id=PROMPT_ID)
    assert run.status is RunStatus.SUCCEEDED
    assert run.started_at == datetime(2025, 12, 2, 1, 46, 40, tzinfo=timezone.utc)
    assert run.duration_seconds == 12.5
    assert run.cost.total is None
    assert run.cost.currency is None
    files = adapter.output_files(run, base_url="http://gpu-box:8188")
    assert [(f.name, f.output_key, f.media_type, f.authenticated) for f in files] == [
        ("ComfyUI_00007_.png", "9.images[0]", "image/png", True),
        ("ComfyUI_00008_.png", "9.images[1]", "image/png", True),
    ]
    second = urlsplit(files[1].url)
    assert (second.netloc, second.path) == ("gpu-box:8188", "/view")
    assert parse_qs(second.query, keep_blank_values=True) == {
        "filename": ["ComfyUI_00008_.png"],
        "subfolder": ["portraits"],
        "type": ["output"],
    }


def test_a_failed_prompt_names_the_node_and_the_exception(adapter):
    run = adapter.parse_run(fixture("history_error.json"), run_id=PROMPT_ID)
    assert run.status is RunStatus.FAILED
    assert (
        run.error.reason
        == "node 3 (KSampler) failed: Allocation on device 0 would exceed allowed memory. (out of memory)"
    )
    assert run.error.code == "torch.OutOfMemoryError"
    assert "execution.py" in run.error.detail
    assert run.duration_seconds == 3.25


def test_an_interrupted_prompt_is_canceled(adapter):
    run = adapter.parse_run(fixture("history_interrupted.json"), run_id=PROMPT_ID)
    assert (run.status, run.platform_status) == (RunStatus.CANCELED, "interrupted")
    assert run.duration_seconds == 1.0


def test_an_empty_history_asks_the_queue_which_gives_the_position(adapter):
    run = adapter.parse_run({}, run_id=PROMPT_ID)
    assert (run.status, run.platform_status) == (RunStatus.UNKNOWN, NOT_IN_HISTORY)
    request = adapter.followup_request(run, step=0)
    assert (request.method, request.path) == ("GET", "/queue")
    queued = adapter.apply_followup(run, fixture("queue.json"), step=0)
    # Pending prompts run in order of their number: 6, then 7 (this one), then 8.
    assert (queued.status, queued.queue_position) == (RunStatus.QUEUED, 2)
    assert adapter.followup_request(queued, step=1) is None
    running = adapter.apply_followup(
        run, {"queue_running": [[7, PROMPT_ID, {}, {}, []]], "queue_pending": []}, step=0
    )
    assert running.status is RunStatus.RUNNING


def test_a_prompt_in_neither_queue_nor_history_is_read_once_more_then_not_found(adapter):
    run = adapter.apply_followup(
        adapter.parse_run({}, run_id=PROMPT_ID), {"queue_running": [], "queue_pending": []}, step=0
    )
    assert run.platform_status == NOT_QUEUED
    assert adapter.followup_request(run, step=1).path == f"/history/{PROMPT_ID}"
    # It finished between the two reads: the second history read has it.
    finished = adapter.apply_followup(run, fixture("history_success.json"), step=1)
    assert finished.status is RunStatus.SUCCEEDED
    with pytest.raises(RunNotFoundError, match="neither in its queue nor in its history"):
        adapter.apply_followup(run, {}, step=1)


def test_cancel_deletes_from_the_queue_then_interrupts_only_this_prompt(adapter):
    requests = adapter.cancel_requests(PROMPT_ID, task_id=None)
    assert [(r.method, r.path, r.json) for r in requests] == [
        ("POST", "/queue", {"delete": [PROMPT_ID]}),
        ("POST", "/interrupt", {"prompt_id": PROMPT_ID}),
    ]


def test_no_key_is_needed_and_one_given_is_a_bearer_token(adapter):
    assert adapter.requires_api_key is False
    assert adapter.auth_headers("proxy-token") == {"Authorization": "Bearer proxy-token"}
