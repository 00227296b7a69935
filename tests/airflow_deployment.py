"""
A real Airflow deployment on loopback, for the tiers that start, kill and restart its processes.

Two shapes share this machinery. The live tier (``tests/live``) runs what ``airflow standalone`` runs:
LocalExecutor on SQLite, one scheduler, triggerer, dag processor and API server. The distributed tier
(``tests/distributed``) runs what production runs: PostgreSQL, CeleryExecutor on Redis, two Celery workers
and two triggerers. Each component is a separate process in its own process group, so a test can SIGKILL
one the way a node failure or the OOM killer would. Everything lives in a temporary ``AIRFLOW_HOME``:
configuration, task and trigger logs, and each component's output under ``logs/components/``.
Configuration goes through ``AIRFLOW__*`` variables with short intervals, so a crash is noticed in seconds.

The emulator runs in the test process (a thread); the Airflow processes reach it over loopback HTTP
through ``AIRFLOW_CONN_WFRUN_<PLATFORM>`` connections, as a user would configure them.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, suppress
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
import psutil
from cryptography.fernet import Fernet

from airflow_provider_wfrun.emulator import EmulatorServer
from airflow_provider_wfrun.platforms import adapter_classes

AIRFLOW = Path(sys.executable).parent / "airflow"
#: Every platform of the adapter registry; what a task passes to run on each is ``example_run``'s.
PLATFORMS = tuple(adapter_classes())
LOCAL_COMPONENTS = ("api-server", "dag-processor", "scheduler", "triggerer")

T = TypeVar("T")

try:  # only the distributed tier installs a PostgreSQL driver
    import psycopg2

    _DB_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, psycopg2.Error)
except ImportError:  # pragma: no cover - depends on the extras installed
    _DB_ERRORS = (sqlite3.Error,)


class LiveAirflowError(AssertionError):
    """The harness gave up waiting; the message says for what and where the component logs are."""


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.5,
    on_fail: str = "",
    errors: Callable[[], str] | None = None,
) -> T:
    """Call ``probe`` until it returns something truthy; bounded in time (and so in count).

    ``errors`` is asked, on timeout, for whatever explains the wait (e.g. import errors).
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = probe()
        except (httpx.HTTPError, KeyError, *_DB_ERRORS) as exc:
            value, last_error = None, exc
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            if errors is not None:
                with suppress(Exception):
                    detail += f"\n{errors()}"
            raise LiveAirflowError(f"timed out after {timeout:.0f} s waiting for {what}{detail}. {on_fail}")
        time.sleep(interval)


# --- the metadata database ------------------------------------------------------------------------------
class MetadataDatabase(Protocol):
    url: str

    def create(self) -> None: ...
    def drop(self) -> None: ...
    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]: ...
    def dump(self) -> bytes: ...
    def from_json_column(self, value: Any) -> Any: ...


class SqliteDatabase:
    """A SQLite file in the Airflow home: nothing to create or drop but the file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"

    def create(self) -> None:
        """``airflow db migrate`` creates the file."""

    def drop(self) -> None:
        """The file goes with the temporary Airflow home."""

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with closing(sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)) as db:
            return db.execute(sql, params).fetchall()

    def dump(self) -> bytes:
        return self.path.read_bytes()

    def from_json_column(self, value: Any) -> Any:
        """SQLite keeps a JSON column as text."""
        return json.loads(value)


class PostgresDatabase:
    """A fresh database on a PostgreSQL server (trust auth), created for one deployment and dropped after."""

    def __init__(self, host: str = "127.0.0.1", port: int = 5432, user: str = "postgres") -> None:
        self.host, self.port, self.user = host, port, user
        self.name = f"wfrun_{secrets.token_hex(6)}"
        self.url = f"postgresql+psycopg2://{user}@{host}:{port}/{self.name}"

    def _connect(self, dbname: str) -> Any:
        connection = psycopg2.connect(
            host=self.host, port=self.port, user=self.user, dbname=dbname, connect_timeout=10
        )
        connection.autocommit = True
        return connection

    def create(self) -> None:
        with closing(self._connect("postgres")) as db, db.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        with closing(self._connect("postgres")) as db, db.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with closing(self._connect(self.name)) as db, db.cursor() as cursor:
            cursor.execute(sql.replace("?", "%s"), params)
            return cursor.fetchall()

    def dump(self) -> bytes:
        return subprocess.run(
            ["pg_dump", "-h", self.host, "-p", str(self.port), "-U", self.user, "-d", self.name],
            capture_output=True,
            check=True,
            timeout=300,
        ).stdout

    def from_json_column(self, value: Any) -> Any:
        """A JSON(B) column comes back decoded from PostgreSQL's driver."""
        return value


# --- the deployment -----------------------------------------------------------------------------------
def _cpu(process: psutil.Process) -> float:
    """A process's CPU seconds, with those of the children it has reaped (a worker's finished tasks)."""
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0  # ended since it was listed
    return times.user + times.system + times.children_user + times.children_system


def component_kind(name: str) -> str:
    """``triggerer-2`` is the second of the triggerers: the kind is the name without its number."""
    return re.sub(r"-\d+$", "", name)


class AirflowDeployment:
    """Airflow's components plus helpers to drive them over REST and read the metadata database.

    ``components`` names every process to run; a kind run twice gets a number (``triggerer-1``,
    ``triggerer-2``). ``settings`` override or add ``AIRFLOW__*`` options (without the prefix).
    """

    def __init__(
        self,
        home: Path,
        emulator: EmulatorServer,
        *,
        dags_dir: Path,
        bundle: str,
        dag_ids: Sequence[str],
        database: MetadataDatabase | None = None,
        components: Sequence[str] = LOCAL_COMPONENTS,
        parallelism: int = 4,
        settings: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
        component_args: dict[str, list[str]] | None = None,
        extra_queues: Sequence[str] = (),
    ) -> None:
        self.home = home
        self.emulator = emulator
        self.dags_dir = dags_dir
        self.bundle = bundle
        self.dag_ids = tuple(dag_ids)
        self.components = tuple(components)
        self.database: MetadataDatabase = database or SqliteDatabase(home / "airflow.db")
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.component_logs = home / "logs" / "components"
        self.fernet_key = Fernet.generate_key().decode()
        #: Celery workers serve this queue only, so two deployments sharing one Redis never swap tasks.
        self.queue = f"wfrun-{secrets.token_hex(4)}"
        #: Arguments added to a component's command line, by component name (e.g. a triggerer's queues).
        self.component_args = component_args or {}
        #: The Celery queues every worker serves: the default one and any a DAG routes tasks to.
        self.worker_queues = [self.queue, *extra_queues]
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        #: Components a test stopped on purpose: not "exited" until started again.
        self.stopped: set[str] = set()
        self._starts: dict[str, int] = {}
        self._token: str | None = None
        self._client = httpx.Client(base_url=self.base_url, timeout=30)
        self.env = self._environment(parallelism, settings or {}, env or {})

    # --- configuration --------------------------------------------------------------------------
    def _environment(
        self, parallelism: int, overrides: dict[str, str], extra_env: dict[str, str]
    ) -> dict[str, str]:
        # Nothing of the test process's own Airflow configuration leaks in (tests/conftest.py sets some).
        env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
        session_secret = secrets.token_urlsafe(32)
        bundle = {
            "name": self.bundle,
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(self.dags_dir), "refresh_interval": 5},
        }
        settings = {
            "CORE__DAGS_FOLDER": str(self.dags_dir),
            "CORE__LOAD_EXAMPLES": "False",
            "CORE__EXECUTOR": "LocalExecutor",
            "CORE__PARALLELISM": str(parallelism),
            "CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "CORE__FERNET_KEY": self.fernet_key,
            "CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            "DATABASE__SQL_ALCHEMY_CONN": self.database.url,
            "OPERATORS__DEFAULT_QUEUE": self.queue,
            "API__HOST": "127.0.0.1",
            "API__PORT": str(self.port),
            "API__BASE_URL": self.base_url,
            "API__WORKERS": "1",
            "API__SECRET_KEY": session_secret,
            "API_AUTH__JWT_SECRET": session_secret,
            # Airflow 3.1 signs tokens with an empty list as their issuer when none is set, which newer PyJWT
            # refuses: no token, no API. Airflow recommends setting one anyway.
            "API_AUTH__JWT_ISSUER": "wfrun-tests",
            "DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps([bundle]),
            "DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "2",
            "DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "DAG_PROCESSOR__PRINT_STATS_INTERVAL": "0",
            # Parsed once at start: the files do not change, and a re-parse while a test makes the DAG file
            # unimportable on purpose would record an import error for it.
            "DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "900",
            "SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2",
            "SCHEDULER__MAX_TIS_PER_QUERY": "64",
            # A worker that vanishes without a word is noticed after this many seconds (default 300).
            "SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
            "SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
            "SCHEDULER__PARSING_CLEANUP_INTERVAL": "600",
            "WORKERS__MIN_HEARTBEAT_INTERVAL": "2",
            # A task whose DAG file fails to import at start is rescheduled after this long (default 60).
            "WORKERS__MISSING_DAG_RETRY_DELAY": "5",
            "TRIGGERER__JOB_HEARTBEAT_SEC": "1",
            # A triggerer silent this long is dead: its triggers go to the next one (default 30).
            "TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "8",
            "TRIGGERER__ON_KILL_TIMEOUT": "15",
            "LOGGING__LOGGING_LEVEL": "INFO",
            "LOGGING__BASE_LOG_FOLDER": str(self.home / "logs"),
            **overrides,
        }
        env.update({f"AIRFLOW__{key}": value for key, value in settings.items()})
        env["AIRFLOW_HOME"] = str(self.home)
        for platform in PLATFORMS:
            env[f"AIRFLOW_CONN_WFRUN_{platform.upper()}"] = json.dumps(
                {
                    "conn_type": platform,
                    "host": self.emulator.base_url(platform),
                    "password": self.emulator.api_key,
                }
            )
        env.update(extra_env)
        return env

    # --- processes ------------------------------------------------------------------------------
    def migrate(self) -> None:
        self.component_logs.mkdir(parents=True, exist_ok=True)
        self.database.create()
        with (self.component_logs / "db-migrate.log").open("wb") as out:
            subprocess.run(
                [str(AIRFLOW), "db", "migrate"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=600,
            )

    def _command(self, name: str) -> list[str]:
        kind = component_kind(name)
        if kind == "celery-worker":
            return [
                "celery",
                "worker",
                "--celery-hostname",
                f"{name}@%h",
                "--queues",
                ",".join(self.worker_queues),
                "--skip-serve-logs",
                "--pid",
                str(self.home / f"{name}.pid"),
                "--without-mingle",
                "--without-gossip",
            ]
        return {
            "api-server": ["api-server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
            "dag-processor": ["dag-processor"],
            "scheduler": ["scheduler", "--skip-serve-logs"],
            "triggerer": ["triggerer", "--skip-serve-logs"],
        }[kind]

    def start_component(self, name: str) -> subprocess.Popen[bytes]:
        """Start one component in its own process group, its output in ``logs/components``."""
        count = self._starts[name] = self._starts.get(name, 0) + 1
        log_path = self.component_log(name, count)
        with log_path.open("wb") as out:
            process = subprocess.Popen(
                [str(AIRFLOW), *self._command(name), *self.component_args.get(name, [])],
                # Which component this is, for a hostname callable that tells them apart.
                env={**self.env, "WFRUN_COMPONENT": name},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.processes[name] = process
        self.stopped.discard(name)
        return process

    def component_log(self, name: str, start: int | None = None) -> Path:
        """The output of a component's ``start``-th start (its latest by default)."""
        return self.component_logs / f"{name}-{start or self._starts.get(name, 1)}.log"

    def kill_component(self, name: str, sig: signal.Signals = signal.SIGKILL, wait: float = 30) -> None:
        """Signal the component's whole process group (its workers and subprocesses too) and reap it."""
        process = self.processes.get(name)
        if process is None or process.poll() is not None:
            return
        self.stopped.add(name)
        with suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        # A SIGKILL takes the group at once; a graceful stop may leave children (task processes) behind.
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    def start(self) -> None:
        self.migrate()
        for name in self.components:
            self.start_component(name)
        self.wait_healthy(timeout=240)
        for name in self.components:
            if component_kind(name) == "celery-worker":
                self.wait_worker_ready(name, timeout=120)
        for dag_id in self.dag_ids:
            wait_for(
                f"the dag processor to parse {dag_id}",
                lambda dag_id=dag_id: (
                    self.api("GET", f"/api/v2/dags/{dag_id}", check=False).status_code == 200
                ),
                timeout=180,
                on_fail=self.hint(),
                errors=self.import_errors,
            )

    def wait_worker_ready(self, name: str, *, timeout: float) -> None:
        """A Celery worker says ``ready`` once it consumes from its queue."""

        def ready() -> bool:
            self.check_alive()
            return " ready." in self.component_log(name).read_text(errors="replace")

        wait_for(f"Celery worker {name} to be ready", ready, timeout=timeout, on_fail=self.hint())

    def import_errors(self) -> str:
        errors = self.api("GET", "/api/v2/importErrors", check=False)
        return errors.text[:3000] if errors.status_code == 200 else ""

    def stop(self) -> None:
        """Stop every component (a graceful stop first, then the group's stragglers) and drop the database."""
        try:
            for name in reversed(self.components):
                self.kill_component(name, signal.SIGTERM, wait=20)
            for name in self.processes:  # anything started beyond the list, by a test
                self.kill_component(name, signal.SIGTERM, wait=20)
        finally:
            self._client.close()
            self.database.drop()

    def check_alive(self) -> None:
        dead = {
            name: p.returncode
            for name, p in self.processes.items()
            if p.poll() is not None and name not in self.stopped
        }
        if dead:
            raise LiveAirflowError(f"Airflow components exited: {dead}. {self.hint()}")

    def hint(self) -> str:
        return f"Component logs: {self.component_logs}"

    def wait_healthy(
        self, *, timeout: float, components: tuple[str, ...] = ("scheduler", "triggerer")
    ) -> None:
        def healthy() -> bool:
            self.check_alive()
            response = self._client.get("/api/v2/monitor/health")
            if response.status_code != 200:
                return False
            health = response.json()
            return all((health.get(name) or {}).get("status") == "healthy" for name in components)

        wait_for("the Airflow components to report healthy", healthy, timeout=timeout, on_fail=self.hint())

    # --- REST API -------------------------------------------------------------------------------
    def api(self, method: str, path: str, *, check: bool = True, **kwargs: Any) -> httpx.Response:
        if self._token is None:
            # SimpleAuthManager with all_admins hands out an admin token without credentials.
            response = self._client.get("/auth/token")
            response.raise_for_status()
            self._token = response.json()["access_token"]
        response = self._client.request(
            method, path, headers={"Authorization": f"Bearer {self._token}"}, **kwargs
        )
        if check and response.status_code >= 400:
            raise LiveAirflowError(f"{method} {path}: HTTP {response.status_code} {response.text[:500]}")
        return response

    def trigger(self, dag_id: str, conf: dict[str, Any], run_id: str | None = None) -> str:
        body = {"logical_date": None, "conf": conf}
        if run_id:
            body["dag_run_id"] = run_id
        return self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body).json()["dag_run_id"]

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()

    def wait_dag_run_done(self, dag_id: str, run_id: str, *, timeout: float) -> str:
        def finished() -> str | None:
            self.check_alive()
            state = self.dag_run(dag_id, run_id)["state"]
            return state if state in ("success", "failed") else None

        return wait_for(f"DAG run {dag_id}/{run_id} to finish", finished, timeout=timeout, interval=1)

    def task_instance(self, dag_id: str, run_id: str, task_id: str = "run", map_index: int = -1) -> dict:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
        if map_index >= 0:
            path += f"/{map_index}"
        return self.api("GET", path).json()

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of the run (paged: the API returns at most 100 at a time)."""
        found: list[dict[str, Any]] = []
        for offset in range(0, 100_000, 100):
            page = self.api(
                "GET",
                f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
                params={"limit": 100, "offset": offset, "order_by": "map_index"},
            ).json()
            found.extend(page["task_instances"])
            if len(page["task_instances"]) < 100:
                break
        return found

    def wait_task_state(
        self, dag_id: str, run_id: str, state: str, *, timeout: float, task_id: str = "run"
    ) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            self.check_alive()
            ti = self.task_instance(dag_id, run_id, task_id)
            if ti["state"] in ("failed", "success", "upstream_failed") and ti["state"] != state:
                raise LiveAirflowError(f"{dag_id}/{run_id}/{task_id} ended {ti['state']}, expected {state}")
            return ti if ti["state"] == state else None

        return wait_for(f"{dag_id}/{run_id}/{task_id} to be {state}", reached, timeout=timeout)

    def fail_unfinished_dag_runs(self) -> list[tuple[str, str]]:
        """Mark every DAG run still going failed (its deferred tasks are killed): a failed test's leftovers
        must not run into the next test's counts."""
        unfinished = self.query("SELECT dag_id, run_id FROM dag_run WHERE state IN ('queued', 'running')")
        for dag_id, run_id in unfinished:
            self.api(
                "PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}", json={"state": "failed"}, check=False
            )
        return [(dag_id, run_id) for dag_id, run_id in unfinished]

    def mark_task(self, dag_id: str, run_id: str, state: str, task_id: str = "run") -> None:
        self.api(
            "PATCH",
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}",
            json={"new_state": state},
        )

    def _hitl_path(self, dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
        """The task instance's human-in-the-loop request in the public API (the same in 3.1 and 3.3)."""
        return f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/hitlDetails"

    def hitl_detail(
        self, dag_id: str, run_id: str, task_id: str = "run", map_index: int = -1
    ) -> dict[str, Any] | None:
        """The request a task raised for a person (Required Actions in the UI), None while there is none."""
        response = self.api("GET", self._hitl_path(dag_id, run_id, task_id, map_index), check=False)
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise LiveAirflowError(f"HITL detail of {dag_id}/{run_id}: HTTP {response.status_code}")
        return response.json()

    def answer_hitl(
        self,
        dag_id: str,
        run_id: str,
        option: str,
        params: dict[str, Any] | None = None,
        *,
        task_id: str = "run",
        map_index: int = -1,
    ) -> dict[str, Any]:
        """Answer that request as a signed-in user does in the UI: one option, the form's params."""
        payload = {"chosen_options": [option], "params_input": params or {}}
        return self.api("PATCH", self._hitl_path(dag_id, run_id, task_id, map_index), json=payload).json()

    # --- metadata database (read-only) ----------------------------------------------------------
    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """A read of the metadata database, ``?`` placeholders whatever the database."""
        return self.database.query(sql, *params)

    def trigger_kwargs(self, trigger_id: int) -> dict[str, Any]:
        """A trigger's kwargs as the triggerer rebuilds it: decrypted with this Airflow's Fernet key."""
        rows = self.query("SELECT kwargs FROM trigger WHERE id = ?", trigger_id)
        if not rows:
            raise LiveAirflowError(f"no trigger {trigger_id}")
        return self.decrypt_kwargs(rows[0][0])

    def decrypt_kwargs(self, encrypted: str) -> dict[str, Any]:
        """A trigger row's ``kwargs`` column as the triggerer rebuilds them."""
        from airflow.sdk.serde import deserialize

        plain = (
            encrypted if encrypted.startswith("{") else Fernet(self.fernet_key).decrypt(encrypted).decode()
        )
        return deserialize(json.loads(plain))

    def task_state(
        self, dag_id: str, run_id: str, key: str, task_id: str = "run", map_index: int = -1
    ) -> Any:
        """A value the task stored in ``task_state_store`` (None while there is none)."""
        rows = self.query(
            "SELECT value FROM task_state_store WHERE dag_id = ? AND run_id = ? AND task_id = ? "
            "AND map_index = ? AND key = ?",
            dag_id,
            run_id,
            task_id,
            map_index,
            key,
        )
        return json.loads(rows[0][0]) if rows else None

    def xcom(self, dag_id: str, run_id: str, key: str = "return_value", task_id: str = "run") -> dict:
        """XCom values of a task by map index."""
        rows = self.query(
            "SELECT map_index, value FROM xcom WHERE dag_id = ? AND run_id = ? AND task_id = ? AND key = ?",
            dag_id,
            run_id,
            task_id,
            key,
        )
        return {map_index: self.database.from_json_column(value) for map_index, value in rows}

    # --- processes of one task instance -----------------------------------------------------------
    def task_processes(self, pid: int) -> tuple[psutil.Process, psutil.Process]:
        """The task's own process and its supervisor (the executor's worker process that forked it)."""
        task = psutil.Process(pid)
        supervisor = task.parent()
        if supervisor is None or self.owner(pid) is None:
            raise LiveAirflowError(f"pid {pid} is not a task process of this deployment")
        return task, supervisor

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds each running component has used so far, its tasks and other children included."""
        used = {}
        for name, process in self.processes.items():
            with suppress(psutil.Error):
                root = psutil.Process(process.pid)
                tree = [root, *root.children(recursive=True)]
                used[name] = sum(_cpu(member) for member in tree)
        return used

    def owner(self, pid: int) -> str | None:
        """The component whose process tree holds ``pid`` (a task runs under a scheduler or a worker)."""
        component_pids = {p.pid: name for name, p in self.processes.items() if p.poll() is None}
        for process in psutil.Process(pid).parents():
            if process.pid in component_pids:
                return component_pids[process.pid]
        return None

    # --- files ------------------------------------------------------------------------------------
    def log_files(self) -> Iterator[Path]:
        yield from (path for path in sorted((self.home / "logs").rglob("*")) if path.is_file())

    def read_logs(self, pattern: str) -> str:
        return "\n".join(path.read_text(errors="replace") for path in self.log_files() if path.match(pattern))
