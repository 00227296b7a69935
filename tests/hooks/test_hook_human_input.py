"""
The hook's side of Dify's Human Input: the pending form read from the run's reopened event stream (over
real HTTP, against the emulator and crafted servers), the answer submitted, and the typed 412 outcomes.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from crafted_server import CraftedServer, send

from airflow_provider_wfrun.emulator import EmulatorServer
from airflow_provider_wfrun.exceptions import (
    FormAnsweredElsewhereError,
    FormExpiredError,
    InvalidInputError,
    InvalidResponseError,
    NotSupportedError,
    ResponseTooLargeError,
    WorkflowRunConnectionError,
)
from airflow_provider_wfrun.hooks.workflow_run import MAX_EVENTS_BEFORE_PAUSE, WorkflowRunHook
from airflow_provider_wfrun.models import RunStatus


@pytest.fixture
def dify(connections: dict[str, str]) -> Iterator[WorkflowRunHook]:
    hook = WorkflowRunHook(connections["dify"], retry_delay=0.01, retry_limit=3, timeout=5.0)
    yield hook
    hook.close()


def paused_run(hook: WorkflowRunHook, *nodes: dict[str, Any]) -> str:
    scenario = {"duration_seconds": 0.3, "human_inputs": list(nodes) or [{}]}
    run = hook.submit_run({"draft": "v1", "_emulator": scenario})
    deadline = time.monotonic() + 5
    while hook.get_run(run.run_id).status is not RunStatus.PAUSED:
        assert time.monotonic() < deadline, "the run never paused"
        time.sleep(0.02)
    return run.run_id


def wait_status(hook: WorkflowRunHook, run_id: str, status: RunStatus) -> Any:
    deadline = time.monotonic() + 5
    while (run := hook.get_run(run_id)).status is not status:
        assert time.monotonic() < deadline, f"run {run_id} is {run.status}, not {status}"
        time.sleep(0.02)
    return run


def test_the_pending_form_is_read_from_the_paused_run_and_answering_it_resumes_the_run(
    dify: WorkflowRunHook,
) -> None:
    run_id = paused_run(dify, {"content": "Ship v1?", "inputs": {"comment": "fine"}})
    form = dify.pending_form(run_id)
    assert form is not None
    assert (form.content, [a.id for a in form.actions]) == ("Ship v1?", ["approve", "reject"])
    assert [(f.name, f.default) for f in form.fields] == [("comment", "fine")]
    assert form.expires_at is not None

    dify.answer_form(form, run_id=run_id, action="reject", inputs={"comment": "add a title"})
    run = wait_status(dify, run_id, RunStatus.SUCCEEDED)
    assert run.outputs["approval"] == {"action": "reject", "comment": "add a title"}
    assert dify.pending_form(run_id) is None  # a finished run waits on nothing


def test_with_several_pauses_the_pending_form_is_the_one_waiting_now(dify: WorkflowRunHook) -> None:
    run_id = paused_run(dify, {"at": 0.1, "content": "first?"}, {"at": 0.9, "content": "second?"})
    first = dify.pending_form(run_id)
    assert first is not None
    assert first.content == "first?"
    dify.answer_form(first, run_id=run_id, action="approve", inputs={})
    deadline = time.monotonic() + 5
    while (second := dify.pending_form(run_id)) is None or second.content != "second?":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert second.token != first.token


def test_a_form_answered_on_dify_first_is_a_typed_error(dify: WorkflowRunHook) -> None:
    run_id = paused_run(dify)
    form = dify.pending_form(run_id)
    assert form is not None
    dify.answer_form(form, run_id=run_id, action="approve", inputs={})  # the web app, say
    with pytest.raises(FormAnsweredElsewhereError, match="answered on the platform") as raised:
        dify.answer_form(form, run_id=run_id, action="reject", inputs={})
    assert raised.value.run_id == run_id
    assert raised.value.error_type == "form_answered_elsewhere"


def test_an_expired_form_is_a_typed_error(dify: WorkflowRunHook) -> None:
    run_id = paused_run(dify, {"expires_seconds": 0.5})
    form = dify.pending_form(run_id)
    assert form is not None
    time.sleep(0.6)
    with pytest.raises(FormExpiredError, match="expired"):
        dify.answer_form(form, run_id=run_id, action="approve", inputs={})


def test_an_action_the_form_does_not_offer_is_refused_before_sending(
    dify: WorkflowRunHook, emulator: EmulatorServer
) -> None:
    run_id = paused_run(dify)
    form = dify.pending_form(run_id)
    assert form is not None
    before = emulator.state.stats()["requests"]
    with pytest.raises(InvalidInputError, match="'maybe' is not an action"):
        dify.answer_form(form, run_id=run_id, action="maybe", inputs={})
    assert emulator.state.stats()["requests"] == before


def test_a_form_delivered_by_email_says_it_cannot_be_answered_through_the_api(dify: WorkflowRunHook) -> None:
    run_id = paused_run(dify, {"delivery": "email"})
    with pytest.raises(NotSupportedError, match="delivery to WebApp"):
        dify.pending_form(run_id)


def test_other_platforms_have_no_forms(connections: dict[str, str]) -> None:
    hook = WorkflowRunHook(connections["gptbots"])
    with pytest.raises(NotSupportedError, match="do not pause for a form"):
        hook.pending_form("a" * 24)


# --- bounded read, against crafted servers --------------------------------------------------------------
RUN_ID = "fb47b2e6-5e43-4f90-be01-d5c5a088d156"
STREAM_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"


def event(name: str, **data: Any) -> bytes:
    return f"data: {json.dumps({'event': name, 'workflow_run_id': RUN_ID, 'data': data})}\n\n".encode()


def endless(payload: bytes) -> Callable[[CraftedServer, socket.socket, bytes], bool]:
    def behaviour(server: CraftedServer, conn: socket.socket, head: bytes) -> bool:
        send(conn, STREAM_HEAD)
        while server.sleep(0.001):
            try:
                conn.sendall(payload * 50)
            except OSError:
                break
        return False

    return behaviour


def trickling(server: CraftedServer, conn: socket.socket, head: bytes) -> bool:
    send(conn, STREAM_HEAD)
    while server.sleep(0.2):
        send(conn, b"event: ping\n\n")
    return False


@pytest.fixture
def crafted_hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., WorkflowRunHook]]:
    hooks: list[WorkflowRunHook] = []

    def make(url: str, **options: Any) -> WorkflowRunHook:
        conn = {"conn_type": "dify", "host": f"{url}/v1", "password": "k"}
        monkeypatch.setenv("AIRFLOW_CONN_CRAFTED", json.dumps(conn))
        hook = WorkflowRunHook("crafted", **{"timeout": 10.0, "retry_limit": 1, **options})
        hooks.append(hook)
        return hook

    yield make
    for hook in hooks:
        hook.close()


def test_a_stream_that_never_reaches_the_pause_stops_at_the_event_cap(
    crafted_hook: Callable[..., WorkflowRunHook],
) -> None:
    with CraftedServer(endless(event("text_chunk", text="x"))) as server:
        with pytest.raises(InvalidResponseError, match=f"more than {MAX_EVENTS_BEFORE_PAUSE} events"):
            crafted_hook(server.url, max_response_bytes=1 << 30).pending_form(RUN_ID)
        assert "include_state_snapshot=true" in server.requests[0].decode()


def test_a_huge_stream_stops_at_the_byte_cap(crafted_hook: Callable[..., WorkflowRunHook]) -> None:
    huge = CraftedServer(endless(b": " + b"x" * 60_000 + b"\n"))
    with huge as server, pytest.raises(ResponseTooLargeError):
        crafted_hook(server.url, max_response_bytes=1 << 20).pending_form(RUN_ID)


def test_a_stream_that_only_keeps_alive_stops_at_the_deadline(
    crafted_hook: Callable[..., WorkflowRunHook],
) -> None:
    with CraftedServer(trickling) as server, pytest.raises(WorkflowRunConnectionError, match="deadline"):
        crafted_hook(server.url, timeout=1.0).pending_form(RUN_ID)
