"""
Part 3, one contender: one waited run through real Airflow (``dag.test()`` on SQLite).

``sensor``: ``HttpSensor(mode="reschedule", response_check=...)`` on a run submitted beforehand.
``deferrable``: ``RunWorkflowOperator(deferrable=True)``, which submits the run and defers to its trigger.

``dag.test()`` runs each task try through Airflow's task runner in this process (the same supervisor
protocol, an in-process execution API) and a deferred task's trigger inline. What is metered:

* a **task run** (a worker slot held): every call of ``run_task_in_process``, its wall time and the
  process CPU spent in it; for the sensor that is each poke, for ours ``execute`` and ``execute_complete``;
* the **trigger** (the triggerer's share, ours only): the inline trigger run, its CPU;
* the **whole process**: CPU from handing over the DAG run to its end, which adds ``dag.test()``'s own
  scheduling loop (the scheduler's work in a deployment, including its once-a-second loop while waiting).

The process first runs the DAG once on a short run (``--warmup``, not measured: a first task run pays
one-time costs such as imports and starting the in-process execution API), then says ``ready`` and reads
the measured DAG run's conf as one JSON line. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import airflow  # noqa: F401  (import Airflow before the provider: its config loads provider info)

from benchmarks.common import REPO, cpu_seconds

DAG_IDS = {"sensor": "wfrun_bench_http_sensor", "deferrable": "wfrun_bench_deferrable"}


class Meter:
    def __init__(self) -> None:
        self.task_runs = 0
        self.task_cpu = 0.0
        self.task_wall = 0.0
        self.trigger_cpu = 0.0
        self.trigger_wall = 0.0
        self.requests = 0

    def wrap(self, function: Any, kind: str) -> Any:
        def metered(*args: Any, **kwargs: Any) -> Any:
            cpu, wall = cpu_seconds(), time.monotonic()
            try:
                return function(*args, **kwargs)
            finally:
                cpu, wall = cpu_seconds() - cpu, time.monotonic() - wall
                if kind == "task":
                    self.task_runs += 1
                    self.task_cpu += cpu
                    self.task_wall += wall
                else:
                    self.trigger_cpu += cpu
                    self.trigger_wall += wall

        return metered


def instrument(meter: Meter) -> None:
    import airflow.sdk.definitions.dag as dag_module
    import airflow.sdk.execution_time.supervisor as supervisor
    from airflow.providers.http.hooks.http import HttpHook

    from airflow_provider_wfrun.hooks.workflow_run import WorkflowRunHook

    supervisor.run_task_in_process = meter.wrap(supervisor.run_task_in_process, "task")
    dag_module._run_inline_trigger = meter.wrap(dag_module._run_inline_trigger, "trigger")

    def counting(method: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            meter.requests += 1
            return method(*args, **kwargs)

        return counted

    WorkflowRunHook._send = counting(WorkflowRunHook._send)  # type: ignore[method-assign]
    WorkflowRunHook._send_submit = counting(WorkflowRunHook._send_submit)  # type: ignore[method-assign]
    original_asend = WorkflowRunHook._asend

    async def asend(self: Any, *args: Any) -> Any:
        meter.requests += 1
        return await original_asend(self, *args)

    WorkflowRunHook._asend = asend  # type: ignore[method-assign]
    HttpHook.run = counting(HttpHook.run)  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contender", choices=tuple(DAG_IDS), required=True)
    parser.add_argument("--warmup", required=True, help="the conf of a short DAG run done before measuring")
    args = parser.parse_args()
    from airflow.dag_processing.dagbag import DagBag

    meter = Meter()
    instrument(meter)
    dag = DagBag(str(REPO / "benchmarks" / "dags")).dags[DAG_IDS[args.contender]]
    # Warm-up, not measured: a first task run pays one-time costs (imports, the in-process execution API).
    dag.test(run_conf=json.loads(args.warmup))
    meter.__init__()  # type: ignore[misc]
    print("ready", flush=True)
    conf = json.loads(sys.stdin.readline())
    cpu, wall = cpu_seconds(), time.monotonic()
    dag_run = dag.test(run_conf=conf)
    cpu, wall = cpu_seconds() - cpu, time.monotonic() - wall
    print(
        json.dumps(
            {
                "contender": args.contender,
                "state": str(dag_run.state),
                "wall": wall,
                "process_cpu": cpu,
                "task_runs": meter.task_runs,
                "task_cpu": meter.task_cpu,
                "slot_seconds": meter.task_wall,
                "trigger_cpu": meter.trigger_cpu,
                "trigger_wall": meter.trigger_wall,
                "requests": meter.requests,
            }
        )
    )


if __name__ == "__main__":
    main()
