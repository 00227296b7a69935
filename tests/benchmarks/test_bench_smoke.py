"""
The benchmark still runs on every platform: its smoke (``benchmarks.run --mode smoke``), over real HTTP
against the emulator, parts 1 and 2, plain HTTP only (TLS changes no platform's request).

Part 1 gives each platform one long run and one run that is over before it is polled, so every contender
(ours, the peers' pattern, the shared clients) must read each platform's running status and its end from
what the adapter says a poll is; part 2 waits a mix of runs out under each polling policy.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from airflow_provider_wfrun.platforms import adapter_classes

REPO = Path(__file__).resolve().parent.parent.parent
#: Part 1's contenders and part 2's policies.
CONTENDERS = {"ours", "peers", "aiohttp", "httpx", "httpx-aiohttp"}
POLICIES = {"adaptive", "fixed", "fixed-eta"}
#: What a poll of a run still going reads: a status word, or none (ComfyUI lists a prompt only once done).
STILL_GOING = {"queued", "running", "none"}


def run_smoke(tmp_path: Path) -> dict:
    out = tmp_path / "smoke.json"
    command = [sys.executable, "-m", "benchmarks.run", "--mode", "smoke", "--schemes", "http"]
    command += ["--json", str(out)]
    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=240, check=False)
    assert finished.returncode == 0, finished.stderr[-4000:]
    return json.loads(out.read_text())


def test_every_contender_polls_every_platform_to_its_status(tmp_path: Path) -> None:
    results = run_smoke(tmp_path)
    platforms = set(adapter_classes())

    [row] = results["scale"]
    assert row["scheme"] == "http"
    assert set(row["results"]) == CONTENDERS
    for contender, [result] in row["results"].items():
        assert (result["errors"], result["all_waiting"]) == (0, True), contender
        assert set(result["by_platform"]) == platforms, contender
        for platform, seen in result["by_platform"].items():
            statuses = seen["statuses"]
            assert statuses.pop("succeeded", 0) == 1, (contender, platform, seen)  # the short run, over
            assert set(statuses) <= STILL_GOING, (contender, platform, seen)  # the long one, still going
            assert seen["polls"] >= 3, (contender, platform, seen)  # twice the long run, once the short

    mix = results["adaptive"]
    assert set(mix) >= POLICIES
    for policy in POLICIES:
        assert set(mix[policy]["by_platform"]) == platforms, policy
        for platform, figures in mix[policy]["by_platform"].items():
            assert figures["runs"] == 2, (policy, platform)
            assert figures["not_succeeded"] == 0, (policy, platform, figures)
            assert figures["requests_per_run"] >= 1, (policy, platform, figures)
