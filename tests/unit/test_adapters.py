"""Every vendor example payload, normalized exactly: the adapters are pure, so no server is needed."""

from __future__ import annotations

import json
import logging
import pkgutil
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_wfrun import platforms
from airflow_provider_wfrun.emulator.app import platform_names
from airflow_provider_wfrun.exceptions import (
    AuthenticationError,
    InvalidInputError,
    InvalidResponseError,
    NotSupportedError,
    PlatformError,
    RateLimitedError,
    RunNotFoundError,
)
from airflow_provider_wfrun.models import RunCost, RunError, RunLogEntry, RunStatus
from airflow_provider_wfrun.platforms import ApiRequest, adapter_classes, get_adapter
from airflow_provider_wfrun.platforms.base import ErrorInfo, _OncePerRun

FIXTURES = Path(__file__).parent.parent / "fixtures"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def normalized(run: Any) -> dict[str, Any]:
    return run.model_dump(exclude={"raw"})


EMPTY_COST = {"total": None, "compute": None, "external": None, "currency": None, "tokens": None}


def test_registry_finds_every_platform_module_and_the_emulator_speaks_each():
    modules = sorted(info.name for info in pkgutil.iter_modules(platforms.__path__) if info.name != "base")
    assert list(adapter_classes()) == modules
    assert {"chenyu", "dify", "gptbots"} <= set(modules)
    assert platform_names() == modules  # one emulator module per adapter module


def test_unknown_connection_type_names_the_known_ones():
    with pytest.raises(InvalidInputError, match=f"use one of: {', '.join(adapter_classes())}$"):
        get_adapter("http")


# --- chenyu ------------------------------------------------------------------------------------------
def test_chenyu_execution_seed_example_normalized_exactly():
    payload = fixture("chenyu/execution_succeeded.json")
    run = get_adapter("chenyu").parse_run(payload, run_id="wfrun_314ff7d8b7a5beff1388")
    assert normalized(run) == {
        "platform": "chenyu",
        "run_id": "wfrun_314ff7d8b7a5beff1388",
        "workflow_id": "wf_861ef31e94dcfb10e6e7",
        "task_id": "task_1778147626528703038_eb84d292e0851c08",
        "status": RunStatus.SUCCEEDED,
        "platform_status": "succeeded",
        "outputs": {"n9_images": "https://www.chenyu.cn/media/example-output"},
        "cost": {
            "total": Decimal("0.0002878"),
            "compute": Decimal("0.0002878"),
            "external": Decimal("0"),
            "currency": "CNY",
            "tokens": None,
        },
        "settlement": None,
        "error": None,
        "progress": 100.0,
        "queue_position": None,
        "eta_seconds": None,
        "logs": (
            {
                "at": utc(2026, 5, 8, 10, 0, 1),
                "level": "info",
                "message": "execution started",
                "event_type": "execution_start",
                "node_id": None,
            },
            {
                "at": utc(2026, 5, 8, 10, 0, 10),
                "level": "info",
                "message": "execution succeeded",
                "event_type": "execution_success",
                "node_id": None,
            },
        ),
        "created_at": utc(2026, 5, 8, 10, 0, 0),
        "started_at": utc(2026, 5, 8, 10, 0, 1),
        "finished_at": utc(2026, 5, 8, 10, 0, 10),
        "duration_seconds": 8.42,
        "run_url": None,
        "is_terminal": True,
    }
    assert run.raw == payload


def test_chenyu_info_adds_exact_settlement_to_a_terminal_run():
    adapter = get_adapter("chenyu")
    run = adapter.parse_run(fixture("chenyu/execution_succeeded.json"), run_id="wfrun_314ff7d8b7a5beff1388")
    request = adapter.settlement_request(run)
    assert request is not None
    assert (request.method, request.path, dict(request.params or {})) == (
        "GET",
        "/workflow/run/info",
        {"run_order_id": "wfrun_314ff7d8b7a5beff1388"},
    )
    settled = adapter.apply_settlement(run, fixture("chenyu/info_succeeded.json"))
    assert settled.cost.model_dump() == {
        "total": Decimal("0.00028780"),
        "compute": Decimal("0.00028780"),
        "external": Decimal("0.00000000"),
        "currency": "CNY",
        "tokens": None,
    }
    assert settled.settlement is not None
    assert settled.settlement.model_dump() == {
        "quote": Decimal("0.03000000"),
        "final": Decimal("0.00028780"),
        "released": Decimal("0.02971220"),
        "currency": "CNY",
        "status": "settled",
    }
    assert settled.settlement.quote - settled.settlement.final == settled.settlement.released
    assert settled.error is None


def test_chenyu_running_run_needs_no_settlement_call():
    adapter = get_adapter("chenyu")
    payload = fixture("chenyu/execution_succeeded.json")
    payload["data"].update(
        status="running", terminal_at=None, queue_info={"position": 2, "estimated_wait_sec": 40}
    )
    run = adapter.parse_run(payload, run_id="wfrun_1")
    assert (run.status, run.is_terminal, run.queue_position, run.eta_seconds) == (
        RunStatus.RUNNING,
        False,
        2,
        40,
    )
    assert adapter.settlement_request(run) is None


def test_chenyu_reference_example_normalized():
    run = get_adapter("chenyu").parse_run(
        fixture("chenyu/execution_reference_example.json"), run_id="wfrun_x"
    )
    assert run.status is RunStatus.SUCCEEDED
    assert run.cost.total == Decimal("0.02")
    assert run.duration_seconds == 12.3
    assert run.queue_position == 0
    assert run.logs[0].node_id == "9"


def test_chenyu_submit_answer():
    run = get_adapter("chenyu").parse_submit(fixture("chenyu/submit_queued.json"))
    assert (run.run_id, run.status, run.platform_status) == (
        "wfrun_314ff7d8b7a5beff1388",
        RunStatus.QUEUED,
        "queued",
    )
    assert run.settlement is not None
    assert (run.settlement.quote, run.settlement.currency) == (Decimal("0.03000000"), "CNY")


@pytest.mark.parametrize(
    ("word", "status"), [("canceled", RunStatus.CANCELED), ("cancelled", RunStatus.CANCELED)]
)
def test_chenyu_both_cancel_spellings_are_terminal(word, status):
    payload = fixture("chenyu/execution_succeeded.json")
    payload["data"]["status"] = word
    run = get_adapter("chenyu").parse_run(payload, run_id="wfrun_1")
    assert run.status is status
    assert run.is_terminal


def test_chenyu_failed_run_carries_the_engine_error():
    payload = fixture("chenyu/execution_succeeded.json")
    payload["data"].update(
        status="failed",
        error={
            "reason": "node 9 failed",
            "detail": "CUDA out of memory",
            "engine_code": "OOM",
            "status_code": 500,
        },
    )
    run = get_adapter("chenyu").parse_run(payload, run_id="wfrun_1")
    assert run.error is not None
    assert run.error.model_dump() == {
        "reason": "node 9 failed",
        "detail": "CUDA out of memory",
        "code": "OOM",
    }


def test_chenyu_not_found_envelope_is_run_not_found():
    with pytest.raises(
        RunNotFoundError, match=r"\[chenyu run wfrun_9\] not found: Task not found.: execution task"
    ):
        get_adapter("chenyu").raise_for_error(
            200, fixture("chenyu/execution_not_found.json"), run_id="wfrun_9"
        )


@pytest.mark.parametrize(
    ("name", "code", "message"),
    [
        ("chenyu/error_insufficient_balance.json", "1001", "余额不足"),
        ("chenyu/execution_schema_placeholder.json", "123", "<string>"),
        ("chenyu/error_engine.json", "ENGINE_UNAVAILABLE", "engine unavailable: comfy worker did not answer"),
    ],
)
def test_chenyu_error_inside_a_200_envelope_is_an_error(name, code, message):
    with pytest.raises(PlatformError) as raised:
        get_adapter("chenyu").raise_for_error(200, fixture(name), run_id="wfrun_1")
    assert (raised.value.code, raised.value.platform_message) == (code, message)


def test_chenyu_submit_needs_a_workflow_id():
    with pytest.raises(InvalidInputError, match="chenyu needs workflow_id"):
        get_adapter("chenyu").submit_request({}, workflow_id=None, idempotency_key="k")


def test_chenyu_has_no_cancel():
    with pytest.raises(NotSupportedError, match=r"\[chenyu run wfrun_1\] chenyu.cn has no API to cancel"):
        get_adapter("chenyu").cancel_request("wfrun_1", task_id=None)


# --- Dify --------------------------------------------------------------------------------------------
DIFY_RUN = {
    "platform": "dify",
    "run_id": "fb47b2e6-5e43-4f90-be01-d5c5a088d156",
    "workflow_id": "7c3e33d4-2a8b-4e5f-9b1a-d3c6e8f12345",
    "task_id": None,
    "status": RunStatus.SUCCEEDED,
    "platform_status": "succeeded",
    "outputs": {"result": "Traduisez ceci en francais"},
    "cost": {**EMPTY_COST, "tokens": 150},
    "settlement": None,
    "error": None,
    "progress": None,
    "queue_position": None,
    "eta_seconds": None,
    "logs": (),
    "created_at": utc(2024, 1, 16, 12, 20, 29),
    "started_at": utc(2024, 1, 16, 12, 20, 29),
    "finished_at": utc(2024, 1, 16, 12, 20, 30),
    "duration_seconds": 1.23,
    "run_url": None,
    "is_terminal": True,
}


@pytest.mark.parametrize("name", ["dify/run_detail_service_api.json", "dify/run_detail_chatflow_zh.json"])
def test_dify_run_detail_normalized_exactly(name):
    run = get_adapter("dify").parse_run(fixture(name), run_id=DIFY_RUN["run_id"])
    assert normalized(run) == DIFY_RUN


def test_dify_blocking_answer_normalized():
    run = get_adapter("dify").parse_submit(fixture("dify/blocking_response.json"))
    assert (run.task_id, run.outputs, run.cost.tokens, run.duration_seconds) == (
        "c3800678-a077-43df-a102-53f23ed20b88",
        {"result": "Article summary here"},
        280,
        2.45,
    )
    assert run.finished_at == utc(2024, 1, 16, 12, 20, 31)


def test_dify_stream_reading_stops_at_workflow_started():
    adapter = get_adapter("dify")
    assert adapter.read_submit_event(fixture("dify/event_node_started.json")) is None
    run = adapter.read_submit_event(fixture("dify/event_workflow_started.json"))
    assert run is not None
    assert (run.run_id, run.task_id, run.status, run.created_at) == (
        "fb47b2e6-5e43-4f90-be01-d5c5a088d156",
        "c3800678-a077-43df-a102-53f23ed20b88",
        RunStatus.RUNNING,
        utc(2024, 1, 16, 12, 20, 29),
    )


def test_dify_error_event_in_the_stream_raises():
    with pytest.raises(PlatformError, match="provider_quota_exceeded") as raised:
        get_adapter("dify").read_submit_event(fixture("dify/event_error.json"))
    assert raised.value.http_status == 400


@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("running", RunStatus.RUNNING),
        ("paused", RunStatus.PAUSED),
        ("stopped", RunStatus.CANCELED),
        ("partial-succeeded", RunStatus.PARTIALLY_SUCCEEDED),
        ("failed", RunStatus.FAILED),
    ],
)
def test_dify_status_words(word, status):
    payload = fixture("dify/run_detail_service_api.json") | {"status": word}
    assert get_adapter("dify").parse_run(payload, run_id="r").status is status


def test_dify_failed_run_keeps_the_message():
    payload = fixture("dify/run_detail_service_api.json") | {
        "status": "failed",
        "error": "LLM node timed out",
    }
    run = get_adapter("dify").parse_run(payload, run_id="r")
    assert run.error is not None
    assert run.error.reason == "LLM node timed out"


@pytest.mark.parametrize(
    ("name", "http_status", "error"),
    [
        ("dify/error_not_found.json", 404, RunNotFoundError),
        ("dify/error_unauthorized.json", 401, AuthenticationError),
        ("dify/error_invalid_param.json", 400, PlatformError),
        ("dify/error_not_workflow_app.json", 400, PlatformError),
        ("dify/error_too_many_requests.json", 429, RateLimitedError),
    ],
)
def test_dify_error_bodies(name, http_status, error):
    with pytest.raises(error) as raised:
        get_adapter("dify").raise_for_error(http_status, fixture(name), run_id="r")
    assert fixture(name)["message"] in str(raised.value)


def test_dify_spent_quota_429_is_not_a_retryable_rate_limit():
    with pytest.raises(PlatformError) as raised:
        get_adapter("dify").raise_for_error(429, fixture("dify/error_rate_limit_quota.json"))
    assert not isinstance(raised.value, RateLimitedError)
    assert raised.value.code == "rate_limit_error"


def test_dify_submit_streams_and_pins_a_version():
    adapter = get_adapter("dify", {"user": "etl-bot"})
    request = adapter.submit_request({"q": 1}, workflow_id="7c3e33d4", idempotency_key=None)
    assert (request.method, request.path, request.stream) == ("POST", "/workflows/7c3e33d4/run", True)
    assert request.json == {"inputs": {"q": 1}, "response_mode": "streaming", "user": "etl-bot"}
    assert (
        get_adapter("dify").submit_request({}, workflow_id=None, idempotency_key=None).path
        == "/workflows/run"
    )


def test_dify_cancel_needs_the_task_id():
    adapter = get_adapter("dify")
    with pytest.raises(InvalidInputError, match="pass task_id"):
        adapter.cancel_request("r", task_id=None)
    request = adapter.cancel_request("r", task_id="t-1")
    assert (request.path, request.json) == ("/workflows/tasks/t-1/stop", {"user": "airflow"})


def test_run_id_of_another_platform_is_refused():
    with pytest.raises(InvalidInputError, match="is not a Dify run id"):
        get_adapter("dify").check_run_id("wfrun_314ff7d8b7a5beff1388")
    with pytest.raises(InvalidInputError, match=r"is not a chenyu.cn run id \(they look like wfrun_"):
        get_adapter("chenyu").check_run_id("fb47b2e6-5e43-4f90-be01-d5c5a088d156")


# --- GPTBots -----------------------------------------------------------------------------------------
def test_gptbots_query_result_seed_example_normalized_exactly():
    payload = fixture("gptbots/query_result_succeed.json")
    run = get_adapter("gptbots").parse_run(payload, run_id="xxxxxxxx")
    assert normalized(run) == {
        "platform": "gptbots",
        "run_id": "xxxxxxxx",
        "workflow_id": "xxxxxxxx",
        "task_id": None,
        "status": RunStatus.SUCCEEDED,
        "platform_status": "SUCCEED",
        "outputs": payload["output"],
        "cost": {**EMPTY_COST, "total": Decimal("0.6928"), "currency": "credits", "tokens": 1745},
        "settlement": None,
        "error": None,
        "progress": None,
        "queue_position": None,
        "eta_seconds": None,
        "logs": (),
        "created_at": datetime(2025, 9, 25, 1, 55, 23, 24000, tzinfo=timezone.utc),
        "started_at": datetime(2025, 9, 25, 1, 55, 23, 24000, tzinfo=timezone.utc),
        "finished_at": datetime(2025, 9, 25, 1, 55, 31, 373000, tzinfo=timezone.utc),
        "duration_seconds": 8.347,
        "run_url": None,
        "is_terminal": True,
    }


def test_gptbots_async_invoke_answer_is_a_queued_run():
    run = get_adapter("gptbots").parse_submit(fixture("gptbots/invoke_async_pending.json"))
    assert (run.run_id, run.status, run.is_terminal, run.outputs) == ("xxxxxxxx", RunStatus.QUEUED, False, {})


def test_gptbots_failed_run_without_reason_says_so():
    payload = fixture("gptbots/query_result_succeed.json") | {"status": "FAILED"}
    run = get_adapter("gptbots").parse_run(payload, run_id="xxxxxxxx")
    assert run.error is not None
    assert "no reason" in run.error.reason


@pytest.mark.parametrize(
    ("name", "error", "code"),
    [
        ("gptbots/error_authentication.json", AuthenticationError, "40127"),
        ("gptbots/error_credit.json", PlatformError, "20022"),
        ("gptbots/error_invalid_parameter.json", PlatformError, "40000"),
    ],
)
def test_gptbots_error_in_a_200_body_is_an_error(name, error, code):
    with pytest.raises(error, match=fixture(name)["message"]) as raised:
        get_adapter("gptbots").raise_for_error(200, fixture(name))
    if isinstance(raised.value, PlatformError):
        assert raised.value.code == code


def test_gptbots_submit_is_asynchronous_and_refuses_a_workflow_id():
    adapter = get_adapter("gptbots")
    request = adapter.submit_request({"topic": "News"}, workflow_id=None, idempotency_key=None)
    assert (request.path, request.json) == ("/workflow/invoke", {"input": {"topic": "News"}, "isAsync": True})
    with pytest.raises(InvalidInputError, match="GPTBots picks the workflow by the API key"):
        adapter.submit_request({}, workflow_id="wf-1", idempotency_key=None)


# --- shared behaviour --------------------------------------------------------------------------------
def test_unknown_status_is_kept_not_terminal_and_logged_once(caplog):
    payload = fixture("gptbots/query_result_succeed.json") | {"status": "ARCHIVED_NEW_STATE"}
    adapter = get_adapter("gptbots")
    with caplog.at_level(logging.WARNING):
        first = adapter.parse_run(payload, run_id="x")
        adapter.parse_run(payload, run_id="x")
    assert (first.status, first.platform_status, first.is_terminal) == (
        RunStatus.UNKNOWN,
        "ARCHIVED_NEW_STATE",
        False,
    )
    assert [r.getMessage() for r in caplog.records].count(
        "gptbots reported run status 'ARCHIVED_NEW_STATE', which this provider does not know; "
        "treating it as not finished"
    ) == 1


#: A poll's answer about a finished run, per platform, with the run's id.
FINISHED_ANSWERS = {
    "chenyu": ("chenyu/execution_succeeded.json", "wfrun_314ff7d8b7a5beff1388"),
    "comfyui": ("comfyui/history_success.json", "5b4e3c8a-2f6d-4b8e-9a71-3c2d1e0f9a88"),
    "coze": ("coze/history_success.json", "7484523878849822754:7485110364436357130"),
    "dify": ("dify/run_detail_service_api.json", "fb47b2e6-5e43-4f90-be01-d5c5a088d156"),
    "gptbots": ("gptbots/query_result_succeed.json", "xxxxxxxx"),
}


def test_every_platform_has_a_finished_answer_to_read_the_status_from():
    assert set(FINISHED_ANSWERS) == set(adapter_classes())


@pytest.mark.parametrize("platform", sorted(FINISHED_ANSWERS))
def test_the_status_word_alone_is_the_word_the_whole_answer_gives(platform):
    """What a client checking one field reads (the benchmarks' peers) is what ``parse_run`` reads."""
    name, run_id = FINISHED_ANSWERS[platform]
    adapter = get_adapter(platform)
    payload = fixture(name)
    word = adapter.status_word(payload, run_id=run_id)
    assert word == adapter.parse_run(payload, run_id=run_id).platform_status
    assert adapter.statuses[word] is RunStatus.SUCCEEDED


@pytest.mark.parametrize(
    "payload",
    [{}, [], None, "succeeded", {"data": []}, {"data": {"status": 3}}, {"status": None}, {"run": {}}],
)
def test_an_answer_without_a_status_word_where_the_platform_puts_it_reads_as_none(payload):
    """ComfyUI's history of a prompt still running is ``{}``: no word, not an error."""
    for platform in adapter_classes():
        assert get_adapter(platform).status_word(payload, run_id="run") is None, platform


def test_extra_fields_tolerated_and_missing_optional_fields_are_none():
    payload = {"workflowRunId": "r1", "status": "RUNNING", "brandNewField": {"x": 1}}
    run = get_adapter("gptbots").parse_run(payload, run_id="r1")
    assert (run.status, run.outputs, run.cost.total, run.finished_at) == (RunStatus.RUNNING, {}, None, None)


def test_invalid_response_names_the_field_not_a_validation_dump():
    payload = fixture("chenyu/execution_succeeded.json")
    payload["data"]["status"] = 42
    with pytest.raises(InvalidResponseError) as raised:
        get_adapter("chenyu").parse_run(payload, run_id="wfrun_1")
    assert raised.value.field == "data.status"
    assert str(raised.value) == (
        "[chenyu run wfrun_1] unexpected response: "
        "field 'data.status' input should be a valid string (got int)"
    )


def test_result_dict_is_json_serializable_with_exact_money():
    adapter = get_adapter("chenyu")
    run = adapter.parse_run(fixture("chenyu/execution_succeeded.json"), run_id="wfrun_314ff7d8b7a5beff1388")
    run = adapter.apply_settlement(run, fixture("chenyu/info_succeeded.json"))
    result = json.loads(json.dumps(run.result_dict()))
    assert result == {
        "run_id": "wfrun_314ff7d8b7a5beff1388",
        "platform": "chenyu",
        "workflow_id": "wf_861ef31e94dcfb10e6e7",
        "status": "succeeded",
        "outputs": {"n9_images": "https://www.chenyu.cn/media/example-output"},
        "cost": {
            "total": "0.00028780",
            "compute": "0.00028780",
            "external": "0.00000000",
            "currency": "CNY",
            "tokens": None,
        },
        "duration_seconds": 8.42,
        "error": None,
        "settlement": {
            "quote": "0.03000000",
            "final": "0.00028780",
            "released": "0.02971220",
            "currency": "CNY",
        },
        "started_at": "2026-05-08T10:00:01+00:00",
        "finished_at": "2026-05-08T10:00:10+00:00",
        "platform_status": "succeeded",
        "run_url": None,
    }


# --- output files: what "files out" copies -----------------------------------------------------------------
def test_chenyu_output_files_are_the_image_urls():
    payload = fixture("chenyu/execution_succeeded.json")
    adapter = get_adapter("chenyu")
    run = adapter.parse_run(payload, run_id="wfrun_314ff7d8b7a5beff1388")
    files = adapter.output_files(run, base_url="https://www.chenyu.cn/api/open/v2")
    assert [(f.output_key, f.url, f.name) for f in files] == [
        ("n9_images", "https://www.chenyu.cn/media/example-output", "example-output")
    ]


def test_dify_output_files_are_file_objects_with_absolute_urls():
    adapter = get_adapter("dify")
    run = adapter.parse_run(
        fixture("dify/run_detail_file_output.json"), run_id="5ad498ea-1b2b-4c5e-8f1a-3c2d1e0f9a8b"
    )
    files = adapter.output_files(run, base_url="https://dify.example.com/v1")
    assert [f.model_dump() for f in files] == [
        {
            "name": "fox.png",
            "url": "https://dify.example.com/files/tools/3f5b4c1e-9d7a-4b2c-8e6f-1a2b3c4d5e6f.png"
            "?timestamp=1705407630&nonce=8d1f&sign=abc%3D",
            "media_type": "image/png",
            "output_key": "image",
            "size": 482113,
            "authenticated": False,
        },
        {
            "name": "report.pdf",
            "url": "https://files.example.com/report.pdf",
            "media_type": "application/pdf",
            "output_key": "attachments[0]",
            "size": 1024,
            "authenticated": False,
        },
    ]


def test_dify_unreadable_file_object_is_skipped_not_fatal(caplog):
    adapter = get_adapter("dify")
    payload = fixture("dify/run_detail_file_output.json")
    payload["outputs"]["image"]["size"] = "big"
    run = adapter.parse_run(payload, run_id=payload["id"])
    with caplog.at_level(logging.WARNING):
        files = adapter.output_files(run, base_url="https://dify.example.com/v1")
    assert [f.name for f in files] == ["report.pdf"]
    assert "Dify output image looks like a file but could not be read" in caplog.text


def test_output_file_search_is_bounded_in_depth():
    from airflow_provider_wfrun.platforms.base import MAX_OUTPUT_DEPTH, url_files

    deep: dict[str, Any] = {"url": "https://x.example/deep.png"}
    for _ in range(MAX_OUTPUT_DEPTH + 2):
        deep = {"next": deep}
    shallow = {"a": {"b": ["https://x.example/shallow.png"]}}
    assert [f.output_key for f in url_files({"deep": deep, **shallow})] == ["a.b[0]"]


# --- input file uploads -----------------------------------------------------------------------------
def test_dify_upload_is_the_documented_multipart_and_answers_in_the_files_input_shape():
    adapter = get_adapter("dify", {"user": "pipeline-7"})
    request = adapter.upload_request("brief.pdf", b"%PDF", "application/pdf")
    assert (request.method, request.path) == ("POST", "/files/upload")
    assert request.form == {"user": "pipeline-7"}  # only runs of the same user may use the file
    assert request.files == {"file": ("brief.pdf", b"%PDF", "application/pdf")}
    answer = {"id": "a1b2c3d4-5678-90ab-cdef-1234567890ab", "name": "brief.pdf", "extension": "pdf"}
    assert adapter.parse_upload(answer, media_type="application/pdf") == {
        "type": "document",
        "transfer_method": "local_file",
        "upload_file_id": "a1b2c3d4-5678-90ab-cdef-1234567890ab",
    }
    with pytest.raises(InvalidResponseError, match="'id'"):
        adapter.parse_upload({"name": "brief.pdf"}, media_type="application/pdf")


@pytest.mark.parametrize(
    ("name", "kind", "megabytes"),
    [
        ("a.png", "image/png", 10),
        ("a.mp3", "audio/mpeg", 50),
        ("a.mp4", "video/mp4", 100),
        ("a.pdf", "x", 15),
    ],
)
def test_dify_upload_limits_are_its_documented_defaults(name, kind, megabytes):
    assert get_adapter("dify", {}).upload_limit(name, kind) == megabytes * 1024 * 1024


def test_chenyu_upload_is_an_asset_whose_uri_is_the_input():
    adapter = get_adapter("chenyu", {})
    request = adapter.upload_request("cat.webp", b"RIFF", "image/webp")
    assert (request.path, request.form) == ("/assets", {"media_type": "image", "purpose": "temp_input"})
    assert adapter.upload_request("notes.txt", b"x", "text/plain").form["media_type"] == "file"
    assert adapter.upload_limit("cat.webp", "image/webp") == 100 * 1024 * 1024
    answer = {
        "code": 0,
        "msg": "success",
        "data": {"asset_uri": "asset://asset_38d2ff7769fb3b7267039941547e6a78"},
    }
    assert (
        adapter.parse_upload(answer, media_type="image/webp")
        == "asset://asset_38d2ff7769fb3b7267039941547e6a78"
    )


def test_a_file_without_a_type_or_a_platform_without_uploads_is_refused_before_reading():
    with pytest.raises(InvalidInputError, match="cannot be told from its name"):
        get_adapter("dify", {}).upload_limit("blob", None)
    with pytest.raises(NotSupportedError, match="no API to upload"):
        get_adapter("gptbots", {}).upload_limit("a.png", "image/png")


# --- Dify human input (paused runs) -------------------------------------------------------------------
#: Dify's documented Get Human Input Form example (dify-openapi-service.json).
DIFY_FORM = {
    "form_content": "Please review the draft, set a priority, and confirm or request changes.",
    "inputs": [
        {
            "type": "paragraph",
            "output_variable_name": "feedback",
            "default": {"type": "constant", "value": ""},
        },
        {
            "type": "select",
            "output_variable_name": "priority",
            "option_source": {"type": "constant", "selector": [], "value": ["low", "medium", "high"]},
        },
        {"type": "file", "output_variable_name": "attachment", "allowed_file_types": ["image"]},
    ],
    "resolved_default_values": {"feedback": ""},
    "user_actions": [
        {"id": "approve", "title": "Approve", "button_style": "primary"},
        {"id": "reject", "title": "Request changes", "button_style": "default"},
    ],
    "expiration_time": 1745510400,
}


def test_dify_form_reads_content_fields_defaults_options_and_actions():
    form = get_adapter("dify", {}).parse_form(DIFY_FORM, token="tok-1")
    assert form.token == "tok-1"
    assert form.content.startswith("Please review the draft")
    assert [(f.name, f.kind, f.default, f.options) for f in form.fields] == [
        ("feedback", "paragraph", "", ()),
        ("priority", "select", None, ("low", "medium", "high")),
        ("attachment", "file", None, ()),
    ]
    assert [(a.id, a.title) for a in form.actions] == [("approve", "Approve"), ("reject", "Request changes")]
    assert form.expires_at == datetime.fromtimestamp(1745510400, tz=timezone.utc)


def test_dify_form_event_names_the_token_or_says_why_the_api_cannot_answer():
    adapter = get_adapter("dify", {"user": "pipeline-7"})
    run_id = "fb47b2e6-5e43-4f90-be01-d5c5a088d156"
    event = {
        "event": "human_input_required",
        "workflow_run_id": run_id,
        "data": {**DIFY_FORM, "form_token": "tok-2", "node_title": "Approval", "actions": []},
    }
    form = adapter.read_form_event(event, run_id=run_id)
    assert (form.token, form.node_title, len(form.actions)) == ("tok-2", "Approval", 2)
    assert adapter.read_form_event({"event": "workflow_paused", "data": {}}, run_id=run_id) is None
    by_mail = {**event, "data": {**event["data"], "form_token": None}}
    with pytest.raises(NotSupportedError, match="delivered by e-mail or the console"):
        adapter.read_form_event(by_mail, run_id=run_id)

    events = adapter.events_request(run_id)
    assert (events.path, events.params, events.stream) == (
        f"/workflow/{run_id}/events",
        {"user": "pipeline-7", "include_state_snapshot": "true"},  # the replay announces the pause again
        True,
    )
    answer = adapter.answer_request("tok-2", action="approve", inputs={"feedback": "ok"})
    assert (answer.method, answer.path) == ("POST", "/form/human_input/tok-2")
    assert answer.json == {"inputs": {"feedback": "ok"}, "action": "approve", "user": "pipeline-7"}


def test_dify_replay_leaves_the_form_still_waiting_and_ends_at_the_finish():
    adapter = get_adapter("dify", {})
    run_id = "fb47b2e6-5e43-4f90-be01-d5c5a088d156"
    required = {"event": "human_input_required", "data": {**DIFY_FORM, "form_token": "t1"}}
    form, done = adapter.follow_form(required, None, run_id=run_id)
    assert (form.token if form else None, done) == ("t1", False)
    # A replayed earlier pause: announced, paused, then answered; it no longer waits.
    assert adapter.follow_form({"event": "workflow_paused", "data": {}}, form, run_id=run_id) == (form, False)
    filled = {"event": "human_input_form_filled", "data": {}}
    assert adapter.follow_form(filled, form, run_id=run_id) == (None, False)
    finished = {"event": "workflow_finished", "data": {}}
    assert adapter.follow_form(finished, form, run_id=run_id) == (None, True)
    error = {"event": "error", "status": 500, "code": "x", "message": "y"}
    with pytest.raises(PlatformError):
        adapter.follow_form(error, None, run_id=run_id)


def test_dify_form_answered_elsewhere_first_is_a_412_with_its_code():
    adapter = get_adapter("dify", {})
    body = {
        "status": 412,
        "code": "human_input_form_submitted",
        "message": "This form has already been submitted",
    }
    with pytest.raises(PlatformError) as caught:
        adapter.raise_for_error(412, body)
    assert caught.value.code == "human_input_form_submitted"


# --- tolerant reading: one odd field never fails a poll ------------------------------------------------
def test_dify_odd_fields_are_read_or_left_empty():
    payload = fixture("dify/run_detail_service_api.json") | {
        "created_at": "1705407629.5",
        "finished_at": 1705407631,
        "elapsed_time": None,
        "total_tokens": "150",
        "total_steps": 3.0,
        "workflow_id": 7,
        "status": "failed",
        "error": [{"message": "node llm failed"}, {"reason": "timeout"}],
        "outputs": '{"result": "ok"}',
    }
    run = get_adapter("dify").parse_run(payload, run_id="r")
    assert (run.created_at, run.finished_at) == (
        datetime(2024, 1, 16, 12, 20, 29, 500000, tzinfo=timezone.utc),
        utc(2024, 1, 16, 12, 20, 31),
    )
    assert (run.duration_seconds, run.cost.tokens, run.workflow_id) == (1.5, 150, "7")
    assert run.error is not None
    assert run.error.reason == "node llm failed; timeout"
    assert run.outputs == {"result": "ok"}
    assert run.raw == payload


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ({"message": "boom", "code": "E1"}, "boom"),
        ({"msg": "short"}, "short"),
        ({"detail": "only a detail"}, "only a detail"),
        ({"other": 1}, '{"other": 1}'),
        (42, "42"),
        (1.5, "1.5"),
    ],
)
def test_an_error_in_another_shape_gives_its_message(value, reason):
    payload = fixture("dify/run_detail_service_api.json") | {"status": "failed", "error": value}
    run = get_adapter("dify").parse_run(payload, run_id="r")
    assert run.error is not None
    assert run.error.reason == reason


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("created_at", 10**20),
        ("created_at", "yesterday"),
        ("created_at", True),
        ("finished_at", float("nan")),
        ("elapsed_time", float("inf")),
        ("elapsed_time", -1),
        ("elapsed_time", 10**12),
        ("total_tokens", 1.5),
        ("total_tokens", -3),
        ("total_tokens", 10**16),
        ("total_tokens", "1e30"),
        ("workflow_id", {"id": 1}),
        ("workflow_id", [1]),
        ("workflow_id", False),
        ("outputs", "{not json"),
    ],
)
def test_an_unreadable_field_is_none_and_the_run_still_reads(field, value):
    payload = fixture("dify/run_detail_service_api.json") | {field: value}
    run = get_adapter("dify").parse_run(payload, run_id="r")
    assert run.status is RunStatus.SUCCEEDED
    read = {
        "created_at": run.created_at,
        "finished_at": run.finished_at,
        "elapsed_time": run.duration_seconds,
        "total_tokens": run.cost.tokens,
        "workflow_id": run.workflow_id,
        "outputs": run.outputs.get("value"),
    }[field]
    # An unreadable duration falls back to the times; text that only looks like JSON is kept as text.
    assert read == {"elapsed_time": 1.0, "outputs": "{not json"}.get(field)
    assert run.raw[field] is value


def test_duration_comes_from_the_times_when_the_platform_omits_it():
    dify = fixture("dify/run_detail_service_api.json") | {"elapsed_time": None}
    assert get_adapter("dify").parse_run(dify, run_id="r").duration_seconds == 1.0
    backwards = dify | {"finished_at": 1705407628}
    assert get_adapter("dify").parse_run(backwards, run_id="r").duration_seconds is None
    instant = dify | {"finished_at": dify["created_at"]}  # finished the second it started: 0, not unknown
    assert get_adapter("dify").parse_run(instant, run_id="r").duration_seconds == 0.0
    gptbots = fixture("gptbots/query_result_succeed.json")
    del gptbots["workflowExecutionTime"]
    assert get_adapter("gptbots").parse_run(gptbots, run_id="x").duration_seconds == 8.349
    chenyu = fixture("chenyu/execution_succeeded.json")
    chenyu["data"]["actual_execution_duration_sec"] = None
    assert get_adapter("chenyu").parse_run(chenyu, run_id="wfrun_1").duration_seconds == 9.0


def test_gptbots_odd_fields():
    payload = fixture("gptbots/query_result_succeed.json") | {
        "workflowVersion": 101,
        "startTime": 1758765323024.5,
        "endTime": "1758765331373",
        "totalCost": "0.6928",
        "totalTokens": 1745.0,
        "workflowExecutionTime": "8347",
        "output": json.dumps({"news": []}),
    }
    run = get_adapter("gptbots").parse_run(payload, run_id="xxxxxxxx")
    assert run.started_at == datetime(2025, 9, 25, 1, 55, 23, 24500, tzinfo=timezone.utc)
    assert run.finished_at == datetime(2025, 9, 25, 1, 55, 31, 373000, tzinfo=timezone.utc)
    assert (run.cost.total, run.cost.tokens, run.duration_seconds) == (Decimal("0.6928"), 1745, 8.347)
    assert run.outputs == {"news": []}
    for output, kept in (
        ([1, 2], {"value": [1, 2]}),
        ("plain", {"value": "plain"}),
        ('"text"', {"value": '"text"'}),
    ):
        assert get_adapter("gptbots").parse_run(payload | {"output": output}, run_id="x").outputs == kept
    failed = payload | {"status": "FAILED", "errorMessage": {"message": "quota"}, "message": None}
    assert get_adapter("gptbots").parse_run(failed, run_id="x").error == RunError(reason="quota")
    assert get_adapter("gptbots").parse_run(failed | {"message": "first"}, run_id="x").error == RunError(
        reason="first"
    )


def test_gptbots_credits_currency_only_with_a_cost():
    payload = fixture("gptbots/query_result_succeed.json") | {"totalCost": "NaN"}
    run = get_adapter("gptbots").parse_run(payload, run_id="x")
    assert (run.cost.total, run.cost.currency) == (None, None)
    assert get_adapter("gptbots").parse_run(payload | {"totalCost": 0}, run_id="x").cost.currency == "credits"


def test_gptbots_user_id_extra_reaches_the_submit():
    request = get_adapter("gptbots", {"user_id": 42}).submit_request(
        {}, workflow_id=None, idempotency_key=None
    )
    assert request.json == {"input": {}, "isAsync": True, "userId": "42"}
    assert (
        "userId"
        not in get_adapter("gptbots", {"user_id": ""})
        .submit_request({}, workflow_id=None, idempotency_key=None)
        .json
    )
    assert (request.method, get_adapter("gptbots").get_request("r").json) == ("POST", {"workflowRunId": "r"})


def test_gptbots_error_codes_and_messages():
    adapter = get_adapter("gptbots")
    assert adapter.error_info({"code": 0, "message": "ok"}) is None
    assert adapter.error_info({"code": "0"}) is None
    assert adapter.error_info({"workflowRunId": "r", "code": 1}) is None
    assert adapter.error_info(["not", "a", "dict"]) is None
    assert adapter.error_info({"code": 40000, "msg": "bad"}) == ErrorInfo(code="40000", message="bad")
    assert adapter.error_info({"code": 50000}) == ErrorInfo(code="50000", message=None)


def test_chenyu_odd_fields():
    payload = fixture("chenyu/execution_succeeded.json")
    payload["data"] |= {
        "status": "failed",
        "error": "CUDA out of memory",
        "logs": {"at": "2026-05-08T18:00:01+08:00", "node_id": 9, "message": {"message": "started"}},
        "queue_info": [{"position": "2", "estimated_wait_sec": "40.5"}],
        "progress_percent": "55.5",
        "compute_cost": "0.00028780",
        "total_cost": 1e12,
        "external_model_cost": "",
        "created_at": "2026-05-08T18:00:00+08:00",
    }
    run = get_adapter("chenyu").parse_run(payload, run_id="wfrun_1")
    assert run.error == RunError(reason="CUDA out of memory")
    assert run.logs == (RunLogEntry(at=utc(2026, 5, 8, 10, 0, 1), message="started", node_id="9"),)
    assert (run.queue_position, run.eta_seconds, run.progress) == (2, 40.5, 55.5)
    assert (run.cost.compute, run.cost.total, run.cost.external) == (Decimal("0.00028780"), None, None)
    assert run.created_at == utc(2026, 5, 8, 10, 0, 0)


def test_chenyu_log_lines_that_are_not_objects_are_dropped():
    payload = fixture("chenyu/execution_succeeded.json")
    payload["data"]["logs"] = ["text", {"message": "kept"}, 3, None]
    run = get_adapter("chenyu").parse_run(payload, run_id="wfrun_1")
    assert [line.message for line in run.logs] == ["kept"]
    payload["data"]["logs"] = '[{"message": "from text"}]'
    assert get_adapter("chenyu").parse_run(payload, run_id="wfrun_1").logs[0].message == "from text"
    payload["data"]["logs"] = 7
    assert get_adapter("chenyu").parse_run(payload, run_id="wfrun_1").logs == ()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("progress_percent", 100.5),
        ("progress_percent", -1),
        ("queue_info", {"position": -1}),
        ("queue_info", "x"),
    ],
)
def test_chenyu_progress_and_queue_out_of_range_are_none(field, value):
    payload = fixture("chenyu/execution_succeeded.json")
    payload["data"][field] = value
    run = get_adapter("chenyu").parse_run(payload, run_id="wfrun_1")
    assert (run.progress, run.queue_position) == (
        (None, None) if field == "progress_percent" else (100.0, None)
    )


@pytest.mark.parametrize(
    ("amount", "read"),
    [
        ("0.5", Decimal("0.5")),
        (0.1, Decimal("0.1")),
        (3, Decimal(3)),
        (" 0.00000001 ", Decimal("0.00000001")),
        ("999999999999.99999999", Decimal("999999999999.99999999")),
        ("1000000000000", None),
        ("-1000000000000", None),
        ("1e-19", None),
        ("1e-18", Decimal("1e-18")),
        ("1" * 65, None),
        ("Infinity", None),
        (True, None),
        ([1], None),
    ],
)
def test_chenyu_money_is_exact_or_none(amount, read):
    payload = fixture("chenyu/execution_succeeded.json")
    payload["data"]["total_cost"] = amount
    assert get_adapter("chenyu").parse_run(payload, run_id="wfrun_1").cost.total == read


def test_chenyu_offsets_are_honoured_and_the_zone_extra_applies_to_times_without_one():
    payload = fixture("chenyu/execution_succeeded.json")
    payload["data"] |= {"started_at": "2026-05-08T18:00:01+08:00", "terminal_at": "2026-05-08T10:00:10"}
    utc_run = get_adapter("chenyu").parse_run(payload, run_id="wfrun_1")
    assert (utc_run.started_at, utc_run.finished_at) == (
        utc(2026, 5, 8, 10, 0, 1),
        utc(2026, 5, 8, 10, 0, 10),
    )
    for zone in ("Asia/Shanghai", "+08:00", "UTC+0800"):
        run = get_adapter("chenyu", {"timezone": zone}).parse_run(payload, run_id="wfrun_1")
        assert (run.started_at, run.finished_at) == (utc(2026, 5, 8, 10, 0, 1), utc(2026, 5, 8, 2, 0, 10))
    west = get_adapter("chenyu", {"timezone": "-05:30"}).parse_run(payload, run_id="wfrun_1")
    assert west.finished_at == utc(2026, 5, 8, 15, 30, 10)
    assert get_adapter("chenyu", {"timezone": ""}).timezone is timezone.utc
    with pytest.raises(InvalidInputError, match=r"timezone 'Mars/Base' is not a time zone") as raised:
        get_adapter("chenyu", {"timezone": "Mars/Base"})
    assert raised.value.platform == "chenyu"
    assert "timezone" in get_adapter("chenyu").extra_fields


def test_chenyu_engine_unavailable_is_transient_and_business_errors_are_not():
    adapter = get_adapter("chenyu")
    with pytest.raises(PlatformError) as engine:
        adapter.raise_for_error(200, fixture("chenyu/error_engine.json"), run_id="wfrun_1")
    assert (engine.value.is_transient, engine.value.http_status, engine.value.run_id) == (
        True,
        200,
        "wfrun_1",
    )
    body = fixture("chenyu/error_engine.json")
    del body["data"]["error"]["engine_code"]
    with pytest.raises(PlatformError) as by_status:
        adapter.raise_for_error(200, body)
    assert (by_status.value.code, by_status.value.is_transient) == ("503", True)
    with pytest.raises(PlatformError) as balance:
        adapter.raise_for_error(200, fixture("chenyu/error_insufficient_balance.json"))
    assert (balance.value.code, balance.value.is_transient) == ("1001", False)
    assert adapter.error_info({"code": "0", "data": {}}) is None
    assert adapter.error_info({"code": 7, "msg": "x", "data": {"error": "plain"}}) == ErrorInfo(
        code="7", message="x"
    )
    assert adapter.error_info({"code": 7, "data": [1]}) == ErrorInfo(code="7", message=None)


@pytest.mark.parametrize(
    ("extra", "sent"),
    [
        (True, True),
        ("true", True),
        ("YES", True),
        (1, True),
        (False, False),
        ("false", False),
        (None, False),
        ("0", False),
    ],
)
def test_chenyu_external_cost_opt_in_reaches_the_request(extra, sent):
    adapter = get_adapter("chenyu", {"accept_external_cost_risk": extra})
    request = adapter.submit_request({"n6_text": "x"}, workflow_id="wf_1", idempotency_key="k")
    expected = {"workflow_id": "wf_1", "inputs": {"n6_text": "x"}, "idempotency_key": "k"}
    assert request.json == (expected | {"accept_external_cost_risk": True} if sent else expected)
    assert (request.method, request.path) == ("POST", "/workflow/run/submit")


def test_chenyu_external_cost_opt_in_refuses_other_values():
    with pytest.raises(
        InvalidInputError, match="accept_external_cost_risk must be true or false, got 'maybe'"
    ):
        get_adapter("chenyu", {"accept_external_cost_risk": "maybe"}).submit_request(
            {}, workflow_id="wf_1", idempotency_key="k"
        )
    with pytest.raises(InvalidInputError, match="chenyu needs an idempotency_key"):
        get_adapter("chenyu").submit_request({}, workflow_id="wf_1", idempotency_key=None)


def test_chenyu_settlement_fallbacks_and_refusals():
    adapter = get_adapter("chenyu")
    run = adapter.parse_run(fixture("chenyu/execution_succeeded.json"), run_id="wfrun_314ff7d8b7a5beff1388")
    info = fixture("chenyu/info_succeeded.json")
    for key in ("total_cost", "compute_cost", "external_model_cost", "quote_currency"):
        del info["data"][key]
    settled = adapter.apply_settlement(run.model_copy(update={"outputs": {}}), info)
    assert settled.cost == RunCost(
        total=Decimal("0.0002878"), compute=Decimal("0.0002878"), external=Decimal(0), currency="CNY"
    )
    assert (settled.settlement.currency if settled.settlement else None) == "CNY"
    assert settled.outputs == info["data"]["outputs"]
    failed = fixture("chenyu/info_succeeded.json")
    failed["data"] |= {"error_code": "OOM", "error_message": "node 9 ran out of memory"}
    assert adapter.apply_settlement(run, failed).error == RunError(
        reason="node 9 ran out of memory", code="OOM"
    )
    failed["data"]["error_code"] = ""
    assert adapter.apply_settlement(run, failed).error == RunError(reason="node 9 ran out of memory")
    kept = run.model_copy(update={"error": RunError(reason="first")})
    assert adapter.apply_settlement(kept, failed).error == RunError(reason="first")
    assert adapter.apply_settlement(run, fixture("chenyu/info_succeeded.json")).outputs == run.outputs
    empty = fixture("chenyu/info_succeeded.json")
    empty["data"]["released_amount"] = ""
    with pytest.raises(InvalidResponseError, match=r"field 'data\.released_amount' cannot be read") as raised:
        adapter.apply_settlement(run, empty)
    assert (raised.value.field, raised.value.run_id, raised.value.platform) == (
        "data.released_amount",
        "wfrun_314ff7d8b7a5beff1388",
        "chenyu",
    )


def test_chenyu_submit_without_a_status_is_queued():
    payload = fixture("chenyu/submit_queued.json")
    del payload["data"]["run_status"]
    run = get_adapter("chenyu").parse_submit(payload)
    assert (run.status, run.platform_status, run.task_id) == (
        RunStatus.QUEUED,
        None,
        "task_1778147626528703038_eb84d292e0851c08",
    )


def test_deep_nesting_is_a_typed_error():
    deep: Any = {}
    for _ in range(3000):
        deep = {"status": deep}
    with pytest.raises(InvalidResponseError) as raised:
        get_adapter("dify").parse_run(deep, run_id="r")
    assert raised.value.platform == "dify"


# --- errors: what each HTTP answer stands for ---------------------------------------------------------
@pytest.mark.parametrize("status", [400, 409, 422])
def test_a_4xx_without_a_body_is_an_error_not_a_success(status):
    for platform in ("dify", "gptbots", "chenyu"):
        with pytest.raises(PlatformError) as raised:
            get_adapter(platform).raise_for_error(status, None, run_id="r1")
        assert (raised.value.http_status, raised.value.code, raised.value.platform, raised.value.run_id) == (
            status,
            None,
            platform,
            "r1",
        )
        assert str(raised.value) == f"[{platform} run r1] platform error {status}: HTTP {status}"
        assert not raised.value.is_transient
    get_adapter("dify").raise_for_error(399, None)
    get_adapter("dify").raise_for_error(200, {"id": "r"})


def test_a_401_without_a_platform_code_is_an_authentication_error():
    with pytest.raises(AuthenticationError) as raised:
        get_adapter("gptbots").raise_for_error(401, None, run_id="r1", fallback="HTTP 401, text/html body")
    assert (raised.value.platform, raised.value.run_id) == ("gptbots", "r1")
    assert str(raised.value) == (
        "[gptbots run r1] the API key was rejected (HTTP 401, text/html body); "
        "check the connection's password"
    )
    with pytest.raises(AuthenticationError):
        get_adapter("chenyu").raise_for_error(200, {"code": 403, "msg": "无权限访问", "data": None})


def test_rate_limits_carry_the_retry_after_and_where():
    with pytest.raises(RateLimitedError) as raised:
        get_adapter("dify").raise_for_error(429, None, run_id="r1", retry_after=12.5)
    assert (raised.value.retry_after, raised.value.platform, raised.value.run_id) == (12.5, "dify", "r1")
    assert str(raised.value) == "[dify run r1] rate limited: HTTP 429"
    with pytest.raises(RateLimitedError) as in_body:
        get_adapter("chenyu").raise_for_error(200, {"code": 429, "msg": "slow down", "data": None})
    assert in_body.value.retry_after is None
    assert str(in_body.value) == "[chenyu] rate limited: slow down"


def test_not_found_and_platform_errors_name_where():
    with pytest.raises(RunNotFoundError) as raised:
        get_adapter("gptbots").raise_for_error(404, None, run_id="r1")
    assert (str(raised.value), raised.value.platform, raised.value.run_id) == (
        "[gptbots run r1] not found: HTTP 404; check that the host has its version segment, like "
        "https://api-sg.gptbots.ai/v1",
        "gptbots",
        "r1",
    )
    with pytest.raises(PlatformError) as server:
        get_adapter("dify").raise_for_error(
            502, {"status": 502, "code": "bad_gateway", "message": "upstream"}
        )
    assert str(server.value) == "[dify] platform error bad_gateway (HTTP 502): upstream"
    assert (server.value.platform_message, server.value.is_transient) == ("upstream", True)
    with pytest.raises(PlatformError) as quota:
        get_adapter("dify").raise_for_error(429, fixture("dify/error_rate_limit_quota.json"), run_id="r1")
    assert str(quota.value).startswith("[dify run r1] quota exhausted (rate_limit_error): Workflow execution")
    assert (quota.value.http_status, quota.value.platform_message) == (
        429,
        fixture("dify/error_rate_limit_quota.json")["message"],
    )


def test_dify_stream_error_event_with_an_odd_status():
    event = fixture("dify/event_error.json") | {"status": "teapot"}
    with pytest.raises(PlatformError) as raised:
        get_adapter("dify").read_submit_event(event)
    assert raised.value.http_status == 500
    assert get_adapter("dify").read_submit_event(["not", "an", "event"]) is None


# --- the run model and URLs ----------------------------------------------------------------------------
def test_requests_and_urls():
    assert ApiRequest("GET", "/a", params={"x": "1 2"}).url("http://h/v1/") == "http://h/v1/a?x=1+2"
    assert ApiRequest("GET", "/a").url("http://h/v1") == "http://h/v1/a"
    adapter = get_adapter("chenyu", {"run_url_template": "https://c/{workflow_id}/{run_id}"})
    assert adapter.run_url("wfrun_1", base_url="x", workflow_id="wf_1") == "https://c/wf_1/wfrun_1"
    # A run without a workflow id leaves that part of the link empty, never the word "None".
    assert adapter.run_url("wfrun_1", base_url="x") == "https://c//wfrun_1"
    assert get_adapter("dify").run_url("r", base_url="http://h/v1") == "http://h/v1/workflows/run/r"
    # GPTBots queries a run by POST: its link carries that body as the query, so it names the run.
    gptbots = get_adapter("gptbots").run_url("wr_1", base_url="http://h/v1")
    assert gptbots == "http://h/v1/workflow/query/result?workflowRunId=wr_1"
    run = get_adapter("dify").parse_run(fixture("dify/run_detail_service_api.json"), run_id="r")
    linked = get_adapter("dify", {"run_url_template": "https://d/{run_id}?w={workflow_id}"}).with_run_url(
        run, base_url="http://h"
    )
    assert linked.run_url == f"https://d/{run.run_id}?w={run.workflow_id}"
    broken = get_adapter("dify", {"run_url_template": "https://d/{nope}"})
    assert broken.with_run_url(run, base_url="http://h") == run


def test_result_dict_of_a_failed_run_names_the_error_and_times():
    payload = fixture("dify/run_detail_service_api.json") | {"status": "failed", "error": "LLM timed out"}
    run = get_adapter("dify").parse_run(payload, run_id="r").model_copy(update={"run_url": "https://x"})
    result = json.loads(json.dumps(run.result_dict()))
    assert {
        key: result[key]
        for key in ("error", "settlement", "started_at", "finished_at", "platform_status", "run_url")
    } == {
        "error": {"reason": "LLM timed out", "detail": None, "code": None},
        "settlement": None,
        "started_at": "2024-01-16T12:20:29+00:00",
        "finished_at": "2024-01-16T12:20:30+00:00",
        "platform_status": "failed",
        "run_url": "https://x",
    }
    assert (RunStatus.SUCCEEDED.is_success, RunStatus.PARTIALLY_SUCCEEDED.is_success) == (True, False)
    assert [status.value for status in RunStatus if status.is_terminal] == [
        "succeeded",
        "partially_succeeded",
        "failed",
        "canceled",
    ]


def test_unknown_status_is_logged_once_per_run_and_adapter(caplog):
    adapter = get_adapter("dify")
    with caplog.at_level(logging.WARNING):
        for run_id in ("a", "a", "b"):
            adapter.map_status("brand-new", run_id=run_id)
        assert adapter.map_status(None) is RunStatus.UNKNOWN
    assert [record.getMessage() for record in caplog.records].count(
        "dify reported run status 'brand-new', which this provider does not know; treating it as not finished"
    ) == 2


# --- what the log and the messages say ------------------------------------------------------------------
KEPT = "it is left empty, and the answer is kept whole in the run's raw"


def test_an_unreadable_field_is_logged_once_per_run_with_its_name_and_value(caplog):
    adapter = get_adapter("chenyu")
    payload = fixture("chenyu/execution_succeeded.json")
    payload["data"]["total_cost"] = "n/a"
    payload["data"]["progress_percent"] = "x" * 100
    with caplog.at_level(logging.WARNING, logger="airflow_provider_wfrun.platforms.base"):
        adapter.parse_run(payload, run_id="wfrun_1")
        adapter.parse_run(payload, run_id="wfrun_1")
        get_adapter("gptbots").parse_submit(
            {"workflowRunId": "r", "status": "PENDING", "totalTokens": "many"}
        )
    assert [record.getMessage() for record in caplog.records] == [
        "chenyu run wfrun_1: field 'data.progress_percent' could not be read (got str '"
        + "x" * 79
        + "...); "
        + KEPT,
        "chenyu run wfrun_1: field 'data.total_cost' could not be read (got str 'n/a'); " + KEPT,
        "gptbots run (new): field 'totalTokens' could not be read (got str 'many'); " + KEPT,
    ]


def test_a_url_template_that_cannot_be_filled_is_logged_once(caplog):
    adapter = get_adapter("dify", {"run_url_template": "https://d/{nope}"})
    run = adapter.parse_run(fixture("dify/run_detail_service_api.json"), run_id="r")
    with caplog.at_level(logging.WARNING, logger="airflow_provider_wfrun.platforms.base"):
        adapter.with_run_url(run, base_url="http://h")
        adapter.with_run_url(run, base_url="http://h")
    assert [record.getMessage() for record in caplog.records] == [
        f"dify run {run.run_id}: no run_url, its template cannot be filled (KeyError('nope'))"
    ]


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        ({"message": "m", "msg": "s", "reason": "r", "error": "e", "detail": "d", "description": "x"}, "m"),
        ({"msg": "s", "reason": "r", "error": "e", "detail": "d", "description": "x"}, "s"),
        ({"reason": "r", "error": "e", "detail": "d", "description": "x"}, "r"),
        ({"error": "e", "detail": "d", "description": "x"}, "e"),
        ({"detail": "d", "description": "x"}, "d"),
        ({"description": "x"}, "x"),
        ({"message": "", "msg": None, "reason": {}, "error": [], "detail": "d"}, "d"),
        ({"error": {"message": "inner"}}, "inner"),
        ({"名": "值"}, '{"名": "值"}'),
        ([None, "a", {"reason": "b"}], "a; b"),
        (["x"] * 30, "; ".join(["x"] * 20)),
    ],
)
def test_messages_in_other_shapes(error, reason):
    payload = fixture("gptbots/query_result_succeed.json") | {"status": "FAILED", "message": error}
    assert get_adapter("gptbots").parse_run(payload, run_id="x").error == RunError(reason=reason)


def test_a_message_object_is_cut_and_deep_nesting_is_unreadable():
    long = {"k": "v" * 3000}
    payload = fixture("gptbots/query_result_succeed.json") | {"status": "FAILED", "message": long}
    reason = get_adapter("gptbots").parse_run(payload, run_id="x").error
    assert reason is not None
    assert reason.reason == json.dumps(long)[:2000]
    deep: Any = "bottom"
    for _ in range(6):
        deep = {"message": deep}
    nested = get_adapter("gptbots").parse_run(payload | {"message": deep}, run_id="x").error
    assert nested == RunError(reason="GPTBots reported FAILED and gives no reason; see the run's log there")
    for depth in range(5):
        shallow: Any = "bottom"
        for _ in range(depth):
            shallow = {"message": shallow}
        assert get_adapter("gptbots").parse_run(payload | {"message": shallow}, run_id="x").error == RunError(
            reason="bottom"
        )


def test_numbers_given_where_text_is_expected():
    payload = fixture("chenyu/execution_succeeded.json")
    payload["data"]["task_id"] = 12.50
    payload["data"]["workflow_id"] = 1e15
    payload["data"]["logs"] = [{"node_id": 9.0, "message": 0.1}]
    run = get_adapter("chenyu").parse_run(payload, run_id="wfrun_1")
    assert (run.task_id, run.workflow_id, run.logs[0].node_id, run.logs[0].message) == (
        "12.5",
        "1000000000000000",
        "9",
        "0.1",
    )
    payload["data"]["workflow_id"] = 1e13
    assert get_adapter("chenyu").parse_run(payload, run_id="wfrun_1").workflow_id == "10000000000000"
    payload["data"]["workflow_id"] = float("nan")
    assert get_adapter("chenyu").parse_run(payload, run_id="wfrun_1").workflow_id is None


def test_once_per_run_memory_is_bounded_and_forgets_the_oldest():
    once = _OncePerRun(limit=2)
    assert [once.first("a", "x"), once.first("a", "x"), once.first("a", "y"), once.first("b", "x")] == [
        True,
        False,
        True,
        True,
    ]
    assert once.first("a", "x") is True  # forgotten: the oldest of three
    assert once.first("b", "x") is False
    assert _OncePerRun()._limit == 10_000


def test_every_platform_names_its_calls():
    chenyu, dify, gptbots = get_adapter("chenyu"), get_adapter("dify"), get_adapter("gptbots")
    calls = {
        "chenyu get": chenyu.get_request("wfrun_1"),
        "chenyu probe": chenyu.probe_request(),
        "dify get": dify.get_request("r"),
        "dify probe": dify.probe_request(),
        "gptbots get": gptbots.get_request("r"),
        "gptbots probe": gptbots.probe_request(),
    }
    assert {name: (c.method, c.path, c.params, c.json, c.stream) for name, c in calls.items()} == {
        "chenyu get": ("GET", "/workflow/run/execution", {"run_order_id": "wfrun_1"}, None, False),
        "chenyu probe": ("GET", "/balance/info", None, None, False),
        "dify get": ("GET", "/workflows/run/r", None, None, False),
        "dify probe": ("GET", "/info", None, None, False),
        "gptbots get": ("POST", "/workflow/query/result", None, {"workflowRunId": "r"}, False),
        "gptbots probe": ("GET", "/api-key/verify", None, None, False),
    }
    with pytest.raises(InvalidInputError) as raised:
        dify.cancel_request("r-1", task_id="")
    assert str(raised.value) == (
        "[dify] Dify stops run r-1 by its task id, which only the submitting task knows; pass task_id "
        "(the operator and trigger keep it for you)"
    )
    with pytest.raises(InvalidInputError) as wrong:
        get_adapter("gptbots").submit_request({}, workflow_id="wf-1", idempotency_key=None)
    assert str(wrong.value) == (
        "[gptbots] GPTBots picks the workflow by the API key, so workflow_id='wf-1' cannot be honoured; "
        "leave it empty and use a connection holding that workflow's key"
    )


def test_run_ids_of_the_right_shape_pass():
    get_adapter("chenyu").check_run_id("wfrun_314ff7d8b7a5beff1388")
    get_adapter("dify").check_run_id("fb47b2e6-5e43-4f90-be01-d5c5a088d156")
    get_adapter("gptbots").check_run_id("anything at all")
    with pytest.raises(InvalidInputError) as raised:
        get_adapter("chenyu").check_run_id("wfrun_314ff7d8b7a5beff1388 ")
    assert str(raised.value) == (
        "[chenyu] 'wfrun_314ff7d8b7a5beff1388 ' is not a chenyu.cn run id (they look like "
        "wfrun_314ff7d8b7a5beff1388); is the run from another platform's connection?"
    )


# --- details that matter: each test below once let a wrong program pass -------------------------------
def test_result_dict_of_a_run_without_times_or_error():
    run = get_adapter("gptbots").parse_submit(fixture("gptbots/invoke_async_pending.json"))
    result = run.result_dict()
    assert (result["started_at"], result["finished_at"], result["error"], result["run_url"]) == (
        None,
        None,
        None,
        None,
    )
    assert result["platform_status"] == "PENDING"


def test_a_duration_needs_both_times_and_is_rounded_to_milliseconds():
    payload = fixture("dify/run_detail_service_api.json") | {"elapsed_time": None, "finished_at": None}
    assert get_adapter("dify").parse_run(payload, run_id="r").duration_seconds is None
    payload |= {"created_at": None, "finished_at": 1705407630}
    assert get_adapter("dify").parse_run(payload, run_id="r").duration_seconds is None
    payload |= {"created_at": 1705407629.12345}
    assert get_adapter("dify").parse_run(payload, run_id="r").duration_seconds == 0.877


def test_chenyu_submit_answer_carries_its_workflow_and_names_bad_fields():
    run = get_adapter("chenyu").parse_submit(fixture("chenyu/submit_queued.json"))
    assert (run.workflow_id, run.task_id) == (
        "wf_861ef31e94dcfb10e6e7",
        "task_1778147626528703038_eb84d292e0851c08",
    )
    broken = fixture("chenyu/submit_queued.json")
    del broken["data"]["run_order_id"]
    with pytest.raises(InvalidResponseError) as raised:
        get_adapter("chenyu").parse_submit(broken)
    assert raised.value.field == "data.run_order_id"
    with pytest.raises(InvalidInputError) as no_workflow:
        get_adapter("chenyu").submit_request({}, workflow_id="", idempotency_key="k")
    assert (
        str(no_workflow.value)
        == "[chenyu] chenyu needs workflow_id (e.g. 'wf_861ef31e94dcfb10e6e7') to submit a run"
    )
    with pytest.raises(InvalidInputError) as no_key:
        get_adapter("chenyu").submit_request({}, workflow_id="wf_1", idempotency_key="")
    assert str(no_key.value) == "[chenyu] chenyu needs an idempotency_key to submit a run"


@pytest.mark.parametrize("word", ["no", "NONE", " False "])
def test_chenyu_external_cost_refusals_in_words(word):
    request = get_adapter("chenyu", {"accept_external_cost_risk": word}).submit_request(
        {}, workflow_id="wf_1", idempotency_key="k"
    )
    assert request.json is not None
    assert "accept_external_cost_risk" not in request.json


def test_chenyu_settlement_keeps_the_runs_outputs_and_takes_the_billing_currency():
    adapter = get_adapter("chenyu")
    run = adapter.parse_run(fixture("chenyu/execution_succeeded.json"), run_id="wfrun_314ff7d8b7a5beff1388")
    info = fixture("chenyu/info_succeeded.json")
    info["data"] |= {"outputs": {"other": "value"}, "quote_currency": "USD"}
    settled = adapter.apply_settlement(run, info)
    assert settled.outputs == run.outputs
    assert (settled.cost.currency, settled.settlement.currency if settled.settlement else None) == (
        "USD",
        "USD",
    )
    with pytest.raises(InvalidResponseError) as raised:
        adapter.apply_settlement(run, ["not an envelope"])
    assert (raised.value.run_id, raised.value.platform) == ("wfrun_314ff7d8b7a5beff1388", "chenyu")


@pytest.mark.parametrize("platform", ["chenyu", "dify", "gptbots"])
def test_error_info_of_text_that_mentions_code_and_message(platform):
    assert get_adapter(platform).error_info("code and message") is None


def test_dify_started_event_carries_the_workflow_and_the_stop_is_a_post():
    run = get_adapter("dify").read_submit_event(fixture("dify/event_workflow_started.json"))
    assert run is not None
    assert (run.workflow_id, run.platform_status, run.started_at) == (
        "7c3e33d4-2a8b-4e5f-9b1a-d3c6e8f12345",
        "running",
        utc(2024, 1, 16, 12, 20, 29),
    )
    assert run.raw == fixture("dify/event_workflow_started.json")
    request = get_adapter("dify", {"user": "bot"}).cancel_request("r", task_id="t")
    assert (request.method, request.json) == ("POST", {"user": "bot"})


def test_a_run_url_without_a_template_is_the_status_address():
    run = get_adapter("chenyu").parse_run(fixture("chenyu/execution_succeeded.json"), run_id="wfrun_1")
    linked = get_adapter("chenyu").with_run_url(run, base_url="http://h/api/")
    assert linked.run_url == "http://h/api/workflow/run/execution?run_order_id=wfrun_1"


def test_small_numbers_as_text_are_written_out():
    payload = fixture("gptbots/query_result_succeed.json") | {"status": "FAILED", "message": 1e-7}
    assert get_adapter("gptbots").parse_run(payload, run_id="x").error == RunError(reason="0.0000001")


@pytest.mark.parametrize(
    ("platform", "name", "path", "run_ids"),
    [
        ("dify", "dify/run_detail_service_api.json", ("id",), ("run-a", "run-b")),
        ("gptbots", "gptbots/query_result_succeed.json", ("workflowRunId",), ("run-a", "run-b")),
        ("chenyu", "chenyu/execution_succeeded.json", (), ("wfrun_a", "wfrun_b")),
        ("chenyu", "chenyu/submit_queued.json", ("data", "run_order_id"), ("wfrun_a", "wfrun_b")),
    ],
)
def test_an_unknown_status_is_logged_once_for_each_run(caplog, platform, name, path, run_ids):
    adapter = get_adapter(platform)
    with caplog.at_level(logging.WARNING):
        for run_id in (*run_ids, *run_ids):
            payload = fixture(name)
            body = payload["data"] if platform == "chenyu" else payload
            body["run_status" if "run_status" in body else "status"] = "novel"
            if path:
                target = payload
                for key in path[:-1]:
                    target = target[key]
                target[path[-1]] = run_id
            if "submit" in name:
                adapter.parse_submit(payload)
            else:
                adapter.parse_run(payload, run_id=run_id)
    assert sum("'novel'" in record.getMessage() for record in caplog.records) == 2


def test_typed_errors_name_the_run_they_were_reading():
    with pytest.raises(InvalidResponseError) as chenyu:
        get_adapter("chenyu").parse_run(["not an envelope"], run_id="wfrun_1")
    assert (chenyu.value.run_id, chenyu.value.field) == ("wfrun_1", "<body>")
    with pytest.raises(InvalidResponseError) as gptbots:
        get_adapter("gptbots").parse_run({"workflowRunId": "x"}, run_id="x")
    assert (gptbots.value.run_id, gptbots.value.field) == ("x", "status")
    with pytest.raises(InvalidResponseError) as dify:
        get_adapter("dify").parse_run({"id": "r9"}, run_id="r9")
    assert (dify.value.run_id, dify.value.field) == ("r9", "status")
    assert str(dify.value).startswith("[dify run r9] unexpected response: field 'status'")
    with pytest.raises(InvalidResponseError) as submitted:
        get_adapter("gptbots").parse_submit({"workflowRunId": "x"})
    assert submitted.value.run_id is None


@pytest.mark.parametrize(
    ("platform", "status", "reason"),
    [
        ("chenyu", "failed", "chenyu reported the run failed without a reason"),
        ("chenyu", "canceled", "the run was canceled"),
        ("chenyu", "succeeded", None),
        ("dify", "failed", "Dify reported the run failed without a message"),
        ("dify", "stopped", "the run was stopped"),
        ("dify", "running", None),
    ],
)
def test_a_run_that_did_not_succeed_always_says_why(platform, status, reason):
    if platform == "chenyu":
        payload = fixture("chenyu/execution_succeeded.json")
        payload["data"] |= {"status": status, "error": None}
        run = get_adapter("chenyu").parse_run(payload, run_id="wfrun_1")
    else:
        payload = fixture("dify/run_detail_service_api.json") | {"status": status, "error": None}
        run = get_adapter("dify").parse_run(payload, run_id="r")
    assert run.error == (None if reason is None else RunError(reason=reason))


def test_a_log_line_without_text_and_a_settlement_without_costs():
    adapter = get_adapter("chenyu")
    payload = fixture("chenyu/execution_succeeded.json")
    payload["data"] |= {"logs": [{"level": "info"}], "total_cost": None, "compute_cost": None}
    run = adapter.parse_run(payload, run_id="wfrun_314ff7d8b7a5beff1388")
    assert run.logs == (RunLogEntry(level="info", message=""),)
    info = fixture("chenyu/info_succeeded.json")
    for key in ("total_cost", "compute_cost"):
        del info["data"][key]
    settled = adapter.apply_settlement(run, info)
    assert (settled.cost.total, settled.cost.compute) == (None, None)


def test_raw_is_the_answer_as_received():
    for platform, name in (
        ("gptbots", "gptbots/invoke_async_pending.json"),
        ("chenyu", "chenyu/submit_queued.json"),
    ):
        payload = fixture(name)
        assert get_adapter(platform).parse_submit(payload).raw == payload
    payload = fixture("gptbots/query_result_succeed.json")
    assert get_adapter("gptbots").parse_run(payload, run_id="x").raw == payload


def test_amount_text_up_to_64_characters():
    payload = fixture("chenyu/execution_succeeded.json")
    payload["data"]["total_cost"] = "0" * 61 + "1.5"
    assert get_adapter("chenyu").parse_run(payload, run_id="wfrun_1").cost.total == Decimal("1.5")
    payload["data"]["total_cost"] = "0" * 62 + "1.5"
    assert get_adapter("chenyu").parse_run(payload, run_id="wfrun_1").cost.total is None


def test_dropped_log_lines_are_logged(caplog):
    payload = fixture("chenyu/execution_succeeded.json")
    payload["data"]["logs"] = ["text", {"message": "kept"}]
    with caplog.at_level(logging.WARNING, logger="airflow_provider_wfrun.platforms.base"):
        get_adapter("chenyu").parse_run(payload, run_id="wfrun_1")
    assert [record.getMessage() for record in caplog.records] == [
        "chenyu run wfrun_1: field 'data.<list item>' could not be read (got list ['text']); " + KEPT
    ]


def test_a_chenyu_settlement_about_another_run_is_refused():
    adapter = get_adapter("chenyu")
    run = adapter.parse_run(fixture("chenyu/execution_succeeded.json"), run_id="wfrun_1")
    with pytest.raises(
        InvalidResponseError, match="answered about run 'wfrun_314ff7d8b7a5beff1388'"
    ) as caught:
        adapter.apply_settlement(run, fixture("chenyu/info_succeeded.json"))
    assert caught.value.field == "data.run_order_id"


# --- what a platform without a feature says --------------------------------------------------------------
WITHOUT_FORMS = [name for name, adapter in adapter_classes().items() if not adapter.supports_human_input]


@pytest.mark.parametrize("platform", WITHOUT_FORMS)
def test_a_platform_without_forms_says_so_for_every_form_call(platform):
    adapter = get_adapter(platform)
    message = f"[{platform}] {adapter.display_name} runs do not pause for a form"
    calls = (
        lambda: adapter.events_request("r"),
        lambda: adapter.follow_form({"event": "human_input_required"}, None, run_id="r"),
        lambda: adapter.answer_request("tok", action="approve", inputs={}),
    )
    for call in calls:
        with pytest.raises(NotSupportedError) as caught:
            call()
        assert (str(caught.value), caught.value.platform) == (message, platform)


def test_a_platform_without_uploads_says_so_and_what_to_do_instead():
    adapter = get_adapter("gptbots")
    with pytest.raises(NotSupportedError) as limit:
        adapter.upload_limit("cat.png", "image/png")
    assert str(limit.value) == (
        "[gptbots] GPTBots documents no API to upload input files, so 'cat.png' cannot be passed as a file; "
        "pass a public URL in inputs instead, or upload it yourself"
    )
    for call in (
        lambda: adapter.upload_request("cat.png", b"x", "image/png"),
        lambda: adapter.parse_upload({}, media_type="image/png"),
    ):
        with pytest.raises(NotSupportedError) as caught:
            call()
        assert (str(caught.value), caught.value.platform) == (
            "[gptbots] GPTBots takes no file uploads",
            "gptbots",
        )


def test_the_cancel_calls_of_one_call_platforms_pass_the_run_and_task():
    with pytest.raises(NotSupportedError) as caught:
        get_adapter("gptbots").cancel_requests("wr_1", task_id=None)
    assert (
        str(caught.value)
        == "[gptbots run wr_1] GPTBots has no API to cancel a workflow run; it will run to completion"
    )
    [stop] = get_adapter("dify").cancel_requests("r", task_id="t-9")
    assert (stop.method, stop.path) == ("POST", "/workflows/tasks/t-9/stop")


def test_a_submit_answer_is_read_alone_where_the_request_adds_nothing():
    adapter = get_adapter("gptbots")
    request = adapter.submit_request({}, workflow_id=None, idempotency_key=None)
    payload = fixture("gptbots/invoke_async_pending.json")
    assert adapter.submitted(payload, request) == adapter.parse_submit(payload)


# --- chenyu uploads and errors --------------------------------------------------------------------------
def test_chenyu_upload_request_is_a_post_of_the_file():
    adapter = get_adapter("chenyu")
    request = adapter.upload_request("clip.mp4", b"\x00\x01", "video/mp4")
    assert (request.method, request.path, request.json) == ("POST", "/assets", None)
    assert request.form == {"media_type": "video", "purpose": "temp_input"}
    assert request.files == {"file": ("clip.mp4", b"\x00\x01", "video/mp4")}
    with pytest.raises(InvalidInputError) as untyped:
        adapter.upload_limit("clip", None)
    assert str(untyped.value).startswith(
        "[chenyu] the type of input file 'clip' cannot be told from its name"
    )


def test_chenyu_upload_answer_without_an_asset_names_the_field():
    with pytest.raises(InvalidResponseError) as caught:
        get_adapter("chenyu").parse_upload({"code": 0, "msg": "ok", "data": {}}, media_type="image/png")
    assert caught.value.field == "data.asset_uri"


def test_chenyu_settlement_about_another_run_names_both():
    adapter = get_adapter("chenyu")
    run = adapter.parse_run(fixture("chenyu/execution_succeeded.json"), run_id="wfrun_1")
    with pytest.raises(InvalidResponseError) as caught:
        adapter.apply_settlement(run, fixture("chenyu/info_succeeded.json"))
    assert str(caught.value) == (
        "[chenyu run wfrun_1] asked for the settlement of run 'wfrun_1', the platform answered about run "
        "'wfrun_314ff7d8b7a5beff1388'; the answer was not used"
    )


def test_chenyu_failed_run_with_an_error_but_no_reason_says_so():
    payload = fixture("chenyu/execution_succeeded.json")
    payload["data"] |= {"status": "failed", "error": {"detail": "stack trace", "engine_code": "E1"}}
    run = get_adapter("chenyu").parse_run(payload, run_id="wfrun_1")
    assert run.error == RunError(reason="chenyu reported the run failed without a reason")


def test_an_error_code_that_is_the_http_status_is_not_repeated():
    with pytest.raises(PlatformError) as caught:
        get_adapter("chenyu").raise_for_error(500, {"code": 500, "msg": "internal", "data": None})
    assert str(caught.value) == "[chenyu] platform error 500: internal"


def test_a_404_with_the_platforms_error_body_gives_no_host_hint():
    with pytest.raises(RunNotFoundError) as caught:
        get_adapter("dify").raise_for_error(404, fixture("dify/error_not_found.json"), run_id="r1")
    assert str(caught.value) == "[dify run r1] not found: Workflow run not found."


def test_an_unreadable_code_is_named_by_its_type():
    assert get_adapter("gptbots").error_info({"code": float("nan"), "message": "m"}) == ErrorInfo(
        code="<unreadable float>", message="m"
    )


def test_a_bad_timezone_extra_says_what_is_accepted():
    with pytest.raises(InvalidInputError) as caught:
        get_adapter("dify", {"timezone": "Mars/Base"})
    assert str(caught.value) == (
        "[dify] connection extra timezone 'Mars/Base' is not a time zone; use an IANA name such as "
        "'Asia/Shanghai' or 'UTC', or an offset such as '+08:00'"
    )


# --- tolerant reading: the bounds -------------------------------------------------------------------------
def _failed_gptbots_run(message: Any) -> Any:
    payload = fixture("gptbots/query_result_succeed.json") | {"status": "FAILED", "message": message}
    return get_adapter("gptbots").parse_run(payload, run_id="x").error


NO_REASON = RunError(reason="GPTBots reported FAILED and gives no reason; see the run's log there")


def test_a_message_nested_five_deep_is_unreadable_in_objects_and_lists():
    in_objects: Any = "bottom"
    in_lists: Any = "bottom"
    for _ in range(4):
        in_objects, in_lists = {"message": in_objects}, [in_lists]
    assert (_failed_gptbots_run(in_objects), _failed_gptbots_run(in_lists)) == (
        RunError(reason="bottom"),
        RunError(reason="bottom"),
    )
    assert (_failed_gptbots_run({"message": in_objects}), _failed_gptbots_run([in_lists])) == (
        NO_REASON,
        NO_REASON,
    )


def test_values_of_an_unreadable_field_are_shown_cut_at_80_characters(caplog):
    adapter = get_adapter("gptbots")
    payload = fixture("gptbots/invoke_async_pending.json")
    with caplog.at_level(logging.WARNING, logger="airflow_provider_wfrun.platforms.base"):
        for run_id, text in (("a", "x" * 78), ("b", "x" * 79)):
            adapter.parse_run(payload | {"workflowRunId": run_id, "totalTokens": text}, run_id=run_id)
    shown = [record.getMessage().partition("(got ")[2].partition(");")[0] for record in caplog.records]
    assert shown == [f"str '{'x' * 78}'", f"str '{'x' * 79}..."]  # 81 characters: cut at 80


def test_a_value_too_deep_to_show_is_logged_as_such(caplog):
    deep: Any = {}
    for _ in range(5000):
        deep = {"message": deep}
    payload = fixture("gptbots/query_result_succeed.json") | {"status": "FAILED", "message": deep}
    with caplog.at_level(logging.WARNING, logger="airflow_provider_wfrun.platforms.base"):
        run = get_adapter("gptbots").parse_run(payload, run_id="x")
    assert run.error == NO_REASON
    assert [record.getMessage() for record in caplog.records] == [
        f"gptbots run x: field 'message' could not be read (got dict <nested too deeply to show>); {KEPT}"
    ]


def test_each_unreadable_field_and_unknown_word_is_logged_once_for_each_run(caplog):
    adapter = get_adapter("gptbots")
    payload = fixture("gptbots/invoke_async_pending.json") | {"totalTokens": "many"}
    with caplog.at_level(logging.WARNING):
        for run_id in ("a", "b"):
            adapter.parse_run(payload | {"workflowRunId": run_id}, run_id=run_id)
        for word in ("NEW_1", "NEW_2"):
            adapter.map_status(word, run_id="a")
    messages = [record.getMessage() for record in caplog.records]
    assert [message.partition(":")[0] for message in messages if "totalTokens" in message] == [
        "gptbots run a",
        "gptbots run b",
    ]
    assert sum("'NEW_1'" in message or "'NEW_2'" in message for message in messages) == 2


def test_a_run_url_that_cannot_be_filled_is_logged_for_each_run(caplog):
    adapter = get_adapter("dify", {"run_url_template": "https://d/{nope}"})
    run = adapter.parse_run(fixture("dify/run_detail_service_api.json"), run_id="r")
    with caplog.at_level(logging.WARNING, logger="airflow_provider_wfrun.platforms.base"):
        for run_id in ("a", "b"):
            adapter.with_run_url(run.model_copy(update={"run_id": run_id}), base_url="http://h")
    assert len(caplog.records) == 2


def test_dropped_list_items_are_shown_three_at_most(caplog):
    payload = fixture("chenyu/execution_succeeded.json")
    payload["data"]["logs"] = [1, 2, 3, 4, {"message": "kept"}]
    with caplog.at_level(logging.WARNING, logger="airflow_provider_wfrun.platforms.base"):
        get_adapter("chenyu").parse_run(payload, run_id="wfrun_1")
    assert "(got list [1, 2, 3]);" in caplog.text


def test_lowercase_z_times_are_utc_and_times_are_utc_whatever_the_machines_zone(monkeypatch):
    import time

    payload = fixture("chenyu/execution_succeeded.json")
    payload["data"] |= {"started_at": "2026-05-08T10:00:01z", "terminal_at": "2026-05-08T18:00:10+08:00"}
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        run = get_adapter("chenyu").parse_run(payload, run_id="wfrun_1")
    finally:
        monkeypatch.undo()
        time.tzset()
    assert (run.started_at, run.finished_at) == (utc(2026, 5, 8, 10, 0, 1), utc(2026, 5, 8, 10, 0, 10))
    result = run.result_dict()
    assert (result["started_at"], result["finished_at"]) == (
        "2026-05-08T10:00:01+00:00",
        "2026-05-08T10:00:10+00:00",
    )


# --- output files: which values are files, and their names ----------------------------------------------
def test_url_outputs_are_files_only_when_they_are_links_with_a_name():
    from airflow_provider_wfrun.platforms.base import url_files

    outputs = {
        "plain": "http://h/a/cat.png",
        "slash": "https://h/a/report.pdf/",
        "escaped": "https://h/a%5Cb.png",
        "upper": "https://h/files/SHEET.XLSX",
        "spaced": "https://h/a b.png",
        "ftp": "ftp://h/a.png",
        "bare": "https://h/",
    }
    assert [(f.output_key, f.name, f.media_type) for f in url_files(outputs)] == [
        ("plain", "cat.png", "image/png"),
        ("slash", "report.pdf", "application/pdf"),
        ("escaped", "a_b.png", "image/png"),
        ("upper", "SHEET.XLSX", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    ]
    assert url_files({"pict": "https://h/old.pict"})[0].media_type == "image/pict"


@pytest.mark.parametrize("container", ["dict", "list"])
def test_output_file_search_reaches_exactly_eight_levels(container):
    from airflow_provider_wfrun.platforms.base import MAX_OUTPUT_DEPTH, url_files

    def nested(levels: int) -> Any:
        value: Any = f"https://h/{levels}.png"
        for _ in range(levels - 1):
            value = {"k": value} if container == "dict" else [value]
        return value

    found = url_files({"a": nested(MAX_OUTPUT_DEPTH), "b": nested(MAX_OUTPUT_DEPTH + 1)})
    assert [f.name for f in found] == [f"{MAX_OUTPUT_DEPTH}.png"]


def test_output_file_search_looks_at_ten_thousand_values_at_most():
    from airflow_provider_wfrun.platforms.base import url_files

    for fillers, found in ((9998, ["f.png"]), (9999, [])):
        outputs = {"a": ["x"] * fillers, "b": "https://h/f.png"}
        assert [f.name for f in url_files(outputs)] == found


def test_urls_keep_their_base_path_whatever_its_last_letter():
    assert ApiRequest("GET", "/a").url("http://h/APIX/") == "http://h/APIX/a"
    adapter = get_adapter("comfyui")
    run = adapter.parse_run(
        fixture("comfyui/history_success.json"), run_id="5b4e3c8a-2f6d-4b8e-9a71-3c2d1e0f9a88"
    )
    urls = [f.url for f in adapter.output_files(run, base_url="http://h/BOX")]
    assert urls[0] == "http://h/BOX/view?filename=ComfyUI_00007_.png&subfolder=&type=output"
