"""The Coze adapter on answers shaped after the coze-py SDK (tests/fixtures/coze)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_wfrun.exceptions import (
    AuthenticationError,
    InvalidInputError,
    NotSupportedError,
    PlatformError,
    RateLimitedError,
    RunNotFoundError,
)
from airflow_provider_wfrun.models import RunStatus
from airflow_provider_wfrun.platforms import get_adapter

FIXTURES = Path(__file__).parent.parent / "fixtures" / "coze"
WORKFLOW_ID = "7484523878849822754"
EXECUTE_ID = "7485110364436357130"
RUN_ID = f"{WORKFLOW_ID}:{EXECUTE_ID}"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def adapter():
    return get_adapter("coze")


def test_submit_is_asynchronous_and_the_run_id_carries_the_workflow_id(adapter):
    request = adapter.submit_request({"topic": "news"}, workflow_id=WORKFLOW_ID, idempotency_key="k")
    assert (request.method, request.path) == ("POST", "/v1/workflow/run")
    assert request.json == {"workflow_id": WORKFLOW_ID, "parameters": {"topic": "news"}, "is_async": True}
    run = adapter.submitted(fixture("run_async.json"), request)
    assert (run.run_id, run.workflow_id, run.status) == (RUN_ID, WORKFLOW_ID, RunStatus.RUNNING)
    assert run.run_url.startswith("https://www.coze.cn/work_flow?execute_id=7485110364436357130")
    assert adapter.get_request(run.run_id).path == f"/v1/workflows/{WORKFLOW_ID}/run_histories/{EXECUTE_ID}"


def test_workflow_id_is_required(adapter):
    with pytest.raises(InvalidInputError, match="Coze needs workflow_id"):
        adapter.submit_request({}, workflow_id=None, idempotency_key=None)


def test_a_finished_run_has_both_outputs_decoded_tokens_and_its_debug_link(adapter):
    run = adapter.parse_run(fixture("history_success.json"), run_id=RUN_ID)
    assert run.status is RunStatus.SUCCEEDED
    assert run.outputs == {"title": "今日新闻", "items": ["a", "b"]}
    assert run.cost.tokens == 1546
    assert run.cost.total is None
    assert run.started_at == datetime(2025, 3, 25, 7, 53, 22, tzinfo=timezone.utc)
    assert run.duration_seconds == 12
    assert run.run_url.endswith("workflow_id=7484523878849822754")
    assert adapter.with_run_url(run, base_url="https://api.coze.cn").run_url == run.run_url


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ('{"Output":"plain text answer"}', {"Output": "plain text answer"}),
        ('{"Output":"{\\"a\\": 1}","extra":2}', {"a": 1, "extra": 2}),
        ('{"Output":"{broken"}', {"Output": "{broken"}),
        ("not json", {"value": "not json"}),
        ("", {}),
    ],
)
def test_output_is_decoded_tolerantly(adapter, output, expected):
    payload = fixture("history_success.json")
    payload["data"][0]["output"] = output
    assert adapter.parse_run(payload, run_id=RUN_ID).outputs == expected


def test_a_running_run_has_no_outputs_yet_and_no_end(adapter):
    run = adapter.parse_run(fixture("history_running.json"), run_id=RUN_ID)
    assert (run.status, run.finished_at, run.outputs) == (RunStatus.RUNNING, None, {})


def test_a_failed_run_keeps_its_error_code_as_text(adapter):
    run = adapter.parse_run(fixture("history_fail.json"), run_id=RUN_ID)
    assert run.status is RunStatus.FAILED
    assert (run.error.reason, run.error.code) == ("Node LLM: the model request timed out", "720701013")


@pytest.mark.parametrize(
    ("name", "status", "error"),
    [
        ("error_auth.json", 401, AuthenticationError),
        ("error_auth.json", 200, AuthenticationError),
        ("error_not_found.json", 200, RunNotFoundError),
        ("error_rate_limit.json", 200, RateLimitedError),
        ("error_parameter.json", 400, PlatformError),
    ],
)
def test_any_non_zero_code_is_an_error_whatever_the_http_status(adapter, name, status, error):
    with pytest.raises(error):
        adapter.raise_for_error(status, fixture(name), run_id=RUN_ID)
    adapter.raise_for_error(200, fixture("history_success.json"))  # code 0: no error


def test_a_run_id_without_its_workflow_is_refused_and_cancel_is_not_supported(adapter):
    with pytest.raises(InvalidInputError, match="is not a Coze run id"):
        adapter.check_run_id(EXECUTE_ID)
    with pytest.raises(NotSupportedError, match="Coze has no API to cancel"):
        adapter.cancel_requests(RUN_ID, task_id=None)


def test_an_answer_about_another_execution_is_not_used(adapter):
    payload = fixture("history_success.json")
    payload["data"][0]["execute_id"] = "1"
    with pytest.raises(Exception, match="answered about '1'"):
        adapter.parse_run(payload, run_id=RUN_ID)
