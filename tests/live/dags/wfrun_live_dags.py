"""
DAGs the live tier runs through a real scheduler, triggerer, dag processor and API server.

Connection, workflow and inputs come from the DAG run's conf (``params``), so each test picks its
platform and emulator scenario per run. ``live_plan`` sits next to this file: the bundle's folder is on
``sys.path`` wherever Airflow parses it.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import DAG, task
from live_plan import DEADLINE_SECONDS, FANOUT_DEADLINE_SECONDS, cases

from airflow_provider_wfrun.operators.workflow_run import RunWorkflowOperator

_BREAK_FILE = os.environ.get("WFRUN_LIVE_BREAK_FILE")
if _BREAK_FILE and Path(_BREAK_FILE).exists():
    # A test's stand-in for a deploy in progress: for a moment this file cannot be imported.
    raise ImportError(f"{_BREAK_FILE} exists: a live test made this DAG file unimportable for a moment")

PARAMS = {"conn_id": "wfrun_dify", "workflow_id": None, "workflow": None, "inputs": {}}
#: Task-level polling: quick, so the tests stay short.
POLL_SECONDS = 1.0


def _dag(dag_id: str, **kwargs) -> DAG:
    return DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        params=kwargs.pop("params", PARAMS),
        render_template_as_native_obj=True,
        is_paused_upon_creation=False,
        max_active_runs=64,
        **kwargs,
    )


def _run(**kwargs) -> RunWorkflowOperator:
    return RunWorkflowOperator(
        task_id="run",
        conn_id="{{ params.conn_id }}",
        workflow_id="{{ params.workflow_id }}",
        workflow="{{ params.workflow }}",
        inputs="{{ params.inputs }}",
        poll_interval=POLL_SECONDS,
        **kwargs,
    )


# Waits in the triggerer.
with _dag("wfrun_live_deferrable"):
    _run(deferrable=True)

# Waits in the triggerer, with a deadline short enough to pass during a test.
with _dag("wfrun_live_deadline"):
    _run(deferrable=True, timeout=DEADLINE_SECONDS)

# Waits in the worker; one retry, so a killed worker's task comes back and must reattach.
with _dag("wfrun_live_worker"):
    _run(deferrable=False, retries=1, retry_delay=timedelta(seconds=1))

# Many runs at once across the three platforms: one mapped task instance per case of live_plan.
with _dag("wfrun_live_soak", params={"count": 200}, max_active_tasks=2048):

    @task
    def plan(**context) -> list[dict]:
        return cases(int(context["params"]["count"]))

    RunWorkflowOperator.partial(task_id="run", deferrable=True, poll_interval=2.0).expand_kwargs(plan())


# Many waits at once, the cases given by the DAG run's conf, each with a deadline that outlives a failover.
# Retries, as in production: a resumed task that cannot reach the API server (restarting) fails its try.
with _dag("wfrun_live_fanout", params={"cases": []}, max_active_tasks=2048):

    @task
    def fan_out(**context) -> list[dict]:
        return list(context["params"]["cases"])

    RunWorkflowOperator.partial(
        task_id="run",
        deferrable=True,
        poll_interval=2.0,
        timeout=FANOUT_DEADLINE_SECONDS,
        retries=2,
        retry_delay=timedelta(seconds=5),
    ).expand_kwargs(fan_out())
