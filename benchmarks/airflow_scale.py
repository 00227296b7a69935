"""
``make bench-airflow``: many deferred task instances in a production-shaped Airflow, ours beside the peers'.

The distributed tier's deployment (``tests/distributed``: PostgreSQL, CeleryExecutor on Redis, two Celery
workers) with four triggerers: two run our triggers, two the HTTP provider's ``HttpSensorTrigger`` (each
DAG's tasks go to their own queue, ``[triggerer] queues_enabled``). N mapped task instances per side go
through the scheduler and the workers, defer, and wait at the same fixed interval: ours on emulator runs,
the peers on a URL that answers 404 until their wait is over. Once all 2N wait and have polled, a window
of W seconds is measured; then every run ends at once and both DAG runs are waited for (bounded).

The full size (5,000 per side) does not start the tasks: 10,000 task starts on two cores would measure
the task runner, not waiting. The mapped task instances are held in a pool of no slots, and the
benchmark records each deferral as the execution API does (``defer_directly``); the real triggerers pick
them up. ``--direct`` does the same at any ``--n``.

Measured per triggerer: CPU seconds in the window (its process tree: the job and its trigger runner),
RSS per waiting run ((RSS in the window - RSS idle before any trigger) / triggers held), poll lateness
(gap between two polls of one wait, as the server sees them, minus the interval; p50 and p99), and the
time from the runs' end to the last trigger event and to the last task's success.

Recorded directly, a third side waits in a fifth triggerer: Airflow's own ``DateTimeTrigger``, which does
no I/O. Its RSS per waiting run is what Airflow's trigger machinery holds per trigger, the floor under
both sides' figures.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import secrets
import signal
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil

from benchmarks.common import API_KEY, REPO, percentile, submit_runs
from benchmarks.run import log, write_doc

sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "distributed")]

from airflow_deployment import wait_for  # noqa: E402
from distributed_airflow import DistributedAirflow, unreachable_services  # noqa: E402
from starlette.responses import Response  # noqa: E402

from airflow_provider_wfrun.emulator import EmulatorServer  # noqa: E402

DAGS_DIR = REPO / "benchmarks" / "airflow_dags"
SIDES = {"ours": "wfrun_scale_ours", "peers": "wfrun_scale_peers"}
TRIGGERERS = {"ours": ("triggerer-1", "triggerer-2"), "peers": ("triggerer-3", "triggerer-4")}
#: Airflow's floor, recorded directly only (through the workers it would add N task starts).
FLOOR_DAG = "wfrun_scale_floor"
FLOOR_TRIGGERERS = ("triggerer-5",)
MODES = {
    "quick": {"n": 1000, "interval": 10.0, "window": 120.0, "direct": False, "tail_timeout": 7200.0},
    # Every 30 s at 5,000 per side: at 10 s the peers' side alone would need about both cores (their CPU per
    # poll in docs/benchmarks.md), and ours would be measured on a starved machine.
    "full": {"n": 5000, "interval": 30.0, "window": 120.0, "direct": True, "tail_timeout": 900.0},
}
HOLD_POOL = "bench_hold"


class PollRecorder:
    """ASGI middleware before the emulator: notes when each wait polls, and serves the peers' URL."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.polls: dict[str, list[float]] = defaultdict(list)
        self.released = False
        self.lock = threading.Lock()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path.startswith("/peer/"):
            self._note(path.lstrip("/"))
            await Response(status_code=200 if self.released else 404)(scope, receive, send)
            return
        if scope["type"] == "http" and scope["method"] == "GET" and "/workflows/run/" in path:
            self._note(path.rsplit("/", 1)[-1])
        await self.app(scope, receive, send)

    def _note(self, key: str) -> None:
        with self.lock:
            self.polls[key].append(time.monotonic())

    def lateness(self, keys: set[str], start: float, end: float, interval: float) -> list[float]:
        gaps = []
        with self.lock:
            for key in keys:
                times = [t for t in self.polls.get(key, ()) if start <= t <= end]
                gaps.extend(b - a - interval for a, b in itertools.pairwise(times))
        return gaps


def tree(process: psutil.Process) -> list[psutil.Process]:
    return [process, *process.children(recursive=True)]


def cpu_seconds(process: psutil.Process) -> float:
    total = 0.0
    for member in tree(process):
        try:
            times = member.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def rss(process: psutil.Process) -> int:
    total = 0
    for member in tree(process):
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def sides(direct: bool) -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
    """Each side's DAG and triggerers: the floor only when the deferrals are recorded directly."""
    if not direct:
        return SIDES, TRIGGERERS
    return {**SIDES, "floor": FLOOR_DAG}, {**TRIGGERERS, "floor": FLOOR_TRIGGERERS}


def held_keys(airflow: DistributedAirflow) -> dict[str, set[str]]:
    """Which wait (run id, peer URL, or else trigger id) each triggerer holds: from the trigger rows."""
    held: dict[str, set[str]] = defaultdict(set)
    for trigger_id, encrypted, host in airflow.query(
        "SELECT t.id, t.kwargs, j.hostname FROM trigger t JOIN job j ON t.triggerer_id = j.id"
    ):
        kwargs = airflow.decrypt_kwargs(encrypted)
        key = kwargs.get("run_id") or kwargs.get("endpoint") or f"trigger {trigger_id}"
        held[host].add(str(key))
    return held


def measure(
    n: int, interval: float, window: float, home: Path, *, direct: bool, tail_timeout: float
) -> dict[str, Any]:
    emulator = EmulatorServer(api_key=API_KEY)
    recorder = emulator.app = PollRecorder(emulator.app)
    with emulator:
        peer = {"conn_type": "http", "host": "127.0.0.1", "port": emulator.port, "schema": "http"}
        token = secrets.token_hex(4)
        dag_ids, triggerers = sides(direct)
        queues = {side: f"bench-{side}-{token}" for side in dag_ids}
        airflow = DistributedAirflow(
            home,
            emulator,
            dags_dir=DAGS_DIR,
            dag_ids=tuple(dag_ids.values()),
            components=(
                "api-server",
                "dag-processor",
                "scheduler",
                *(name for names in triggerers.values() for name in names),
                "celery-worker-1",
                "celery-worker-2",
            ),
            settings={
                "TRIGGERER__QUEUES_ENABLED": "True",
                "TRIGGERER__CAPACITY": str(n),
                "TRIGGERER__MAX_TRIGGER_TO_SELECT_PER_LOOP": "25",
                "CORE__MAX_ACTIVE_TASKS_PER_DAG": str(2 * n),
                # A mapped task expands to at most this many instances (1,024 by default).
                "CORE__MAX_MAP_LENGTH": str(max(n, 1024)),
            },
            env={
                "WFRUN_BENCH_INTERVAL": str(interval),
                "WFRUN_BENCH_OURS_QUEUE": queues["ours"],
                "WFRUN_BENCH_PEERS_QUEUE": queues["peers"],
                "WFRUN_BENCH_FLOOR_QUEUE": queues.get("floor", "default"),
                "AIRFLOW_CONN_BENCH_PEER": json.dumps(peer),
                "WFRUN_BENCH_POOL": HOLD_POOL if direct else "default_pool",
            },
            component_args={
                name: ["--queues", queues[side]] for side, names in triggerers.items() for name in names
            },
            extra_queues=tuple(queues.values()),
        )
        try:
            return _measure(
                airflow, emulator, recorder, n, interval, window, direct=direct, tail_timeout=tail_timeout
            )
        finally:
            airflow.stop()


def tails(
    airflow: DistributedAirflow, runs: dict[str, tuple[str, str]], ended_wall: float, timeout: float
) -> dict[str, dict[str, Any]]:
    """From every run's end: when each side's last trigger fired (no task deferred), and its last success.

    Both sides are watched together under one bound of ``timeout``: the resumed tasks go through two
    workers, which for thousands of tasks measures the workers, not the waiting. What had not happened by
    then is reported as such (how many were still deferred), never raised: the window's figures stand.
    """
    deadline = time.monotonic() + timeout
    fired: dict[str, float] = {}
    deferred: dict[str, int] = {}
    while True:
        for side, (dag_id, run_id) in runs.items():
            if side not in fired:
                deferred[side] = airflow.query(
                    "SELECT count(*) FROM task_instance "
                    "WHERE dag_id = ? AND run_id = ? AND state = 'deferred'",
                    dag_id,
                    run_id,
                )[0][0]
                if deferred[side] == 0:
                    fired[side] = time.time() - ended_wall
        if len(fired) == len(runs) or time.monotonic() >= deadline:
            break
        time.sleep(1)
    states = {side: airflow.dag_run(*run)["state"] for side, run in runs.items()}
    while any(s not in ("success", "failed") for s in states.values()) and time.monotonic() < deadline:
        time.sleep(5)
        states = {side: airflow.dag_run(*run)["state"] for side, run in runs.items()}
    result = {}
    for side, run in runs.items():
        tis = [ti for ti in airflow.task_instances(*run) if ti["task_id"] == "wait"]
        ends = [_timestamp(ti["end_date"]) for ti in tis if ti["state"] == "success"]
        result[side] = {
            "state": states[side],
            "fired": fired.get(side, float("nan")),
            "deferred": deferred[side],
            "tail": max(ends) - ended_wall if ends else float("nan"),
            "succeeded": len(ends),
        }
    return result


def _measure(
    airflow: DistributedAirflow,
    emulator: EmulatorServer,
    recorder: PollRecorder,
    n: int,
    interval: float,
    window: float,
    *,
    direct: bool,
    tail_timeout: float,
) -> dict[str, Any]:
    started = time.monotonic()
    airflow.start()
    log(f"Airflow up in {time.monotonic() - started:.0f} s")
    dag_ids, side_triggerers = sides(direct)
    names = [name for side_names in side_triggerers.values() for name in side_names]
    triggerers = {name: psutil.Process(airflow.processes[name].pid) for name in names}
    idle_rss = {name: rss(process) for name, process in triggerers.items()}
    if direct:
        airflow.api("POST", "/api/v2/pools", json={"name": HOLD_POOL, "slots": 0, "include_deferred": False})
    started = time.monotonic()
    run_ids = {side: airflow.trigger(dag_id, {"count": n}) for side, dag_id in dag_ids.items()}
    if direct:
        defer_directly(airflow, emulator, run_ids, n, interval)
    total = len(dag_ids) * n

    def all_waiting() -> bool:
        airflow.check_alive()
        (count,) = airflow.query("SELECT count(*) FROM trigger WHERE triggerer_id IS NOT NULL")[0]
        return count >= total

    wait_for(f"{total} triggers to run", all_waiting, timeout=7200, interval=10, on_fail=airflow.hint())
    ramp = time.monotonic() - started
    log(f"all {total} waits deferred and assigned after {ramp:.0f} s; settling for {2 * interval:.0f} s")
    time.sleep(2 * interval)
    held = held_keys(airflow)
    cpu_start = {name: cpu_seconds(process) for name, process in triggerers.items()}
    window_start = time.monotonic()
    time.sleep(window / 2)
    waiting_rss = {name: rss(process) for name, process in triggerers.items()}
    time.sleep(window / 2)
    window_end = time.monotonic()
    cpu = {name: cpu_seconds(process) - cpu_start[name] for name, process in triggerers.items()}
    log(f"window of {window:.0f} s measured; ending every run")

    ended_wall = time.time()
    recorder.released = True
    for run in emulator.state.runs.values():
        run.scenario = run.scenario.patched({"duration_seconds": max(0.0, time.monotonic() - run.start_mono)})
    # The floor's waits never end: only the window is measured for it.
    finished = tails(
        airflow, {side: (dag_id, run_ids[side]) for side, dag_id in SIDES.items()}, ended_wall, tail_timeout
    )
    rows = []
    for side, names in side_triggerers.items():
        for name in names:
            keys = held.get(name, set())
            gaps = recorder.lateness(keys, window_start, window_end, interval)
            rows.append(
                {
                    "side": side,
                    "triggerer": name,
                    "held": len(keys),
                    "cpu_s": cpu[name],
                    "polls": len(gaps) + len(keys),
                    "rss_mb": waiting_rss[name] / 1e6,
                    "rss_per_wait_kb": (waiting_rss[name] - idle_rss[name]) / max(len(keys), 1) / 1e3,
                    "late_p50": percentile(gaps, 50),
                    "late_p99": percentile(gaps, 99),
                }
            )
    return {
        "n": n,
        "interval": interval,
        "window": window,
        "ramp": ramp,
        "direct": direct,
        "rows": rows,
        "finished": finished,
    }


def defer_directly(
    airflow: DistributedAirflow, emulator: EmulatorServer, run_ids: dict[str, str], n: int, interval: float
) -> None:
    """Bring the mapped task instances to the deferred state without starting them.

    They are expanded into a pool of no slots, so none is queued. Then, for each, what the execution API
    records when a task defers (``ti_update_state`` with a deferred payload): a trigger row (classpath,
    encrypted kwargs, the task's queue), and the task instance's state, trigger id and next method. The
    pool then opens, for the resumed tasks. Our triggers wait on runs submitted over HTTP beforehand.
    """

    def expanded() -> bool:
        failed = airflow.query(
            "SELECT dag_id, task_id FROM task_instance WHERE state IN ('failed', 'upstream_failed')"
        )
        if failed:
            raise RuntimeError(f"task instances failed before the deferrals were recorded: {failed}")
        rows = airflow.query(
            "SELECT count(*) FROM task_instance WHERE task_id = 'wait' AND state = 'scheduled'"
        )
        return rows[0][0] >= total

    total = len(run_ids) * n
    wait_for(f"{total} mapped task instances", expanded, timeout=1800, interval=5, on_fail=airflow.hint())
    runs = asyncio.run(submit_runs(emulator.url, [("dify", {"duration_seconds": 86400})] * n))
    log(f"{total} task instances expanded and held; {len(runs)} runs submitted; recording the deferrals")
    # Airflow's own models, on this deployment's database and Fernet key.
    os.environ.update({k: v for k, v in airflow.env.items() if k.startswith("AIRFLOW")})
    from airflow import settings

    # Importing Airflow (the deployment harness does) configured its ORM from the defaults: again, now.
    settings.configure_vars()
    settings.reconfigure_orm()
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import Trigger
    from airflow.providers.http.triggers.http import HttpSensorTrigger
    from airflow.providers.standard.triggers.temporal import DateTimeTrigger
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    from airflow_provider_wfrun.triggers.workflow_run import WorkflowRunTrigger

    end_time = time.time() + 6 * 3600
    triggers = {
        "ours": [
            WorkflowRunTrigger(
                conn_id="wfrun_dify",
                run_id=run["run_id"],
                end_time=end_time,
                poll_interval=interval,
                adaptive=False,
                platform_task_id=run.get("task_id"),
            )
            for run in runs
        ],
        "peers": [
            HttpSensorTrigger(
                endpoint=f"peer/{number}", http_conn_id="bench_peer", method="GET", poke_interval=interval
            )
            for number in range(n)
        ],
        "floor": [DateTimeTrigger(moment=datetime.fromtimestamp(end_time, timezone.utc))] * n,
    }
    dag_ids, _ = sides(direct=True)
    for side, dag_id in dag_ids.items():
        with create_session() as session:
            tis = session.scalars(
                select(TaskInstance)
                .where(
                    TaskInstance.dag_id == dag_id,
                    TaskInstance.run_id == run_ids[side],
                    TaskInstance.task_id == "wait",
                )
                .order_by(TaskInstance.map_index)
            ).all()
            for ti, trigger in zip(tis, triggers[side], strict=True):
                classpath, kwargs = trigger.serialize()
                row = Trigger(classpath=classpath, kwargs=kwargs, queue=ti.queue)
                session.add(row)
                session.flush()
                ti.state = TaskInstanceState.DEFERRED
                ti.trigger_id = row.id
                ti.next_method = "execute_complete"
                ti.next_kwargs = None
    airflow.api(
        "PATCH",
        f"/api/v2/pools/{HOLD_POOL}",
        params={"update_mask": "slots"},
        json={"pool": HOLD_POOL, "slots": 4 * n, "include_deferred": False},
    )


def _timestamp(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def report(result: dict[str, Any]) -> str:
    n, interval, window = result["n"], result["interval"], result["window"]
    waiting = n * len({row["side"] for row in result["rows"]})
    lines = [
        f"N = {n:,} deferred task instances per side, polling every {interval:.0f} s; window {window:.0f} s; "
        + (
            "deferrals recorded directly (the tasks were not started)"
            if result["direct"]
            else "through the scheduler and the Celery workers"
        )
        + f"; all {waiting:,} waiting {result['ramp'] / 60:.1f} min after the DAG runs were triggered.",
        "",
        "| side | triggerer | waits held | CPU s in window | CPU ms per waited run per minute | "
        "polls in window (of due) | CPU µs per poll | RSS | RSS per waiting run | lateness p50 | "
        "lateness p99 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    # Per side: CPU seconds, waits held, polls made in the window.
    per_side: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    rss_per_wait: dict[str, list[float]] = defaultdict(list)
    for row in result["rows"]:
        if row["held"]:
            rss_per_wait[row["side"]].append(row["rss_per_wait_kb"])
        per_minute = row["cpu_s"] * 1e3 / max(row["held"], 1) / (window / 60)
        polls = row["polls"] if row["side"] != "floor" else 0
        due = row["held"] * window / interval if row["side"] != "floor" else 0
        per_side[row["side"]][0] += row["cpu_s"]
        per_side[row["side"]][1] += row["held"]
        per_side[row["side"]][2] += polls
        lines.append(
            f"| {row['side']} | {row['triggerer']} | {row['held']:,} | {row['cpu_s']:.1f} | "
            f"{per_minute:.2f} | "
            + (
                f"{polls:,} ({polls / due:.0%}) | {row['cpu_s'] * 1e6 / polls:,.0f} | "
                if polls
                else "- | - | "
            )
            + f"{row['rss_mb']:.0f} MB | {row['rss_per_wait_kb']:.1f} KB | {_ms(row['late_p50'])} | "
            f"{_ms(row['late_p99'])} |"
        )
    ours, peers = (per_side[side][0] / max(per_side[side][1], 1) for side in ("ours", "peers"))
    ours_poll, peers_poll = (per_side[side][0] / max(per_side[side][2], 1) for side in ("ours", "peers"))
    lines += [
        "",
        f"CPU per waited run, ours / peers: {ours * 1e3:.2f} / {peers * 1e3:.2f} ms in the window "
        f"({ours / peers:.2f}x); per poll made, {ours_poll * 1e6:,.0f} / {peers_poll * 1e6:,.0f} µs "
        f"({ours_poll / peers_poll:.2f}x). A side that falls behind makes fewer polls than are due, "
        "so its CPU per waited run falls with its pace."
        if peers and peers_poll
        else "",
        "",
        *(
            [
                "Airflow's own machinery per waiting trigger (the floor side's `DateTimeTrigger`, no I/O): "
                f"{min(rss_per_wait['floor']):.1f} KB of RSS; above it, ours "
                f"{_above(rss_per_wait['ours'], rss_per_wait['floor'])}, the peers "
                f"{_above(rss_per_wait['peers'], rss_per_wait['floor'])}.",
                "",
            ]
            if rss_per_wait.get("floor")
            else []
        ),
        "From every run's end (all at once) to the last trigger's event / to the last task's success: "
        + "; ".join(_tail_text(side, done, n) for side, done in result["finished"].items())
        + ".",
    ]
    return "\n".join(lines)


def _tail_text(side: str, done: dict[str, Any], n: int) -> str:
    fired = (
        f"{done['fired']:.0f} s"
        if math.isfinite(done["fired"])
        else f"not within the bound ({done['deferred']:,} still deferred)"
    )
    tail = f"{done['tail']:.0f} s" if math.isfinite(done["tail"]) else "none yet"
    return f"{side} {fired} / {tail} ({done['succeeded']:,} of {n:,} succeeded, DAG run {done['state']})"


def _above(side: list[float], floor: list[float]) -> str:
    """A side's RSS per waiting run above the floor's, as a range over its triggerers."""
    if not side:
        return "(no waits held)"
    low, high = min(side) - min(floor), max(side) - min(floor)
    return f"{low:.1f} KB" if round(low, 1) == round(high, 1) else f"{low:.1f} to {high:.1f} KB"


def _ms(seconds: float) -> str:
    """Lateness in ms; a dash where nothing polls (the floor side)."""
    return "-" if math.isnan(seconds) else f"{seconds * 1e3:.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=("quick", "full"), default="quick")
    parser.add_argument("--n", type=int, help="task instances per side (default: the mode's)")
    parser.add_argument("--interval", type=float)
    parser.add_argument("--window", type=float)
    parser.add_argument("--direct", action="store_true", help="record the deferrals directly at any size")
    parser.add_argument("--tail-timeout", type=float, help="longest wait for the resumed tasks (s)")
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    missing = unreachable_services()
    if missing:
        raise SystemExit(f"bench-airflow: not reachable: {'; '.join(missing)}")
    names = ("n", "interval", "window", "direct", "tail_timeout")
    overrides = {k: v for k, v in vars(args).items() if k in names and v}
    config = {**MODES[args.mode], **overrides}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # run the clean-up on a kill too
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="wfrun-bench-airflow-") as home:
        result = measure(
            config["n"],
            config["interval"],
            config["window"],
            Path(home),
            direct=config["direct"],
            tail_timeout=config["tail_timeout"],
        )
    table = report(result)
    print(table)
    if not args.no_doc:
        command = "python -m benchmarks.airflow_scale " + " ".join(sys.argv[1:])
        write_doc(f"airflow-{args.mode}", command, table, time.monotonic() - started)
    log(f"done in {(time.monotonic() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
