"""
DAGs through real Airflow (``dag.test()`` on SQLite) against the emulator.

``dag.test()`` serializes the trigger, rebuilds it from its kwargs and runs it in-process, then resumes
the task on a "worker": a real round trip of everything a deferral stores.
"""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from airflow.utils.state import DagRunState
from conftest import ALL_PLATFORMS, API_KEY, BUNDLES, DagBag

from airflow_provider_wfrun.emulator.app import example_outputs, example_run

pytestmark = pytest.mark.airflow_db


@cache
def bag(folder: Path) -> DagBag:
    dagbag = DagBag(str(folder))
    assert dagbag.import_errors == {}
    return dagbag


def run_dag(dag_id: str, bundle: str = "wfrun_test_dags", **conf: Any):
    return bag(BUNDLES[bundle]).dags[dag_id].test(run_conf=conf or None)


def xcom(dag_run, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
    ti = dag_run.get_task_instance(task_id, map_index=map_index)
    return ti.xcom_pull(task_ids=task_id, key=key, map_indexes=map_index)


def conf_for(connections: dict[str, str], platform: str, **scenario: Any) -> dict[str, Any]:
    inputs = {"prompt": f"hello {platform}", "_emulator": {"duration_seconds": 0.5, **scenario}}
    return {
        "conn_id": connections[platform],
        "workflow_id": None,
        "workflow": None,
        **example_run(platform, inputs),
    }


def test_every_dag_file_parses_without_import_errors(airflow_db):
    for name, folder in BUNDLES.items():
        assert bag(folder).dags, name


@pytest.mark.parametrize("mode", ["deferrable", "worker"])
@pytest.mark.parametrize("platform", ALL_PLATFORMS)
def test_outputs_and_costs_reach_the_downstream_task(airflow_db, connections, emulator, platform, mode):
    dag_run = run_dag(f"wfrun_test_operator_{mode}", **conf_for(connections, platform))
    assert dag_run.state == DagRunState.SUCCESS

    received = xcom(dag_run, "downstream")["received"]
    assert received["platform"] == platform
    assert received["status"] == "succeeded"
    assert received["outputs"] == example_outputs(platform, {"prompt": f"hello {platform}"})
    assert received["run_id"] == xcom(dag_run, "run", key="run_id")
    assert xcom(dag_run, "run", key="run_url").startswith(emulator.base_url(platform))
    cost = received["cost"]
    # Money where the platform reports it, credits for GPTBots; none for token-only or free platforms.
    expected_currency = {"gptbots": "credits", "chenyu": "CNY"}.get(platform)
    assert cost["currency"] == expected_currency
    if platform == "chenyu":
        assert Decimal(cost["total"]) == Decimal("0.00028780")
    assert xcom(dag_run, "run", key="cost")["try_number"] == 1
    assert emulator.state.stats()["submissions"][platform] == 1


def test_the_workflow_run_link_resolves_as_the_api_server_does(airflow_db, connections, emulator):
    from airflow.models.serialized_dag import SerializedDagModel

    dag_run = run_dag("wfrun_test_operator_worker", **conf_for(connections, "gptbots"))
    serialized_task = SerializedDagModel.get_dag("wfrun_test_operator_worker").get_task("run")
    assert serialized_task.extra_links == ["Workflow run"]
    link = serialized_task.get_extra_links(dag_run.get_task_instance("run"), "Workflow run")
    assert link == xcom(dag_run, "run", key="run_url")
    assert link.startswith(emulator.base_url("gptbots"))


def test_a_failed_run_fails_the_task_with_the_platform_reason(airflow_db, connections, emulator, capfd):
    dag_run = run_dag(
        "wfrun_test_operator_deferrable",
        **conf_for(connections, "chenyu", outcome="failed", error_reason="ComfyUI node 9 ran out of memory"),
    )
    assert dag_run.state == DagRunState.FAILED
    assert dag_run.get_task_instance("run").state == "failed"
    assert "RunFailedError" in capfd.readouterr().out
    assert emulator.state.stats()["submissions"]["chenyu"] == 1


@pytest.mark.parametrize("mode", ["poke", "reschedule", "deferrable"])
def test_sensor_waits_in_every_mode(airflow_db, connections, emulator, mode):
    dag_run = run_dag(f"wfrun_test_sensor_{mode}", **conf_for(connections, "dify", duration_seconds=1.5))
    assert dag_run.state == DagRunState.SUCCESS
    received = xcom(dag_run, "downstream")["received"]
    assert received["run_id"] == xcom(dag_run, "start")
    assert received["status"] == "succeeded"
    assert emulator.state.stats()["submissions"]["dify"] == 1


def test_example_dags_run_end_to_end(airflow_db, connections, emulator, capfd):
    for dag_id in (*(f"example_wfrun_{platform}" for platform in ALL_PLATFORMS), "example_wfrun_fan_out"):
        dag_run = run_dag(dag_id, bundle="wfrun_examples")
        assert dag_run.state == DagRunState.SUCCESS, dag_id
    total = xcom(run_dag("example_wfrun_fan_out", bundle="wfrun_examples"), "total_cost")
    assert total == {"runs": 5, "total": "0.00143900", "currency": "CNY"}
    # One run per platform's example; chenyu's besides: the fan-out's five, twice.
    assert emulator.state.stats()["submissions"] == {platform: 1 for platform in ALL_PLATFORMS} | {
        "chenyu": 11
    }


def test_the_api_key_appears_in_no_log_and_no_xcom(airflow_db, connections, emulator, capfd):
    run_dag("wfrun_test_operator_deferrable", **conf_for(connections, "dify"))
    run_dag("wfrun_test_operator_deferrable", **conf_for(connections, "chenyu", outcome="failed"))
    captured = capfd.readouterr()
    assert API_KEY not in captured.out
    assert API_KEY not in captured.err
    log_files = list((airflow_db / "logs").rglob("*")) if (airflow_db / "logs").exists() else []
    for path in log_files:
        if path.is_file():
            assert API_KEY not in path.read_text(errors="replace"), path
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        values = [str(row.value) for row in session.query(XComModel).all()]
    assert values
    assert not [value for value in values if API_KEY in value]
