"""The ComfyUI adapter on the server's own answers (tests/fixtures/comfyui, shaped after server.py)."""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from airflow_provider_wfrun.exceptions import (
    InvalidInputError,
    InvalidResponseError,
    PlatformError,
    RateLimitedError,
    RunNotFoundError,
)
from airflow_provider_wfrun.models import RunStatus
from airflow_provider_wfrun.platforms import get_adapter
from airflow_provider_wfrun.platforms.base import ErrorInfo
from airflow_provider_wfrun.platforms.comfyui import NOT_IN_HISTORY, NOT_QUEUED, RUNNING_RECHECK_SECONDS

FIXTURES = Path(__file__).parent.parent / "fixtures" / "comfyui"
EXAMPLE_GRAPH = Path(__file__).parent.parent.parent / "example_dags" / "comfyui_txt2img_api.json"
PROMPT_ID = "5b4e3c8a-2f6d-4b8e-9a71-3c2d1e0f9a88"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def queue_answer(adapter: Any, payload: Any) -> Any:
    """``GET /queue``'s answer as the hook hands it to the adapter: its digest, read from the bytes."""
    request = adapter.followup_request(adapter.parse_run({}, run_id=PROMPT_ID), step=0)
    return adapter.digest_shared(request, json.dumps(payload).encode() if payload is not None else b"")


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
    queued = adapter.apply_followup(run, queue_answer(adapter, fixture("queue.json")), step=0)
    # Pending prompts run in order of their number: 6, then 7 (this one), then 8.
    assert (queued.status, queued.queue_position) == (RunStatus.QUEUED, 2)
    assert adapter.followup_request(queued, step=1) is None
    listed = {"queue_running": [[7, PROMPT_ID, {}, {}, []]], "queue_pending": []}
    running = adapter.apply_followup(run, queue_answer(adapter, listed), step=0)
    assert running.status is RunStatus.RUNNING
    # Running lasts until the history lists the prompt: the queue is read again only after a while.
    assert adapter.lasting_followup(running) == RUNNING_RECHECK_SECONDS > 0
    assert adapter.lasting_followup(queued) == 0  # its position moves, and it may start any moment
    assert get_adapter("dify").lasting_followup(running) == 0


def test_a_prompt_in_neither_queue_nor_history_is_read_once_more_then_not_found(adapter):
    empty = queue_answer(adapter, {"queue_running": [], "queue_pending": []})
    run = adapter.apply_followup(adapter.parse_run({}, run_id=PROMPT_ID), empty, step=0)
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


# --- the whole run, field by field ---------------------------------------------------------------------
def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


#: Fields of a run this platform does not report (no task handle, billing, progress, queue or log).
UNREPORTED = ("task_id", "settlement", "progress", "queue_position", "eta_seconds", "logs")
NO_COST = {"total": None, "compute": None, "external": None, "currency": None, "tokens": None}
KEPT = "it is left empty, and the answer is kept whole in the run's raw"


def test_a_finished_prompt_normalized_exactly(adapter):
    payload = fixture("history_success.json")
    run = adapter.parse_run(payload, run_id=PROMPT_ID)
    assert (run.task_id, run.settlement, run.progress, run.queue_position, run.eta_seconds, run.logs) == (
        *[None] * 5,
        (),
    )
    assert run.model_dump(exclude={"raw", *UNREPORTED}) == {
        "platform": "comfyui",
        "run_id": PROMPT_ID,
        "workflow_id": None,
        "status": RunStatus.SUCCEEDED,
        "platform_status": "success",
        "outputs": payload[PROMPT_ID]["outputs"],
        "cost": NO_COST,
        "error": None,
        "created_at": None,
        "started_at": utc(2025, 12, 2, 1, 46, 40),
        "finished_at": datetime(2025, 12, 2, 1, 46, 52, 500000, tzinfo=timezone.utc),
        "duration_seconds": 12.5,
        "run_url": None,
        "is_terminal": True,
    }
    assert run.raw == payload


def test_a_failed_prompt_normalized_exactly(adapter):
    run = adapter.parse_run(fixture("history_error.json"), run_id=PROMPT_ID)
    assert run.model_dump(include={"platform_status", "outputs", "error", "started_at", "finished_at"}) == {
        "platform_status": "error",
        "outputs": {},
        "error": {
            "reason": "node 3 (KSampler) failed: Allocation on device 0 would exceed allowed memory. "
            "(out of memory)",
            "detail": '  File "execution.py", line 327, in execute\n;'
            " torch.OutOfMemoryError: Allocation on device\n",
            "code": "torch.OutOfMemoryError",
        },
        "started_at": utc(2025, 12, 2, 1, 46, 40),
        "finished_at": datetime(2025, 12, 2, 1, 46, 43, 250000, tzinfo=timezone.utc),
    }


def test_an_interrupted_prompt_says_so_and_ends_at_the_interruption(adapter):
    run = adapter.parse_run(fixture("history_interrupted.json"), run_id=PROMPT_ID)
    assert run.error is not None
    assert (run.error.reason, run.error.code, run.error.detail) == ("the prompt was interrupted", None, None)
    assert run.finished_at == utc(2025, 12, 2, 1, 46, 41)


def _history(status: dict[str, Any], outputs: Any = None) -> dict[str, Any]:
    return {PROMPT_ID: {"outputs": outputs or {}, "status": status}}


def _error_event(**data: Any) -> list[Any]:
    return ["execution_error", {"timestamp": 1764640003250, **data}]


@pytest.mark.parametrize(
    ("event", "reason", "code"),
    [
        (None, "ComfyUI reported the prompt failed without an execution error", None),
        (_error_event(node_id="3"), "node 3 failed: no message", None),
        (
            _error_event(node_id="3", node_type="KSampler", exception_message="boom", exception_type="E"),
            "node 3 (KSampler) failed: boom",
            "E",
        ),
    ],
)
def test_a_failed_prompt_always_says_why(adapter, event, reason, code):
    messages = [["execution_start", {"timestamp": 1764640000000}], *([event] if event else [])]
    run = adapter.parse_run(_history({"status_str": "error", "messages": messages}), run_id=PROMPT_ID)
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert (run.error.reason, run.error.code) == (reason, code)
    assert run.duration_seconds == (3.25 if event else None)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({"completed": True}, (RunStatus.SUCCEEDED, "success")),
        ({"completed": False}, (RunStatus.UNKNOWN, None)),
        ({"status_str": "error", "completed": True}, (RunStatus.FAILED, "error")),
        ({}, (RunStatus.UNKNOWN, None)),
        (None, (RunStatus.UNKNOWN, None)),
    ],
)
def test_the_status_word_and_the_completed_flag(adapter, status, expected):
    payload = {PROMPT_ID: {"outputs": {"9": {}}, "status": status}}
    run = adapter.parse_run(payload, run_id=PROMPT_ID)
    assert (run.status, run.platform_status) == expected
    assert (run.error, run.started_at, run.duration_seconds) == (
        (None, None, None) if expected[0] is not RunStatus.FAILED else (run.error, None, None)
    )


def test_an_unknown_status_word_is_logged_once_for_each_prompt(adapter, caplog):
    with caplog.at_level(logging.WARNING, logger="airflow_provider_wfrun.platforms.base"):
        for prompt_id in ("p1", "p2", "p1"):
            run = adapter.parse_run({prompt_id: {"status": {"status_str": "paused"}}}, run_id=prompt_id)
            assert (run.status, run.platform_status) == (RunStatus.UNKNOWN, "paused")
    assert [record.getMessage() for record in caplog.records] == [
        "comfyui reported run status 'paused', which this provider does not know; treating it as not finished"
    ] * 2


def test_only_well_formed_messages_count_and_the_last_of_each_wins(adapter):
    messages = [
        ["execution_start", {"timestamp": 1764640000000}],
        ["execution_success"],
        ["execution_success", {"timestamp": 1764640005000}, "third"],
        [1, {"timestamp": 1764640005000}],
        "execution_success",
        ["execution_start", "not an object"],
        ["execution_start", {"timestamp": 1764640001000}],
        ["execution_success", {"timestamp": 1764640002000}],
    ]
    run = adapter.parse_run(_history({"status_str": "success", "messages": messages}), run_id=PROMPT_ID)
    assert (run.started_at, run.finished_at) == (utc(2025, 12, 2, 1, 46, 41), utc(2025, 12, 2, 1, 46, 42))
    no_data = _history({"status_str": "success", "messages": [["execution_start", "x"]]})
    assert adapter.parse_run(no_data, run_id=PROMPT_ID).started_at is None


def test_at_most_a_thousand_messages_are_read(adapter):
    filler = [["progress", {"value": index}] for index in range(999)]
    start = ["execution_start", {"timestamp": 1764640000000}]
    within = adapter.parse_run(
        _history({"status_str": "success", "messages": [*filler, start]}), run_id=PROMPT_ID
    )
    assert within.started_at == utc(2025, 12, 2, 1, 46, 40)
    beyond = _history({"status_str": "success", "messages": [*filler, ["progress", {}], start]})
    assert adapter.parse_run(beyond, run_id=PROMPT_ID).started_at is None


def test_an_unreadable_event_field_is_logged_with_its_path(adapter, caplog):
    messages = [["execution_start", {"timestamp": "soon"}]]
    with caplog.at_level(logging.WARNING, logger="airflow_provider_wfrun.platforms.base"):
        run = adapter.parse_run(_history({"status_str": "success", "messages": messages}), run_id=PROMPT_ID)
    assert run.started_at is None
    assert [record.getMessage() for record in caplog.records] == [
        f"comfyui run {PROMPT_ID}: field 'messages.execution_start.timestamp' could not be read "
        f"(got str 'soon'); {KEPT}"
    ]


def test_an_entry_that_is_not_an_object_names_the_prompt(adapter, caplog):
    with pytest.raises(InvalidResponseError) as caught:
        adapter.parse_run({PROMPT_ID: "garbage"}, run_id=PROMPT_ID)
    assert (caught.value.field, caught.value.run_id, caught.value.platform) == (
        PROMPT_ID,
        PROMPT_ID,
        "comfyui",
    )
    with caplog.at_level(logging.WARNING, logger="airflow_provider_wfrun.platforms.base"):
        run = adapter.parse_run(
            {PROMPT_ID: {"outputs": 5, "status": {"status_str": "success"}}}, run_id=PROMPT_ID
        )
    assert run.outputs == {}
    assert [record.getMessage() for record in caplog.records] == [
        f"comfyui run {PROMPT_ID}: field '{PROMPT_ID}.outputs' could not be read (got int 5); {KEPT}"
    ]


@pytest.mark.parametrize("payload", [[], "x", None, {PROMPT_ID: {}}, {"other": {"outputs": {}}}])
def test_a_history_without_the_prompt_is_not_in_history(adapter, payload):
    run = adapter.parse_run(payload, run_id=PROMPT_ID)
    assert run.model_dump(include={"platform", "run_id", "status", "platform_status"}) == {
        "platform": "comfyui",
        "run_id": PROMPT_ID,
        "status": RunStatus.UNKNOWN,
        "platform_status": NOT_IN_HISTORY,
    }


# --- the queue -----------------------------------------------------------------------------------------
def test_a_running_prompt_is_running_whatever_its_place(adapter):
    run = adapter.parse_run({}, run_id=PROMPT_ID)
    queue = {"queue_running": [[9, PROMPT_ID, {}, {}, []]], "queue_pending": [[1, PROMPT_ID]]}
    running = adapter.apply_followup(run, queue_answer(adapter, queue), step=0)
    assert (running.status, running.platform_status, running.queue_position) == (
        RunStatus.RUNNING,
        "running",
        None,
    )


def test_pending_prompts_are_ordered_by_number_and_odd_numbers_go_last(adapter):
    run = adapter.parse_run({}, run_id=PROMPT_ID)
    pending = [[True, "a"], [3, PROMPT_ID], ["1", "b"], [], [2.5, "c"], "junk", [0]]
    queued = adapter.apply_followup(
        run, queue_answer(adapter, {"queue_running": "x", "queue_pending": pending}), step=0
    )
    # [0] (no prompt id, number 0) and c (2.5) come first; a boolean or text number is no number.
    assert (queued.status, queued.platform_status, queued.queue_position) == (RunStatus.QUEUED, "pending", 3)
    by_number = adapter.apply_followup(
        run, queue_answer(adapter, {"queue_pending": [[12345, 7], [1, 12345]]}), step=0
    )
    assert by_number.queue_position is None
    numeric_id = adapter.parse_run({}, run_id="12345")
    numeric_queue = queue_answer(adapter, {"queue_pending": [[5, 12345]]})
    assert adapter.apply_followup(numeric_id, numeric_queue, step=0).queue_position == 1


@pytest.mark.parametrize(
    ("queue", "expected"),
    [
        (
            {
                "queue_running": [[9, PROMPT_ID, {"3": {"inputs": {}}}, {}, []]],
                "queue_pending": [[1, PROMPT_ID]],
            },
            (RunStatus.RUNNING, "running", None),
        ),
        (
            {
                "queue_running": "x",
                "queue_pending": [[True, "a"], [3, PROMPT_ID], ["1", "b"], [], [2.5, "c"], "j"],
            },
            (RunStatus.QUEUED, "pending", 2),
        ),
        (
            {"queue_pending": [[5, 12345], [1, PROMPT_ID, {"deep": [[[{}]]]}]]},
            (RunStatus.QUEUED, "pending", 1),
        ),
        ({"queue_running": [[1]], "queue_pending": [[2, "other"]]}, (RunStatus.UNKNOWN, NOT_QUEUED, None)),
        ({}, (RunStatus.UNKNOWN, NOT_QUEUED, None)),
        ([], (RunStatus.UNKNOWN, NOT_QUEUED, None)),
        (None, (RunStatus.UNKNOWN, NOT_QUEUED, None)),
    ],
)
def test_the_queue_is_read_from_its_bytes_graphs_and_odd_items_skipped(adapter, queue, expected):
    """The shared reading's digest: prompt ids and positions, whatever the graphs and odd items hold."""
    run = adapter.parse_run({}, run_id=PROMPT_ID)
    assert adapter.followup_request(run, step=0).shared_seconds > 0
    read = adapter.apply_followup(run, queue_answer(adapter, queue), step=0)
    assert (read.status, read.platform_status, read.queue_position) == expected


@pytest.mark.parametrize("body", [b"<html>busy</html>", b'{"queue_running": [[1, "a"', b"[" * 100_000])
def test_a_queue_that_is_not_json_is_not_read_as_empty(adapter, body):
    request = adapter.followup_request(adapter.parse_run({}, run_id=PROMPT_ID), step=0)
    with pytest.raises((ValueError, RecursionError)):  # the hook makes these an InvalidResponseError
        adapter.digest_shared(request, body)


@pytest.mark.parametrize("queue", [{}, [], {"queue_running": [[1]], "queue_pending": [[2, "other"]]}])
def test_a_prompt_in_no_queue_is_looked_up_once_more(adapter, queue):
    run = adapter.apply_followup(
        adapter.parse_run({}, run_id=PROMPT_ID), queue_answer(adapter, queue), step=0
    )
    assert (run.status, run.platform_status, run.queue_position) == (RunStatus.UNKNOWN, NOT_QUEUED, None)
    again = adapter.followup_request(run, step=1)
    assert (again.method, again.path) == ("GET", f"/history/{PROMPT_ID}")


def test_a_prompt_lost_by_the_server_is_not_found_naming_it(adapter):
    lost = adapter.parse_run({}, run_id=PROMPT_ID).model_copy(update={"platform_status": NOT_QUEUED})
    with pytest.raises(RunNotFoundError) as caught:
        adapter.apply_followup(lost, [], step=1)
    assert str(caught.value) == (
        f"[comfyui run {PROMPT_ID}] ComfyUI lists prompt {PROMPT_ID} neither in its queue nor in its "
        "history: the id is from another server, or this one restarted (it keeps its history in memory)"
    )
    finished = adapter.parse_run(fixture("history_success.json"), run_id=PROMPT_ID)
    assert adapter.followup_request(finished, step=0) is None


# --- requests ------------------------------------------------------------------------------------------
def test_each_call_is_the_servers_route(adapter):
    calls = {
        "poll": adapter.get_request(PROMPT_ID),
        "probe": adapter.probe_request(),
        "cancel": adapter.cancel_request(PROMPT_ID, task_id=None),
    }
    assert {name: (c.method, c.path, c.params, c.json) for name, c in calls.items()} == {
        "poll": ("GET", f"/history/{PROMPT_ID}", None, None),
        "probe": ("GET", "/system_stats", None, None),
        "cancel": ("POST", "/interrupt", None, {"prompt_id": PROMPT_ID}),
    }


def test_the_submitted_request_is_the_graph_and_a_fresh_client_id_without_a_key(adapter, graph):
    request = adapter.submit_request({}, workflow_id=None, idempotency_key=None, workflow=graph)
    assert request.json is not None
    assert request.json["prompt"] == graph
    assert re.fullmatch(r"wfrun-[0-9a-f]{32}", request.json["client_id"])
    other = adapter.submit_request({}, workflow_id=None, idempotency_key=None, workflow=graph)
    assert other.json is not None
    assert other.json["client_id"] != request.json["client_id"]
    assert (request.params, request.stream, request.form) == (None, False, None)


def test_the_accepted_prompt_normalized_exactly(adapter):
    payload = fixture("prompt_accepted.json")
    run = adapter.parse_submit(payload)
    assert run.model_dump(include={"platform", "run_id", "status", "platform_status"}) == {
        "platform": "comfyui",
        "run_id": PROMPT_ID,
        "status": RunStatus.QUEUED,
        "platform_status": "pending",
    }
    assert run.raw == payload
    with pytest.raises(InvalidResponseError) as caught:
        adapter.parse_submit({"number": 7})
    assert caught.value.field == "prompt_id"


# --- what a wrong graph or override is told ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("workflow_id", "workflow", "message"),
    [
        (
            "wf",
            {},
            "[comfyui] ComfyUI has no stored workflows, so workflow_id='wf' cannot be honoured; pass the "
            "graph as workflow= (exported with 'Save (API)') and leave workflow_id empty",
        ),
        (
            None,
            {},
            "[comfyui] ComfyUI needs the workflow graph: pass workflow= as the API-format JSON (a mapping, "
            "or a path or ObjectStoragePath of the file ComfyUI's 'Save (API)' writes)",
        ),
        (
            None,
            {"nodes": [], "links": []},
            "[comfyui] the workflow is in ComfyUI's UI format (it has 'nodes' and 'links'); export it with "
            "'Save (API)' (enable the dev mode options) and pass that file",
        ),
        (
            None,
            {"nodes": []},
            "[comfyui] workflow node 'nodes' is not an API-format node (an object with 'class_type' and "
            "'inputs'); export the workflow with 'Save (API)'",
        ),
        (
            None,
            {"3": {"class_type": "KSampler", "inputs": {}}, "4": {"inputs": {}}},
            "[comfyui] workflow node '4' is not an API-format node (an object with 'class_type' and "
            "'inputs'); export the workflow with 'Save (API)'",
        ),
        (
            None,
            {"4": {"class_type": "KSampler", "inputs": []}},
            "[comfyui] workflow node '4' is not an API-format node (an object with 'class_type' and "
            "'inputs'); export the workflow with 'Save (API)'",
        ),
        (
            None,
            {"4": {"class_type": "KSampler"}},
            "[comfyui] workflow node '4' is not an API-format node (an object with 'class_type' and "
            "'inputs'); export the workflow with 'Save (API)'",
        ),
    ],
)
def test_a_graph_that_cannot_be_sent_is_refused_saying_what_to_do(adapter, workflow_id, workflow, message):
    with pytest.raises(InvalidInputError) as caught:
        adapter.submit_request({}, workflow_id=workflow_id, idempotency_key=None, workflow=workflow)
    assert str(caught.value) == message


DOTTED = {
    "a.b": {"class_type": "Note", "inputs": {"text": ""}},
    "a": {"class_type": "Loader", "inputs": {"b.c": "", "c": ""}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": ""}},
    "7": {"class_type": "Empty", "inputs": {}},
    "x": {"class_type": "Loader", "inputs": {"y.z": ""}},
}


@pytest.mark.parametrize(
    ("key", "node", "name"),
    [("6.text", "6", "text"), ("a.b.text", "a.b", "text"), ("x.y.z", "x", "y.z"), ("a.c", "a", "c")],
)
def test_an_override_names_its_node_even_one_with_dots(adapter, key, node, name):
    request = adapter.submit_request({key: "set"}, workflow_id=None, idempotency_key=None, workflow=DOTTED)
    assert request.json is not None
    sent = request.json["prompt"]
    assert sent[node]["inputs"][name] == "set"
    assert sum(value == "set" for entry in sent.values() for value in entry["inputs"].values()) == 1


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("6.", "input '6.' does not name a node input"),
        (".text", "input '.text' does not name a node input"),
        ("text", "input 'text' does not name a node input"),
        ("6.text.", "input '6.text.': node 6 (CLIPTextEncode) has no input 'text.'; it has text"),
        ("7.x", "input '7.x': node 7 (Empty) has no input 'x'; it has none"),
        ("a.b.c", "input 'a.b.c': node a.b (Note) has no input 'c'; it has text"),
        ("8.x", "input '8.x' names node '8', which the workflow does not have (nodes: 6, 7, a, a.b, x)"),
    ],
)
def test_an_override_that_names_nothing_says_what_there_is(adapter, key, message):
    with pytest.raises(InvalidInputError) as caught:
        adapter.submit_request({key: "x"}, workflow_id=None, idempotency_key=None, workflow=DOTTED)
    assert str(caught.value).startswith(f"[comfyui] {message}")


def test_an_override_without_a_node_says_how_inputs_are_keyed(adapter, graph):
    with pytest.raises(InvalidInputError) as caught:
        adapter.submit_request({"seed": 1}, workflow_id=None, idempotency_key=None, workflow=graph)
    assert str(caught.value) == (
        "[comfyui] input 'seed' does not name a node input; ComfyUI inputs are keyed "
        "'<node id>.<input name>', e.g. '6.text' for the text of node 6"
    )


def test_a_missing_node_lists_at_most_thirty_nodes(adapter):
    workflow = {f"{index:02}": {"class_type": "Note", "inputs": {}} for index in range(31)}
    with pytest.raises(InvalidInputError) as caught:
        adapter.submit_request({"99.x": 1}, workflow_id=None, idempotency_key=None, workflow=workflow)
    listed = ", ".join(f"{index:02}" for index in range(30))
    assert f"(nodes: {listed}); inputs are keyed '<node id>.<input name>', e.g. '6.text'" in str(caught.value)


# --- what a rejected graph is told ----------------------------------------------------------------------
def _node_error(*messages: tuple[str, str], class_type: str | None = "KSampler") -> dict[str, Any]:
    errors = [{"type": "x", "message": message, "details": details} for message, details in messages]
    return {
        "errors": errors,
        "dependent_outputs": ["9"],
        **({"class_type": class_type} if class_type else {}),
    }


@pytest.mark.parametrize(
    ("node_errors", "summary"),
    [
        (
            {"3": _node_error(("Required input is missing", "model"))},
            "; node 3 (KSampler): Required input is missing: model",
        ),
        ({"3": _node_error(("Bad value", ""), ("Other", "x"))}, "; node 3 (KSampler): Bad value; Other: x"),
        ({"3": _node_error(("m", "d"), class_type=None)}, "; node 3: m: d"),
        ({"3": {"errors": "x", "class_type": "K"}}, "; node 3 (K): rejected"),
        ({"3": {"errors": ["text", {"message": "kept"}]}}, "; node 3: kept"),
        ({"3": "odd"}, "; node 3: rejected"),
        (
            {"3": _node_error(*[(f"e{index}", "") for index in range(6)])},
            "; node 3 (KSampler): e0; e1; e2; e3; e4",
        ),
        ({}, ""),
    ],
)
def test_a_rejected_graph_names_each_node(adapter, node_errors, summary):
    body = {
        "error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation"}
    }
    with pytest.raises(InvalidInputError) as caught:
        adapter.raise_for_error(400, {**body, "node_errors": node_errors}, run_id="ignored")
    assert str(caught.value) == (
        f"[comfyui] ComfyUI rejected the workflow: Prompt outputs failed validation{summary}; fix the graph "
        "or the inputs"
    )


@pytest.mark.parametrize(
    ("count", "more"), [(10, ""), (11, "; and 1 more nodes"), (12, "; and 2 more nodes")]
)
def test_at_most_ten_rejected_nodes_are_named(adapter, count, more):
    node_errors = {str(index): {"errors": []} for index in range(count)}
    with pytest.raises(InvalidInputError) as caught:
        adapter.raise_for_error(400, {"error": "invalid prompt", "node_errors": node_errors})
    named = "; ".join(f"node {index}: rejected" for index in range(10))
    assert str(caught.value) == (
        f"[comfyui] ComfyUI rejected the workflow: invalid prompt; {named}{more}; fix the graph or the inputs"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"error": {"type": "t"}}, "the graph was rejected"),
        ({"error": None, "node_errors": []}, "the graph was rejected"),
        ({"error": "plain words", "node_errors": "x"}, "plain words"),
        ({"error": "not read beside a prompt id", "prompt_id": PROMPT_ID}, "the graph was rejected"),
    ],
)
def test_a_rejection_without_a_message_still_says_the_graph_was_rejected(adapter, body, message):
    with pytest.raises(InvalidInputError) as caught:
        adapter.raise_for_error(400, body)
    assert (
        str(caught.value)
        == f"[comfyui] ComfyUI rejected the workflow: {message}; fix the graph or the inputs"
    )


def test_other_answers_are_the_usual_errors(adapter):
    with pytest.raises(PlatformError) as server:
        adapter.raise_for_error(500, {"error": {"type": "server_error", "message": "boom"}}, run_id=PROMPT_ID)
    assert (str(server.value), server.value.code, server.value.is_transient) == (
        f"[comfyui run {PROMPT_ID}] platform error server_error (HTTP 500): boom",
        "server_error",
        True,
    )
    with pytest.raises(PlatformError) as plain:
        adapter.raise_for_error(400, "Bad Request", fallback="HTTP 400, text/plain body")
    assert str(plain.value) == "[comfyui] platform error 400: HTTP 400, text/plain body"
    with pytest.raises(PlatformError) as no_error_key:
        adapter.raise_for_error(400, {"node_errors": {"3": {}}})
    assert str(no_error_key.value) == "[comfyui] platform error 400: HTTP 400"
    with pytest.raises(RateLimitedError) as limited:
        adapter.raise_for_error(429, None, run_id=PROMPT_ID, retry_after=2.0)
    assert (limited.value.retry_after, limited.value.run_id) == (2.0, PROMPT_ID)
    with pytest.raises(RunNotFoundError) as missing:
        adapter.raise_for_error(404, None, run_id=PROMPT_ID)
    assert str(missing.value) == (
        f"[comfyui run {PROMPT_ID}] not found: HTTP 404; check that the host has its version segment, like "
        "http://127.0.0.1:8188"
    )
    adapter.raise_for_error(200, fixture("prompt_accepted.json"))
    adapter.raise_for_error(200, {"error": None, "prompt_id": PROMPT_ID})


def test_error_bodies_give_their_type_and_message(adapter):
    assert adapter.error_info({"error": {"type": "t", "message": "m"}}) == ErrorInfo(code="t", message="m")
    assert adapter.error_info({"error": "text"}) == ErrorInfo(code=None, message="text")
    assert adapter.error_info({"error": "x", "prompt_id": PROMPT_ID}) is None
    assert adapter.error_info({"node_errors": {}}) is None
    assert adapter.error_info("error") is None


# --- output files --------------------------------------------------------------------------------------
def test_output_files_skip_what_is_not_a_file_and_keep_their_folder(adapter):
    outputs = {
        "9": {
            "images": [
                {"filename": "dir/sub\\a.png", "subfolder": None},
                {"filename": ""},
                {"filename": 7},
                "a.png",
                {"filename": "b.webp", "subfolder": "x", "type": "temp"},
            ],
            "text": "not a list",
        },
        "10": "not an object",
        "11": {"gifs": [{"filename": "c.gif", "type": ""}]},
    }
    run = adapter.parse_run(fixture("history_success.json"), run_id=PROMPT_ID).model_copy(
        update={"outputs": outputs}
    )
    files = adapter.output_files(run, base_url="http://gpu-box:8188/comfy/")
    assert [(f.name, f.output_key, f.media_type, f.url) for f in files] == [
        (
            "sub_a.png",
            "9.images[0]",
            "image/png",
            "http://gpu-box:8188/comfy/view?filename=dir%2Fsub%5Ca.png&subfolder=&type=output",
        ),
        (
            "b.webp",
            "9.images[4]",
            "image/webp",
            "http://gpu-box:8188/comfy/view?filename=b.webp&subfolder=x&type=temp",
        ),
        (
            "c.gif",
            "11.gifs[0]",
            "image/gif",
            "http://gpu-box:8188/comfy/view?filename=c.gif&subfolder=&type=output",
        ),
    ]
    assert all(f.authenticated for f in files)
