"""
A real Airflow on loopback for the live tier: scheduler, triggerer, dag processor and API server.

What ``airflow standalone`` runs (LocalExecutor, SQLite, SimpleAuthManager), but as separate processes
the shared harness (``tests/airflow_deployment.py``) starts, kills and restarts one by one. This module
adds what only the live tier has: its DAG folder, and a file that makes the DAG file unimportable while it
exists (a deploy in progress, as a worker starting a task sees it).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from airflow_deployment import PLATFORMS, AirflowDeployment, LiveAirflowError, wait_for
from packaging.version import Version

from airflow_provider_wfrun.emulator import EmulatorServer

__all__ = ["API_KEY", "DAGS_DIR", "HUMAN_WAIT", "PLATFORMS", "LiveAirflow", "LiveAirflowError", "wait_for"]

LIVE_DIR = Path(__file__).parent
DAGS_DIR = LIVE_DIR / "dags"
BUNDLE = "wfrun_live_dags"
DAG_IDS = ("wfrun_live_deferrable", "wfrun_live_deadline", "wfrun_live_worker", "wfrun_live_soak")
#: Distinctive and new each session, so a hit in the secrets scan can only come from this session.
API_KEY = f"sk-wfrun-live-{secrets.token_hex(10)}"


@dataclass(frozen=True)
class HumanWait:
    """How a task waits while a person answers its form, in the installed Airflow."""

    #: The task instance's state meanwhile.
    state: str
    #: The trigger's classpath, if it waits in the triggerer.
    trigger: str | None


#: Airflow 3.3+ parks the task (``awaiting_input``) and an answer resumes it; before, it defers to the
#: standard provider's HITLTrigger, which a triggerer runs (``make test-floor`` runs 3.1.2).
HUMAN_WAIT = (
    HumanWait("awaiting_input", None)
    if Version(Version(version("apache-airflow-core")).base_version) >= Version("3.3")
    else HumanWait("deferred", "airflow.providers.standard.triggers.hitl.HITLTrigger")
)


class LiveAirflow(AirflowDeployment):
    """LocalExecutor on SQLite: one scheduler, triggerer, dag processor and API server."""

    def __init__(self, home: Path, emulator: EmulatorServer, *, parallelism: int = 4) -> None:
        #: While this file exists, the live DAG file raises on import.
        self.break_dags_file = home / "break-dag-import"
        super().__init__(
            home,
            emulator,
            dags_dir=DAGS_DIR,
            bundle=BUNDLE,
            dag_ids=DAG_IDS,
            parallelism=parallelism,
            env={"WFRUN_LIVE_BREAK_FILE": str(home / "break-dag-import")},
        )
