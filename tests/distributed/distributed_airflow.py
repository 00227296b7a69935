"""
A production-shaped Airflow on loopback: PostgreSQL, CeleryExecutor on Redis, two workers, two triggerers.

The same harness as the live tier (``tests/airflow_deployment.py``) with the live DAGs, in the shape users
run: a fresh PostgreSQL database per deployment (dropped after), Redis as Celery's broker and result
backend, two Celery workers, two triggerers, a scheduler, a dag processor and the API server. Each
component's name is its host name (``wfrun_hostname``), so the metadata database says which triggerer
holds a trigger and which worker ran a try.

Connections come from two secrets backends: ``AIRFLOW_CONN_*`` variables (as in the live tier) and a
``LocalFilesystemBackend`` file holding connections found nowhere else (``FILE_CONNECTIONS``).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from contextlib import closing
from pathlib import Path
from typing import Any

import redis
from airflow_deployment import PLATFORMS, AirflowDeployment, PostgresDatabase
from airflow_scenarios import LIVE_DAGS_DIR

from airflow_provider_wfrun.emulator import EmulatorServer

HERE = Path(__file__).parent
POSTGRES = ("127.0.0.1", 5432)
REDIS = ("127.0.0.1", 6379)
TRIGGERERS = ("triggerer-1", "triggerer-2")
WORKERS = ("celery-worker-1", "celery-worker-2")
COMPONENTS = ("api-server", "dag-processor", "scheduler", *TRIGGERERS, *WORKERS)
DAG_IDS = (
    "wfrun_live_deferrable",
    "wfrun_live_worker",
    "wfrun_live_soak",
    "wfrun_live_fanout",
)
#: Connections only the file secrets backend knows: ``wfrun_file_<platform>``.
FILE_CONNECTIONS = {f"wfrun_file_{platform}": platform for platform in PLATFORMS}
API_KEY = f"sk-wfrun-dist-{secrets.token_hex(10)}"


def unreachable_services() -> list[str]:
    """The services this tier needs that do not accept a connection (empty when all are up)."""
    missing = []
    for name, address in (("PostgreSQL", POSTGRES), ("Redis", REDIS)):
        try:
            with closing(socket.create_connection(address, timeout=3)):
                pass
        except OSError as exc:
            missing.append(f"{name} at {address[0]}:{address[1]} ({exc.strerror or exc})")
    return missing


class DistributedAirflow(AirflowDeployment):
    """The live DAGs by default; the benchmark passes its own DAGs, components and settings."""

    def __init__(
        self,
        home: Path,
        emulator: EmulatorServer,
        *,
        worker_concurrency: int = 4,
        dags_dir: Path = LIVE_DAGS_DIR,
        dag_ids: tuple[str, ...] = DAG_IDS,
        components: tuple[str, ...] = COMPONENTS,
        settings: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        redis_url = f"redis://{REDIS[0]}:{REDIS[1]}/0"
        connections_file = home / "connections.json"
        connections_file.write_text(
            json.dumps(
                {
                    conn_id: {
                        "conn_type": platform,
                        "host": emulator.base_url(platform),
                        "password": emulator.api_key,
                    }
                    for conn_id, platform in FILE_CONNECTIONS.items()
                }
            )
        )
        python_path = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
        super().__init__(
            home,
            emulator,
            dags_dir=dags_dir,
            bundle="wfrun_distributed_dags",
            dag_ids=dag_ids,
            database=PostgresDatabase(*POSTGRES),
            components=components,
            parallelism=32,
            settings={
                "CORE__EXECUTOR": "CeleryExecutor",
                "CORE__HOSTNAME_CALLABLE": "wfrun_hostname.hostname",
                # Seven components share the server with other users: small pools.
                "DATABASE__SQL_ALCHEMY_POOL_SIZE": "2",
                "DATABASE__SQL_ALCHEMY_MAX_OVERFLOW": "6",
                "CELERY__BROKER_URL": redis_url,
                "CELERY__RESULT_BACKEND": redis_url,
                "CELERY__WORKER_CONCURRENCY": str(worker_concurrency),
                "CELERY__SYNC_PARALLELISM": "1",
                # Claim a few triggers per loop, so two triggerers share the load (default 50).
                "TRIGGERER__MAX_TRIGGER_TO_SELECT_PER_LOOP": "4",
                "SECRETS__BACKEND": "airflow.secrets.local_filesystem.LocalFilesystemBackend",
                "SECRETS__BACKEND_KWARGS": json.dumps({"connections_file_path": str(connections_file)}),
                **(settings or {}),
            },
            env={"PYTHONPATH": python_path, **(env or {})},
            **kwargs,
        )

    def stop(self) -> None:
        """Stop everything, then remove this deployment's queues from Redis (messages a test left there)."""
        try:
            super().stop()
        finally:
            client = redis.Redis(host=REDIS[0], port=REDIS[1], db=0, socket_timeout=10)
            with closing(client):
                for queue in self.worker_queues:
                    client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")

    def triggers_by_triggerer(self) -> dict[str, set[int]]:
        """Which triggerer (by component name) holds which trigger ids now."""
        held: dict[str, set[int]] = {}
        for trigger_id, host in self.query(
            "SELECT t.id, j.hostname FROM trigger t JOIN job j ON t.triggerer_id = j.id"
        ):
            held.setdefault(host, set()).add(trigger_id)
        return held
