"""
What importing the provider costs a task start on a worker, against a baseline checkout.

A worker's task process is forked from a parent that has ``airflow.sdk`` and the task runner loaded, then
imports the DAG file and with it the operator. Each sample is a fresh interpreter that loads those first,
then times (CPU) ``import airflow_provider_wfrun.operators.workflow_run`` from the tree given; the trees
alternate, so the load of a shared machine falls on both alike::

    git worktree add --detach /tmp/wfrun-baseline <commit>
    python -m benchmarks.task_start --baseline /tmp/wfrun-baseline --samples 10
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks.common import REPO

SAMPLE = """
import resource, sys
sys.path.insert(0, sys.argv[1])
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
import airflow.sdk
from airflow.sdk.execution_time import supervisor, task_runner
before = cpu()
import airflow_provider_wfrun.operators.workflow_run as module
assert module.__file__.startswith(sys.argv[1]), module.__file__
print(cpu() - before, sorted({name.split(".")[0] for name in sys.modules} & {"aiohttp", "yarl"}))
"""


def sample(tree: Path) -> tuple[float, str]:
    """CPU ms to import the operator from ``tree`` in a fresh interpreter, and which clients it loaded."""
    out = subprocess.run(
        [sys.executable, "-c", SAMPLE, str(tree)], capture_output=True, text=True, check=True, cwd="/"
    ).stdout.split(maxsplit=1)
    return float(out[0]) * 1e3, out[1].strip()


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--baseline", type=Path, required=True, help="a checkout of the baseline commit")
    parser.add_argument("--samples", type=int, default=10, help="samples per tree (alternated)")
    args = parser.parse_args()
    trees = {"baseline": args.baseline.resolve(), "this tree": REPO}
    times: dict[str, list[float]] = {name: [] for name in trees}
    loaded: dict[str, str] = {}
    for number in range(args.samples):
        for name in list(trees)[:: 1 if number % 2 else -1]:
            cpu_ms, loaded[name] = sample(trees[name])
            times[name].append(cpu_ms)
    for name, values in times.items():
        print(
            f"{name:9}: median {statistics.median(values):.0f} ms CPU "
            f"({min(values):.0f}-{max(values):.0f}, {len(values)} samples); loads {loaded[name]}"
        )


if __name__ == "__main__":
    main()
