"""
Dify Human Input nodes in the emulator, over real HTTP: a run pauses, its stream hands out the form, an
answer resumes it, and a form answered twice or too late gets Dify's 412.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from test_emulator import dify_detail, poll, sse_events

from airflow_provider_wfrun.emulator import EmulatorServer


@pytest.fixture
def http(emulator: EmulatorServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {emulator.api_key}"}
    with httpx.Client(base_url=emulator.base_url("dify"), headers=headers, timeout=5) as client:
        yield client


def streamed_run(http: httpx.Client, *nodes: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """Start a pausing run in streaming mode; its stream closes at the pause, as Dify's does."""
    scenario = {"duration_seconds": 0.3, "human_inputs": list(nodes) or [{}]}
    body = {"inputs": {"draft": "v1", "_emulator": scenario}, "user": "u-1", "response_mode": "streaming"}
    with http.stream("POST", "/workflows/run", json=body) as response:
        events = [event for event in sse_events(response) if event["event"] != "ping"]
    return events[0]["workflow_run_id"], events


def reopened(http: httpx.Client, run_id: str, **params: Any) -> list[dict[str, Any]]:
    query = {"user": "u-1", "include_state_snapshot": "true", **params}
    with http.stream("GET", f"/workflow/{run_id}/events", params=query) as response:
        assert response.status_code == 200
        return [event for event in sse_events(response) if event["event"] != "ping"]


def answer(http: httpx.Client, token: str, action: str = "approve", **inputs: str) -> httpx.Response:
    return http.post(f"/form/human_input/{token}", json={"inputs": inputs, "action": action, "user": "u-1"})


def test_a_run_pauses_at_its_form_and_the_stream_closes_with_the_form(http: httpx.Client) -> None:
    run_id, events = streamed_run(http, {"content": "Ship draft v1?", "inputs": {"comment": "ok"}})
    names = [event["event"] for event in events]
    assert names[-2:] == ["human_input_required", "workflow_paused"]
    assert "workflow_finished" not in names
    required = events[-2]["data"]
    assert required["form_content"] == "Ship draft v1?"
    assert [action["id"] for action in required["actions"]] == ["approve", "reject"]
    assert required["resolved_default_values"] == {"comment": "ok"}
    assert required["expiration_time"] > time.time() + 3000
    assert dify_detail(http, run_id)["status"] == "paused"

    form = http.get(f"/form/human_input/{required['form_token']}").json()
    assert form["form_content"] == "Ship draft v1?"
    assert [field["output_variable_name"] for field in form["inputs"]] == ["comment"]


def test_an_answer_resumes_the_run_which_reports_it_and_finishes(http: httpx.Client) -> None:
    run_id, events = streamed_run(http)
    token = events[-2]["data"]["form_token"]
    assert answer(http, token, "reject", comment="needs a title").json() == {}
    detail = poll(lambda: dify_detail(http, run_id), lambda d: d["status"] == "succeeded")[-1]
    assert detail["outputs"]["approval"] == {"action": "reject", "comment": "needs a title"}
    resumed = reopened(http, run_id)
    assert [event["event"] for event in resumed] == ["workflow_finished"]


def test_a_form_answered_twice_or_after_it_expired_gets_412(http: httpx.Client) -> None:
    _, events = streamed_run(http)
    token = events[-2]["data"]["form_token"]
    assert answer(http, token).status_code == 200
    again = answer(http, token)
    assert (again.status_code, again.json()["code"]) == (412, "human_input_form_submitted")

    _, events = streamed_run(http, {"expires_seconds": 0.2})
    late = events[-2]["data"]["form_token"]
    time.sleep(0.3)
    expired = answer(http, late)
    assert (expired.status_code, expired.json()["code"]) == (412, "human_input_form_expired")


def test_an_expired_form_resumes_the_run_along_its_timeout_branch(http: httpx.Client) -> None:
    run_id, _ = streamed_run(http, {"expires_seconds": 0.2})
    detail = poll(lambda: dify_detail(http, run_id), lambda d: d["status"] == "succeeded")[-1]
    assert detail["outputs"]["approval"] == {"action": "timeout"}


def test_a_bad_action_is_refused_and_the_form_can_still_be_answered(http: httpx.Client) -> None:
    _, events = streamed_run(http)
    token = events[-2]["data"]["form_token"]
    refused = answer(http, token, "maybe")
    assert (refused.status_code, refused.json()["code"]) == (400, "invalid_form_data")
    assert answer(http, token).status_code == 200


def test_several_pauses_each_have_their_own_form_and_the_reopened_stream_names_the_waiting_one(
    http: httpx.Client,
) -> None:
    first = {"at": 0.2, "node_id": "draft", "content": "Draft ok?"}
    second = {"at": 0.8, "node_id": "final", "content": "Publish?", "actions": ["publish", "hold"]}
    run_id, events = streamed_run(http, first, second)
    assert answer(http, events[-2]["data"]["form_token"]).status_code == 200

    def waiting_form() -> dict[str, Any]:
        stream = reopened(http, run_id)
        return {"names": [event["event"] for event in stream], "events": stream}

    seen = poll(waiting_form, lambda s: s["names"].count("human_input_required") == 2)[-1]
    names, stream = seen["names"], seen["events"]
    # The snapshot replays the first pause and its answer, then stops at the second pause.
    assert names.index("human_input_form_filled") < len(names) - 2
    assert names[-2:] == ["human_input_required", "workflow_paused"]
    assert stream[-2]["data"]["form_content"] == "Publish?"
    assert answer(http, stream[-2]["data"]["form_token"], "publish").status_code == 200
    detail = poll(lambda: dify_detail(http, run_id), lambda d: d["status"] == "succeeded")[-1]
    assert detail["outputs"]["draft"]["action"] == "approve"
    assert detail["outputs"]["final"]["action"] == "publish"


def test_only_the_user_who_started_the_run_may_reopen_its_stream(http: httpx.Client) -> None:
    run_id, _ = streamed_run(http)
    other = http.get(f"/workflow/{run_id}/events", params={"user": "someone-else"})
    assert (other.status_code, other.json()["code"]) == (404, "not_found")


def test_a_stopped_paused_run_is_stopped_and_its_form_gone(http: httpx.Client) -> None:
    run_id, events = streamed_run(http)
    stopped = http.post(f"/workflows/tasks/{events[0]['task_id']}/stop", json={"user": "u-1"})
    assert stopped.status_code == 200
    assert dify_detail(http, run_id)["status"] == "stopped"
    assert answer(http, events[-2]["data"]["form_token"]).status_code == 404


def test_other_platforms_have_no_human_input_nodes(emulator: EmulatorServer) -> None:
    headers = {"Authorization": f"Bearer {emulator.api_key}"}
    with httpx.Client(base_url=emulator.base_url("gptbots"), headers=headers, timeout=5) as gptbots:
        body = {"userId": "u", "input": {"_emulator": {"human_inputs": [{}]}}}
        refused = gptbots.post("/workflow/invoke", json=body)
    assert refused.status_code == 400
    assert "only Dify runs pause for a form" in refused.text
