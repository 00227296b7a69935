"""
Part 1, one contender: N waits in one event loop, each polling one long run at a fixed interval.

``ours``: N ``WorkflowRunTrigger.run()`` generators (fixed-interval policy, so both sides poll equally often).
``peers``: N loops in the pattern of ``HttpSensorTrigger`` and dbt-cloud's trigger: ``HttpAsyncHook`` with a
new ``aiohttp.ClientSession`` per poll, the JSON body read and its status field checked.

The waits start staggered over the first interval (as tasks defer at different times). Once every wait has
polled twice, RSS is read (minus the baseline taken before the waits were created) and CPU is measured over
a window. Lateness of a poll = when it fired - (when the previous poll returned + the interval).
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import time
from typing import Any

import airflow  # noqa: F401  (import Airflow before the provider: its config loads provider info)

from benchmarks.common import cpu_seconds, percentile, rss_bytes

TERMINAL = {"succeeded", "failed", "stopped", "partial-succeeded", "SUCCEED", "FAILED", "canceled"}


class Meter:
    """Per-run poll bookkeeping, allocated before the baseline so it is not counted as the waits' memory."""

    def __init__(self, run_ids: list[str], interval: float) -> None:
        self.interval = interval
        self.last_exit: dict[str, float | None] = dict.fromkeys(run_ids)
        self.polls_of: dict[str, int] = dict.fromkeys(run_ids, 0)
        self.polls = 0
        self.errors = 0
        self.recording = False
        self.lateness: list[float] = []

    async def timed(self, run_id: str, poll: Any) -> Any:
        now = time.monotonic()
        previous = self.last_exit[run_id]
        if self.recording and previous is not None:
            self.lateness.append(now - previous - self.interval)
        try:
            return await poll
        except Exception:
            self.errors += 1
            raise
        finally:
            self.last_exit[run_id] = time.monotonic()
            self.polls_of[run_id] += 1
            self.polls += 1


def ours(runs: list[dict[str, Any]], meter: Meter, interval: float) -> list[Any]:
    from airflow_provider_wfrun.hooks.workflow_run import WorkflowRunHook
    from airflow_provider_wfrun.triggers.workflow_run import WorkflowRunTrigger

    class TimedHook(WorkflowRunHook):
        def aget_run(self, run_id: str) -> Any:  # type: ignore[override]
            return meter.timed(run_id, super().aget_run(run_id))

    class TimedTrigger(WorkflowRunTrigger):
        def _hook(self) -> WorkflowRunHook:
            hook = super()._hook()
            hook.__class__ = TimedHook
            return hook

    extra = _fixed_policy_kwargs(WorkflowRunTrigger)

    async def wait(run: dict[str, Any]) -> None:
        trigger = TimedTrigger(
            conn_id=f"bench_{run['platform']}",
            run_id=run["run_id"],
            end_time=time.time() + 86_400,
            poll_interval=interval,
            platform_task_id=run["task_id"],
            **extra,
        )
        async for _event in trigger.run():
            return

    return [wait(run) for run in runs]


def _fixed_policy_kwargs(trigger_class: Any) -> dict[str, Any]:
    import inspect

    return {"adaptive": False} if "adaptive" in inspect.signature(trigger_class).parameters else {}


def peers(runs: list[dict[str, Any]], meter: Meter, interval: float) -> list[Any]:
    import aiohttp
    from airflow.providers.http.hooks.http import HttpAsyncHook

    async def poll(hook: HttpAsyncHook, run: dict[str, Any]) -> str:
        platform, run_id = run["platform"], run["run_id"]
        async with aiohttp.ClientSession() as session:
            if platform == "dify":
                response = await hook.run(session=session, endpoint=f"workflows/run/{run_id}")
            elif platform == "gptbots":
                response = await hook.run(
                    session=session, endpoint="workflow/query/result", json={"workflowRunId": run_id}
                )
            else:
                response = await hook.run(
                    session=session, endpoint="workflow/run/execution", data={"run_order_id": run_id}
                )
            payload = await response.json()
        return payload["data"]["status"] if platform == "chenyu" else payload["status"]

    async def wait(run: dict[str, Any]) -> None:
        method = "POST" if run["platform"] == "gptbots" else "GET"
        hook = HttpAsyncHook(method=method, http_conn_id=f"bench_http_{run['platform']}", retry_limit=3)
        while True:
            try:
                status = await meter.timed(run["run_id"], poll(hook, run))
            except Exception:
                status = None
            if status in TERMINAL:
                return
            await asyncio.sleep(interval)

    return [wait(run) for run in runs]


async def staggered(waiting: Any, delay: float) -> None:
    await asyncio.sleep(delay)
    await waiting


class GcClock:
    """Time spent in the cyclic garbage collector (a pause of the whole event loop)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.longest = 0.0
        self.collections = 0
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            pause = time.perf_counter() - self._started
            self.seconds += pause
            self.longest = max(self.longest, pause)
            self.collections += 1


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with open(args.runs) as handle:
        runs = json.load(handle)[: args.n]
    n, interval = len(runs), args.interval
    meter = Meter([run["run_id"] for run in runs], interval)
    make = ours if args.contender == "ours" else peers
    # Warm-up outside the measurement: imports, the first client, connection lookups' caches.
    warm_meter = Meter([run["run_id"] for run in runs[:3]], interval)
    warm = make(runs[:3], warm_meter, interval)
    warm_tasks = [asyncio.ensure_future(w) for w in warm]
    await asyncio.sleep(0.5)
    for task in warm_tasks:
        task.cancel()
    await asyncio.gather(*warm_tasks, return_exceptions=True)
    gc.collect()
    rss_before = rss_bytes()

    started = time.monotonic()
    coroutines = make(runs, meter, interval)
    tasks = [
        asyncio.ensure_future(staggered(coroutine, interval * index / n))
        for index, coroutine in enumerate(coroutines)
    ]
    # Every wait has polled twice: all are in their steady waiting state.
    deadline = started + interval * 6 + 60
    while min(meter.polls_of.values()) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    all_waiting = min(meter.polls_of.values()) >= 2
    rss_after = rss_bytes()

    profiler = cProfile.Profile() if args.profile else None
    gc_clock = GcClock()
    meter.recording = True
    polls_0, errors_0, cpu_0, wall_0 = meter.polls, meter.errors, cpu_seconds(), time.monotonic()
    if profiler:
        profiler.enable()
    await asyncio.sleep(args.window)
    if profiler:
        profiler.disable()
    polls, cpu, wall = meter.polls - polls_0, cpu_seconds() - cpu_0, time.monotonic() - wall_0
    meter.recording = False
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if profiler:
        profiler.dump_stats(args.profile)
    return {
        "contender": args.contender,
        "n": n,
        "interval": interval,
        "window": round(wall, 3),
        "all_waiting": all_waiting,
        "polls": polls,
        "errors": meter.errors - errors_0,
        "cpu_us_per_poll": cpu / polls * 1e6 if polls else None,
        "cpu_share": cpu / wall,
        "rss_bytes_per_wait": (rss_after - rss_before) / n,
        "lateness_p50": percentile(meter.lateness, 50),
        "lateness_p99": percentile(meter.lateness, 99),
        "lateness_max": max(meter.lateness, default=float("nan")),
        "rps": polls / wall,
        "gc_seconds": gc_clock.seconds,
        "gc_longest": gc_clock.longest,
        "gc_collections": gc_clock.collections,
        "expected_rps": n / interval,
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contender", choices=("ours", "peers"), required=True)
    parser.add_argument("--runs", required=True, help="JSON file of submitted runs")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--profile", help="write a cProfile of the measurement window here")
    return parser.parse_args()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(parse_args()))))
