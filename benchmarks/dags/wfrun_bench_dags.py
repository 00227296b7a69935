"""
Part 3's DAGs: the same wait, as users do it today and with this provider.

``wfrun_bench_http_sensor``: the run is already submitted (its id in the DAG run's conf); an ``HttpSensor``
in reschedule mode polls Dify's run detail and its ``response_check`` reads the status.
``wfrun_bench_deferrable``: ``RunWorkflowOperator(deferrable=True)`` submits the same kind of run and waits
in the trigger. The durations and intervals come from the DAG run's conf.
"""

from __future__ import annotations

import pendulum
from airflow.providers.http.sensors.http import HttpSensor
from airflow.sdk import DAG

from airflow_provider_wfrun.operators.workflow_run import RunWorkflowOperator

TERMINAL = ("succeeded", "failed", "stopped", "partial-succeeded")
START = pendulum.datetime(2026, 1, 1, tz="UTC")
#: Poll / poke interval, the same for both (seconds); set by the benchmark through the environment.
INTERVAL = float(__import__("os").environ.get("WFRUN_BENCH_INTERVAL", "1"))


def run_finished(response) -> bool:
    return response.json()["status"] in TERMINAL


with DAG("wfrun_bench_http_sensor", schedule=None, start_date=START, catchup=False):
    HttpSensor(
        task_id="wait",
        http_conn_id="bench_http_dify",
        method="GET",
        endpoint="workflows/run/{{ dag_run.conf['run_id'] }}",
        response_check=run_finished,
        mode="reschedule",
        poke_interval=INTERVAL,
        timeout=3600,
    )

with DAG(
    "wfrun_bench_deferrable",
    schedule=None,
    start_date=START,
    catchup=False,
    render_template_as_native_obj=True,
):
    RunWorkflowOperator(
        task_id="wait",
        conn_id="bench_dify",
        inputs="{{ dag_run.conf['inputs'] }}",
        deferrable=True,
        poll_interval=INTERVAL,
    )
