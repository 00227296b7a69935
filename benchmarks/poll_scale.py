"""
Part 1, one contender: N waits in one event loop, each polling one long run at a fixed interval.

``ours``: N ``WorkflowRunTrigger.run()`` generators (fixed-interval policy, so every contender polls equally
often) over the hook's one shared ``aiohttp.ClientSession`` per event loop.
``peers``: N loops in the pattern of ``HttpSensorTrigger`` and dbt-cloud's trigger: ``HttpAsyncHook`` with a
new ``aiohttp.ClientSession`` per poll, the JSON body read and its status field checked. What they send is
what the platform's adapter describes for a poll (method, path, query, body, the key's header); the status
word is read where the adapter says it is (``status_path``), and nothing else of the answer.
``aiohttp``, ``httpx``, ``httpx-aiohttp``: the peers' loop over one shared client per process (a bare
``aiohttp.ClientSession`` with our connector's limits; httpx's ``AsyncClient`` with its own pool;
``httpx_aiohttp.HttpxAiohttpClient``), at most 50 connections each, as ours has for one host. These are the
alternatives the transport was chosen among, measured for the comparison only: the package uses none but
aiohttp. They do only what the peers' loop does (no run model, no validation of the answer, no retry
policy, no trigger), so ``ours`` minus ``aiohttp`` is the cost of our work above the transport.

``--tls``: the same runs over TLS (the emulator's certificate, signed by the benchmark's CA).

The waits start staggered over the first interval (as tasks defer at different times). Once every wait has
polled twice (or seen its run end: the smoke's short runs), RSS is read (minus the baseline taken before the
waits were created) and CPU is measured over a window. Lateness of a poll = when it fired - (when the
previous poll returned + the interval). Prints one JSON line, with per platform the polls and the statuses
last read.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import ssl
import sys
import time
from collections import Counter
from collections.abc import Callable
from operator import attrgetter
from typing import Any

import airflow  # noqa: F401  (import Airflow before the provider: its config loads provider info)

from airflow_provider_wfrun.models import RunStatus
from airflow_provider_wfrun.platforms import get_adapter
from benchmarks.common import (
    CONTENDER_CPU,
    PLATFORMS,
    cpu_seconds,
    http_headers,
    percentile,
    pin,
    request_options,
    rss_bytes,
)

TERMINAL = frozenset(status for status in RunStatus if status.is_terminal)
#: The status of what ours polls (a ``WorkflowRun``).
RUN_STATUS = attrgetter("status")


def _same(value: Any) -> Any:
    return value


class Meter:
    """Per-run poll bookkeeping, allocated before the baseline so it is not counted as the waits' memory."""

    def __init__(self, run_ids: list[str], interval: float) -> None:
        self.interval = interval
        self.last_exit: dict[str, float | None] = dict.fromkeys(run_ids)
        self.polls_of: dict[str, int] = dict.fromkeys(run_ids, 0)
        #: The status each run's last poll read (None: none yet, or the answer carried none).
        self.status_of: dict[str, RunStatus | None] = dict.fromkeys(run_ids)
        self.polls = 0
        self.errors = 0
        self.recording = False
        self.lateness: list[float] = []

    async def timed(self, run_id: str, poll: Any, status: Callable[[Any], RunStatus | None] = _same) -> Any:
        """Await ``poll``, timed and counted; ``status`` reads the status from what it returns."""
        now = time.monotonic()
        previous = self.last_exit[run_id]
        if self.recording and previous is not None:
            self.lateness.append(now - previous - self.interval)
        try:
            result = await poll
        except Exception:
            self.errors += 1
            raise
        finally:
            self.last_exit[run_id] = time.monotonic()
            self.polls_of[run_id] += 1
            self.polls += 1
        self.status_of[run_id] = status(result)
        return result

    def settled(self) -> bool:
        """Every wait is in its steady state (polled twice) or over (its run ended)."""
        return all(
            polls >= 2 or self.status_of[run_id] in TERMINAL for run_id, polls in self.polls_of.items()
        )

    def by_platform(self, runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Per platform: its runs, the polls they got and the statuses last read (``none``: no status)."""
        figures: dict[str, dict[str, Any]] = {}
        for run in runs:
            entry = figures.setdefault(run["platform"], {"runs": 0, "polls": 0, "statuses": Counter()})
            status = self.status_of[run["run_id"]]
            entry["runs"] += 1
            entry["polls"] += self.polls_of[run["run_id"]]
            entry["statuses"][status.value if status is not None else "none"] += 1
        return figures


def ours(runs: list[dict[str, Any]], meter: Meter, interval: float, tls: str) -> list[Any]:
    from airflow_provider_wfrun.hooks.workflow_run import WorkflowRunHook
    from airflow_provider_wfrun.triggers.workflow_run import WorkflowRunTrigger

    class TimedHook(WorkflowRunHook):
        def aget_run(self, run_id: str) -> Any:  # type: ignore[override]
            return meter.timed(run_id, super().aget_run(run_id), RUN_STATUS)

    class TimedTrigger(WorkflowRunTrigger):
        def _hook(self) -> WorkflowRunHook:
            hook = super()._hook()
            hook.__class__ = TimedHook
            return hook

    extra = _fixed_policy_kwargs(WorkflowRunTrigger)

    async def wait(run: dict[str, Any]) -> None:
        trigger = TimedTrigger(
            conn_id=f"bench_{tls}{run['platform']}",
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


def peers(runs: list[dict[str, Any]], meter: Meter, interval: float, tls: str) -> list[Any]:
    import aiohttp
    from airflow.providers.http.hooks.http import HttpAsyncHook

    # Over TLS the CA is handed to aiohttp as the HTTP provider allows (``extra_options``), one context per
    # process: the peers pay a TLS handshake per poll (a new session), not a context per poll.
    extra_options = {"ssl": _ca_context()} if tls else None
    adapters = {platform: get_adapter(platform) for platform in PLATFORMS}

    async def poll(hook: HttpAsyncHook, run: dict[str, Any]) -> RunStatus | None:
        adapter, run_id = adapters[run["platform"]], run["run_id"]
        request = adapter.get_request(run_id)
        async with aiohttp.ClientSession() as session:
            response = await hook.run(
                session=session,
                endpoint=request.path.lstrip("/"),
                data=request.params,
                json=request.json,
                extra_options=extra_options,
            )
            payload = await response.json()
        return adapter.statuses.get(adapter.status_word(payload, run_id=run_id))

    async def wait(run: dict[str, Any]) -> None:
        method = adapters[run["platform"]].get_request(run["run_id"]).method
        hook = HttpAsyncHook(method=method, http_conn_id=f"bench_http_{tls}{run['platform']}", retry_limit=3)
        await poll_loop(meter, run, interval, lambda: poll(hook, run))

    return [wait(run) for run in runs]


async def poll_loop(meter: Meter, run: dict[str, Any], interval: float, poll: Any) -> None:
    """The peers' loop: poll, read the status, sleep the interval, until the run ends."""
    while True:
        try:
            status = await meter.timed(run["run_id"], poll())
        except Exception:
            status = None
        if status in TERMINAL:
            return
        await asyncio.sleep(interval)


def _ca_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=os.environ["WFRUN_BENCH_CA"])


#: Connections of the shared-client contenders: what ours may open to one host (ASYNC_MAX_PER_HOST).
CLIENT_CONNECTIONS = 50


def shared_client(contender: str, tls: str) -> Any:
    """One client for the whole process, as a triggerer would hold it; ``request(method, url, ...)``."""
    import aiohttp
    import httpx

    from airflow_provider_wfrun.hooks import transport

    verify: Any = _ca_context() if tls else True
    limits = httpx.Limits(
        max_connections=CLIENT_CONNECTIONS,
        max_keepalive_connections=CLIENT_CONNECTIONS,
        keepalive_expiry=transport.ASYNC_KEEPALIVE_SECONDS,
    )
    if contender == "httpx":
        return httpx.AsyncClient(verify=verify, limits=limits, trust_env=False)
    if contender == "httpx-aiohttp":
        from httpx_aiohttp import HttpxAiohttpClient

        return HttpxAiohttpClient(verify=verify, limits=limits, trust_env=False)
    connector = aiohttp.TCPConnector(
        limit=transport.ASYNC_MAX_CONNECTIONS,
        limit_per_host=transport.ASYNC_MAX_PER_HOST,
        keepalive_timeout=transport.ASYNC_KEEPALIVE_SECONDS,
        ssl=verify if tls else True,
    )
    return aiohttp.ClientSession(connector=connector, trust_env=False)


def clients(contender: str) -> Any:
    """The peers' loop over one shared client of the kind ``contender`` names."""

    def make(runs: list[dict[str, Any]], meter: Meter, interval: float, tls: str) -> list[Any]:
        import aiohttp

        state: dict[str, Any] = {}
        adapters = {platform: get_adapter(platform) for platform in PLATFORMS}
        bases = {
            p: json.loads(os.environ[f"AIRFLOW_CONN_BENCH_HTTP_{tls.upper()}{p.upper()}"])["host"]
            for p in PLATFORMS
        }
        headers = {platform: http_headers(adapter) for platform, adapter in adapters.items()}

        async def poll(run: dict[str, Any]) -> RunStatus | None:
            client = state.get("client")
            if client is None:
                client = state["client"] = shared_client(contender, tls)
            platform, run_id = run["platform"], run["run_id"]
            adapter = adapters[platform]
            request = adapter.get_request(run_id)
            method, url, options = request.method, bases[platform] + request.path, request_options(request)
            if isinstance(client, aiohttp.ClientSession):
                async with client.request(method, url, headers=headers[platform], **options) as response:
                    response.raise_for_status()
                    payload = await response.json()
            else:
                response = await client.request(method, url, headers=headers[platform], **options)
                response.raise_for_status()
                payload = response.json()
            return adapter.statuses.get(adapter.status_word(payload, run_id=run_id))

        async def wait(run: dict[str, Any]) -> None:
            await poll_loop(meter, run, interval, lambda: poll(run))

        return [wait(run) for run in runs]

    return make


CONTENDERS = {
    "ours": ours,
    "peers": peers,
    "aiohttp": clients("aiohttp"),
    "httpx": clients("httpx"),
    "httpx-aiohttp": clients("httpx-aiohttp"),
}


async def staggered(waiting: Any, delay: float) -> None:
    await asyncio.sleep(delay)
    await waiting


class GcClock:
    """Time spent in the cyclic garbage collector (a pause of the whole event loop)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.longest = 0.0
        self.collections = 0
        #: Collections of the oldest generation: the whole heap, Airflow's included (the long pauses).
        self.full = 0
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
            self.full += info["generation"] == 2


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with open(args.runs) as handle:
        runs = json.load(handle)[: args.n]
    n, interval = len(runs), args.interval
    meter = Meter([run["run_id"] for run in runs], interval)
    tls = "tls_" if args.tls else ""
    contender = CONTENDERS[args.contender]

    def make(runs: list[dict[str, Any]], meter: Meter, interval: float) -> list[Any]:
        return contender(runs, meter, interval, tls)

    # Warm-up outside the measurement: imports, the first client, connection lookups' caches.
    warm_meter = Meter([run["run_id"] for run in runs[:3]], interval)
    warm = make(runs[:3], warm_meter, interval)
    warm_tasks = [asyncio.ensure_future(w) for w in warm]
    await asyncio.sleep(0.5)
    for task in warm_tasks:
        task.cancel()
    await asyncio.gather(*warm_tasks, return_exceptions=True)
    gc.collect()
    census_before = _census() if args.census else None
    rss_before = rss_bytes()

    started = time.monotonic()
    coroutines = make(runs, meter, interval)
    tasks = [
        asyncio.ensure_future(staggered(coroutine, interval * index / n))
        for index, coroutine in enumerate(coroutines)
    ]
    # Every wait has polled twice (or seen its run end): all are in their steady waiting state.
    deadline = started + interval * 6 + 60
    while not meter.settled() and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    all_waiting = meter.settled()
    rss_after = rss_bytes()
    census = _census_per_wait(census_before, n) if census_before is not None else None

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
    # Bounded: a wait that swallows its cancellation (asyncio.wait_for on Python < 3.12 can, when the
    # inner call finishes as the cancel lands) would keep polling; it is counted, not waited for forever.
    _, pending = await asyncio.wait(tasks, timeout=30) if tasks else (set(), set())
    if profiler:
        profiler.dump_stats(args.profile)
    return {
        "contender": args.contender,
        "tls": args.tls,
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
        "gc_full_collections": gc_clock.full,
        "gc_tracked_objects": len(gc.get_objects()),
        "cpu_seconds": cpu,
        "expected_rps": n / interval,
        "not_cancelled": len(pending),
        "by_platform": meter.by_platform(runs),
        **({"objects_per_wait": census} if census is not None else {}),
    }


def _census() -> Counter[str]:
    """Objects the garbage collector tracks, by type (module-qualified name)."""
    return Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects())


def _census_per_wait(before: Counter[str], n: int, top: int = 25) -> dict[str, float]:
    """What the N waits hold, per wait: tracked objects by type once all are waiting, minus the baseline."""
    gc.collect()
    grown = _census() - before
    figures = {"(all)": round(sum(grown.values()) / n, 2)}
    figures.update((name, round(count / n, 2)) for name, count in grown.most_common(top))
    return figures


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contender", choices=tuple(CONTENDERS), required=True)
    parser.add_argument("--tls", action="store_true", help="poll over TLS")
    parser.add_argument("--runs", required=True, help="JSON file of submitted runs")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--profile", help="write a cProfile of the measurement window here")
    parser.add_argument(
        "--census",
        action="store_true",
        help="report the objects the GC tracks per waiting run, by type (costs a pass over the heap)",
    )
    parser.add_argument(
        "--standby",
        action="store_true",
        help="import everything, say ready, start on a line from stdin (moving to the contender core)",
    )
    return parser.parse_args()


def standby(contender: str) -> None:
    """
    Imports done before the measurement is due (Airflow's take seconds of CPU), on whatever core this
    process was started on; then wait for the go and move to the contender core.
    """
    import aiohttp  # noqa: F401
    import httpx  # noqa: F401
    from airflow.providers.http.hooks.http import HttpAsyncHook  # noqa: F401

    from airflow_provider_wfrun.triggers.workflow_run import WorkflowRunTrigger  # noqa: F401

    if contender == "httpx-aiohttp":
        import httpx_aiohttp  # noqa: F401
    print("ready", flush=True)
    if not sys.stdin.readline():  # the harness went away: nothing to measure
        raise SystemExit(1)
    pin(CONTENDER_CPU)


def run() -> None:
    args = parse_args()
    if args.standby:
        standby(args.contender)
    loop = asyncio.new_event_loop()
    result = loop.run_until_complete(main(args))
    print(json.dumps(result), flush=True)
    # Out without closing the loop (waits that ignored their cancellation would hold it) or the
    # interpreter's teardown (a second with Airflow loaded): the result is out.
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    run()
