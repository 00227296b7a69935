"""
``make demo``: run the example DAGs with ``airflow dags test`` and print what each run returned.

By default every platform is the built-in emulator on a free loopback port, so the demo works offline
on a fresh clone. A platform whose API key is in the environment is used for real instead:

``WFRUN_<PLATFORM>_API_KEY`` (``WFRUN_DIFY_API_KEY``, ``WFRUN_COMFYUI_API_KEY``...: every connection type
of the adapter registry), with optional ``WFRUN_<PLATFORM>_HOST`` (default: the platform's own) and
``WFRUN_<PLATFORM>_WORKFLOW_ID`` (the workflow its example DAG runs; the DAGs that mix platforms run
chenyu's). A platform without a key (ComfyUI: ``WFRUN_COMFYUI_HOST`` alone) is the emulator.

Airflow lives in ``.airflow-home/`` inside the checkout (git-ignored): a SQLite database and the logs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from airflow_provider_wfrun.emulator.app import discover_platforms, platform_names

REPO = Path(__file__).resolve().parent.parent
#: Every platform (the emulator's modules are the adapter registry's, a unit test checks it; they import no
#: Airflow, which must first be configured for the demo's home), each with ``example_wfrun_<platform>``.
PLATFORMS = tuple(platform_names())
#: Example DAGs that mix platforms; their workflow id is chenyu's.
MIXED_EXAMPLES = ("example_wfrun_fan_out", "example_wfrun_lineage", "example_wfrun_files")
#: A Dify run that stops at a Human Input node; the demo's reviewer answers it (its workflow id is its own).
HUMAN_INPUT_EXAMPLE = "example_wfrun_human_input"
EXAMPLES = (*(f"example_wfrun_{platform}" for platform in PLATFORMS), *MIXED_EXAMPLES, HUMAN_INPUT_EXAMPLE)
#: The emulated Dify workflow version whose run stops at a Human Input node (example_human_input.py).
REVIEW_WORKFLOW_ID = "3f1c9a52-7d4e-4b8a-9c6f-0e2d5b7a8c41"
REVIEW_SCENARIO = {
    "duration_seconds": 2,
    "outputs": {"text": "Version 2.0: faster runs.\nFiles in and out, lineage with cost."},
    "human_inputs": [
        {
            "title": "Release note review",
            "content": "Publish this release note?\n\n> Version 2.0: faster runs.",
            "inputs": {"comment": ""},
            "actions": ["publish", "rewrite"],
        }
    ],
}
EMULATOR_KEY = "demo-key"
EMULATOR_ROOTS = {module.NAME: module.ROOT for module in discover_platforms()}


def airflow_environment(home: Path) -> dict[str, str]:
    bundles = [
        {
            "name": "wfrun_examples",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(REPO / "example_dags"), "refresh_interval": 0},
        }
    ]
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "example_dags"),
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def emulator(needed: bool):
    """Start the emulator in its own process (if any platform uses it) and stop it afterwards."""
    if not needed:
        yield None
        return
    port = free_port()
    command = [sys.executable, "-m", "airflow_provider_wfrun.emulator", "--host", "127.0.0.1"]
    process = subprocess.Popen(
        [*command, "--port", str(port), "--api-key", EMULATOR_KEY],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(f"{url}/_emulator/stats", process)
        scenarios = json.dumps({REVIEW_WORKFLOW_ID: REVIEW_SCENARIO}).encode()
        request = urllib.request.Request(f"{url}/_emulator/scenarios", data=scenarios, method="PUT")
        with urllib.request.urlopen(request, timeout=5):
            pass
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def wait_until_serving(url: str, process: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the emulator exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the emulator did not start within 20 s")


def connections(emulator_url: str | None) -> tuple[dict[str, str], list[str]]:
    """``AIRFLOW_CONN_WFRUN_*`` for each platform, and which platforms are real."""
    env, real = {}, []
    for platform in PLATFORMS:
        if is_real(platform):
            real.append(platform)
            conn: dict[str, Any] = {"conn_type": platform}
            if os.environ.get(f"WFRUN_{platform.upper()}_API_KEY"):
                conn["password"] = os.environ[f"WFRUN_{platform.upper()}_API_KEY"]
            if os.environ.get(f"WFRUN_{platform.upper()}_HOST"):
                conn["host"] = os.environ[f"WFRUN_{platform.upper()}_HOST"]
        else:
            conn = {
                "conn_type": platform,
                "host": f"{emulator_url}{EMULATOR_ROOTS[platform]}",
                "password": EMULATOR_KEY,
            }
        env[f"AIRFLOW_CONN_WFRUN_{platform.upper()}"] = json.dumps(conn)
    return env, real


def is_real(platform: str) -> bool:
    """A key, or a host for a platform that needs no key (a ComfyUI server), selects the real platform."""
    if os.environ.get(f"WFRUN_{platform.upper()}_API_KEY"):
        return True
    from airflow_provider_wfrun.platforms import adapter_classes  # after Airflow is configured (main)

    return not adapter_classes()[platform].requires_api_key and bool(
        os.environ.get(f"WFRUN_{platform.upper()}_HOST")
    )


def dag_conf(dag_id: str) -> str:
    """The DAG run's conf: the workflow id from the environment, if given (else the DAG's default)."""
    if dag_id == HUMAN_INPUT_EXAMPLE:
        return "{}"
    platform = dag_id.removeprefix("example_wfrun_")
    workflow_id = os.environ.get(
        f"WFRUN_{(platform if platform in PLATFORMS else 'chenyu').upper()}_WORKFLOW_ID"
    )
    return json.dumps({"workflow_id": workflow_id} if workflow_id else {})


def airflow(*args: str, env: dict[str, str], log: Path | None = None) -> int:
    command = [sys.executable, "-m", "airflow", *args]
    if log is None:
        return subprocess.run(command, env=env, capture_output=True, check=False).returncode
    with log.open("w") as out:
        return subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, check=False).returncode


@contextmanager
def reviewer(env: dict[str, str]) -> Any:
    """
    A reviewer who answers every human-in-the-loop request the demo's tasks raise (Publish, with a comment)
    through the REST API's own handler, so ``make demo`` runs unattended.
    """
    os.environ.update(env)
    stop = threading.Event()

    def answer_requests() -> None:
        seen: dict[Any, float] = {}
        while not stop.wait(0.5):
            with contextlib.suppress(Exception):  # the database may be busy; try again next round
                answer_waiting(seen)

    thread = threading.Thread(target=answer_requests, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


def answer_waiting(seen: dict[Any, float]) -> None:
    """Answer each request its task waits on, after reading it for a moment (as a person would)."""
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
    from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
    from airflow.models.hitl import HITLDetail
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        waiting = [
            row
            for row in session.scalars(select(HITLDetail)).all()
            if not row.response_received and row.task_instance.state in ("awaiting_input", "deferred")
        ]
        for row in waiting:
            if time.monotonic() - seen.setdefault(row.ti_id, time.monotonic()) < 1.5:
                continue
            seen.pop(row.ti_id)
            ti = row.task_instance
            print(f"  reviewer: {row.subject.splitlines()[0]!r} -> {row.options[0]}")
            update_hitl_detail(
                dag_id=ti.dag_id,
                dag_run_id=ti.run_id,
                task_id=ti.task_id,
                update_hitl_detail_payload=UpdateHITLDetailPayload(
                    chosen_options=[row.options[0]], params_input={"comment": "approved by the demo reviewer"}
                ),
                user=SimpleAuthManagerUser(username="demo-reviewer", role="admin"),
                session=session,
                map_index=ti.map_index,
            )


def results(env: dict[str, str], dag_ids: list[str]) -> list[dict[str, Any]]:
    """The result dicts the example tasks returned, read from the demo's metadata database."""
    os.environ.update(env)
    from airflow.models.dagrun import DagRun
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    rows = []
    with create_session() as session:
        for dag_id in dag_ids:
            latest = session.query(DagRun).filter(DagRun.dag_id == dag_id).order_by(DagRun.id.desc()).first()
            if latest is None:
                continue
            xcoms = session.query(XComModel).filter(
                XComModel.dag_id == dag_id, XComModel.run_id == latest.run_id, XComModel.key == "return_value"
            )
            for entry in xcoms.order_by(XComModel.task_id, XComModel.map_index):
                value = entry.value
                if isinstance(value, str) and value.startswith("{"):
                    value = json.loads(value)
                if isinstance(value, dict) and {"run_id", "platform", "cost"} <= value.keys():
                    rows.append({"dag": dag_id, **value})
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    header = ("platform", "run id", "status", "duration", "outputs", "cost")
    table = [header] + [
        (
            row["platform"],
            row["run_id"],
            row["status"],
            f"{row['duration_seconds']:.2f} s" if row["duration_seconds"] is not None else "-",
            shorten(json.dumps(row["outputs"], ensure_ascii=False), 44),
            cost_text(row["cost"]),
        )
        for row in rows
    ]
    widths = [max(len(str(line[i])) for line in table) for i in range(len(header))]
    for index, line in enumerate(table):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))


def cost_text(cost: dict[str, Any]) -> str:
    parts = []
    if cost.get("total") is not None:
        parts.append(f"{cost['total']} {cost.get('currency') or ''}".strip())
    if cost.get("tokens") is not None:
        parts.append(f"{cost['tokens']} tokens")
    return ", ".join(parts) or "-"


def shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dags", nargs="+", choices=EXAMPLES, default=list(EXAMPLES), help="example DAG ids")
    parser.add_argument("--home", type=Path, default=REPO / ".airflow-home", help="AIRFLOW_HOME to use")
    args = parser.parse_args()
    home = args.home.resolve()
    home.mkdir(exist_ok=True)
    (home / "demo-logs").mkdir(exist_ok=True)
    os.environ.update(airflow_environment(home))  # before anything imports Airflow
    uses_emulator = not all(is_real(platform) for platform in PLATFORMS)
    with emulator(uses_emulator) as emulator_url:
        conn_env, real = connections(emulator_url)
        env = {**os.environ, **airflow_environment(home), **conn_env}
        where = ", ".join(f"{p}: {'real API' if p in real else 'emulator'}" for p in PLATFORMS)
        print(f"Platforms: {where}\nAirflow home: {home}\n")
        if airflow("db", "migrate", env=env) != 0:
            raise SystemExit("airflow db migrate failed")
        with reviewer(env):
            failed = run_examples(args.dags, env, home)
        print()
        print_table(results(env, args.dags))
    if failed:
        print(f"\n{len(failed)} DAG(s) failed: {', '.join(failed)}; see their logs above.")
        return 1
    return 0


def run_examples(dag_ids: list[str], env: dict[str, str], home: Path) -> list[str]:
    failed = []
    for dag_id in dag_ids:
        started = time.monotonic()
        log = home / "demo-logs" / f"{dag_id}.log"
        code = airflow("dags", "test", dag_id, "--conf", dag_conf(dag_id), env=env, log=log)
        outcome = "ok" if code == 0 else "FAILED"
        print(f"{dag_id:<26} {outcome:<6} in {time.monotonic() - started:5.1f} s  ({log})")
        if code != 0:
            failed.append(dag_id)
    return failed


if __name__ == "__main__":
    sys.exit(main())
