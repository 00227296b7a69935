"""Coze through the hook over real HTTP against the emulator: composite run ids, envelopes, decoded output."""

from __future__ import annotations

import time

import pytest
from conftest import connection_json

from airflow_provider_wfrun.exceptions import AuthenticationError, NotSupportedError, RunNotFoundError
from airflow_provider_wfrun.hooks.workflow_run import WorkflowRunHook
from airflow_provider_wfrun.models import RunStatus

WORKFLOW_ID = "7484523878849822754"


def test_a_run_is_polled_by_workflow_and_execution_and_its_output_decoded(emulator, connections):
    hook = WorkflowRunHook(connections["coze"], retry_delay=0.01)
    run = hook.submit_run(
        {"topic": "otters", "_emulator": {"duration_seconds": 0.2, "tokens": 77}}, workflow_id=WORKFLOW_ID
    )
    (stored,) = emulator.state.runs.values()
    assert run.run_id == f"{WORKFLOW_ID}:{stored.run_id}"
    assert stored.inputs["topic"] == "otters"  # the inputs went as the workflow's parameters
    deadline = time.monotonic() + 10
    while not (final := hook.get_run(run.run_id)).is_terminal and time.monotonic() < deadline:
        time.sleep(0.05)
    assert final.status is RunStatus.SUCCEEDED
    assert final.outputs == {"topic": "otters"}  # "output" and its "Output" both decoded
    assert final.cost.tokens == 77
    assert final.run_url.startswith("https://www.coze.com/work_flow?execute_id=")
    with pytest.raises(NotSupportedError, match="no API to cancel"):
        hook.cancel_run(run.run_id)


def test_an_unknown_execution_answered_with_http_200_is_not_found(emulator, connections):
    hook = WorkflowRunHook(connections["coze"], retry_delay=0.01)
    with pytest.raises(RunNotFoundError, match="execute record not found"):
        hook.get_run(f"{WORKFLOW_ID}:1234567890123456789")


def test_a_rejected_token_is_an_authentication_error(emulator, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_COZE_BAD", connection_json(emulator, "coze", password="pat_wrong_token"))
    with pytest.raises(AuthenticationError, match="authentication is invalid"):
        WorkflowRunHook("coze_bad").submit_run({}, workflow_id=WORKFLOW_ID)
    assert emulator.state.stats()["submissions"]["coze"] == 0
