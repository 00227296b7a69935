"""The polling policy: a pure function of the last poll, the time waited and the time left."""

from __future__ import annotations

import itertools
import random

import pytest

from airflow_provider_wfrun.models import RunStatus, WorkflowRun
from airflow_provider_wfrun.triggers.workflow_run import (
    BACKOFF_FRACTION,
    PREDICTED_END_FRACTION,
    WorkflowRunTrigger,
    next_poll_delay,
)

INTERVAL, CAP = 10.0, 300.0


def run_of(status: RunStatus = RunStatus.RUNNING, **fields: object) -> WorkflowRun:
    return WorkflowRun(platform="chenyu", run_id="wfrun_1", status=status, **fields)


def delay(run: WorkflowRun | None, elapsed: float | None, remaining: float | None = None) -> float:
    return next_poll_delay(
        run, poll_interval=INTERVAL, max_poll_interval=CAP, elapsed=elapsed, remaining=remaining
    )


# --- without elapsed: fixed interval, stretched to a queue estimate (the worker-side wait) -----------
def test_fixed_interval_without_elapsed():
    assert delay(run_of(), None) == INTERVAL
    assert delay(None, None) == INTERVAL


@pytest.mark.parametrize(("eta", "expected"), [(3.0, INTERVAL), (45.0, 45.0), (10_000.0, CAP)])
def test_fixed_interval_stretches_to_a_queue_estimate_capped(eta, expected):
    assert delay(run_of(RunStatus.QUEUED, eta_seconds=eta), None) == expected


# --- nothing known: poll_interval at first, then a quarter of the time waited, capped ----------------
@pytest.mark.parametrize(
    ("elapsed", "expected"),
    [
        (0.0, INTERVAL * PREDICTED_END_FRACTION),  # the first poll comes soon: a short run is seen early
        (5.0, 5.0),
        (10.0, INTERVAL),
        (20.0, INTERVAL),  # a quarter of 20 s is below poll_interval: never poll more often than asked
        (100.0, 100.0 * BACKOFF_FRACTION),
        (600.0, 600.0 * BACKOFF_FRACTION),
        (36_000.0, CAP),  # ten hours: every max_poll_interval
    ],
)
def test_without_a_prediction_backs_off_with_the_time_waited(elapsed, expected):
    assert delay(run_of(), elapsed) == pytest.approx(expected)
    assert delay(None, elapsed) == pytest.approx(expected)  # a failed poll: same rule


def test_backoff_grows_monotonically_and_bounds_the_lateness():
    previous = 0.0
    for elapsed in range(0, 4000, 7):
        wait = delay(run_of(RunStatus.RUNNING), float(elapsed))
        assert wait >= previous
        assert wait <= max(INTERVAL, elapsed * BACKOFF_FRACTION, 0) or wait == CAP
        previous = wait


@pytest.mark.parametrize(
    "fields",
    [
        {"progress": 0.0, "duration_seconds": 5.0},  # no rate yet
        {"progress": 100.0, "duration_seconds": 5.0},
        {"progress": 40.0},  # no running time from the platform
        {"progress": 40.0, "duration_seconds": 0.0},
        {"progress": None, "duration_seconds": 50.0},
    ],
)
def test_progress_without_a_usable_rate_falls_back_to_backoff(fields):
    elapsed = 200.0
    expected = max(INTERVAL, max(elapsed, fields.get("duration_seconds") or 0) * BACKOFF_FRACTION)
    assert delay(run_of(**fields), elapsed) == pytest.approx(expected)


def test_an_unknown_or_paused_status_is_not_extrapolated():
    paused = run_of(RunStatus.PAUSED, progress=50.0, duration_seconds=60.0)
    assert delay(paused, 60.0) == pytest.approx(60.0 * BACKOFF_FRACTION)


# --- queued with the platform's estimate ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("eta", "expected"),
    [
        (42.0, 42.0),
        (1.0, INTERVAL * PREDICTED_END_FRACTION),  # close to the start: poll soon, not in poll_interval
        (5000.0, CAP),
    ],
)
def test_queued_waits_for_the_platform_estimate(eta, expected):
    assert delay(run_of(RunStatus.QUEUED, eta_seconds=eta, queue_position=3), 0.0) == expected


def test_an_estimate_on_a_running_run_is_not_a_queue_wait():
    running = run_of(RunStatus.RUNNING, eta_seconds=500.0)
    assert delay(running, 0.0) == delay(run_of(RunStatus.RUNNING), 0.0) == INTERVAL * PREDICTED_END_FRACTION
    assert delay(running, 20.0) == INTERVAL


# --- running with progress: poll when it should be done ---------------------------------------------------
def test_progress_is_extrapolated_to_the_predicted_end():
    # 60 % after 60 s of running: 40 s to go.
    assert delay(run_of(progress=60.0, duration_seconds=60.0), 60.0) == pytest.approx(40.0)
    # 40 % after 60 s would be 90 s to go, more than the 60 s waited: look again after 60 s.
    assert delay(run_of(progress=40.0, duration_seconds=60.0), 60.0) == pytest.approx(60.0)


def test_the_prediction_is_capped_at_the_time_already_waited():
    # 1 % after 10 s would be 990 s: wait no longer than the 10 s already waited (poll_interval here).
    assert delay(run_of(progress=1.0, duration_seconds=10.0), 10.0) == INTERVAL
    assert delay(run_of(progress=1.0, duration_seconds=100.0), 100.0) == 100.0


def test_near_the_predicted_end_polls_come_closer_than_poll_interval_but_not_closer_than_a_quarter():
    assert delay(run_of(progress=98.0, duration_seconds=98.0), 98.0) == INTERVAL * PREDICTED_END_FRACTION
    assert delay(run_of(progress=90.0, duration_seconds=45.0), 45.0) == pytest.approx(5.0)


def test_the_platform_running_time_counts_as_waited_after_a_triggerer_restart():
    # The trigger restarted 1 s ago, but the run has been running for 400 s.
    assert delay(run_of(duration_seconds=400.0), 1.0) == pytest.approx(100.0)


# --- the deadline ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("elapsed", [None, 0.0, 500.0])
def test_never_sleeps_past_the_deadline(elapsed):
    assert delay(run_of(RunStatus.QUEUED, eta_seconds=200.0), elapsed, remaining=3.0) == 3.0
    assert delay(run_of(), elapsed, remaining=-1.0) == 0.0


def test_bounds_hold_for_any_observation():
    rng = random.Random(5)
    statuses = [RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.PAUSED, RunStatus.UNKNOWN]
    for status, _ in itertools.product(statuses, range(300)):
        run = run_of(
            status,
            progress=rng.choice([None, 0.0, rng.uniform(0, 100), 100.0]),
            duration_seconds=rng.choice([None, 0.0, rng.uniform(0, 5000)]),
            eta_seconds=rng.choice([None, 0.0, rng.uniform(0, 5000)]),
        )
        elapsed = rng.choice([None, rng.uniform(0, 50_000)])
        remaining = rng.uniform(0, 10_000)
        wait = delay(run, elapsed, remaining)
        assert 0 <= wait <= min(CAP, remaining)
        assert wait >= min(INTERVAL * PREDICTED_END_FRACTION, remaining)
        assert wait == delay(run, elapsed, remaining)  # pure: no clock, no state


# --- the trigger uses it -----------------------------------------------------------------------------
def test_the_trigger_is_adaptive_by_default_and_fixed_on_request():
    kwargs = {"conn_id": "c", "run_id": "wfrun_1", "end_time": 2_000_000_000.0, "poll_interval": INTERVAL}
    long_run = run_of(duration_seconds=1000.0)
    assert WorkflowRunTrigger(**kwargs)._next_delay(long_run, elapsed=1000.0, remaining=1e9) == 250.0
    fixed = WorkflowRunTrigger(**kwargs, adaptive=False)
    assert fixed._next_delay(long_run, elapsed=1000.0, remaining=1e9) == INTERVAL
    assert WorkflowRunTrigger(**fixed.serialize()[1]).adaptive is False


# --- the first polls: a short run is not seen a whole poll_interval late ----------------------------------
def test_a_one_second_run_is_seen_within_a_quarter_of_poll_interval():
    """Polls at 0, 2.5, 5, 10, 20 s..., for the trigger and, with ``waited``, the worker-side wait."""
    polls, t = [0.0], 0.0
    while t < 30:
        t += delay(None, t)
        polls.append(t)
    assert polls[:5] == [0.0, 2.5, 5.0, 10.0, 20.0]
    assert min(p for p in polls if p >= 1.0) - 1.0 <= INTERVAL * PREDICTED_END_FRACTION
    worker = [
        next_poll_delay(run_of(), poll_interval=INTERVAL, max_poll_interval=CAP, waited=waited)
        for waited in (0.0, 2.5, 5.0, 10.0, 60.0)
    ]
    assert worker == [2.5, 2.5, 5.0, INTERVAL, INTERVAL]  # then fixed: the worker wait does not back off


def test_the_first_poll_ramp_never_polls_closer_than_a_quarter_interval():
    for waited in (0.0, 0.1, 1.0, 2.4):
        assert delay(None, waited) == INTERVAL * PREDICTED_END_FRACTION
