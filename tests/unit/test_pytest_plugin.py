"""The pytest plugin users load (``pytest11`` entry point): a user's own test session, run by ``pytester``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

#: A user's test module: the plugin's fixtures only, nothing from this repository's conftest.
USER_TESTS = """
import pytest
from airflow_provider_wfrun.hooks.workflow_run import WorkflowRunHook
from airflow_provider_wfrun.models import RunStatus
from airflow_provider_wfrun.exceptions import AuthenticationError


def finished(hook, run_id):
    import time
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        run = hook.get_run(run_id)
        if run.is_terminal:
            return run
        time.sleep(0.1)
    raise AssertionError("run did not finish")


@pytest.mark.parametrize("platform", ["dify", "gptbots", "chenyu"])
def test_a_run_succeeds_on_the_emulator(wfrun_connections, platform):
    hook = WorkflowRunHook(wfrun_connections[platform])
    workflow_id = "wf_861ef31e94dcfb10e6e7" if platform == "chenyu" else None
    run = hook.submit_run({"query": "hi", "_emulator": {"duration_seconds": 0.2}}, workflow_id=workflow_id)
    assert finished(hook, run.run_id).status is RunStatus.SUCCEEDED


def test_a_scripted_failure(wfrun_connections, wfrun_emulator):
    hook = WorkflowRunHook(wfrun_connections["dify"])
    script = {"duration_seconds": 0.1, "outcome": "failed", "error_reason": "GPU lost"}
    run = hook.submit_run({"_emulator": script})
    run = finished(hook, run.run_id)
    assert run.status is RunStatus.FAILED
    assert run.error.reason == "GPU lost"
    assert wfrun_emulator.state.runs


def test_state_is_reset_between_tests(wfrun_emulator):
    assert not wfrun_emulator.state.runs


def test_a_wrong_key_is_rejected(wfrun_connections, monkeypatch):
    import json, os
    name = "AIRFLOW_CONN_" + wfrun_connections["gptbots"].upper()
    monkeypatch.setenv(name, json.dumps({**json.loads(os.environ[name]), "password": "wrong"}))
    with pytest.raises(AuthenticationError):
        WorkflowRunHook(wfrun_connections["gptbots"]).submit_run({"q": 1})
"""


def test_the_plugin_serves_a_users_tests_through_the_emulator(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user_dags=USER_TESTS)
    # A subprocess, as a user's `pytest` would start: the plugin comes from the installed entry point.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=6)


def test_connection_ids_follow_the_prefix_option(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_prefix="""
import os

def test_ids(wfrun_connections):
    assert {"chenyu", "dify", "gptbots"} <= set(wfrun_connections)
    assert all(conn_id == f"my_{name}" for name, conn_id in wfrun_connections.items())
    assert '"conn_type": "dify"' in os.environ["AIRFLOW_CONN_MY_DIFY"]
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "--wfrun-conn-prefix", "my_")
    result.assert_outcomes(passed=1)


README = Path(__file__).resolve().parents[2] / "README.md"
USER_DAG = """
import pendulum
from airflow.sdk import DAG
from airflow_provider_wfrun.operators.workflow_run import RunWorkflowOperator

with DAG("translate", schedule=None, start_date=pendulum.datetime(2026, 1, 1)):
    RunWorkflowOperator(task_id="translate", conn_id="wfrun_dify", inputs={"query": "good morning"},
                        deferrable=True, poll_interval=1)
"""


def readme_recipe() -> str:
    """The README's "Test your own DAGs" example, as a user would copy it."""
    found = re.search(
        r"```python\n(# tests/test_my_dags\.py.*?)```", README.read_text(encoding="utf-8"), re.S
    )
    assert found, "the README lost its DAG-test recipe"
    return found.group(1)


def test_the_readme_recipe_runs_a_users_dag_against_the_emulator(pytester: pytest.Pytester) -> None:
    """A user's project: dags/translate.py and the README's test, which runs `airflow dags test`."""
    (pytester.path / "dags").mkdir()
    (pytester.path / "dags" / "translate.py").write_text(USER_DAG)
    (pytester.path / "tests").mkdir()
    (pytester.path / "tests" / "test_my_dags.py").write_text(readme_recipe())
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "tests")
    result.assert_outcomes(passed=1)
