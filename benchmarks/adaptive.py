"""
Part 2, one contender: wait for a mix of runs with ``WorkflowRunTrigger`` under one polling policy.

* ``adaptive``: the trigger's default (``adaptive=True``).
* ``fixed-eta``: ``adaptive=False``, the trigger as it was: every ``poll_interval``, stretched to a queue
  estimate where the platform gives one (chenyu).
* ``fixed``: every ``poll_interval`` and nothing else, the peers' pattern (``HttpSensorTrigger``,
  dbt-cloud's trigger): the same trigger and hook, with the delay replaced.

The process starts, says ``ready``, then reads the submitted runs as one JSON line from stdin, so polling
starts right after the runs were submitted. For each run it counts the HTTP requests the hook sent (every
attempt, follow-up and settlement calls included) and the detection delay: when the trigger fired its event
minus when the run ended on the emulator (submission + queue + duration, CLOCK_MONOTONIC is system-wide).
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections import Counter
from typing import Any

import airflow  # noqa: F401  (import Airflow before the provider: its config loads provider info)

from benchmarks.common import percentile

POLICIES = ("adaptive", "fixed", "fixed-eta")


async def wait_all(runs: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    from airflow_provider_wfrun.hooks.workflow_run import WorkflowRunHook
    from airflow_provider_wfrun.triggers.workflow_run import WorkflowRunTrigger

    requests: Counter[str] = Counter()
    original = WorkflowRunHook._asend

    async def counted(self: WorkflowRunHook, request: Any, run_id: str | None) -> Any:
        requests[run_id or ""] += 1
        return await original(self, request, run_id)

    WorkflowRunHook._asend = counted  # type: ignore[method-assign]

    class FixedIntervalTrigger(WorkflowRunTrigger):
        def _next_delay(self, run: Any, *, elapsed: float, remaining: float) -> float:
            return min(self.poll_interval, max(remaining, 0.0))

    trigger_class = FixedIntervalTrigger if args.policy == "fixed" else WorkflowRunTrigger

    async def wait(run: dict[str, Any]) -> dict[str, Any]:
        trigger = trigger_class(
            conn_id=f"bench_{run['platform']}",
            run_id=run["run_id"],
            end_time=time.time() + args.timeout,
            poll_interval=args.interval,
            max_poll_interval=args.max_interval,
            platform_task_id=run["task_id"],
            adaptive=args.policy == "adaptive",
        )
        status = None
        async for event in trigger.run():
            status = event.payload["status"]
        seen = time.monotonic()
        return {
            "platform": run["platform"],
            "status": status,
            "requests": requests[run["run_id"]],
            "delay": seen - run["ends"],
            "duration": run["queue"] + run["duration"],
        }

    return await asyncio.gather(*(wait(run) for run in runs))


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    def figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
        delays = [row["delay"] for row in rows]
        return {
            "runs": len(rows),
            "requests_per_run": statistics.fmean(row["requests"] for row in rows),
            "delay_p50": percentile(delays, 50),
            "delay_p95": percentile(delays, 95),
            "not_succeeded": sum(row["status"] != "succeeded" for row in rows),
        }

    summary = figures(results)
    summary["by_platform"] = {
        platform: figures([row for row in results if row["platform"] == platform])
        for platform in sorted({row["platform"] for row in results})
    }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--policy", choices=POLICIES, required=True)
    parser.add_argument("--interval", type=float, required=True)
    parser.add_argument("--max-interval", type=float, required=True)
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()
    print("ready", flush=True)
    runs = json.loads(sys.stdin.readline())
    results = asyncio.run(wait_all(runs, args))
    print(json.dumps({"policy": args.policy, **summarize(results)}), flush=True)
    sys.stderr.flush()
    os._exit(0)  # the result is out; the interpreter's teardown (a second with Airflow loaded) is not needed


if __name__ == "__main__":
    main()
