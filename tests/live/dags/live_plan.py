"""
What the live DAGs and the live tests agree on: the short deadline, and the soak's cases.

The soak's cases are a pure function of the case number, so the test knows what every mapped task
instance must end as without reading anything back from the run. No Airflow import here: the test loads
this file on its own.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_wfrun.emulator.app import example_run, platform_names

#: The deadline of ``wfrun_live_deadline`` (seconds): short, so a test can watch it pass.
DEADLINE_SECONDS = 30
#: The deadline of each task of ``wfrun_live_fanout``: far enough out to outlive a triggerer's failover.
FANOUT_DEADLINE_SECONDS = 900

#: Every emulated platform (the same set as the adapter registry).
PLATFORMS = tuple(platform_names())
#: Out of every 25 cases: one run fails on the platform, one is canceled there, the rest succeed.
FAILED_EVERY, CANCELED_EVERY = (25, 3), (25, 11)


def outcome(number: int) -> str:
    if number % FAILED_EVERY[0] == FAILED_EVERY[1]:
        return "failed"
    if number % CANCELED_EVERY[0] == CANCELED_EVERY[1]:
        return "canceled"
    return "succeeded"


def platform(number: int) -> str:
    return PLATFORMS[number % len(PLATFORMS)]


def case(number: int) -> dict[str, Any]:
    """The operator's mapped keyword arguments for case ``number``."""
    name = platform(number)
    scenario: dict[str, Any] = {
        "queue_seconds": 0.5,
        # 4 to 14 s, spread so the runs finish at different times. Not shorter: a run that finishes within
        # a second or two of its task deferring can hit Airflow's own race, where the executor's stale
        # "success" for the deferring attempt fails the resumed task (apache/airflow#67287, open in 3.3.2).
        "duration_seconds": 4.0 + number * 7 % 11,
        "outcome": outcome(number),
    }
    if scenario["outcome"] == "failed":
        scenario["error_reason"] = f"soak case {number} failed on purpose"
    run = example_run(name, {"case": number, "prompt": f"soak {number}", "_emulator": scenario})
    return {"conn_id": f"wfrun_{name}", **run}


def cases(count: int) -> list[dict[str, Any]]:
    return [case(number) for number in range(count)]
