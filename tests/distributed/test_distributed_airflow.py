"""
The provider in a production-shaped Airflow: nothing lost, nothing doubled, when its processes die.

PostgreSQL, CeleryExecutor on Redis, two Celery workers and two triggerers (``distributed_airflow.py``).
The tests SIGKILL a triggerer, a Celery worker, the scheduler and the API server mid-flight; the emulator
counts every submission and cancel on the platforms' side, so "exactly one run per task" is measured.

The soak's size is ``WFRUN_DISTRIBUTED_SOAK_RUNS`` (200 by default; CI and ``make test-all`` run 1,000).
Module-scoped: the deployment starts once for all the tests here, and the secrets scan runs last, over
everything they wrote.
Without PostgreSQL or Redis the tier says so in one line and skips, or fails under ``CI=true``.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from airflow_deployment import PLATFORMS, wait_for
from airflow_scenarios import (
    HANDLE_KEY,
    assert_api_key_nowhere,
    conf,
    deployed,
    fresh_emulator,
    mark_deferred_failed_cancels_where_the_platform_can,
    platform_runs,
    polls,
    same_run,
    soak,
    task_log,
    wait_polled,
    wait_waiting_in_triggerer,
)
from distributed_airflow import (
    API_KEY,
    FILE_CONNECTIONS,
    TRIGGERERS,
    WORKERS,
    DistributedAirflow,
    unreachable_services,
)

from airflow_provider_wfrun.emulator import EmulatorServer

pytestmark = pytest.mark.distributed

SOAK_RUNS = int(os.environ.get("WFRUN_DISTRIBUTED_SOAK_RUNS", "200"))
FANOUT = "wfrun_live_fanout"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DistributedAirflow]:
    """The deployment and the emulator, started once for the module and stopped (database dropped) after."""
    missing = unreachable_services()
    if missing:
        message = f"distributed tier: not reachable: {'; '.join(missing)}"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    home = tmp_path_factory.mktemp("airflow-distributed")
    with (
        EmulatorServer(api_key=API_KEY) as emulator,
        deployed(DistributedAirflow(home, emulator), label="distributed") as cluster,
    ):
        yield cluster


@pytest.fixture
def emulator(cluster: DistributedAirflow) -> Iterator[EmulatorServer]:
    """The emulator with fresh counters; a failed test's DAG runs are ended after it."""
    yield from fresh_emulator(cluster)


def fanout_cases(count: int, *, duration: float, spread: float = 0.0, **scenario: Any) -> list[dict]:
    """``count`` mapped cases over every platform, each tagged with its number."""
    cases = []
    for number in range(count):
        platform = PLATFORMS[number % len(PLATFORMS)]
        duration_seconds = duration + spread * number / max(count - 1, 1)
        cases.append(conf(platform, inputs={"case": number}, duration_seconds=duration_seconds, **scenario))
    return cases


def mapped(cluster: DistributedAirflow, run_id: str) -> list[dict[str, Any]]:
    return [ti for ti in cluster.task_instances(FANOUT, run_id) if ti["task_id"] == "run"]


def wait_all_deferred(cluster: DistributedAirflow, run_id: str, count: int, *, timeout: float) -> None:
    def deferred() -> bool:
        cluster.check_alive()
        states = Counter(ti["state"] for ti in mapped(cluster, run_id))
        if states.keys() & {"failed", "upstream_failed", "success"}:
            raise AssertionError(f"a mapped task ended before the fault: {dict(states)}")
        return states["deferred"] == count

    wait_for(f"{count} mapped tasks to defer", deferred, timeout=timeout, interval=2, on_fail=cluster.hint())


def mapped_task_log(cluster: DistributedAirflow, run_id: str, map_index: int, attempt: int) -> str:
    folder = cluster.home / "logs" / f"dag_id={FANOUT}" / f"run_id={run_id}" / "task_id=run"
    path = folder / f"map_index={map_index}" / f"attempt={attempt}.log"
    return path.read_text(errors="replace") if path.exists() else ""


def assert_one_run_per_case(emulator: EmulatorServer, count: int) -> None:
    per_case = Counter(run.inputs["case"] for run in emulator.state.runs.values())
    assert sorted(per_case) == list(range(count)), "a case was never submitted"
    assert set(per_case.values()) == {1}, {case: n for case, n in per_case.items() if n != 1}
    assert sum(emulator.state.stats()["submissions"].values()) == count


#: What a retry logs on each of ResumableJobMixin's two reattach paths.
REATTACHED = ("Reconnecting to existing job", "Job already completed successfully")


def assert_fanout_succeeded(
    cluster: DistributedAirflow, run_id: str, count: int, *, retried: bool = False
) -> list[dict[str, Any]]:
    """Every mapped task succeeded with the run it submitted; a retry (where allowed) reattached to it."""
    tis = mapped(cluster, run_id)
    states = Counter(ti["state"] for ti in tis)
    assert states == {"success": count}, dict(states)
    if not retried:
        assert {ti["try_number"] for ti in tis} == {1}, "a task was retried"
    for ti in tis:
        index = ti["map_index"]
        retries = [mapped_task_log(cluster, run_id, index, n) for n in range(2, ti["try_number"] + 1)]
        # A try that failed at start-up logs nothing of ours; the one that succeeded reattached.
        assert not retries or any(line in retries[-1] for line in REATTACHED), retries[-1][-3000:]
        assert not any("Submitted" in log for log in retries)
    pushed = cluster.xcom(FANOUT, run_id, key="run_id")
    run_ids = {run.inputs["case"]: run.run_id for run in cluster.emulator.state.runs.values()}
    unmatched = {
        index: (pushed.get(index), run_ids.get(index))
        for index in range(count)
        if not same_run(pushed.get(index), run_ids.get(index))
    }
    assert not unmatched, f"pushed run ids that name no run of their case: {unmatched}"
    return tis


# --- 1. a triggerer dies with many runs deferred across both ---------------------------------------
FAILOVER_RUNS = 30


@pytest.mark.timeout(900)
def test_triggerer_sigkilled_its_triggers_move_to_the_other_with_the_same_deadlines(cluster, emulator):
    count = FAILOVER_RUNS
    run_id = cluster.trigger(FANOUT, {"cases": fanout_cases(count, duration=150, spread=30)})
    wait_all_deferred(cluster, run_id, count, timeout=400)

    def spread_over_both() -> dict[str, set[int]] | None:
        held = cluster.triggers_by_triggerer()
        return held if sum(map(len, held.values())) == count else None

    held = wait_for("every trigger to be held", spread_over_both, timeout=60, on_fail=cluster.hint())
    assert set(held) == set(TRIGGERERS), f"the triggers are not spread over both triggerers: {held}"
    victim, survivor = sorted(held, key=lambda name: -len(held[name]))
    orphans = held[victim]
    kwargs_before = {trigger_id: cluster.trigger_kwargs(trigger_id) for trigger_id in orphans}
    handles = {
        ti["map_index"]: cluster.task_state(FANOUT, run_id, HANDLE_KEY, map_index=ti["map_index"])
        for ti in mapped(cluster, run_id)
    }
    assert not any(run.is_done() for run in emulator.state.runs.values()), "too slow to kill mid-wait"

    cluster.kill_component(victim, signal.SIGKILL)
    killed_at = time.monotonic()

    def adopted() -> bool:
        cluster.check_alive()
        now = cluster.triggers_by_triggerer()
        return set(now) == {survivor} and orphans <= now[survivor]

    wait_for(f"{survivor} to adopt {victim}'s triggers", adopted, timeout=120, on_fail=cluster.hint())
    adopted_after = time.monotonic() - killed_at
    # Rebuilt from the same stored kwargs: the same run ids and the same deadlines.
    assert {trigger_id: cluster.trigger_kwargs(trigger_id) for trigger_id in orphans} == kwargs_before
    for ti in mapped(cluster, run_id):
        if ti["trigger"] and ti["trigger"]["id"] in orphans:
            kwargs = kwargs_before[ti["trigger"]["id"]]
            assert kwargs["end_time"] == handles[ti["map_index"]]["end_time"]
            assert kwargs["run_id"] == handles[ti["map_index"]]["run_id"]

    cluster.start_component(victim)  # back to two triggerers: it finds every trigger held by the other
    assert cluster.wait_dag_run_done(FANOUT, run_id, timeout=480) == "success"
    assert_fanout_succeeded(cluster, run_id, count)
    assert_one_run_per_case(emulator, count)
    print(
        f"\n[distributed] failover: {count} triggers, {len(orphans)} on {victim} (SIGKILLed), "
        f"{count - len(orphans)} on {survivor}; all {len(orphans)} adopted by {survivor} "
        f"{adopted_after:.0f} s after the kill; {count} runs succeeded, "
        f"{sum(emulator.state.stats()['submissions'].values())} submissions"
    )


# --- 2. a Celery worker dies after submitting --------------------------------------------------------
@pytest.mark.timeout(600)
def test_celery_worker_killed_after_submit_the_retry_on_the_other_worker_reattaches(cluster, emulator):
    dag_id = "wfrun_live_worker"
    run_id = cluster.trigger(dag_id, conf("dify", duration_seconds=60))
    handle = wait_for(
        "the task to store its run handle",
        lambda: cluster.task_state(dag_id, run_id, HANDLE_KEY),
        timeout=180,
        on_fail=cluster.hint(),
    )
    wait_polled(cluster, emulator, "dify", after=0)  # waiting in the worker now
    ti = cluster.task_instance(dag_id, run_id)
    assert ti["state"] == "running"
    assert ti["try_number"] == 1
    victim = cluster.owner(ti["pid"])
    assert victim in WORKERS
    assert ti["hostname"] == victim
    (other,) = set(WORKERS) - {victim}

    cluster.kill_component(victim, signal.SIGKILL)  # the worker, its pool and the task: a lost node
    killed_at = time.monotonic()
    try:
        assert cluster.wait_dag_run_done(dag_id, run_id, timeout=300) == "success"
    finally:
        cluster.start_component(victim)
    print(
        f"\n[distributed] {victim} SIGKILLed; the retry on {other} finished the task "
        f"{time.monotonic() - killed_at:.0f} s later"
    )
    ti = cluster.task_instance(dag_id, run_id)
    assert ti["try_number"] == 2
    assert ti["hostname"] == other
    assert emulator.state.stats()["submissions"] == {name: int(name == "dify") for name in PLATFORMS}
    (run,) = platform_runs(emulator, "dify")
    assert run.run_id == handle["run_id"]
    retry_log = task_log(cluster, dag_id, run_id, attempt=2)
    assert "Reconnecting to existing job" in retry_log, retry_log[-3000:]
    assert "Submitted" not in retry_log
    assert cluster.xcom(dag_id, run_id)[-1]["run_id"] == run.run_id
    cluster.wait_worker_ready(victim, timeout=120)


# --- 3. the scheduler and the API server restart mid-wait ----------------------------------------------
RESTART_RUNS = 12


@pytest.mark.timeout(600)
def test_scheduler_and_api_server_restarted_mid_wait_lose_nothing(cluster, emulator):
    count = RESTART_RUNS
    run_id = cluster.trigger(FANOUT, {"cases": fanout_cases(count, duration=90, spread=60)})
    wait_all_deferred(cluster, run_id, count, timeout=300)
    for platform in PLATFORMS:
        wait_polled(cluster, emulator, platform, after=polls(emulator, platform))
    # Some runs end while the scheduler is down, the rest after it is back.
    first_end = min(run.end_mono for run in emulator.state.runs.values())
    time.sleep(max(0.0, first_end - time.monotonic() - 10))

    for name in ("scheduler", "api-server"):
        cluster.kill_component(name, signal.SIGKILL)
    down = time.monotonic()
    polls_at_kill = sum(polls(emulator, platform) for platform in PLATFORMS)
    time.sleep(30)
    # The triggerers go on waiting without them.
    assert sum(polls(emulator, platform) for platform in PLATFORMS) > polls_at_kill
    # The API server first: a task the scheduler queues before the execution API answers fails its try at
    # start-up (Airflow's task runner), and a slow start can use up its retries.
    cluster.start_component("api-server")
    wait_for("the API server", lambda: cluster.api("GET", "/api/v2/version"), timeout=300)
    cluster.start_component("scheduler")
    back = time.monotonic()
    ended_while_down = sum(down <= run.end_mono <= back for run in emulator.state.runs.values())
    cluster.wait_healthy(timeout=180)
    print(
        f"\n[distributed] scheduler and API server down {back - down:.0f} s; "
        f"{ended_while_down} of {count} runs ended meanwhile"
    )
    assert ended_while_down

    assert cluster.wait_dag_run_done(FANOUT, run_id, timeout=400) == "success"
    # A task resumed while the API server was still starting fails its try (Airflow's task runner cannot
    # reach the execution API); its retry reattaches to the run it had. Nothing is submitted twice.
    tis = assert_fanout_succeeded(cluster, run_id, count, retried=True)
    assert_one_run_per_case(emulator, count)
    print(f"[distributed]   tries per task {dict(Counter(ti['try_number'] for ti in tis))}")


# --- 4. a user marks a deferred task failed -------------------------------------------------------------
@pytest.mark.timeout(600)
def test_marking_a_deferred_task_failed_cancels_the_run_where_the_platform_can(cluster, emulator):
    mark_deferred_failed_cancels_where_the_platform_can(cluster, emulator)


# --- 6. connections from a secrets backend, in the triggerer ---------------------------------------------
@pytest.mark.timeout(600)
def test_connections_from_the_file_secrets_backend_work_in_the_triggerer(cluster, emulator):
    assert not cluster.query("SELECT conn_id FROM connection"), "the connections must not be in the database"
    assert not any(key.startswith("AIRFLOW_CONN_WFRUN_FILE") for key in cluster.env)
    dag_id = "wfrun_live_deferrable"
    run_ids = {
        platform: cluster.trigger(dag_id, conf(platform, conn_id=conn_id, duration_seconds=8))
        for conn_id, platform in FILE_CONNECTIONS.items()
    }
    for platform, run_id in run_ids.items():
        ti = wait_waiting_in_triggerer(cluster, emulator, dag_id, run_id, platform)
        assert ti["trigger"]["triggerer_id"]
    for platform, run_id in run_ids.items():
        assert cluster.wait_dag_run_done(dag_id, run_id, timeout=180) == "success", platform
        assert cluster.xcom(dag_id, run_id)[-1]["status"] == "succeeded"
    assert emulator.state.stats()["submissions"] == dict.fromkeys(PLATFORMS, 1)


# --- 5. soak ---------------------------------------------------------------------------------------------
class TriggerSampler(threading.Thread):
    """How many triggers each triggerer held, at most, while the soak ran (the rows go when runs end)."""

    def __init__(self, cluster: DistributedAirflow) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.peak: Counter[str] = Counter()
        self.seen: dict[str, set[int]] = {}
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(3):
            try:
                held = self.cluster.triggers_by_triggerer()
            except Exception:  # a sample missed is a sample missed
                continue
            for name, ids in held.items():
                self.peak[name] = max(self.peak[name], len(ids))
                self.seen.setdefault(name, set()).update(ids)


@pytest.mark.timeout(max(1200, 600 + SOAK_RUNS * 4))
def test_soak_across_both_triggerers_and_workers_none_lost_none_twice(cluster, emulator):
    sampler = TriggerSampler(cluster)
    sampler.start()
    try:
        # Every run is two task starts through Celery and the API server: slower than the live tier's.
        soak(cluster, emulator, SOAK_RUNS, label="distributed", timeout=max(600, 120 + SOAK_RUNS * 3.5))
    finally:
        sampler.halt.set()
        sampler.join(timeout=30)
    (dag_run,) = cluster.query("SELECT run_id FROM dag_run WHERE dag_id = 'wfrun_live_soak'")
    hosts = Counter(ti["hostname"] for ti in cluster.task_instances("wfrun_live_soak", dag_run[0]))
    print(
        f"[distributed]   triggers seen per triggerer { ({k: len(v) for k, v in sampler.seen.items()}) }, "
        f"peak held {dict(sampler.peak)}; task tries per worker {dict(hosts)}"
    )
    assert set(sampler.seen) == set(TRIGGERERS)
    assert set(hosts) == set(WORKERS)


# --- the API key: last, over everything the tests above wrote ---------------------------------------------
def test_the_api_key_is_in_no_log_no_xcom_and_no_database_row(cluster, emulator):
    assert_api_key_nowhere(cluster, API_KEY, label="distributed")
