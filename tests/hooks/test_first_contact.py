"""What a new user sees first: a host without its version segment, and the run link of each platform."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import PLATFORMS, WORKFLOW_IDS, connection_json

from airflow_provider_wfrun.hooks.workflow_run import WorkflowRunHook
from airflow_provider_wfrun.platforms import adapter_classes

#: Platforms whose API root has a path (a version segment) a user may leave out of the host.
VERSIONED = [name for name in PLATFORMS if urlsplit(adapter_classes()[name].default_host).path.strip("/")]


@pytest.mark.parametrize("platform", VERSIONED)
def test_a_host_without_its_version_segment_says_so(emulator, monkeypatch, platform):
    root = emulator.base_url(platform)
    without_version = root.rsplit("/", 1)[0]  # .../dify/v1 -> .../dify, .../api/open/v2 -> .../api/open
    monkeypatch.setenv("AIRFLOW_CONN_FIRST", connection_json(emulator, platform, host=without_version))
    ok, message = WorkflowRunHook("first").test_connection()
    assert not ok
    assert "version segment" in message
    assert adapter_classes()[platform].default_host in message


def test_a_missing_run_on_the_right_root_gets_no_such_hint(emulator, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_FIRST", connection_json(emulator, "chenyu"))
    with pytest.raises(Exception, match="not found") as caught:
        WorkflowRunHook("first").get_run("wfrun_00000000000000000000")
    assert "version segment" not in str(caught.value)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_the_run_link_names_the_run(emulator, monkeypatch, platform):
    """GPTBots polls with a POST body; its link carries the run id as a query parameter instead."""
    monkeypatch.setenv("AIRFLOW_CONN_FIRST", connection_json(emulator, platform))
    hook = WorkflowRunHook("first")
    run = hook.submit_run({"query": "hi"}, workflow_id=WORKFLOW_IDS[platform])
    link = hook.run_url(run.run_id)
    assert link.startswith(emulator.base_url(platform))
    assert all(part in link for part in run.run_id.split(":"))  # Coze: "<workflow id>:<execute id>"
    if platform == "gptbots":
        assert parse_qs(urlsplit(link).query) == {"workflowRunId": [run.run_id]}
