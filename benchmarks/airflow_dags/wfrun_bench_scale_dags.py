"""
``make bench-airflow``'s DAGs: many deferred task instances at once, ours and the peers', side by side.

``wfrun_scale_ours``: one mapped task instance per input; each submits a Dify run on the emulator and
defers to ``WorkflowRunTrigger`` with ``adaptive=False``, so it polls every ``WFRUN_BENCH_INTERVAL`` seconds
exactly like the peers' trigger (part 1 of ``make bench`` does the same; adaptive polling is measured in
part 2). ``wfrun_scale_peers``: ``HttpSensor(deferrable=True)``, which waits in the HTTP provider's
``HttpSensorTrigger`` until its URL stops answering 404. Each DAG routes its tasks to its own queue, so
its triggers run in their own pair of triggerers and each side's CPU and memory are measured apart.
The full size records the deferrals itself (``benchmarks/airflow_scale.py``), with the same triggers.
``wfrun_scale_floor`` (recorded directly only): Airflow's own ``DateTimeTrigger``, which does no I/O, in
a fifth triggerer: what a waiting trigger costs Airflow's machinery alone, the floor under both sides.
"""

from __future__ import annotations

import os
import time

import pendulum
from airflow.providers.http.sensors.http import HttpSensor
from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk import DAG, BaseOperator, task

from airflow_provider_wfrun.hooks.workflow_run import WorkflowRunHook
from airflow_provider_wfrun.triggers.workflow_run import WorkflowRunTrigger

INTERVAL = float(os.environ.get("WFRUN_BENCH_INTERVAL", "10"))
OURS_QUEUE = os.environ.get("WFRUN_BENCH_OURS_QUEUE", "default")
PEERS_QUEUE = os.environ.get("WFRUN_BENCH_PEERS_QUEUE", "default")
FLOOR_QUEUE = os.environ.get("WFRUN_BENCH_FLOOR_QUEUE", "default")
#: The waiting tasks' pool. The full size holds them in a pool of no slots until the benchmark has
#: recorded their deferral itself, so no worker starts them.
POOL = os.environ.get("WFRUN_BENCH_POOL", "default_pool")
START = pendulum.datetime(2026, 1, 1, tz="UTC")
#: Far beyond any benchmark: the deadline never ends a wait here.
DEADLINE_SECONDS = 6 * 3600


class SubmitAndWait(BaseOperator):
    """Submit one run and wait for it in ``WorkflowRunTrigger`` at a fixed interval."""

    def __init__(self, *, number: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.number = number

    def execute(self, context) -> None:
        run = WorkflowRunHook("wfrun_dify").submit_run(
            {"case": self.number, "_emulator": {"duration_seconds": 86400}}
        )
        self.defer(
            trigger=WorkflowRunTrigger(
                conn_id="wfrun_dify",
                run_id=run.run_id,
                end_time=time.time() + DEADLINE_SECONDS,
                poll_interval=INTERVAL,
                adaptive=False,
            ),
            method_name="execute_complete",
        )

    def execute_complete(self, context, event: dict) -> str:
        if event["status"] != "succeeded":
            raise RuntimeError(f"run {event['run_id']} ended {event['status']}: {event['message']}")
        return event["run_id"]


class Hold(BaseOperator):
    """Wait in Airflow's ``DateTimeTrigger`` until a moment far beyond the benchmark: no I/O at all."""

    def __init__(self, *, number: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.number = number

    def execute(self, context) -> None:
        moment = pendulum.now("UTC").add(seconds=DEADLINE_SECONDS)
        self.defer(trigger=DateTimeTrigger(moment=moment), method_name="execute_complete")

    def execute_complete(self, context, event=None) -> None:
        return None


def _dag(dag_id: str) -> DAG:
    return DAG(
        dag_id,
        schedule=None,
        start_date=START,
        catchup=False,
        params={"count": 10},
        is_paused_upon_creation=False,
        max_active_tasks=20_000,
    )


with _dag("wfrun_scale_ours"):

    @task(queue=OURS_QUEUE)
    def numbers(**context) -> list[int]:
        return list(range(int(context["params"]["count"])))

    SubmitAndWait.partial(task_id="wait", queue=OURS_QUEUE, pool=POOL).expand(number=numbers())

with _dag("wfrun_scale_peers"):

    @task(queue=PEERS_QUEUE)
    def endpoints(**context) -> list[str]:
        return [f"peer/{number}" for number in range(int(context["params"]["count"]))]

    HttpSensor.partial(
        task_id="wait",
        http_conn_id="bench_peer",
        method="GET",
        deferrable=True,
        poke_interval=INTERVAL,
        timeout=DEADLINE_SECONDS,
        queue=PEERS_QUEUE,
        pool=POOL,
    ).expand(endpoint=endpoints())

with _dag("wfrun_scale_floor"):

    @task(queue=FLOOR_QUEUE)
    def holds(**context) -> list[int]:
        return list(range(int(context["params"]["count"])))

    Hold.partial(task_id="wait", queue=FLOOR_QUEUE, pool=POOL).expand(number=holds())
