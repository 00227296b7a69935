"""
The emulator over real HTTP: wire shapes, run progression, scenarios, faults, statistics.

Everything goes through httpx against the session's loopback server, the way hooks will use it, so
connection-level faults (resets, timeouts) are real.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_wfrun.emulator import EmulatorServer, EmulatorState, Fault, Scenario, platforms
from airflow_provider_wfrun.emulator.app import build_app, platform_names
from airflow_provider_wfrun.emulator.platforms import dify, gptbots

FAST = {"queue_seconds": 0.1, "duration_seconds": 0.3}

DIFY_DETAIL_KEYS = {
    "id",
    "workflow_id",
    "status",
    "inputs",
    "outputs",
    "error",
    "total_steps",
    "total_tokens",
    "created_at",
    "finished_at",
    "elapsed_time",
}
DIFY_FINISHED_KEYS = {
    "id",
    "workflow_id",
    "status",
    "outputs",
    "error",
    "elapsed_time",
    "total_tokens",
    "total_steps",
    "created_at",
    "finished_at",
}
GPTBOTS_RESULT_KEYS = {
    "workflowId",
    "workflowName",
    "workflowVersion",
    "workflowRunId",
    "input",
    "output",
    "workflowExecutionTime",
    "status",
    "totalCost",
    "totalTokens",
    "startTime",
    "endTime",
}
CHENYU_SUBMIT_KEYS = {
    "run_order_id",
    "workflow_id",
    "revision_id",
    "quote_currency",
    "quote_amount",
    "freeze_status",
    "run_status",
    "task_id",
    "prompt_id",
    "billing_run_id",
    "idempotent_replay",
}
CHENYU_EXECUTION_KEYS = {
    "task_id",
    "workflow_id",
    "status",
    "queue_info",
    "progress_percent",
    "progress_snapshot",
    "logs",
    "actual_execution_duration_sec",
    "compute_cost",
    "external_model_cost",
    "total_cost",
    "outputs",
    "error",
    "created_at",
    "started_at",
    "terminal_at",
}
CHENYU_INFO_KEYS = {
    "run_order_id",
    "workflow_id",
    "revision_id",
    "quote_amount",
    "quote_currency",
    "freeze_status",
    "submission_status",
    "run_status",
    "settlement_status",
    "task_id",
    "prompt_id",
    "inputs",
    "outputs",
    "compute_cost",
    "external_model_cost",
    "total_cost",
    "final_amount",
    "released_amount",
    "error_code",
    "error_message",
    "created_at",
    "updated_at",
}


# -------------------------------------------------------------------------------------------- helpers
def client(
    server: EmulatorServer, platform: str, key: str | None = None, *, auth: bool = True, **kwargs: Any
) -> httpx.Client:
    """A client for one platform, authenticated with ``key`` (default: the server's own key)."""
    headers = {"Authorization": f"Bearer {key or server.api_key}"} if auth else {}
    return httpx.Client(base_url=server.base_url(platform), headers=headers, **{"timeout": 5, **kwargs})


@pytest.fixture
def dify_client(emulator: EmulatorServer) -> Iterator[httpx.Client]:
    with client(emulator, "dify") as http:
        yield http


@pytest.fixture
def gptbots_client(emulator: EmulatorServer) -> Iterator[httpx.Client]:
    with client(emulator, "gptbots") as http:
        yield http


@pytest.fixture
def chenyu_client(emulator: EmulatorServer) -> Iterator[httpx.Client]:
    with client(emulator, "chenyu") as http:
        yield http


@pytest.fixture
def control(emulator: EmulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator.url + "/_emulator", timeout=5) as http:
        yield http


def poll(fetch: Callable[[], dict[str, Any]], done: Callable[[dict[str, Any]], bool], timeout: float = 3.0):
    """Call ``fetch`` until ``done``; return every answer seen."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen.append(fetch())
        if done(seen[-1]):
            return seen
        time.sleep(0.03)
    raise AssertionError(f"not done after {timeout}s; last: {seen[-1] if seen else None}")


def sse_events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """Dify SSE frames as dicts; a keep-alive is ``{"event": "ping"}``."""
    for line in response.iter_lines():
        if line.startswith("data: "):
            yield json.loads(line[len("data: ") :])
        elif line == "event: ping":
            yield {"event": "ping"}


def chenyu_submit(http: httpx.Client, key: str = "k-1", **body: Any) -> httpx.Response:
    payload = {"workflow_id": "wf_861ef31e94dcfb10e6e7", "idempotency_key": key, "inputs": {"n6_text": "x"}}
    return http.post("/workflow/run/submit", json={**payload, **body})


def chenyu_execution(http: httpx.Client, run_order_id: str) -> dict[str, Any]:
    return http.get("/workflow/run/execution", params={"run_order_id": run_order_id}).json()["data"]


def chenyu_info(http: httpx.Client, run_order_id: str) -> dict[str, Any]:
    return http.get("/workflow/run/info", params={"run_order_id": run_order_id}).json()["data"]


def dify_run(http: httpx.Client, inputs: dict[str, Any], **body: Any) -> httpx.Response:
    return http.post("/workflows/run", json={"inputs": inputs, "user": "u-1", **body})


def dify_detail(http: httpx.Client, run_id: str) -> dict[str, Any]:
    return http.get(f"/workflows/run/{run_id}").json()


def gptbots_query(http: httpx.Client, run_id: str) -> dict[str, Any]:
    return http.post("/workflow/query/result", json={"workflowRunId": run_id}).json()


# ------------------------------------------------------------------------------------- server and auth
def test_base_urls_and_platform_discovery(emulator: EmulatorServer) -> None:
    assert emulator.url.startswith("http://127.0.0.1:")
    assert emulator.base_url("dify") == emulator.url + "/dify/v1"
    assert emulator.base_url("gptbots") == emulator.url + "/gptbots/v1"
    assert emulator.base_url("chenyu") == emulator.url + "/chenyu/api/open/v2"
    with pytest.raises(ValueError, match="unknown platform"):
        emulator.base_url("n8n")
    roots = httpx.get(emulator.url + "/_emulator/platforms").json()
    assert list(roots) == platform_names()  # every platform module, discovered
    assert {name: roots[name] for name in ("chenyu", "dify", "gptbots")} == {
        "chenyu": "/chenyu/api/open/v2",
        "dify": "/dify/v1",
        "gptbots": "/gptbots/v1",
    }


@pytest.mark.parametrize(
    ("platform", "method", "path", "body"),
    [
        (
            "dify",
            "GET",
            "/info",
            {"status": 401, "code": "unauthorized", "message": "Access token is invalid"},
        ),
        ("gptbots", "GET", "/api-key/verify", {"code": 40127, "message": "Developer authentication failed"}),
        ("chenyu", "GET", "/balance/info", {"code": 401, "msg": "API Key 无效或已过期", "data": None}),
    ],
)
@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_bad_key_gets_the_platform_401(
    emulator: EmulatorServer, platform: str, method: str, path: str, body: dict[str, Any], key: str | None
) -> None:
    with client(emulator, platform, key=key, auth=key is not None) as http:
        response = http.request(method, path)
    assert response.status_code == 401
    assert response.json() == body
    if platform == "dify":
        assert response.headers["www-authenticate"] == 'Bearer realm="api"'


def test_gptbots_accepts_the_bare_key_but_dify_does_not(emulator: EmulatorServer) -> None:
    bare = {"Authorization": emulator.api_key}
    assert httpx.get(emulator.base_url("gptbots") + "/api-key/verify", headers=bare).status_code == 200
    assert httpx.get(emulator.base_url("dify") + "/info", headers=bare).status_code == 401


def test_server_uses_its_own_api_key() -> None:
    with EmulatorServer(api_key="other") as server, client(server, "chenyu", key="other") as http:
        assert http.get("/balance/info").json()["data"] == {"balance": 100.0, "card_balance": 0.0}
        assert server.api_key == "other"


# ------------------------------------------------------------------------------------------------ Dify
def test_dify_run_progresses_and_polls(emulator: EmulatorServer, dify_client: httpx.Client) -> None:
    inputs = {"query": "hello", "_emulator": {"duration_seconds": 0.3}}
    with dify_client.stream(
        "POST", "/workflows/run", json={"inputs": inputs, "user": "u", "response_mode": "streaming"}
    ) as response:
        run_id = next(sse_events(response))["workflow_run_id"]
    running = dify_detail(dify_client, run_id)
    assert set(running) == DIFY_DETAIL_KEYS
    assert running["status"] == "running"
    assert running["outputs"] == {}
    assert running["finished_at"] is None
    assert running["elapsed_time"] is None
    assert json.loads(running["inputs"]) == inputs
    assert isinstance(running["created_at"], int)

    final = poll(lambda: dify_detail(dify_client, run_id), lambda d: d["status"] != "running")[-1]
    assert final["status"] == "succeeded"
    assert final["outputs"] == {"query": "hello"}
    assert final["error"] is None
    assert final["total_steps"] == 3
    assert final["total_tokens"] == 150
    assert isinstance(final["finished_at"], int)
    assert final["elapsed_time"] == pytest.approx(0.3)
    assert final["workflow_id"] == dify.DEFAULT_WORKFLOW_ID


def test_dify_blocking_waits_for_the_end(dify_client: httpx.Client) -> None:
    started = time.monotonic()
    body = dify_run(dify_client, {"q": "hi", "_emulator": {"duration_seconds": 0.2}}).json()
    assert time.monotonic() - started >= 0.2
    assert set(body) == {"task_id", "workflow_run_id", "data"}
    assert body["task_id"] != body["workflow_run_id"]
    assert set(body["data"]) == DIFY_FINISHED_KEYS
    assert body["data"]["status"] == "succeeded"
    assert body["data"]["outputs"] == {"q": "hi"}


@pytest.mark.parametrize(
    ("overrides", "status", "error"),
    [
        ({"outcome": "failed"}, "failed", "Node 'LLM' failed: model timeout"),
        ({"outcome": "failed", "error_reason": "boom"}, "failed", "boom"),
        ({"outcome": "partial"}, "partial-succeeded", None),
        ({"outcome": "canceled"}, "stopped", None),
    ],
)
def test_dify_terminal_outcomes(
    dify_client: httpx.Client, overrides: dict[str, Any], status: str, error: str | None
) -> None:
    body = dify_run(dify_client, {"q": "x", "_emulator": {"duration_seconds": 0.1, **overrides}}).json()
    assert body["data"]["status"] == status
    assert body["data"]["error"] == error
    detail = dify_detail(dify_client, body["workflow_run_id"])
    assert detail["status"] == status
    assert detail["error"] == error
    assert detail["outputs"] == ({"q": "x"} if status == "partial-succeeded" else {})


def test_dify_request_validation(dify_client: httpx.Client) -> None:
    no_user = dify_client.post("/workflows/run", json={"inputs": {}})
    assert no_user.status_code == 400
    assert no_user.json() == {"status": 400, "code": "invalid_param", "message": "Arg user must be provided."}
    bad_inputs = dify_client.post("/workflows/run", json={"inputs": "x", "user": "u"})
    assert bad_inputs.status_code == 400
    assert bad_inputs.json()["code"] == "invalid_param"
    bad_scenario = dify_run(dify_client, {"_emulator": {"outcome": "exploded"}})
    assert bad_scenario.status_code == 400
    assert bad_scenario.json()["code"] == "invalid_param"
    unknown = dify_client.get("/workflows/run/no-such-run")
    assert unknown.status_code == 404
    assert unknown.json() == {"status": 404, "code": "not_found", "message": "Workflow run not found."}


def test_dify_run_by_workflow_version(emulator: EmulatorServer, dify_client: httpx.Client) -> None:
    unknown = dify_client.post("/workflows/wf-v2/run", json={"inputs": {}, "user": "u"})
    assert unknown.status_code == 404
    assert unknown.json() == {
        "status": 404,
        "code": "not_found",
        "message": "Workflow not found with id: wf-v2",
    }

    emulator.state.set_scenario(
        "wf-v2", Scenario(duration_seconds=0.1, outcome="failed", error_reason="v2 bug")
    )
    body = dify_client.post("/workflows/wf-v2/run", json={"inputs": {}, "user": "u"}).json()
    assert body["data"]["workflow_id"] == "wf-v2"
    assert body["data"]["error"] == "v2 bug"
    default = dify_client.post(
        f"/workflows/{dify.DEFAULT_WORKFLOW_ID}/run", json={"inputs": {}, "user": "u"}
    ).json()
    assert default["data"]["status"] == "succeeded"


def test_dify_stream_events(emulator: EmulatorServer, dify_client: httpx.Client) -> None:
    emulator.state.ping_interval = 0.1
    inputs = {"text": "Bonjour le monde", "_emulator": {"duration_seconds": 0.45, "tokens": 42, "cost": 0.5}}
    with dify_client.stream(
        "POST", "/workflows/run", json={"inputs": inputs, "user": "u-1", "response_mode": "streaming"}
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = list(sse_events(response))
    names = [event["event"] for event in events]
    assert names[0] == "workflow_started"
    assert names[-1] == "workflow_finished"
    assert "ping" in names
    content = [name for name in names if name != "ping"]
    assert content[:2] == ["workflow_started", "node_started"]
    assert content.count("node_started") == content.count("node_finished") == 3
    assert "text_chunk" in content

    started = events[0]
    assert set(started) == {"event", "task_id", "workflow_run_id", "data"}
    assert started["data"]["id"] == started["workflow_run_id"]
    assert started["data"]["reason"] == "initial"
    assert started["data"]["inputs"] == inputs
    chunks = "".join(e["data"]["text"] for e in events if e["event"] == "text_chunk")
    assert chunks == "Bonjour le monde"
    llm = next(e for e in events if e["event"] == "node_finished" and e["data"]["node_type"] == "llm")
    assert llm["data"]["execution_metadata"] == {"total_tokens": 42, "total_price": 0.5, "currency": "USD"}
    finished = events[-1]["data"]
    assert set(finished) >= DIFY_FINISHED_KEYS | {"created_by", "exceptions_count", "files"}
    assert finished["status"] == "succeeded"
    assert finished["total_tokens"] == 42
    assert finished["outputs"] == {"text": "Bonjour le monde"}


def test_dify_stream_failure_ends_with_failed_node(dify_client: httpx.Client) -> None:
    inputs = {"_emulator": {"duration_seconds": 0.1, "outcome": "failed"}}
    with dify_client.stream(
        "POST", "/workflows/run", json={"inputs": inputs, "user": "u", "response_mode": "streaming"}
    ) as response:
        events = [e for e in sse_events(response) if e["event"] != "ping"]
    assert events[-2]["event"] == "node_finished"
    assert events[-2]["data"]["status"] == "failed"
    assert events[-1]["data"]["status"] == "failed"
    assert events[-1]["data"]["error"] == "Node 'LLM' failed: model timeout"


def test_dify_client_disconnect_does_not_stop_the_run(
    emulator: EmulatorServer, dify_client: httpx.Client
) -> None:
    inputs = {"q": 1, "_emulator": {"duration_seconds": 0.3}}
    with dify_client.stream(
        "POST", "/workflows/run", json={"inputs": inputs, "user": "u", "response_mode": "streaming"}
    ) as response:
        run_id = next(sse_events(response))["workflow_run_id"]
    assert dify_detail(dify_client, run_id)["status"] == "running"
    final = poll(lambda: dify_detail(dify_client, run_id), lambda d: d["status"] != "running")[-1]
    assert final["status"] == "succeeded"
    assert dify_client.get("/info").status_code == 200


def test_dify_stop_turns_a_running_run_into_stopped(
    emulator: EmulatorServer, dify_client: httpx.Client
) -> None:
    inputs = {"_emulator": {"duration_seconds": 5}}
    started = time.monotonic()
    with dify_client.stream(
        "POST", "/workflows/run", json={"inputs": inputs, "user": "u", "response_mode": "streaming"}
    ) as response:
        events = sse_events(response)
        first = next(events)
        stop = dify_client.post(f"/workflows/tasks/{first['task_id']}/stop", json={"user": "someone-else"})
        assert stop.json() == {"result": "success"}
        rest = [e for e in events if e["event"] != "ping"]
    assert time.monotonic() - started < 2
    assert rest[-1]["event"] == "workflow_finished"
    assert rest[-1]["data"]["status"] == "stopped"
    assert any(e["event"] == "node_finished" and e["data"]["status"] == "stopped" for e in rest)
    assert dify_detail(dify_client, first["workflow_run_id"])["status"] == "stopped"
    assert emulator.state.stats()["cancels"]["dify"] == 1
    again = dify_client.post(f"/workflows/tasks/{first['task_id']}/stop", json={"user": "u"})
    assert again.json() == {"result": "success"}
    assert emulator.state.stats()["cancels"]["dify"] == 1


def test_dify_stop_validation(dify_client: httpx.Client) -> None:
    missing_user = dify_client.post("/workflows/tasks/abc/stop", json={})
    assert missing_user.status_code == 400
    assert missing_user.json()["code"] == "invalid_param"
    unknown = dify_client.post("/workflows/tasks/abc/stop", json={"user": "u"})
    assert unknown.json() == {"result": "success"}


def test_dify_info(dify_client: httpx.Client) -> None:
    info = dify_client.get("/info").json()
    assert set(info) == {"name", "description", "tags", "mode", "author_name"}
    assert info["mode"] == "workflow"
    assert info["tags"] == []


# --------------------------------------------------------------------------------------------- GPTBots
def test_gptbots_async_run_progresses(gptbots_client: httpx.Client) -> None:
    submitted = gptbots_client.post(
        "/workflow/invoke", json={"userId": "u", "input": {"topic": "News"}, "isAsync": True}
    ).json()
    assert submitted == {
        "workflowId": gptbots.WORKFLOW_ID,
        "workflowName": "todayNews",
        "workflowVersion": "1.0.1",
        "workflowRunId": submitted["workflowRunId"],
        "status": "PENDING",
    }
    seen = poll(
        lambda: gptbots_query(gptbots_client, submitted["workflowRunId"]), lambda r: r["status"] == "SUCCEED"
    )
    statuses = [answer["status"] for answer in seen]
    assert statuses[0] == "PENDING"
    assert "RUNNING" in statuses
    for answer in seen[:-1]:
        # A queued run has not started: no startTime until it runs (the times bracket the execution).
        not_yet = {"startTime"} if answer["status"] == "PENDING" else set()
        assert set(answer) == GPTBOTS_RESULT_KEYS - not_yet - {
            "output",
            "endTime",
            "workflowExecutionTime",
            "totalCost",
            "totalTokens",
        }
    final = seen[-1]
    assert set(final) == GPTBOTS_RESULT_KEYS
    assert final["output"] == {"topic": "News"}
    assert final["totalCost"] == 0.6928
    assert final["totalTokens"] == 150
    assert final["workflowExecutionTime"] == pytest.approx(400, abs=5)
    # The documented example: endTime - startTime = workflowExecutionTime (the queue is not included).
    assert final["endTime"] - final["startTime"] == final["workflowExecutionTime"]
    assert final["startTime"] > 1_600_000_000_000


def test_gptbots_sync_invoke_returns_the_result(gptbots_client: httpx.Client) -> None:
    body = gptbots_client.post(
        "/workflow/invoke",
        json={"input": {"a": 1, "_emulator": {"outputs": {"news": []}, "cost": 2.5, "tokens": 9}}},
    ).json()
    assert body["status"] == "SUCCEED"
    assert body["output"] == {"news": []}
    assert (body["totalCost"], body["totalTokens"]) == (2.5, 9)


@pytest.mark.parametrize(
    ("outcome", "status"), [("failed", "FAILED"), ("canceled", "FAILED"), ("partial", "SUCCEED")]
)
def test_gptbots_outcomes(gptbots_client: httpx.Client, outcome: str, status: str) -> None:
    body = gptbots_client.post(
        "/workflow/invoke", json={"input": {"_emulator": {"outcome": outcome, "duration_seconds": 0.05}}}
    ).json()
    assert body["status"] == status


def test_gptbots_errors(gptbots_client: httpx.Client) -> None:
    no_input = gptbots_client.post("/workflow/invoke", json={"isAsync": True})
    assert no_input.status_code == 400
    assert no_input.json() == {"code": 40000, "message": "Invalid parameter"}
    unknown = gptbots_client.post("/workflow/query/result", json={"workflowRunId": "nope"})
    assert unknown.status_code == 200
    assert unknown.json() == {"code": 40000, "message": "Invalid parameter"}
    assert gptbots_client.get("/api-key/verify").json() == {"type": "workflow", "id": gptbots.WORKFLOW_ID}


def test_gptbots_per_workflow_scenario(emulator: EmulatorServer, gptbots_client: httpx.Client) -> None:
    emulator.state.set_scenario(gptbots.WORKFLOW_ID, {"outcome": "failed", "duration_seconds": 0.05})
    assert gptbots_client.post("/workflow/invoke", json={"input": {}}).json()["status"] == "FAILED"


# ---------------------------------------------------------------------------------------------- chenyu
def test_chenyu_submit_and_progression(emulator: EmulatorServer, chenyu_client: httpx.Client) -> None:
    emulator.state.set_scenario(
        "wf_861ef31e94dcfb10e6e7", Scenario(queue_seconds=0.3, duration_seconds=0.4, queue_position=3)
    )
    submitted = chenyu_submit(chenyu_client).json()
    assert submitted["code"] == 0
    data = submitted["data"]
    assert set(data) == CHENYU_SUBMIT_KEYS
    assert re.fullmatch(r"wfrun_[0-9a-f]{20}", data["run_order_id"])
    assert re.fullmatch(r"wfr_[0-9a-f]{20}", data["revision_id"])
    assert (data["quote_currency"], data["quote_amount"], data["freeze_status"]) == (
        "CNY",
        "0.03000000",
        "frozen",
    )
    assert (data["run_status"], data["idempotent_replay"]) == ("queued", False)

    seen = poll(
        lambda: chenyu_execution(chenyu_client, data["run_order_id"]), lambda d: d["status"] == "succeeded"
    )
    assert all(set(answer) == CHENYU_EXECUTION_KEYS for answer in seen)
    statuses = [answer["status"] for answer in seen]
    assert statuses[0] == "queued"
    assert "running" in statuses
    queued = [answer for answer in seen if answer["status"] == "queued"]
    positions = [answer["queue_info"]["position"] for answer in queued]
    assert positions[0] == 3
    assert positions == sorted(positions, reverse=True)
    assert min(positions) < 3
    assert all(answer["started_at"] is None and answer["progress_percent"] == 0 for answer in queued)
    running = [answer for answer in seen if answer["status"] == "running"]
    assert all(answer["queue_info"] is None and answer["terminal_at"] is None for answer in running)
    log_counts = [len(answer["logs"]) for answer in seen]
    assert log_counts == sorted(log_counts)

    final = seen[-1]
    assert final["progress_percent"] == 100
    assert final["queue_info"] is None
    assert final["outputs"] == {"n6_text": "x"}
    assert final["error"] is None
    assert (final["compute_cost"], final["external_model_cost"], final["total_cost"]) == (
        0.0002878,
        0,
        0.0002878,
    )
    assert final["actual_execution_duration_sec"] == pytest.approx(0.4)
    assert final["logs"][0]["event_type"] == "execution_start"
    assert final["logs"][-1]["event_type"] == "execution_success"
    assert set(final["logs"][-1]) == {"at", "event_type", "level", "message", "progress_percent"}
    assert final["progress_snapshot"]["last_event_type"] == "execution_success"
    for stamp in (final["created_at"], final["started_at"], final["terminal_at"]):
        assert time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")


def test_chenyu_info_settles_at_the_end(chenyu_client: httpx.Client) -> None:
    scenario = {"duration_seconds": 0.2, "cost": 0.01, "external_cost": 0.005, "quote_amount": "0.05"}
    run_order_id = chenyu_submit(chenyu_client, inputs={"n3_seed": 1, "_emulator": scenario}).json()["data"][
        "run_order_id"
    ]
    pending = chenyu_info(chenyu_client, run_order_id)
    assert set(pending) == CHENYU_INFO_KEYS
    assert (pending["freeze_status"], pending["settlement_status"]) == ("frozen", "pending")
    assert (pending["submission_status"], pending["quote_amount"], pending["outputs"]) == (
        "submitted",
        "0.05000000",
        {},
    )
    final = poll(lambda: chenyu_info(chenyu_client, run_order_id), lambda d: d["run_status"] == "succeeded")[
        -1
    ]
    assert (final["freeze_status"], final["settlement_status"]) == ("released", "settled")
    assert final["compute_cost"] == "0.01000000"
    assert final["external_model_cost"] == "0.00500000"
    assert final["total_cost"] == final["final_amount"] == "0.01500000"
    assert final["released_amount"] == "0.03500000"
    assert (final["error_code"], final["error_message"]) == ("", "")
    assert final["outputs"] == {"n3_seed": 1}


def test_chenyu_failed_run(chenyu_client: httpx.Client) -> None:
    scenario = {"outcome": "failed", "queue_seconds": 0, "duration_seconds": 0.05, "error_detail": "OOM"}
    run_order_id = chenyu_submit(chenyu_client, inputs={"_emulator": scenario}).json()["data"]["run_order_id"]
    final = poll(lambda: chenyu_execution(chenyu_client, run_order_id), lambda d: d["status"] == "failed")[-1]
    assert final["error"] == {
        "reason": "Node 'LLM' failed: model timeout",
        "detail": "OOM",
        "engine_code": "EXECUTION_FAILED",
        "status_code": 500,
    }
    assert final["outputs"] == {}
    assert final["progress_percent"] < 100
    assert final["logs"][-1]["event_type"] == "execution_error"
    info = chenyu_info(chenyu_client, run_order_id)
    assert (info["run_status"], info["error_code"]) == ("failed", "EXECUTION_FAILED")
    assert info["error_message"] == "Node 'LLM' failed: model timeout"


def test_chenyu_idempotent_replay(emulator: EmulatorServer, chenyu_client: httpx.Client) -> None:
    first = chenyu_submit(chenyu_client, key="order-42").json()["data"]
    again = chenyu_submit(chenyu_client, key="order-42", inputs={"n6_text": "changed"}).json()["data"]
    other = chenyu_submit(chenyu_client, key="order-43").json()["data"]
    assert again["idempotent_replay"] is True
    assert {k: v for k, v in again.items() if k not in ("idempotent_replay", "run_status")} == {
        k: v for k, v in first.items() if k not in ("idempotent_replay", "run_status")
    }
    assert other["run_order_id"] != first["run_order_id"]
    stats = emulator.state.stats()
    assert stats["submissions"]["chenyu"] == 2
    assert stats["idempotent_replays"]["chenyu"] == 1
    assert len([run for run in emulator.state.runs.values() if run.platform == "chenyu"]) == 2


def test_chenyu_errors(chenyu_client: httpx.Client) -> None:
    no_key = chenyu_client.post("/workflow/run/submit", json={"workflow_id": "wf_1"})
    assert no_key.status_code == 400
    assert no_key.json() == {"code": 400, "msg": "idempotency_key 不能为空", "data": None}
    unknown = chenyu_client.get("/workflow/run/execution", params={"run_order_id": "wfrun_missing"})
    assert unknown.status_code == 404
    assert unknown.json() == {
        "code": 1,
        "msg": "Task not found.",
        "data": {
            "error": {
                "reason": "Task not found.",
                "detail": "execution task wfrun_missing does not exist",
                "engine_code": "TASK_NOT_FOUND",
                "status_code": 404,
            }
        },
    }
    assert (
        chenyu_client.get("/workflow/run/info", params={"run_order_id": "wfrun_missing"}).status_code == 404
    )
    assert chenyu_client.get("/workflow/run/execution").status_code == 400


def test_chenyu_balance(chenyu_client: httpx.Client) -> None:
    assert chenyu_client.get("/balance/info").json() == {
        "code": 0,
        "msg": "查询成功",
        "data": {"balance": 100.0, "card_balance": 0.0},
    }


# ------------------------------------------------------------------------------------ control API
def test_control_cancel_works_on_every_platform(
    emulator: EmulatorServer,
    control: httpx.Client,
    chenyu_client: httpx.Client,
    gptbots_client: httpx.Client,
    dify_client: httpx.Client,
) -> None:
    slow = {"_emulator": {"duration_seconds": 5}}
    chenyu_id = chenyu_submit(chenyu_client, inputs=slow).json()["data"]["run_order_id"]
    gptbots_id = gptbots_client.post("/workflow/invoke", json={"input": slow, "isAsync": True}).json()[
        "workflowRunId"
    ]
    with dify_client.stream(
        "POST", "/workflows/run", json={"inputs": slow, "user": "u", "response_mode": "streaming"}
    ) as response:
        dify_id = next(sse_events(response))["workflow_run_id"]

    for run_id in (chenyu_id, gptbots_id, dify_id):
        answer = control.post(f"/runs/{run_id}/cancel").json()
        assert answer["canceled"] is True
    assert control.post(f"/runs/{chenyu_id}/cancel").json()["canceled"] is False
    assert control.post("/runs/unknown/cancel").status_code == 404

    execution = chenyu_execution(chenyu_client, chenyu_id)
    assert (execution["status"], execution["logs"][-1]["event_type"]) == ("canceled", "execution_interrupted")
    info = chenyu_info(chenyu_client, chenyu_id)
    assert (info["run_status"], info["error_code"], info["final_amount"]) == (
        "canceled",
        "user_cancelled",
        "0.00000000",
    )
    assert info["released_amount"] == "0.03000000"
    assert gptbots_query(gptbots_client, gptbots_id)["status"] == "FAILED"
    assert dify_detail(dify_client, dify_id)["status"] == "stopped"

    runs = {run["run_id"]: run for run in control.get("/runs").json()}
    assert {runs[chenyu_id]["status"], runs[gptbots_id]["status"], runs[dify_id]["status"]} == {
        "canceled",
        "FAILED",
        "stopped",
    }
    assert {run["platform"] for run in runs.values()} == {"chenyu", "gptbots", "dify"}
    assert control.get("/runs", params={"platform": "dify"}).json()[0]["run_id"] == dify_id
    canceled = {"chenyu": 1, "dify": 1, "gptbots": 1}
    assert control.get("/stats").json()["cancels"] == dict.fromkeys(platform_names(), 0) | canceled


def test_control_scenarios_faults_reset(
    emulator: EmulatorServer, control: httpx.Client, chenyu_client: httpx.Client
) -> None:
    put = control.put(
        "/scenarios", json={"wf_ctl": {"outcome": "failed", "queue_seconds": 0, "duration_seconds": 0}}
    )
    assert put.json()["wf_ctl"]["outcome"] == "failed"
    assert control.put("/scenarios", json={"wf_bad": {"outcome": "nope"}}).status_code == 422
    run_order_id = chenyu_submit(chenyu_client, workflow_id="wf_ctl").json()["data"]["run_order_id"]
    assert chenyu_execution(chenyu_client, run_order_id)["status"] == "failed"

    faults = control.post("/faults", json=[{"route": "chenyu.balance", "kind": 503, "count": 1}]).json()
    assert faults[0]["kind"] == "503"
    assert chenyu_client.get("/balance/info").status_code == 503
    assert control.delete("/faults").json() == []
    assert control.get("/faults").json() == []

    assert control.put("/config", json={"ping_interval": 0.5}).json()["ping_interval"] == 0.5
    assert control.post("/reset").json() == {"result": "ok"}
    assert emulator.state.ping_interval == 10.0
    assert control.get("/runs").json() == []
    assert "wf_ctl" not in control.get("/scenarios").json()
    assert control.get("/stats").json()["requests"] == {}


def test_faults_never_hit_the_control_api(emulator: EmulatorServer, control: httpx.Client) -> None:
    emulator.state.set_faults([Fault(route="*", kind="500")])
    assert control.get("/stats").status_code == 200
    assert control.get("/runs").status_code == 200


# --------------------------------------------------------------------------------------------- faults
@pytest.mark.parametrize(
    ("platform", "path", "status", "body"),
    [
        ("dify", "/info", 429, {"status": 429, "code": "too_many_requests"}),
        ("dify", "/info", 500, {"status": 500, "code": "internal_server_error"}),
        ("dify", "/info", 503, {"status": 503, "code": "internal_server_error"}),
        ("gptbots", "/api-key/verify", 429, {"code": 42900}),
        ("gptbots", "/api-key/verify", 502, {"code": 50200}),
        ("chenyu", "/balance/info", 429, {"code": 429, "data": None}),
        ("chenyu", "/balance/info", 504, {"code": 504, "data": None}),
    ],
)
def test_status_faults_use_platform_bodies(
    emulator: EmulatorServer, platform: str, path: str, status: int, body: dict[str, Any]
) -> None:
    emulator.state.set_faults([Fault(route="*", kind=str(status), retry_after=2)])
    with client(emulator, platform) as http:
        response = http.get(path)
    assert response.status_code == status
    assert response.json().items() >= body.items()
    if status == 429:
        assert response.headers["retry-after"] == "2"
    assert emulator.state.stats()["faults"] == {str(status): 1}


def test_retry_after_variants(emulator: EmulatorServer, chenyu_client: httpx.Client) -> None:
    emulator.state.set_faults([Fault(route="chenyu.balance", kind="429", retry_after=0.25, count=1)])
    assert chenyu_client.get("/balance/info").headers["retry-after"] == "0.25"
    emulator.state.set_faults(
        [Fault(route="chenyu.balance", kind="429", retry_after=30, retry_after_http_date=True)]
    )
    when = parsedate_to_datetime(chenyu_client.get("/balance/info").headers["retry-after"])
    assert 25 <= when.timestamp() - time.time() <= 31


def test_html_fault(emulator: EmulatorServer, gptbots_client: httpx.Client) -> None:
    emulator.state.set_faults([Fault(route="gptbots.verify", kind="html")])
    response = gptbots_client.get("/api-key/verify")
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")
    assert "<center>nginx</center>" in response.text


def test_reset_fault_drops_the_connection(emulator: EmulatorServer, dify_client: httpx.Client) -> None:
    emulator.state.set_faults([Fault(route="dify.info", kind="reset", count=1)])
    with pytest.raises(httpx.TransportError):
        dify_client.get("/info")
    assert dify_client.get("/info").status_code == 200
    stats = emulator.state.stats()
    assert stats["faults"] == {"reset": 1}
    assert stats["responses"] == {"200": 1}


def test_delay_fault_causes_a_read_timeout(emulator: EmulatorServer) -> None:
    emulator.state.set_faults([Fault(route="chenyu.balance", kind="delay", delay_seconds=0.5)])
    with client(emulator, "chenyu", timeout=httpx.Timeout(0.15)) as http, pytest.raises(httpx.ReadTimeout):
        http.get("/balance/info")
    with client(emulator, "chenyu") as http:
        started = time.monotonic()
        assert http.get("/balance/info").status_code == 200
        assert time.monotonic() - started >= 0.5


def test_malformed_fault(emulator: EmulatorServer, chenyu_client: httpx.Client) -> None:
    emulator.state.set_faults([Fault(route="chenyu.balance", kind="malformed")])
    response = chenyu_client.get("/balance/info")
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()


@pytest.mark.parametrize("phase", ["before", "after"])
def test_truncated_fault_is_a_cut_json_prefix(
    emulator: EmulatorServer, chenyu_client: httpx.Client, phase: str
) -> None:
    emulator.state.set_faults([Fault(route="chenyu.balance", kind="truncated", phase=phase)])
    response = chenyu_client.get("/balance/info")
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()
    assert response.text.startswith('{"code":')
    if phase == "after":
        assert '{"code":0,"msg":"查询成功","data":{"balance":100.0,"card_balance":0.0}}'.startswith(
            response.text
        )


def test_fault_count_and_route_glob(emulator: EmulatorServer, chenyu_client: httpx.Client) -> None:
    emulator.state.set_faults([Fault(route="chenyu.*", kind="500", count=2)])
    codes = [chenyu_client.get("/balance/info").status_code for _ in range(4)]
    assert codes == [500, 500, 200, 200]
    emulator.state.set_faults([Fault(route="dify.*", kind="500")])
    assert chenyu_client.get("/balance/info").status_code == 200


def test_fault_after_phase_creates_the_run_once(
    emulator: EmulatorServer, chenyu_client: httpx.Client
) -> None:
    emulator.state.set_faults([Fault(route="chenyu.submit", kind="502", count=1, phase="after")])
    failed = chenyu_submit(chenyu_client, key="retry-me")
    assert failed.status_code == 502
    assert len(emulator.state.runs) == 1
    retried = chenyu_submit(chenyu_client, key="retry-me").json()["data"]
    assert retried["idempotent_replay"] is True
    assert retried["run_order_id"] in emulator.state.runs
    stats = emulator.state.stats()
    assert (stats["submissions"]["chenyu"], stats["idempotent_replays"]["chenyu"]) == (1, 1)


def test_reset_after_submit_still_creates_the_run(
    emulator: EmulatorServer, gptbots_client: httpx.Client
) -> None:
    emulator.state.set_faults([Fault(route="gptbots.submit", kind="reset", phase="after", count=1)])
    with pytest.raises(httpx.TransportError):
        gptbots_client.post("/workflow/invoke", json={"input": {}, "isAsync": True})
    assert [run.platform for run in emulator.state.runs.values()] == ["gptbots"]


def test_fault_rate_is_reproducible_with_the_seed(
    emulator: EmulatorServer, chenyu_client: httpx.Client
) -> None:
    def pattern() -> list[int]:
        emulator.state.set_faults([Fault(route="chenyu.balance", kind="500", rate=0.5)])
        return [chenyu_client.get("/balance/info").status_code for _ in range(24)]

    first = pattern()
    emulator.state.reset()
    assert pattern() == first
    assert {200, 500} == set(first)

    def draws(seed: int) -> list[bool]:
        state = EmulatorState(seed=seed)
        state.set_faults([Fault(kind="500", rate=0.5)])
        return [state.draw_fault("chenyu.balance") is not None for _ in range(24)]

    assert draws(0) == [code == 500 for code in first]
    assert draws(1) != draws(0)


# ---------------------------------------------------------------------------------------------- stats
def test_stats_count_requests_responses_and_submissions(
    emulator: EmulatorServer, chenyu_client: httpx.Client, gptbots_client: httpx.Client
) -> None:
    chenyu_submit(chenyu_client)
    chenyu_submit(chenyu_client)
    chenyu_client.get("/workflow/run/execution", params={"run_order_id": "missing"})
    gptbots_client.post("/workflow/invoke", json={"input": {}, "isAsync": True})
    with client(emulator, "gptbots", key="bad") as http:
        http.get("/api-key/verify")
    stats = httpx.get(emulator.url + "/_emulator/stats").json()
    assert stats == emulator.state.stats()
    assert stats["submissions"] == dict.fromkeys(platform_names(), 0) | {"chenyu": 1, "gptbots": 1}
    assert stats["idempotent_replays"] == dict.fromkeys(platform_names(), 0) | {"chenyu": 1}
    assert stats["requests"] == {
        "chenyu.submit": 2,
        "chenyu.execution": 1,
        "gptbots.submit": 1,
        "gptbots.verify": 1,
    }
    assert stats["responses"] == {"200": 3, "404": 1, "401": 1}
    assert stats["faults"] == {}
    assert stats["runs"] == 2


# -------------------------------------------------------------------------------- scale and the CLI
async def test_many_concurrent_runs(emulator: EmulatorServer) -> None:
    emulator.state.set_scenario("*", Scenario(queue_seconds=0.1, duration_seconds=0.2))
    limits = httpx.Limits(max_connections=20)
    async with httpx.AsyncClient(
        base_url=emulator.base_url("chenyu"),
        headers={"Authorization": f"Bearer {emulator.api_key}"},
        limits=limits,
    ) as http:
        submits = await asyncio.gather(
            *(
                http.post("/workflow/run/submit", json={"workflow_id": "wf_x", "idempotency_key": f"k{i}"})
                for i in range(100)
            )
        )
        ids = [response.json()["data"]["run_order_id"] for response in submits]
        await asyncio.sleep(0.35)
        polls = await asyncio.gather(
            *(http.get("/workflow/run/execution", params={"run_order_id": run_id}) for run_id in ids)
        )
    assert {response.json()["data"]["status"] for response in polls} == {"succeeded"}


def test_ten_thousand_runs_are_cheap(emulator: EmulatorServer, chenyu_client: httpx.Client) -> None:
    # Cheap in memory, the emulator's design (runs are records whose state is computed on read, no task per
    # run): a soak or a benchmark of 10,000 runs fits. Speed is measured in benchmarks, not here.
    dialect = emulator.state.dialects["chenyu"]
    tracemalloc.start()
    try:
        for number in range(10_000):
            extra = {"revision_id": "wfr_x", "task_id": f"t{number}", "prompt_id": "p", "billing_run_id": "b"}
            emulator.state.create_run(
                dialect, "wf_bulk", {"n": number}, run_id=f"wfrun_bulk{number}", extra=extra
            )
        allocated = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert allocated / 10_000 < 4096, f"{allocated / 10_000:.0f} bytes per run"
    assert chenyu_execution(chenyu_client, "wfrun_bulk9999")["status"] in ("queued", "running")
    assert len(emulator.state.list_runs("chenyu")) == 10_000


def test_scenarios_given_at_start_survive_reset() -> None:
    state = EmulatorState(scenarios={"wf_file": {"outcome": "partial"}})
    state.set_scenario("wf_other", Scenario())
    state.reset()
    assert state.scenario_for("wf_file").outcome == "partial"
    assert state.scenario_for("wf_other") == Scenario()
    assert build_app(state).routes


def test_command_line_prints_base_urls(tmp_path: Path) -> None:
    scenarios = tmp_path / "scenarios.json"
    scenarios.write_text(json.dumps({"wf_cli": {"outcome": "failed"}}))
    command = [sys.executable, "-m", "airflow_provider_wfrun.emulator", "--port", "0", "--api-key", "k"]
    process = subprocess.Popen(
        [*command, "--scenarios", str(scenarios), "--log-level", "warning"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        lines = [process.stdout.readline() for _ in range(len(platform_names()) + 2)]
        urls = {line.split()[0]: line.split()[1] for line in lines[1:]}
        assert urls["dify"].endswith("/dify/v1")
        assert urls["chenyu"].endswith("/chenyu/api/open/v2")
        assert urls["gptbots"].endswith("/gptbots/v1")
        control_url = urls["control"]
        assert httpx.get(control_url + "scenarios", timeout=5).json()["wf_cli"]["outcome"] == "failed"
        verify = httpx.get(
            urls["gptbots"] + "/api-key/verify", headers={"Authorization": "Bearer k"}, timeout=5
        )
        assert verify.status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()


FOURTH_PLATFORM = """
from __future__ import annotations

from starlette.responses import JSONResponse

from airflow_provider_wfrun.emulator.core import Dialect, json_object, platform_route

NAME = "echo"
ROOT = "/echo/api"


def _error(status, message, code):
    return JSONResponse({"error": message or status}, status_code=status)


DIALECT = Dialect(name=NAME, root=ROOT, statuses={p: p.upper() for p in
    ("queued", "running", "succeeded", "failed", "canceled", "partial")}, error=_error)


async def _submit(state, request):
    run = state.create_run(DIALECT, "wf-echo", await json_object(request))
    return JSONResponse({"id": run.run_id, "status": state.status_word(run)})


def routes(state):
    return [platform_route(state, DIALECT, "submit", "/runs", _submit, "POST")]
"""


def test_a_fourth_platform_is_one_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    (tmp_path / "echo.py").write_text(FOURTH_PLATFORM)
    monkeypatch.setattr(platforms, "__path__", [*platforms.__path__, str(tmp_path)])
    request.addfinalizer(lambda: sys.modules.pop(f"{platforms.__name__}.echo", None))
    with EmulatorServer() as server:
        server.state.set_faults([Fault(route="echo.submit", kind="503", count=1)])
        with client(server, "echo") as http:
            assert http.post("/runs", json={}).status_code == 503
            assert http.post("/runs", json={"a": 1}).json()["status"] == "QUEUED"
            assert http.post("/runs", json={}, headers={"Authorization": "Bearer nope"}).status_code == 401
        assert server.base_url("echo") == server.url + "/echo/api"
        assert server.state.stats()["submissions"]["echo"] == 1
