"""Every vendor example payload, normalized exactly: the adapters are pure, so no server is needed."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_wfrun.exceptions import (
    AuthenticationError,
    InvalidInputError,
    InvalidResponseError,
    NotSupportedError,
    PlatformError,
    RateLimitedError,
    RunNotFoundError,
)
from airflow_provider_wfrun.models import RunStatus
from airflow_provider_wfrun.platforms import adapter_classes, get_adapter

FIXTURES = Path(__file__).parent.parent / "fixtures"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def normalized(run: Any) -> dict[str, Any]:
    return run.model_dump(exclude={"raw"})


EMPTY_COST = {"total": None, "compute": None, "external": None, "currency": None, "tokens": None}


def test_registry_finds_every_platform_module():
    assert list(adapter_classes()) == ["chenyu", "dify", "gptbots"]


def test_unknown_connection_type_names_the_known_ones():
    with pytest.raises(InvalidInputError, match="use one of: chenyu, dify, gptbots"):
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
        {"user": "pipeline-7"},
        True,
    )
    answer = adapter.answer_request("tok-2", action="approve", inputs={"feedback": "ok"})
    assert (answer.method, answer.path) == ("POST", "/form/human_input/tok-2")
    assert answer.json == {"inputs": {"feedback": "ok"}, "action": "approve", "user": "pipeline-7"}


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
