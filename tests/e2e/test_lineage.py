"""
OpenLineage events of real DAG runs: ``airflow dags test`` in a subprocess with the OpenLineage provider
configured for a file transport (no network), reading the events it wrote.

A subprocess because the provider reads its configuration once per process and registers its listener at
start-up; the rest of the suite runs with OpenLineage unconfigured (disabled).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from conftest import ALL_PLATFORMS

# The OpenLineage provider is in the `dev` and `openlineage` extras, not `test`: the floor venv has none.
pytest.importorskip(
    "airflow.providers.openlineage",
    reason="needs the OpenLineage provider: pip install 'airflow-provider-wfrun[openlineage]'",
)

pytestmark = pytest.mark.airflow_db


def dags_test(dag_id: str, events_file: Path, **conf: Any) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AIRFLOW__CORE__DAGS_FOLDER": str(Path(__file__).parents[2] / "example_dags"),
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events_file), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "wfrun-tests",
    }
    command = [sys.executable, "-m", "airflow", "dags", "test", dag_id, "--conf", json.dumps(conf)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=240, check=False)


def completed(events_file: Path) -> dict[str, dict[str, Any]]:
    """The COMPLETE (or FAIL) event of each task, by task id."""
    events = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    return {
        event["job"]["name"].split(".", 1)[1]: event
        for event in events
        if event["eventType"] in ("COMPLETE", "FAIL") and "." in event["job"]["name"]
    }


def test_every_run_task_emits_its_platform_workflow_run_and_spend(
    airflow_db, connections, emulator, tmp_path
):
    events_file = tmp_path / "events.jsonl"
    result = dags_test("example_wfrun_lineage", events_file)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    events = completed(events_file)

    render = events["render"]
    assert render["eventType"] == "COMPLETE"
    job = render["job"]["facets"]["wfrun_workflow"]
    assert (job["platform"], job["platformName"], job["workflowId"]) == (
        "chenyu",
        "chenyu.cn",
        "wf_861ef31e94dcfb10e6e7",
    )
    run = render["run"]["facets"]["wfrun_run"]
    assert run["runId"].startswith("wfrun_")
    assert (run["status"], run["platformStatus"]) == ("succeeded", "succeeded")
    assert Decimal(run["costTotal"]) == Decimal("0.00028780")
    assert run["costCurrency"] == "CNY"
    assert run["durationSeconds"] > 0
    assert run["runUrl"].startswith(emulator.base_url("chenyu"))
    assert render["run"]["facets"]["externalQuery"]["externalQueryId"] == run["runId"]

    # wait=False knows only the run; the sensor that awaited it reports how it ended, with its tokens.
    started = events["start"]["run"]["facets"]["wfrun_run"]
    assert started["platform"] == "dify"
    assert "status" not in started
    awaited = events["await_summary"]["run"]["facets"]["wfrun_run"]
    assert awaited["runId"] == started["runId"]
    assert awaited["status"] == "succeeded"
    assert awaited["tokens"] > 0
    assert events["await_summary"]["job"]["facets"]["wfrun_workflow"]["platform"] == "dify"
    assert emulator.state.stats()["submissions"] == dict.fromkeys(ALL_PLATFORMS, 0) | {"dify": 1, "chenyu": 1}


def test_the_files_a_run_read_and_wrote_are_its_input_and_output_datasets(
    airflow_db, connections, emulator, tmp_path
):
    events_file = tmp_path / "events.jsonl"
    result = dags_test("example_wfrun_files", events_file)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    event = completed(events_file)["restyle_photo"]
    inputs = [(dataset["namespace"], dataset["name"]) for dataset in event["inputs"]]
    assert inputs == [("file", str(airflow_db / "wfrun-example-files" / "inputs" / "product.png"))]
    (output,) = event["outputs"]
    run_id = event["run"]["facets"]["wfrun_run"]["runId"]
    assert output["namespace"] == "file"
    assert output["name"] == str(airflow_db / "wfrun-example-files" / "outputs" / run_id / "product.png")
    assert Path(output["name"]).is_file()


def test_lineage_stays_optional_the_operators_work_where_openlineage_cannot_be_imported():
    code = """
import sys

# Airflow itself discovers installed providers (the OpenLineage one among them) first; then OpenLineage
# is made unimportable, as on an installation without it.
from airflow.providers_manager import ProvidersManager

ProvidersManager().initialize_providers_configuration()
for name in [m for m in sys.modules if m.startswith(("openlineage", "airflow.providers.openlineage"))]:
    del sys.modules[name]

class NoOpenLineage:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "openlineage" or name.startswith("airflow.providers.openlineage"):
            raise ImportError(f"{name} is not installed")

sys.meta_path.insert(0, NoOpenLineage())
from airflow_provider_wfrun.operators.workflow_run import RunWorkflowOperator
from airflow_provider_wfrun.sensors.workflow_run import WorkflowRunSensor

RunWorkflowOperator(task_id="run", conn_id="wfrun_dify")
WorkflowRunSensor(task_id="wait", conn_id="wfrun_dify", run_id="r")
try:
    RunWorkflowOperator(task_id="other", conn_id="wfrun_dify").get_openlineage_facets_on_complete(None)
except ImportError:
    pass
else:
    raise AssertionError("lineage was built without OpenLineage")
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
