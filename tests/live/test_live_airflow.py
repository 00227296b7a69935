"""
The provider in a real Airflow: crashes, restarts, user kills and a soak, with nothing lost or duplicated.

``dag.test()`` runs triggers inline in one process. Here a scheduler (LocalExecutor), a triggerer, a dag
processor and an API server run as separate processes on SQLite (see ``live_airflow.py``), and the
tests SIGKILL them mid-flight the way a node failure or the OOM killer would. The emulator counts every
submission and cancel on the platforms' side, so "exactly one run per task" is measured, not assumed.

The soak's size is ``WFRUN_SOAK_RUNS`` (200 by default; ``make test-all`` runs 1,000). Module-scoped:
Airflow starts once (about 30 s) for all the tests here, and the secrets scan runs last, over
everything they wrote.

Limits of Airflow itself that these tests work within, not around:

* A trigger's ``on_kill`` runs only in a triggerer that is running the trigger. A deferred task marked
  failed before a triggerer picked its trigger up (or while no triggerer is alive) cancels nothing.
* Airflow 3.3.2's scheduler can fail a resumed task when the executor's late "success" for the deferring
  attempt arrives after the task was queued again (apache/airflow#67287). The soak counts and bounds
  these, and only where the provider did its part.

"""

from __future__ import annotations

import importlib.util
import os
import signal
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from live_airflow import API_KEY, DAGS_DIR, PLATFORMS, WORKFLOW_IDS, LiveAirflow, wait_for

from airflow_provider_wfrun.emulator import EmulatorServer

pytestmark = pytest.mark.live

SOAK_RUNS = int(os.environ.get("WFRUN_SOAK_RUNS", "200"))
#: The operator's key in ``task_state_store``.
HANDLE_KEY = "wfrun_run"
#: Faults on a few percent of platform requests during the soak. A submit gets only faults it may be
#: retried after without risking a second run: 429 (refused before any work) everywhere, and on chenyu,
#: which deduplicates by idempotency key, also resets and a response lost after the run was created.
#: Dify and GPTBots cannot deduplicate, so a 5xx on their submit fails the task by design (not retried:
#: the run may exist); the soak leaves that case to the hook's own tests. Polls get every kind.
_POLLS = ("dify.get", "gptbots.get", "chenyu.execution", "chenyu.info")
SOAK_FAULTS = [
    {"route": "*.submit", "kind": "429", "rate": 0.03, "retry_after": 0.5},
    {"route": "chenyu.submit", "kind": "500", "rate": 0.02, "phase": "after"},
    {"route": "chenyu.submit", "kind": "reset", "rate": 0.01},
    {"route": "*", "kind": "delay", "rate": 0.005, "delay_seconds": 0.5},
    *(
        {"route": route, "kind": kind, "rate": 0.005}
        for route in _POLLS
        for kind in ("429", "500", "502", "503", "html", "reset", "malformed", "truncated")
    ),
]


def _load_plan() -> Any:
    spec = importlib.util.spec_from_file_location("wfrun_live_plan", DAGS_DIR / "live_plan.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


plan = _load_plan()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveAirflow]:
    """Airflow's four components and the emulator, started once for the module and stopped after."""
    home = tmp_path_factory.mktemp("airflow-live")
    with EmulatorServer(api_key=API_KEY) as emulator:
        airflow = LiveAirflow(home, emulator)
        try:
            started = time.monotonic()
            airflow.start()
            print(f"\n[live] Airflow up in {time.monotonic() - started:.0f} s; home {home}")
            yield airflow
        finally:
            airflow.stop()


@pytest.fixture
def emulator(live: LiveAirflow) -> Iterator[EmulatorServer]:
    """The emulator with fresh counters; each test waits for its own DAG runs, so none is still polling."""
    live.emulator.state.reset()
    yield live.emulator
    live.emulator.state.clear_faults()


def conf(platform: str, **scenario: Any) -> dict[str, Any]:
    return {
        "conn_id": f"wfrun_{platform}",
        "workflow_id": WORKFLOW_IDS[platform],
        "inputs": {"prompt": f"hello {platform}", "_emulator": scenario},
    }


def polls(emulator: EmulatorServer, platform: str) -> int:
    route = {"dify": "dify.get", "gptbots": "gptbots.get", "chenyu": "chenyu.execution"}[platform]
    return emulator.state.stats()["requests"].get(route, 0)


def platform_runs(emulator: EmulatorServer, platform: str) -> list[Any]:
    return [run for run in emulator.state.runs.values() if run.platform == platform]


def timestamp(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def task_log(live: LiveAirflow, dag_id: str, run_id: str, attempt: int) -> str:
    folder = live.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / "task_id=run"
    return "\n".join(path.read_text(errors="replace") for path in folder.glob(f"attempt={attempt}.log*"))


def wait_polled(live: LiveAirflow, emulator: EmulatorServer, platform: str, after: int) -> None:
    wait_for(
        f"a poll of the {platform} run",
        lambda: polls(emulator, platform) > after,
        timeout=30,
        on_fail=live.hint(),
    )


def wait_waiting_in_triggerer(
    live: LiveAirflow, emulator: EmulatorServer, dag_id: str, run_id: str, platform: str
) -> dict[str, Any]:
    """The task deferred and a triggerer runs its trigger: a poll came after the worker's own."""
    live.wait_task_state(dag_id, run_id, "deferred", timeout=90)
    wait_polled(live, emulator, platform, after=polls(emulator, platform))
    return live.task_instance(dag_id, run_id)


# --- 1. the triggerer dies mid-wait ----------------------------------------------------------------
def test_triggerer_sigkilled_mid_wait_resumes_with_the_same_deadline_and_one_submission(live, emulator):
    # One run finishes on its own after the restart; the other must hit its deadline at the original time.
    finishing = (
        "wfrun_live_deferrable",
        live.trigger("wfrun_live_deferrable", conf("chenyu", duration_seconds=30)),
    )
    timing_out = (
        "wfrun_live_deadline",
        live.trigger("wfrun_live_deadline", conf("dify", duration_seconds=600)),
    )
    deadline_seconds = plan.DEADLINE_SECONDS

    triggers, deadlines = {}, {}
    for (dag_id, run_id), platform in ((finishing, "chenyu"), (timing_out, "dify")):
        ti = wait_waiting_in_triggerer(live, emulator, dag_id, run_id, platform)
        assert ti["trigger"]["triggerer_id"]
        triggers[dag_id] = ti["trigger"]
        kwargs = live.trigger_kwargs(ti["trigger"]["id"])
        handle = live.task_state(dag_id, run_id, HANDLE_KEY)
        # The trigger carries the deadline the worker stored with the run handle: one deadline, not two.
        assert kwargs["end_time"] == handle["end_time"]
        assert kwargs["run_id"] == handle["run_id"]
        deadlines[dag_id] = kwargs
    old_triggerer = triggers["wfrun_live_deadline"]["triggerer_id"]
    assert triggers["wfrun_live_deferrable"]["triggerer_id"] == old_triggerer

    time.sleep(max(0.0, deadlines["wfrun_live_deadline"]["end_time"] - deadline_seconds + 8 - time.time()))
    (chenyu_run,) = platform_runs(emulator, "chenyu")
    assert not chenyu_run.is_done(), "too slow to kill the triggerer mid-wait"
    live.kill_component("triggerer", signal.SIGKILL)
    killed_at = time.time()
    polls_at_kill = {platform: polls(emulator, platform) for platform in ("chenyu", "dify")}
    time.sleep(3)
    assert {platform: polls(emulator, platform) for platform in polls_at_kill} == polls_at_kill, (
        "something still polls with the triggerer dead"
    )
    live.start_component("triggerer")
    restarted_at = time.time()

    # The new triggerer adopts the orphaned triggers and rebuilds them from the same stored kwargs.
    def adopted() -> dict | None:
        ti = live.task_instance(*finishing)
        trigger = ti.get("trigger") or {}
        return trigger if trigger.get("triggerer_id") not in (None, old_triggerer) else None

    adopted_trigger = wait_for(
        "the new triggerer to adopt the trigger", adopted, timeout=60, on_fail=live.hint()
    )
    assert adopted_trigger["id"] == triggers["wfrun_live_deferrable"]["id"]
    assert live.trigger_kwargs(adopted_trigger["id"]) == deadlines["wfrun_live_deferrable"]

    assert live.wait_dag_run_done(*finishing, timeout=120) == "success"
    assert live.wait_dag_run_done(*timing_out, timeout=120) == "failed"

    # The deadline held across the restart: the task failed at the deadline set before the kill, well
    # before a deadline restarted with the triggerer could have passed.
    end_time = deadlines["wfrun_live_deadline"]["end_time"]
    failed = live.task_instance(*timing_out)
    failed_at = timestamp(failed["end_date"])
    print(
        f"\n[live] triggerer killed {end_time - killed_at:.1f} s before the deadline, restarted after "
        f"{restarted_at - killed_at:.1f} s; the task failed {failed_at - end_time:.1f} s after the deadline"
    )
    assert end_time <= failed_at < min(restarted_at + deadline_seconds, end_time + 15)
    assert "RunTimeoutError" in task_log(live, *timing_out, attempt=1)
    assert failed["try_number"] == 1

    stats = emulator.state.stats()
    assert stats["submissions"] == {"dify": 1, "gptbots": 0, "chenyu": 1}
    # At the deadline the worker canceled the Dify run (Dify can cancel).
    assert stats["cancels"] == {"dify": 1, "gptbots": 0, "chenyu": 0}
    assert live.xcom(*finishing)[-1]["run_id"] == chenyu_run.run_id
    assert live.xcom(*finishing)[-1]["status"] == "succeeded"


# --- 2. the worker dies after submitting -----------------------------------------------------------
#: What the retry logs on each of ResumableJobMixin's two reattach paths.
_REATTACHED = {"running": "Reconnecting to existing job", "finished": "Job already completed successfully"}
# Regression: on the mixin's already-succeeded path the retry once returned without pushing run_id and
# run_url, so the "Workflow run" link was blank.


@pytest.mark.parametrize(
    ("victim", "platform", "duration", "retry_finds"),
    [
        # The OOM killer takes the task process; its supervisor reports the failure and Airflow retries.
        pytest.param("task process", "gptbots", 25, "running", id="task-process-killed"),
        # The whole worker goes (supervisor and task): only the missing heartbeats tell the scheduler.
        pytest.param("worker", "dify", 50, "running", id="worker-killed"),
        # The same, but the run finishes before the heartbeat timeout: the retry only collects the result.
        pytest.param("worker", "gptbots", 3, "finished", id="worker-killed-run-finishes-first"),
    ],
)
def test_worker_killed_after_submit_retry_reattaches_to_the_same_run(
    live, emulator, victim, platform, duration, retry_finds
):
    dag_id = "wfrun_live_worker"
    run_id = live.trigger(dag_id, conf(platform, duration_seconds=duration))
    handle = wait_for(
        "the task to store its run handle",
        lambda: live.task_state(dag_id, run_id, HANDLE_KEY),
        timeout=90,
        on_fail=live.hint(),
    )
    assert emulator.state.stats()["submissions"][platform] == 1
    ti = live.task_instance(dag_id, run_id)
    assert ti["state"] == "running"
    assert ti["try_number"] == 1
    wait_polled(live, emulator, platform, after=0)  # waiting in the worker now

    task, supervisor = live.task_processes(ti["pid"])
    victims = [supervisor, task] if victim == "worker" else [task]
    for process in victims:
        process.send_signal(signal.SIGKILL)
    for process in victims:
        process.wait(timeout=10)
    killed_at = time.monotonic()

    assert live.wait_dag_run_done(dag_id, run_id, timeout=180) == "success"
    print(f"\n[live] {victim} killed; the retry finished the task {time.monotonic() - killed_at:.0f} s later")
    ti = live.task_instance(dag_id, run_id)
    assert ti["state"] == "success"
    assert ti["try_number"] == 2

    stats = emulator.state.stats()
    assert stats["submissions"] == {name: int(name == platform) for name in PLATFORMS}
    (run,) = platform_runs(emulator, platform)
    assert run.run_id == handle["run_id"]
    retry_log = task_log(live, dag_id, run_id, attempt=2)
    assert _REATTACHED[retry_finds] in retry_log, retry_log[-3000:]
    assert "Submitted" not in retry_log
    assert live.xcom(dag_id, run_id)[-1]["run_id"] == run.run_id
    assert live.xcom(dag_id, run_id, key="cost")[-1]["try_number"] == 2
    # What the README promises a downstream task and the "Workflow run" link, whichever path the retry took.
    assert live.xcom(dag_id, run_id, key="run_id").get(-1) == run.run_id
    assert live.xcom(dag_id, run_id, key="run_url").get(-1)


# Regression: a resume rescheduled at start-up once re-entered execute() in the same try and, the run
# having failed, submitted a second paid run.


@pytest.mark.parametrize(
    "outcome",
    [
        "failed",
        "succeeded",
    ],
)
def test_resume_rescheduled_at_start_up_finishes_with_the_run_it_has(live, emulator, outcome):
    """The trigger fired, but the worker resuming the task cannot import the DAG file for a moment."""
    dag_id = "wfrun_live_deferrable"
    run_id = live.trigger(dag_id, conf("gptbots", duration_seconds=6, outcome=outcome))
    wait_waiting_in_triggerer(live, emulator, dag_id, run_id, "gptbots")
    live.break_dags_file.touch()
    try:
        live.wait_task_state(dag_id, run_id, "up_for_reschedule", timeout=60)
    finally:
        live.break_dags_file.unlink(missing_ok=True)

    expected = "success" if outcome == "succeeded" else "failed"
    assert live.wait_dag_run_done(dag_id, run_id, timeout=120) == expected
    ti = live.task_instance(dag_id, run_id)
    assert ti["try_number"] == 1  # a reschedule, not a retry
    log = task_log(live, dag_id, run_id, attempt=1)
    assert "Dag not found during start up" in log
    stats = emulator.state.stats()
    assert stats["submissions"] == {"dify": 0, "gptbots": 1, "chenyu": 0}, "the task started a second run"
    (run,) = platform_runs(emulator, "gptbots")
    if outcome == "failed":
        assert "RunFailedError" in log
    else:
        assert live.xcom(dag_id, run_id)[-1]["run_id"] == run.run_id
    assert live.xcom(dag_id, run_id, key="run_id").get(-1) == run.run_id
    assert live.xcom(dag_id, run_id, key="run_url").get(-1)


# --- 3. a user marks a deferred task failed ----------------------------------------------------------
def test_marking_a_deferred_task_failed_cancels_the_run_where_the_platform_can(live, emulator):
    dag_id = "wfrun_live_deferrable"
    run_ids = {platform: live.trigger(dag_id, conf(platform, duration_seconds=300)) for platform in PLATFORMS}
    # Each trigger must be running in the triggerer: a trigger killed before a triggerer started it never
    # runs, so nothing calls its on_kill (an Airflow limit; see the module docstring).
    trigger_ids = {
        platform: wait_waiting_in_triggerer(live, emulator, dag_id, run_id, platform)["trigger"]["id"]
        for platform, run_id in run_ids.items()
    }

    for run_id in run_ids.values():
        live.mark_task(dag_id, run_id, "failed")

    # Airflow 3.3 cancels the trigger "by user action" and awaits its on_kill, which stops the Dify run.
    wait_for(
        "the Dify run to be canceled",
        lambda: emulator.state.stats()["cancels"]["dify"] == 1,
        timeout=60,
        on_fail=live.hint(),
    )
    wait_for(
        "the triggers to be removed",
        lambda: (
            not live.query(
                f"SELECT id FROM trigger WHERE id IN ({','.join('?' * len(trigger_ids))})",
                *trigger_ids.values(),
            )
        ),
        timeout=60,
    )
    time.sleep(2)  # nothing more may happen: no retry, no second cancel

    for platform, run_id in run_ids.items():
        assert live.task_instance(dag_id, run_id)["state"] == "failed", platform
        assert live.dag_run(dag_id, run_id)["state"] == "failed", platform
    stats = emulator.state.stats()
    assert stats["submissions"] == dict.fromkeys(PLATFORMS, 1)
    # GPTBots and chenyu have no cancel API for workflow runs: those runs go on, and the trigger says so.
    assert stats["cancels"] == {"dify": 1, "gptbots": 0, "chenyu": 0}
    phases = {platform: platform_runs(emulator, platform)[0].phase() for platform in PLATFORMS}
    assert phases == {"dify": "canceled", "gptbots": "running", "chenyu": "running"}
    for platform in ("gptbots", "chenyu"):
        trigger_log = "\n".join(
            path.read_text(errors="replace")
            for path in (live.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_ids[platform]}").rglob(
                "*.trigger.*"
            )
        )
        assert "Not canceling" in trigger_log, platform


# --- 5. soak -------------------------------------------------------------------------------------------
@pytest.mark.timeout(max(600, 120 + SOAK_RUNS * 3))
def test_soak_every_run_ends_right_with_none_lost_and_none_submitted_twice(live, emulator):
    count = SOAK_RUNS
    httpx.post(f"{emulator.url}/_emulator/faults", json=SOAK_FAULTS, timeout=10).raise_for_status()
    dag_id = "wfrun_live_soak"
    started = time.monotonic()
    run_id = live.trigger(dag_id, {"count": count})
    state = live.wait_dag_run_done(dag_id, run_id, timeout=max(300, 60 + count * 2.5))
    elapsed = time.monotonic() - started
    stats = emulator.state.stats()
    emulator.state.clear_faults()

    expected_outcomes = {number: plan.outcome(number) for number in range(count)}
    expected = {
        number: "success" if outcome == "succeeded" else "failed"
        for number, outcome in expected_outcomes.items()
    }
    tis = [ti for ti in live.task_instances(dag_id, run_id) if ti["task_id"] == "run"]
    states = {ti["map_index"]: ti["state"] for ti in tis}
    wrong = {
        number: (states.get(number), want) for number, want in expected.items() if states.get(number) != want
    }

    runs_per_case = Counter(run.inputs["case"] for run in emulator.state.runs.values())
    lost = sorted(number for number in range(count) if runs_per_case[number] == 0)
    twice = sorted(number for number, runs in runs_per_case.items() if runs > 1)
    run_ids = {run.inputs["case"]: run.run_id for run in emulator.state.runs.values()}
    pushed = live.xcom(dag_id, run_id, key="run_id")
    unmatched = sorted(number for number in range(count) if pushed.get(number) != run_ids.get(number))
    retried = sorted(ti["map_index"] for ti in tis if ti["try_number"] != 1)
    # Airflow's audit log names task instances its scheduler failed itself ("killed externally").
    scheduler_failed = sorted(
        row[0]
        for row in live.query(
            "SELECT map_index FROM log WHERE dag_id = ? AND run_id = ? AND event = 'state mismatch'",
            dag_id,
            run_id,
        )
    )

    outcome_counts = Counter(expected_outcomes.values())
    state_counts = Counter(states.values())
    print(
        f"\n[live] soak of {count} runs through the scheduler and triggerer: {elapsed:.0f} s "
        f"({count / elapsed:.2f} runs/s); DAG run {state}\n"
        f"[live]   planned outcomes {dict(outcome_counts)}; task states {dict(state_counts)}\n"
        f"[live]   submissions {stats['submissions']} (total {sum(stats['submissions'].values())}); "
        f"idempotent replays {stats['idempotent_replays']}\n"
        f"[live]   platform requests {sum(stats['requests'].values())}; faults injected {stats['faults']} "
        f"(total {sum(stats['faults'].values())})\n"
        f"[live]   lost {len(lost)}, submitted twice {len(twice)}, wrong state {len(wrong)}, "
        f"run id mismatches {len(unmatched)}, retried {len(retried)}, "
        f"failed by the scheduler's state-mismatch check {len(scheduler_failed)}"
    )
    # Airflow 3.3.2's scheduler sometimes fails a resumed task itself when the executor's "success" for
    # the deferring attempt arrives after the trigger already put it back in the queue
    # (apache/airflow#67287; the guard for it covers only "scheduled"). Counted, reported and bounded
    # here, and only when the provider did its part: one run, ended as planned, on the platform.
    finished_as_planned = {
        run.inputs["case"]
        for run in emulator.state.runs.values()
        if run.phase() == expected_outcomes[run.inputs["case"]]
    }
    airflow_race = sorted(
        number
        for number in wrong
        if number in scheduler_failed and runs_per_case[number] == 1 and number in finished_as_planned
    )
    if airflow_race:
        warnings.warn(
            f"Airflow's scheduler failed {len(airflow_race)} resumed task instances on a stale executor "
            f"event (apache/airflow#67287): map indexes {airflow_race}",
            stacklevel=1,
        )
    assert not {number: wrong[number] for number in wrong if number not in airflow_race}, (
        f"{dict(list(wrong.items())[:20])}; failed by the scheduler's state-mismatch check: "
        f"{scheduler_failed[:20]}"
    )
    assert len(airflow_race) <= max(2, count // 200), f"too many for a rare race: {airflow_race}"
    assert not lost, lost[:20]
    assert not twice, twice[:20]
    assert not unmatched, unmatched[:20]
    assert not retried, retried[:20]
    assert sum(stats["submissions"].values()) == count
    assert stats["submissions"] == dict(Counter(plan.platform(number) for number in range(count)))
    assert sum(stats["faults"].values()) > 0
    assert state == ("failed" if expected_outcomes and set(expected.values()) != {"success"} else "success")


# --- 7. secrets: last, over everything the tests above wrote ------------------------------------------
def test_the_api_key_is_in_no_log_no_xcom_and_no_database_row(live, emulator):
    if not live.query("SELECT 1 FROM dag_run LIMIT 1"):
        # Run on its own: write something to scan first, a success and a failure on each platform.
        run_ids = [
            live.trigger("wfrun_live_deferrable", conf(platform, duration_seconds=1, outcome=outcome))
            for platform in PLATFORMS
            for outcome in ("succeeded", "failed")
        ]
        for run_id in run_ids:
            live.wait_dag_run_done("wfrun_live_deferrable", run_id, timeout=120)

    key = API_KEY.encode()
    files = list(live.log_files())
    scanned_bytes = 0
    hits = []
    for path in files:
        content = path.read_bytes()
        scanned_bytes += len(content)
        if key in content:
            hits.append(str(path))
    task_logs = [path for path in files if path.name.startswith("attempt=")]
    trigger_logs = [path for path in files if ".trigger." in path.name]

    xcoms = live.query("SELECT dag_id, run_id, task_id, map_index, key, value FROM xcom")
    xcom_hits = [row[:5] for row in xcoms if API_KEY in str(row[5])]
    states = live.query("SELECT value FROM task_state_store")
    trigger_rows = live.query("SELECT id FROM trigger")
    trigger_hits = [row[0] for row in trigger_rows if API_KEY in repr(live.trigger_kwargs(row[0]))]
    database_hit = key in live.db_path.read_bytes()
    print(
        f"\n[live] secrets scan: {len(files)} log files ({len(task_logs)} task, {len(trigger_logs)} trigger, "
        f"{scanned_bytes / 1e6:.1f} MB), {len(xcoms)} XCom rows, {len(states)} task_state_store rows, "
        f"{len(trigger_rows)} triggers: {len(hits) + len(xcom_hits) + len(trigger_hits) + database_hit} hits"
    )
    assert task_logs
    assert trigger_logs
    assert xcoms
    assert not hits
    assert not xcom_hits
    assert not trigger_hits
    assert not database_hit
