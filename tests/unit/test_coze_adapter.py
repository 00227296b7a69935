"""The Coze adapter on answers shaped after the coze-py SDK (tests/fixtures/coze)."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
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
from airflow_provider_wfrun.platforms import get_adapter
from airflow_provider_wfrun.platforms.base import ErrorInfo

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


# --- the whole run, field by field ---------------------------------------------------------------------
def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


#: Fields of a run this platform does not report (no task handle, billing, progress, queue or log).
UNREPORTED = ("task_id", "settlement", "progress", "queue_position", "eta_seconds", "logs")
NO_COST = {"total": None, "compute": None, "external": None, "currency": None, "tokens": None}
DEBUG_URL = (
    "https://www.coze.cn/work_flow?execute_id=7485110364436357130&space_id=7345427862138912772"
    "&workflow_id=7484523878849822754"
)


def test_a_finished_run_normalized_exactly(adapter):
    payload = fixture("history_success.json")
    run = adapter.parse_run(payload, run_id=RUN_ID)
    assert (run.task_id, run.settlement, run.progress, run.queue_position, run.eta_seconds, run.logs) == (
        *[None] * 5,
        (),
    )
    assert run.model_dump(exclude={"raw", *UNREPORTED}) == {
        "platform": "coze",
        "run_id": RUN_ID,
        "workflow_id": WORKFLOW_ID,
        "status": RunStatus.SUCCEEDED,
        "platform_status": "Success",
        "outputs": {"title": "今日新闻", "items": ["a", "b"]},
        "cost": {**NO_COST, "tokens": 1546},
        "error": None,
        "created_at": utc(2025, 3, 25, 7, 53, 22),
        "started_at": utc(2025, 3, 25, 7, 53, 22),
        "finished_at": utc(2025, 3, 25, 7, 53, 34),
        "duration_seconds": 12.0,
        "run_url": DEBUG_URL,
        "is_terminal": True,
    }
    assert run.raw == payload


def test_a_failed_run_normalized_exactly(adapter):
    run = adapter.parse_run(fixture("history_fail.json"), run_id=RUN_ID)
    assert run.model_dump(
        include={"status", "platform_status", "outputs", "cost", "error", "finished_at"}
    ) == {
        "status": RunStatus.FAILED,
        "platform_status": "Fail",
        "outputs": {},
        "cost": {**NO_COST, "tokens": 10},
        "error": {"reason": "Node LLM: the model request timed out", "detail": None, "code": "720701013"},
        "finished_at": utc(2025, 3, 25, 7, 53, 25),
    }
    assert run.duration_seconds == 3.0


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"error_code": "0"}, {"reason": "Node LLM: the model request timed out", "code": None}),
        ({"error_code": ""}, {"reason": "Node LLM: the model request timed out", "code": None}),
        ({"error_code": None}, {"reason": "Node LLM: the model request timed out", "code": None}),
        ({"error_code": 720701013}, {"reason": "Node LLM: the model request timed out", "code": "720701013"}),
        (
            {"error_message": ""},
            {"reason": "Coze reported the run failed without a message", "code": "720701013"},
        ),
        (
            {"error_message": None},
            {"reason": "Coze reported the run failed without a message", "code": "720701013"},
        ),
    ],
)
def test_a_failed_run_always_says_why_and_a_zero_code_is_no_code(adapter, changes, error):
    payload = fixture("history_fail.json")
    payload["data"][0] |= changes
    run = adapter.parse_run(payload, run_id=RUN_ID)
    assert run.error is not None
    assert (run.error.reason, run.error.code) == (error["reason"], error["code"])


def test_a_running_run_has_its_start_but_no_outputs_end_or_error_even_if_output_is_there(adapter):
    payload = fixture("history_running.json")
    payload["data"][0] |= {"output": '{"Output": "partial"}', "error_message": "not yet"}
    run = adapter.parse_run(payload, run_id=RUN_ID)
    assert (run.status, run.platform_status, run.outputs, run.error) == (
        RunStatus.RUNNING,
        "Running",
        {},
        None,
    )
    assert (run.started_at, run.created_at, run.finished_at, run.duration_seconds) == (
        utc(2025, 3, 25, 7, 53, 22),
        utc(2025, 3, 25, 7, 53, 22),
        None,
        None,
    )
    assert run.workflow_id == WORKFLOW_ID


def test_a_run_history_given_as_one_object_or_without_execute_id_is_read(adapter):
    payload = fixture("history_success.json")
    payload["data"] = payload["data"][0]
    assert adapter.parse_run(payload, run_id=RUN_ID).status is RunStatus.SUCCEEDED
    del payload["data"]["execute_id"]
    assert adapter.parse_run(payload, run_id=RUN_ID).run_id == RUN_ID


@pytest.mark.parametrize("data", [[], None, "missing"])
def test_an_empty_history_is_not_found_naming_the_execution_and_workflow(adapter, data):
    payload = fixture("history_success.json")
    if data == "missing":
        del payload["data"]
    else:
        payload["data"] = data
    with pytest.raises(RunNotFoundError) as caught:
        adapter.parse_run(payload, run_id=RUN_ID)
    assert str(caught.value) == (
        f"[coze run {RUN_ID}] Coze has no run history {EXECUTE_ID} for workflow {WORKFLOW_ID}"
    )


def test_an_answer_about_another_execution_names_both_and_the_field(adapter):
    payload = fixture("history_success.json")
    payload["data"][0]["execute_id"] = 1
    with pytest.raises(InvalidResponseError) as caught:
        adapter.parse_run(payload, run_id=RUN_ID)
    assert str(caught.value) == (
        f"[coze run {RUN_ID}] asked for execution '{EXECUTE_ID}', Coze answered about '1'; the answer was "
        "not used"
    )
    assert caught.value.field == "data[0].execute_id"


def test_an_unreadable_execute_id_or_a_missing_status_fails_the_read_naming_the_field(adapter):
    payload = fixture("history_success.json")
    payload["data"][0]["execute_id"] = {"id": EXECUTE_ID}
    with pytest.raises(InvalidResponseError) as unreadable:
        adapter.parse_run(payload, run_id=RUN_ID)
    assert (unreadable.value.field, unreadable.value.run_id) == ("data[0].execute_id", RUN_ID)
    assert "field 'data[0].execute_id' cannot be read" in str(unreadable.value)
    payload = fixture("history_success.json")
    del payload["data"][0]["execute_status"]
    with pytest.raises(InvalidResponseError) as missing:
        adapter.parse_run(payload, run_id=RUN_ID)
    assert (missing.value.field, missing.value.run_id) == ("data[0].execute_status", RUN_ID)
    with pytest.raises(InvalidResponseError) as not_a_body:
        adapter.parse_run(["x"], run_id=RUN_ID)
    assert (not_a_body.value.field, not_a_body.value.run_id) == ("<body>", RUN_ID)


def test_an_unknown_status_word_is_logged_once_for_each_run(adapter, caplog):
    payload = fixture("history_running.json")
    payload["data"][0]["execute_status"] = "Interrupted"
    del payload["data"][0]["execute_id"]  # the same answer stands for each run
    with caplog.at_level(logging.WARNING, logger="airflow_provider_wfrun.platforms.base"):
        for run_id in (RUN_ID, f"{WORKFLOW_ID}:1", RUN_ID):
            run = adapter.parse_run(payload, run_id=run_id)
            assert (run.status, run.platform_status, run.is_terminal) == (
                RunStatus.UNKNOWN,
                "Interrupted",
                False,
            )
    assert sum("'Interrupted'" in record.getMessage() for record in caplog.records) == 2


def test_an_unreadable_history_field_is_logged_with_its_wire_path(adapter, caplog):
    payload = fixture("history_success.json")
    payload["data"][0]["create_time"] = "soon"
    with caplog.at_level(logging.WARNING, logger="airflow_provider_wfrun.platforms.base"):
        run = adapter.parse_run(payload, run_id=RUN_ID)
    assert (run.created_at, run.duration_seconds) == (None, None)
    assert [record.getMessage() for record in caplog.records] == [
        f"coze run {RUN_ID}: field 'data[0].create_time' could not be read (got str 'soon'); it is left "
        "empty, and the answer is kept whole in the run's raw"
    ]


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (None, {}),
        ('{"a": 1}', {"a": 1}),
        (' \n{"a": 1}', {"a": 1}),
        ('{"Output": null, "a": 1}', {"Output": None, "a": 1}),
        ('{"Output": "\\"quoted\\""}', {"Output": "quoted"}),
        ('{"Output": "[1, 2]"}', {"Output": [1, 2]}),
        ('{"Output": {"b": 2}, "a": 1}', {"a": 1, "b": 2}),
        ('{"Output": "{\\"a\\": 2}", "a": 1}', {"a": 2}),
        ("[1, 2]", {"value": [1, 2]}),
        ('"just text"', {"value": "just text"}),
        ("[" * 100_000, {"value": "[" * 100_000}),
        (7, {"value": 7}),
    ],
)
def test_output_shapes(adapter, output, expected):
    payload = fixture("history_success.json")
    payload["data"][0]["output"] = output
    assert adapter.parse_run(payload, run_id=RUN_ID).outputs == expected


def test_output_text_beyond_the_bound_is_kept_as_text(adapter):
    from airflow_provider_wfrun.platforms.coze import MAX_OUTPUT_CHARS

    payload = fixture("history_success.json")
    at_bound = '{"a": "' + "x" * (MAX_OUTPUT_CHARS - 9) + '"}'
    assert len(at_bound) == MAX_OUTPUT_CHARS
    payload["data"][0]["output"] = at_bound
    assert len(adapter.parse_run(payload, run_id=RUN_ID).outputs["a"]) == MAX_OUTPUT_CHARS - 9
    payload["data"][0]["output"] = at_bound + " "
    assert adapter.parse_run(payload, run_id=RUN_ID).outputs == {"value": at_bound + " "}


# --- submit --------------------------------------------------------------------------------------------
def test_the_submitted_run_normalized_exactly(adapter):
    request = adapter.submit_request({}, workflow_id=WORKFLOW_ID, idempotency_key=None)
    payload = fixture("run_async.json")
    run = adapter.submitted(payload, request)
    assert run.model_dump(
        include={"platform", "run_id", "workflow_id", "status", "platform_status", "run_url"}
    ) == {
        "platform": "coze",
        "run_id": RUN_ID,
        "workflow_id": WORKFLOW_ID,
        "status": RunStatus.RUNNING,
        "platform_status": "Running",
        "run_url": DEBUG_URL,
    }
    assert run.raw == payload
    without_link = adapter.submitted({"code": 0, "execute_id": 7485110364436357130}, request)
    assert (without_link.run_id, without_link.run_url) == (RUN_ID, None)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            {"code": 0, "msg": ""},
            "[coze] unexpected response: the submit answer has no 'execute_id' (was is_async honoured?)",
        ),
        (
            {"code": 0, "execute_id": ""},
            "[coze] unexpected response: the submit answer has no 'execute_id' (was is_async honoured?)",
        ),
        (
            {"code": 0, "execute_id": {"id": 1}},
            "[coze] unexpected response: field 'execute_id' cannot be read (got dict {'id': 1})",
        ),
    ],
)
def test_a_submit_answer_without_an_execute_id_is_refused(adapter, payload, message):
    request = adapter.submit_request({}, workflow_id=WORKFLOW_ID, idempotency_key=None)
    with pytest.raises(InvalidResponseError) as caught:
        adapter.submitted(payload, request)
    assert str(caught.value) == message
    assert caught.value.field == "execute_id"


def test_the_submit_answer_alone_cannot_name_the_run(adapter):
    with pytest.raises(InvalidResponseError) as caught:
        adapter.parse_submit(fixture("run_async.json"))
    assert (
        str(caught.value) == "[coze] a Coze submit answer names the run only with the request's workflow id"
    )


def test_a_workflow_id_with_a_colon_is_refused_and_the_probe_reads_the_user(adapter):
    with pytest.raises(InvalidInputError) as caught:
        adapter.submit_request({}, workflow_id="7484:1", idempotency_key=None)
    assert str(caught.value) == "[coze] workflow_id '7484:1' must not contain ':'; pass the workflow's id"
    with pytest.raises(InvalidInputError) as missing:
        adapter.submit_request({}, workflow_id="", idempotency_key=None)
    assert str(missing.value) == (
        "[coze] Coze needs workflow_id (the number in the workflow editor's URL, e.g. 7484523878849822754)"
    )
    probe = adapter.probe_request()
    assert (probe.method, probe.path, probe.params, probe.json) == ("GET", "/v1/users/me", None, None)
    poll = adapter.get_request(RUN_ID)
    assert (poll.method, poll.params, poll.json) == ("GET", None, None)
    adapter.check_run_id(RUN_ID)


# --- links and errors ----------------------------------------------------------------------------------
def test_the_run_link_is_the_debug_url_unless_a_template_is_set(adapter):
    run = adapter.parse_run(fixture("history_success.json"), run_id=RUN_ID)
    assert adapter.with_run_url(run, base_url="https://api.coze.com").run_url == DEBUG_URL
    templated = get_adapter("coze", {"run_url_template": "https://c/{workflow_id}/{run_id}"})
    assert (
        templated.with_run_url(run, base_url="https://api.coze.com").run_url
        == f"https://c/{WORKFLOW_ID}/{RUN_ID}"
    )
    unlinked = run.model_copy(update={"run_url": None})
    assert adapter.with_run_url(unlinked, base_url="https://api.coze.com/").run_url == (
        f"https://api.coze.com/v1/workflows/{WORKFLOW_ID}/run_histories/{EXECUTE_ID}"
    )


def test_error_bodies_give_their_code_and_message(adapter):
    assert adapter.error_info(fixture("error_auth.json")) == ErrorInfo(
        code="4100", message="authentication is invalid"
    )
    assert adapter.error_info({"code": "4000", "message": "bad"}) == ErrorInfo(code="4000", message="bad")
    assert adapter.error_info({"code": 4000, "msg": "", "message": "fallback"}) == ErrorInfo(
        code="4000", message="fallback"
    )
    assert adapter.error_info({"code": 4000}) == ErrorInfo(code="4000", message=None)
    assert adapter.error_info({"code": 0, "msg": "fine"}) is None
    assert adapter.error_info({"msg": "no code"}) is None
    assert adapter.error_info(["code"]) is None


def test_each_error_code_is_the_error_a_user_can_act_on(adapter):
    with pytest.raises(AuthenticationError) as auth:
        adapter.raise_for_error(200, {"code": 4101, "msg": "token expired"}, run_id=RUN_ID)
    assert str(auth.value) == (
        f"[coze run {RUN_ID}] the API key was rejected (token expired); check the connection's password"
    )
    with pytest.raises(RunNotFoundError) as missing:
        adapter.raise_for_error(200, {"code": 4200, "msg": "workflow not found"}, run_id=RUN_ID)
    assert str(missing.value) == f"[coze run {RUN_ID}] not found: workflow not found"
    with pytest.raises(RateLimitedError) as limited:
        adapter.raise_for_error(200, fixture("error_rate_limit.json"), run_id=RUN_ID, retry_after=3.0)
    assert (str(limited.value), limited.value.retry_after) == (
        f"[coze run {RUN_ID}] rate limited: The request rate exceeds the limit.",
        3.0,
    )
    with pytest.raises(PlatformError) as server:
        adapter.raise_for_error(200, {"code": 5000, "msg": "internal"}, run_id=RUN_ID)
    assert (server.value.code, server.value.is_transient, server.value.http_status) == ("5000", True, 200)
    assert str(server.value) == f"[coze run {RUN_ID}] platform error 5000 (HTTP 200): internal"
    with pytest.raises(PlatformError) as bad:
        adapter.raise_for_error(400, fixture("error_parameter.json"))
    assert (bad.value.code, bad.value.is_transient, bad.value.platform_message) == (
        "4000",
        False,
        "The requested parameters are incorrect.",
    )
