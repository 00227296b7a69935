"""
Shared fixtures.

Airflow reads its configuration at import, so the isolated AIRFLOW_HOME (SQLite, no examples) is set here,
before any test module imports Airflow. The emulator runs once per session on a free loopback port and is
reset before each test that uses it; connections point at it through ``AIRFLOW_CONN_*`` variables, the
way a user would configure them.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="wfrun-airflow-home-"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME}/airflow.db"
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
_REPO = Path(__file__).parent.parent
#: The DAGs dag.test() runs must live in a bundle: the examples users read, and the tests' own DAGs.
BUNDLES = {"wfrun_examples": _REPO / "example_dags", "wfrun_test_dags": _REPO / "tests" / "dags"}
os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(
    [
        {
            "name": name,
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(path), "refresh_interval": 0},
        }
        for name, path in BUNDLES.items()
    ]
)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(BUNDLES["wfrun_test_dags"])
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")

import airflow  # noqa: E402
import pytest  # noqa: E402
from packaging.version import Version  # noqa: E402

from airflow_provider_wfrun.emulator import EmulatorServer  # noqa: E402
from airflow_provider_wfrun.emulator.app import example_run  # noqa: E402
from airflow_provider_wfrun.platforms import adapter_classes  # noqa: E402

#: The installed Airflow, for tests of behaviour that only newer releases have (``make test-floor`` runs
#: the suite on the oldest supported one).
AIRFLOW_VERSION = Version(Version(airflow.__version__).base_version)


def needs_airflow(version: str, why: str) -> pytest.MarkDecorator:
    """Skip, with the reason in the report, where the installed Airflow is older than ``version``."""
    return pytest.mark.skipif(
        Version(version) > AIRFLOW_VERSION,
        reason=f"needs Airflow >= {version} ({why}); this is {airflow.__version__}",
    )


#: Airflow 3.2 moved DagBag from airflow.models to airflow.dag_processing.
DagBag = importlib.import_module(
    "airflow.dag_processing.dagbag"
    if importlib.util.find_spec("airflow.dag_processing.dagbag")
    else "airflow.models.dagbag"
).DagBag

#: ``pytester`` runs a user's tests with the pytest plugin (tests/unit/test_pytest_plugin.py);
#: ``faults.reporting`` writes the fault matrix and the bad-input catalogue.
pytest_plugins = ("pytester", "faults.reporting")

#: Every platform, from the adapter registry; :func:`example_run` says what a task passes to run on each.
ALL_PLATFORMS = tuple(adapter_classes())
#: The platforms whose inputs are free-form names (not ComfyUI's node overrides): the tests that send
#: arbitrary inputs run on these, with their example workflow id (None: the key selects the workflow).
PLATFORMS = tuple(
    platform
    for platform in ALL_PLATFORMS
    if example_run(platform, {"probe": 1}).keys() == {"inputs", "workflow_id"}
    and example_run(platform, {"probe": 1})["inputs"] == {"probe": 1}
)
WORKFLOW_IDS = {platform: example_run(platform, {})["workflow_id"] for platform in PLATFORMS}
#: Distinctive, so a scan of logs and XComs for it means something.
API_KEY = "sk-wfrun-test-5f2c9e71d04b"


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[EmulatorServer]:
    with EmulatorServer(api_key=API_KEY) as server:
        yield server


@pytest.fixture
def emulator(emulator_server: EmulatorServer) -> Iterator[EmulatorServer]:
    emulator_server.state.reset()
    yield emulator_server
    # Leave no fault behind for tests that talk to the session server without this fixture.
    emulator_server.state.clear_faults()


def connection_json(server: EmulatorServer, platform: str, **overrides: object) -> str:
    return json.dumps(
        {"conn_type": platform, "host": server.base_url(platform), "password": server.api_key, **overrides}
    )


@pytest.fixture
def connections(emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """``wfrun_<platform>`` connections pointing at the emulator; returns platform -> conn id."""
    conn_ids = {}
    for platform in ALL_PLATFORMS:
        conn_id = f"wfrun_{platform}"
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", connection_json(emulator, platform))
        conn_ids[platform] = conn_id
    return conn_ids


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite metadata database in the session's AIRFLOW_HOME (about 10 s, once)."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )
    return _AIRFLOW_HOME
