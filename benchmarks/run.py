"""
``make bench`` / ``make bench-full``: how cheap waiting is, side by side with the alternatives, in one run.

1. Poll cost and scale: N ``WorkflowRunTrigger.run()`` in one event loop vs the peers' pattern
   (``HttpAsyncHook`` + a new aiohttp session per poll), same runs, same interval.
2. Requests per run and detection delay: adaptive polling vs fixed-interval polling on a mix of runs.
3. Against what users do today: ``HttpSensor`` in reschedule mode vs ``RunWorkflowOperator(deferrable=True)``
   through real Airflow (``dag.test()``).

Every platform of the adapter registry takes part, each polled and submitted as its adapter describes.
The emulator runs in its own process on the last core; every contender in its own process on the first.
Prints one table and writes it, with the machine, the command and the date, into ``docs/benchmarks.md``.
``--mode smoke`` (``make bench-smoke``) only checks that every part works on every platform, in about a
minute; tests/benchmarks runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import datetime
import json
import math
import os
import platform
import random
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from airflow_provider_wfrun.emulator.app import typical_runs
from benchmarks.common import (
    PLATFORMS,
    REPO,
    Emulator,
    airflow_env,
    connection_env,
    control,
    emulator_process,
    finish_contender,
    start_contender,
    submit_runs,
)

DOC = REPO / "docs" / "benchmarks.md"
#: Part 1's contenders (benchmarks/poll_scale.py): ours, the peers' pattern, and the transports ours was
#: chosen among (the peers' loop over one shared client), for the comparison only.
ALL_CONTENDERS = ("ours", "peers", "aiohttp", "httpx", "httpx-aiohttp")
#: Part 1's runs: long, so every wait is still waiting when the window closes.
LONG_RUN = {"queue_seconds": 0, "duration_seconds": 86_400}
#: The smoke's other half: runs over before they are polled, so every contender reads each platform's end.
SHORT_RUN = {"queue_seconds": 0, "duration_seconds": 0.2}
MODES: dict[str, dict[str, Any]] = {
    # part 1: sizes (N, poll interval s, window s, schemes, contenders, rounds); each round runs every
    # contender once, in an order rotated from round to round; the runs, the platforms in turn, each turn
    # the next of "scale_runs". Part 2: runs, time scale. Part 3: run length, poke interval.
    "quick": {
        "scale": [(1000, 5.0, 15.0, ("http", "https"), ALL_CONTENDERS, 2)],
        "scale_runs": (LONG_RUN,),
        "mix_runs": 300,
        "mix_scale": 0.25,
        "wait": 60.0,
        "interval": 1.0,
    },
    "full": {
        "scale": [
            (1000, 5.0, 20.0, ("http", "https"), ALL_CONTENDERS, 2),
            (5000, 15.0, 30.0, ("http",), ("ours", "peers"), 2),
            (10000, 30.0, 60.0, ("http",), ("ours", "peers"), 2),
        ],
        "scale_runs": (LONG_RUN,),
        "mix_runs": 600,
        "mix_scale": 1.0,
        "wait": 600.0,
        "interval": 1.0,
    },
    # Does every part still work, on every platform? Not a measurement: about a minute, writes no doc.
    # Part 1: one long and one short run per platform; part 2: two runs per platform at 1/100 of their time.
    "smoke": {
        "scale": [(2 * len(PLATFORMS), 0.3, 0.6, ("http", "https"), ALL_CONTENDERS, 1)],
        "scale_runs": (LONG_RUN, SHORT_RUN),
        "mix_runs": 2 * len(PLATFORMS),
        "mix_scale": 0.01,
        "wait": 2.0,
        "interval": 0.5,
        "parts": "1,2",
        "doc": False,
    },
}
#: Part 2's poll interval and cap before time scaling (the operator's defaults: 10 s, 300 s).
MIX_INTERVAL, MIX_MAX_INTERVAL = 10.0, 300.0


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ part 1
def part_poll_cost(
    emulator: Emulator,
    env: dict[str, str],
    sizes: list[tuple],
    scenarios: tuple[dict[str, Any], ...],
    platforms: tuple[str, ...] = PLATFORMS,
) -> list[dict]:
    """
    Per size and scheme, ``rounds`` alternated rounds: every contender once per round, the order rotated
    each round, so no contender always runs first (or last) on a machine whose load drifts.
    """
    rows = []
    for n, interval, window, schemes, contenders, rounds in sizes:
        control(emulator.url, "/reset", "POST")
        log(f"part 1: submitting {n} runs ({', '.join(platforms)})")
        runs = asyncio.run(submit_runs(emulator.url, scale_specs(n, scenarios, platforms)))
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
            json.dump(runs, handle)
        plan = [
            (scheme, index, contender)
            for scheme in schemes
            for index in range(rounds)
            for contender in contenders[index % len(contenders) :] + contenders[: index % len(contenders)]
        ]
        log(
            f"part 1: N={n}: starting the {len(plan)} contender processes of {len(schemes)} x {rounds} rounds"
        )
        processes = standby_contenders(plan, handle.name, n, interval, window, env)
        for scheme in schemes:
            row: dict[str, Any] = {"n": n, "interval": interval, "scheme": scheme, "rounds": rounds}
            row["results"] = {contender: [] for contender in contenders}
            rows.append(row)
        for key in plan:
            scheme, index, contender = key
            log(
                f"part 1: {scheme}, round {index + 1}/{rounds}, {contender}, N={n}, "
                f"every {interval:g} s, {window:g} s window"
            )
            result = finish_contender(processes.pop(key), {"go": True}, interval * 8 + window + 300)
            result["round"] = index
            row = next(r for r in rows if r["n"] == n and r["scheme"] == scheme)
            row["results"][contender].append(result)
            log(
                f"part 1: {contender}: {fmt(result['cpu_us_per_poll'], 0)} µs per poll, "
                f"{result['rps']:.0f} of {result['expected_rps']:.0f} requests/s, lateness p99 "
                f"{result['lateness_p99'] * 1e3:.1f} ms, GC {result['gc_seconds']:.2f} s "
                f"(longest {result['gc_longest'] * 1e3:.0f} ms), "
                f"RSS {result['rss_bytes_per_wait'] / 1024:.1f} KB per wait"
            )
        os.unlink(handle.name)
    return rows


def scale_specs(
    n: int, scenarios: tuple[dict[str, Any], ...], platforms: tuple[str, ...] = PLATFORMS
) -> list[tuple[str, dict[str, Any]]]:
    """N runs, the platforms in turn; each turn of the platforms takes the next scenario."""
    turn = len(platforms)
    return [(platforms[i % turn], scenarios[i // turn % len(scenarios)]) for i in range(n)]


def standby_contenders(
    plan: list[tuple[str, int, str]], runs: str, n: int, interval: float, window: float, env: dict
) -> dict[tuple[str, int, str], subprocess.Popen[str]]:
    """
    Every contender process of a size, started together while nothing is measured (on any core): their
    imports (seconds of CPU each) are done before the first measurement, and each moves to the contender
    core when its turn comes.
    """
    common = ["--runs", runs, "--n", str(n), "--interval", str(interval), "--window", str(window)]

    def start(key: tuple[str, int, str]) -> subprocess.Popen[str]:
        scheme, _, contender = key
        args = ["--contender", contender, *common, "--standby", *(["--tls"] if scheme == "https" else [])]
        return start_contender("poll_scale", args, env, None)

    with concurrent.futures.ThreadPoolExecutor(len(plan)) as pool:
        futures = {key: pool.submit(start, key) for key in plan}
        return {key: future.result() for key, future in futures.items()}


# ------------------------------------------------------------------------------------------ part 2
def mix_specs(count: int, scale: float, seed: int = 7) -> list[tuple[str, dict[str, Any]]]:
    """
    A day's mix, the platforms in turn, each run drawn from its platform's typical runs (the emulator's
    ``typical_runs``): LLM workflows of 3 s to 5 min (log-uniform: most are short); GPU runs that queue up
    to a minute (with the platform's estimate where it gives one) and then run 20 s to 5 min.
    """
    rng = random.Random(seed)
    typical = {platform: typical_runs(platform) for platform in PLATFORMS}
    specs = []
    for index in range(count):
        name = PLATFORMS[index % len(PLATFORMS)]
        queue, duration = typical[name].draw(rng)
        specs.append(
            (name, {"queue_seconds": round(queue * scale, 3), "duration_seconds": round(duration * scale, 3)})
        )
    return specs


def part_adaptive(url: str, env: dict[str, str], count: int, scale: float) -> dict[str, Any]:
    control(url, "/reset", "POST")
    interval, cap = MIX_INTERVAL * scale, MIX_MAX_INTERVAL * scale
    args = ["--interval", str(interval), "--max-interval", str(cap)]
    with concurrent.futures.ThreadPoolExecutor(3) as pool:  # their imports at once, before any run exists
        starting = {
            policy: pool.submit(start_contender, "adaptive", ["--policy", policy, *args], env)
            for policy in ("adaptive", "fixed", "fixed-eta")
        }
        processes = {policy: future.result() for policy, future in starting.items()}
    specs = mix_specs(count, scale)
    log(f"part 2: {count} runs (time scale {scale:g}), poll interval {interval:g} s, cap {cap:g} s")
    runs = asyncio.run(submit_runs(url, specs))
    for run, (_, scenario) in zip(runs, specs, strict=True):
        run["queue"], run["duration"] = scenario["queue_seconds"], scenario["duration_seconds"]
        run["ends"] = run["submitted"] + run["queue"] + run["duration"]
    longest = max(run["queue"] + run["duration"] for run in runs)
    with concurrent.futures.ThreadPoolExecutor(len(processes)) as pool:
        futures = {
            p: pool.submit(finish_contender, proc, runs, longest + cap + 300) for p, proc in processes.items()
        }
        results = {policy: future.result() for policy, future in futures.items()}
    return {"runs": count, "scale": scale, "interval": interval, "max_interval": cap, **results}


# ------------------------------------------------------------------------------------------ part 3
def part_airflow(url: str, env: dict[str, str], wait: float, interval: float, mode: str) -> dict[str, Any]:
    # Per mode: a quick and a full run may overlap without sharing a metadata database.
    homes = {name: REPO / ".airflow-home" / f"bench-{mode}-{name}" for name in ("sensor", "deferrable")}
    bundles = json.dumps(
        [
            {
                "name": "wfrun_bench",
                "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(REPO / "benchmarks" / "dags"), "refresh_interval": 0},
            }
        ]
    )
    envs = {
        name: {
            **env,
            **airflow_env(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "benchmarks" / "dags"),
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": bundles,
            "WFRUN_BENCH_INTERVAL": str(interval),
        }
        for name, home in homes.items()
    }
    log("part 3: two fresh SQLite metadata databases")
    for home in homes.values():  # fresh each time: rows left by earlier runs must not weigh on either side
        for name in ("airflow.db", "airflow.db-journal", "airflow.db-wal", "airflow.db-shm"):
            (home / name).unlink(missing_ok=True)
    migrations = [
        subprocess.Popen(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            env={**os.environ, **e},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for e in envs.values()
    ]
    if any(m.wait(timeout=600) != 0 for m in migrations):
        raise SystemExit("airflow db migrate failed")
    short = {"queue_seconds": 0, "duration_seconds": 0.2}
    [finished] = asyncio.run(submit_runs(url, [("dify", short)]))
    warmups = {
        "sensor": {"run_id": finished["run_id"]},
        "deferrable": {"inputs": {"query": "warm-up", "_emulator": short}},
    }
    processes = {
        name: start_contender(
            "airflow_wait", ["--contender", name, "--warmup", json.dumps(warmups[name])], envs[name]
        )
        for name in homes
    }
    scenario = {"queue_seconds": 0, "duration_seconds": wait}
    [run] = asyncio.run(submit_runs(url, [("dify", scenario)]))
    confs = {
        "sensor": {"run_id": run["run_id"]},
        "deferrable": {"inputs": {"query": "benchmark", "_emulator": scenario}},
    }
    log(f"part 3: HttpSensor (reschedule) and RunWorkflowOperator (deferrable), one {wait:g} s run each")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = {
            n: pool.submit(finish_contender, p, confs[n], wait * 3 + 600) for n, p in processes.items()
        }
        results = {name: future.result() for name, future in futures.items()}
    return {"wait": wait, "interval": interval, **results}


# ------------------------------------------------------------------------------------------ report
def ratio(ours: float | None, theirs: float | None) -> str:
    if not ours or not theirs or math.isnan(ours) or math.isnan(theirs):
        return "n/a"
    return f"{ours / theirs:.2f}x"


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:,.{digits}f}"


LABELS = {
    "ours": "ours (trigger, shared aiohttp session)",
    "peers": "peers' pattern (HttpAsyncHook, session per poll)",
    "aiohttp": "bare aiohttp session, shared",
    "httpx": "httpx AsyncClient (its own pool)",
    "httpx-aiohttp": "httpx over httpx-aiohttp",
}
#: Part 1's figures: label, key, factor, digits.
SCALE_FIGURES = [
    ("CPU µs per poll", "cpu_us_per_poll", 1e0, 0),
    ("RSS per waiting run (KB)", "rss_bytes_per_wait", 1 / 1024, 1),
    ("poll lateness p50 (ms)", "lateness_p50", 1e3, 1),
    ("poll lateness p99 (ms)", "lateness_p99", 1e3, 1),
    ("poll lateness max (ms)", "lateness_max", 1e3, 0),
    ("GC pause total (s)", "gc_seconds", 1e0, 2),
    ("GC pause longest (ms)", "gc_longest", 1e3, 0),
    ("GC full collections", "gc_full_collections", 1e0, 0),
    ("requests/s achieved", "rps", 1e0, 0),
]
SCHEMES = {"http": "plain HTTP", "https": "TLS"}


def spread(values: list[float | None], digits: int) -> str:
    """Median and range of the rounds: ``480 (450-510)``; one value alone."""
    known = [v for v in values if v is not None and not math.isnan(v)]
    if not known:
        return "n/a"
    middle = fmt(statistics.median(known), digits)
    if len(known) == 1:
        return middle
    return f"{middle} ({fmt(min(known), digits)}\u2013{fmt(max(known), digits)})"


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def round_ratios(row: dict[str, Any], contender: str, key: str = "cpu_us_per_poll") -> list[float]:
    """``contender / peers`` of each round: the two ran closest in time, so the pair is the fairest."""
    peers = {r["round"]: r[key] for r in row["results"].get("peers", [])}
    return [r[key] / peers[r["round"]] for r in row["results"][contender] if peers.get(r["round"])]


def scale_report(rows: list[dict[str, Any]]) -> list[str]:
    out = [
        "**1. Poll cost and scale** — N concurrent waits in one event loop, same runs, same interval. "
        "Each cell: the median of the rounds, (the range). Rounds alternate the contenders, the order "
        "rotated each round; *÷ peers* is the median of each round's ratio to the peers' pattern.\n"
    ]
    for row in rows:
        names = list(row["results"])
        out.append(
            f"\n*N = {row['n']:,}, every {row['interval']:g} s, {SCHEMES[row['scheme']]}, "
            f"{row['rounds']} rounds* (expected {row['n'] / row['interval']:,.0f} requests/s)\n"
        )
        out.append("| figure | " + " | ".join(LABELS[name] for name in names) + " |")
        out.append("|---|" + "---:|" * len(names))
        for label, key, factor, digits in SCALE_FIGURES:
            cells = [
                spread([_scaled(r.get(key), factor) for r in row["results"][name]], digits) for name in names
            ]
            out.append(f"| {label} | " + " | ".join(cells) + " |")
            if key == "cpu_us_per_poll" and "peers" in names:
                ratios = [spread(round_ratios(row, name), 2) + "x" for name in names]
                out.append("| CPU per poll ÷ peers | " + " | ".join(ratios) + " |")
        errors = [str(sum(r["errors"] for r in row["results"][name])) for name in names]
        out.append("| errors (all rounds) | " + " | ".join(errors) + " |")
    out += ["", *targets_report(rows)]
    return out


def _row(rows: list[dict[str, Any]], n: int, scheme: str) -> dict[str, Any] | None:
    return next((r for r in rows if r["n"] == n and r["scheme"] == scheme), None)


def verdict(values: list[float], limit: float) -> str:
    """Met in every round, in the median only, or missed."""
    if not values:
        return "not run"
    if max(values) <= limit:
        return "**met** (every round)"
    if statistics.median(values) <= limit:
        return "**met in the median**, not in every round"
    return "**missed**"


def targets_report(rows: list[dict[str, Any]]) -> list[str]:
    out = [
        "*Targets* (ours, from this run)\n",
        "| target | measured: median (range) | status |",
        "|---|---|---|",
    ]
    for n, scheme, limit in ((1000, "https", 0.35), (1000, "http", 0.6), (5000, "http", 0.5)):
        row = _row(rows, n, scheme)
        ratios = round_ratios(row, "ours") if row else []
        out.append(
            f"| CPU per poll ≤ {limit}x the peers' pattern, N = {n:,}, {SCHEMES[scheme]} "
            f"| {spread(ratios, 2)}x | {verdict(ratios, limit)} |"
        )
    rss = [r["rss_bytes_per_wait"] / 1024 for row in rows for r in row["results"].get("ours", [])]
    out.append(
        f"| RSS per waiting run ≤ 10 KB (every size and scheme) | {spread(rss, 1)} KB | {verdict(rss, 10)} |"
    )
    row = _row(rows, 10000, "http")
    ours = row["results"].get("ours", []) if row else []
    p99 = [r["lateness_p99"] * 1e3 for r in ours]
    gc_note = (
        ", GC pauses: longest "
        + spread([r["gc_longest"] * 1e3 for r in ours], 0)
        + " ms, total "
        + (spread([r["gc_seconds"] for r in ours], 2) + " s per window")
    )
    out.append(
        f"| p99 lateness < 100 ms, N = 10,000, every 30 s, one core | {spread(p99, 1)} ms"
        f"{gc_note if ours else ''} | {verdict(p99, 100)} |"
    )
    return out


def report(results: dict[str, Any]) -> str:
    """The tables of the parts that ran."""
    out = scale_report(results["scale"]) if "scale" in results else []
    if "adaptive" in results:
        out += adaptive_report(results["adaptive"])
    if "airflow" in results:
        out += airflow_report(results["airflow"])
    return "\n".join(out)


def adaptive_report(mix: dict[str, Any]) -> list[str]:
    out = []
    adaptive, fixed, fixed_eta = mix["adaptive"], mix["fixed"], mix.get("fixed-eta")
    out.append(
        f"\n**2. Requests per run and detection delay**: {mix['runs']} runs (the platforms in turn), "
        f"time scale {mix['scale']:g}, poll_interval {mix['interval']:g} s, "
        f"max_poll_interval {mix['max_interval']:g} s. *Fixed interval*: every poll_interval (the peers' "
        "pattern); *adaptive=False*: the trigger without adaptive polling (fixed, but it waits out a queue "
        "estimate where the platform gives one: chenyu).\n"
    )
    columns = [("adaptive", adaptive), ("fixed interval", fixed)]
    if fixed_eta is not None:
        columns.append(("adaptive=False", fixed_eta))
    ratios = [("adaptive / fixed", fixed)] + ([("adaptive / adaptive=False", fixed_eta)] if fixed_eta else [])
    out.append(
        "| runs | figure | "
        + " | ".join(name for name, _ in columns)
        + " | "
        + " | ".join(name for name, _ in ratios)
        + " |"
    )
    out.append("|---|---|" + "---:|" * (len(columns) + len(ratios)))
    platforms = sorted(adaptive["by_platform"])
    groups = [("all", [c for _, c in columns], [r for _, r in ratios])] + [
        (name, [c["by_platform"][name] for _, c in columns], [r["by_platform"][name] for _, r in ratios])
        for name in platforms
    ]
    figures2 = [
        ("requests per run", "requests_per_run", 1),
        ("delay p50 (s)", "delay_p50", 2),
        ("delay p95 (s)", "delay_p95", 2),
    ]
    for name, cells_of, ratio_of in groups:
        for index, (label, key, digits) in enumerate(figures2):
            cells = [fmt(c[key], digits) for c in cells_of]
            cells += [ratio(cells_of[0][key], r[key]) for r in ratio_of]
            out.append(f"| {name if index == 0 else ''} | {label} | " + " | ".join(cells) + " |")
    failed = " | ".join(str(c["not_succeeded"]) for _, c in columns)
    out.append(f"| | runs not succeeded | {failed} |" + " |" * len(ratios))
    return out


def airflow_report(af: dict[str, Any]) -> list[str]:
    out = []
    sensor, ours = af["sensor"], af["deferrable"]
    out.append(
        f"\n**3. Against what users do today**: one {af['wait']:g} s run, "
        f"poll/poke interval {af['interval']:g} s, through real Airflow (`dag.test()`)\n"
    )
    out.append("| per waited run | HttpSensor (reschedule) | ours (deferrable) | HttpSensor / ours |")
    out.append("|---|---:|---:|---:|")
    sensor_cpu = sensor["task_cpu"] + sensor["trigger_cpu"]
    ours_cpu = ours["task_cpu"] + ours["trigger_cpu"]
    lines = [
        ("CPU s: task runs + trigger", sensor_cpu, ours_cpu, 3),
        ("  of which trigger (triggerer)", sensor["trigger_cpu"], ours["trigger_cpu"], 3),
        ("worker-slot s (task runs' wall time)", sensor["slot_seconds"], ours["slot_seconds"], 2),
        ("task runs (worker slot taken)", sensor["task_runs"], ours["task_runs"], 0),
        ("HTTP requests to the platform", sensor["requests"], ours["requests"], 0),
        ("whole process CPU s (adds dag.test's loop)", sensor["process_cpu"], ours["process_cpu"], 2),
    ]
    for label, a, b, digits in lines:
        out.append(f"| {label} | {fmt(a, digits)} | {fmt(b, digits)} | {ratio(a, b)} |")
    out.append(f"| DAG run state | {sensor['state']} | {ours['state']} | |")
    return out


def machine() -> str:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = subprocess.run(["free", "-h"], capture_output=True, text=True, check=False).stdout.rstrip()
    return (
        f"nproc: {os.cpu_count()}, CPU: {cpu}, Python {platform.python_version()}, {platform.platform()}\n\n"
        f"```\n$ free -h\n{memory}\n```"
    )


def write_doc(mode: str, command: str, table: str, elapsed: float) -> None:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        f"<!-- {mode}:start -->\n"
        f"Run {stamp} with `{command}` ({elapsed / 60:.1f} min).\n\n{machine()}\n\n{table}\n"
        f"<!-- {mode}:end -->"
    )
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"<!-- {mode}:start -->.*?<!-- {mode}:end -->", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + f"\n\n## Latest {mode} run\n\n{section}\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text, encoding="utf-8")


def only_schemes(sizes: list[tuple], schemes: str | None) -> list[tuple]:
    """Part 1's sizes over the given schemes only (all of them when None)."""
    if schemes is None:
        return sizes
    kept = schemes.split(",")
    return [
        (n, every, window, tuple(s for s in own if s in kept), *rest)
        for n, every, window, own, *rest in sizes
    ]


def sized(sizes: list[tuple], args: argparse.Namespace) -> list[tuple]:
    """Part 1's sizes with what the command line overrides (N, interval, window, contenders, rounds)."""
    contenders = tuple(args.contenders.split(",")) if args.contenders else None
    unknown = set(contenders or ()) - set(ALL_CONTENDERS)
    if unknown:
        raise SystemExit(f"unknown contenders {sorted(unknown)}; choose among {', '.join(ALL_CONTENDERS)}")
    return [
        (
            args.n or n,
            args.interval or every,
            args.window or window,
            schemes,
            contenders or own,
            args.rounds or rounds,
        )
        for n, every, window, schemes, own, rounds in sizes
    ]


def chosen_platforms(names: str | None) -> tuple[str, ...]:
    if not names:
        return PLATFORMS
    chosen = tuple(names.split(","))
    unknown = set(chosen) - set(PLATFORMS)
    if unknown:
        raise SystemExit(f"unknown platforms {sorted(unknown)}; choose among {', '.join(PLATFORMS)}")
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=tuple(MODES), default="quick")
    parser.add_argument(
        "--parts",
        help="which parts to run, in this order, e.g. 1,3 or 2,3,1 (default: 1,2,3; the smoke 1,2)",
    )
    parser.add_argument(
        "--schemes", help="part 1 over these schemes only, e.g. http (default: the mode's: http,https)"
    )
    parser.add_argument(
        "--platforms",
        help="part 1 on these platforms only, e.g. dify,comfyui (default: every platform of the registry)",
    )
    parser.add_argument(
        "--contenders",
        help=f"part 1's contenders, e.g. ours,aiohttp,peers (default: {','.join(ALL_CONTENDERS)})",
    )
    parser.add_argument("--n", type=int, help="part 1: waits per contender (default: the mode's sizes)")
    parser.add_argument("--interval", type=float, help="part 1: seconds between polls of a wait")
    parser.add_argument("--window", type=float, help="part 1: seconds of the measurement window")
    parser.add_argument("--rounds", type=int, help="part 1: alternated rounds")
    parser.add_argument("--no-doc", action="store_true", help="do not write docs/benchmarks.md")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args()
    config = MODES[args.mode]
    order = (args.parts or config.get("parts", "1,2,3")).split(",")
    parts = set(order)
    command = "make bench" if args.mode == "quick" else "make bench-full"
    # Part 1 resized or narrowed is a measurement of its own: it never replaces the page's runs.
    overridden = any(
        getattr(args, name) for name in ("platforms", "contenders", "n", "interval", "window", "rounds")
    )
    if order != ["1", "2", "3"] or args.schemes or overridden:
        command = "python -m benchmarks.run " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    started = time.monotonic()
    results: dict[str, Any] = {}
    with emulator_process() as emulator:
        env = {**connection_env(emulator), **airflow_env(REPO / ".airflow-home" / f"bench-{args.mode}")}
        url = emulator.url
        for part in order:
            if part == "1":
                sizes = sized(only_schemes(config["scale"], args.schemes), args)
                platforms = chosen_platforms(args.platforms)
                results["scale"] = part_poll_cost(emulator, env, sizes, config["scale_runs"], platforms)
            elif part == "2":
                results["adaptive"] = part_adaptive(url, env, config["mix_runs"], config["mix_scale"])
            elif part == "3":
                results["airflow"] = part_airflow(url, env, config["wait"], config["interval"], args.mode)
    elapsed = time.monotonic() - started
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    table = report(results)
    print(table)
    if {"1", "2", "3"} <= parts and config.get("doc", True) and not args.no_doc and not overridden:
        write_doc(args.mode, command, table, elapsed)
        log(f"wrote {DOC.relative_to(REPO)}")
    log(f"done in {elapsed / 60:.1f} min")


if __name__ == "__main__":
    main()
