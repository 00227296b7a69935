"""
The provider in a real Airflow: crashes, restarts, user kills and a soak, with nothing lost or duplicated.

``dag.test()`` runs triggers inline in one process. Here a scheduler (LocalExecutor), a triggerer, a dag
processor and an API server run as separate processes on SQLite (see ``live_airflow.py``), and the
tests SIGKILL them mid-flight the way a node failure or the OOM killer would. The emulator counts every
submission and cancel on the platforms' side, so "exactly one run per task" is measured, not assumed.

The human-input cases (4.) also run at the floor (``make test-floor``, Airflow 3.1.2), where the form
waits in HITLTrigger in the triggerer; on 3.3+ the task parks until the answer resumes it.

The soak's size is ``WFRUN_SOAK_RUNS`` (200 by default; ``make test-all`` runs 1,000). Module-scoped:
Airflow starts once (about 30 s) for all the tests here, and the secrets scan runs last, over
everything they wrote.

Limits of Airflow itself that these tests work within, not around:

* A trigger's ``on_kill`` runs only in a triggerer that is running the trigger. A deferred task marked
  failed before a triggerer picked its trigger up (or while no triggerer is alive) cancels nothing.
* Airflow 3.3.2's scheduler can fail a resumed task when the executor's late "success" for the deferring
  attempt arrives after the task was queued again (apache/airflow#67287). The soak counts and bounds
  these, and only where the provider did its part.
* On a saturated machine an executor can report a task finished before its task runner started; the
  scheduler fails the still-queued task instance, and nothing was submitted. The soak counts these with
  the race above, under the same bound.

"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime

import pytest
from airflow_scenarios import (
    HANDLE_KEY,
    assert_api_key_nowhere,
    conf,
    deployed,
    fresh_emulator,
    mark_deferred_failed_cancels_where_the_platform_can,
    plan,
    platform_runs,
    polls,
    soak,
    task_log,
    wait_pauses_reported,
    wait_polled,
    wait_waiting_in_triggerer,
)
from live_airflow import API_KEY, HUMAN_WAIT, PLATFORMS, LiveAirflow, LiveAirflowError, wait_for

from airflow_provider_wfrun.emulator import EmulatorServer

pytestmark = pytest.mark.live

SOAK_RUNS = int(os.environ.get("WFRUN_SOAK_RUNS", "200"))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveAirflow]:
    """Airflow's four components and the emulator, started once for the module and stopped after."""
    home = tmp_path_factory.mktemp("airflow-live")
    with (
        EmulatorServer(api_key=API_KEY) as emulator,
        deployed(LiveAirflow(home, emulator), label="live") as live,
    ):
        yield live


@pytest.fixture
def emulator(live: LiveAirflow) -> Iterator[EmulatorServer]:
    """The emulator with fresh counters; each test waits for its own DAG runs, so none is still polling."""
    yield from fresh_emulator(live)


def timestamp(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class FirstSeen:
    """
    When ``probe()`` first held, sampled every 0.25 s in a thread.

    The trigger's deadline shows when the triggerer hands the task back (it leaves ``deferred``). The task's
    end time is no measure of it: it adds the scheduler's and a worker's latency, which a loaded machine
    stretches by tens of seconds.
    """

    def __init__(self, probe: Callable[[], bool]) -> None:
        self._probe = probe
        self._stop = threading.Event()
        self.at: float | None = None
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.25):
            with contextlib.suppress(Exception):
                if self._probe():
                    self.at = time.time()
                    return

    def start(self) -> FirstSeen:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


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
    handed_back = FirstSeen(lambda: live.task_instance(*timing_out)["state"] != "deferred").start()

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

    try:
        assert live.wait_dag_run_done(*finishing, timeout=120) == "success"
        assert live.wait_dag_run_done(*timing_out, timeout=120) == "failed"
    finally:
        handed_back.stop()

    # The deadline held across the restart: the adopted trigger handed the task back at the deadline set
    # before the kill, while a deadline restarted with the triggerer would have held it several seconds
    # more. The task then fails once a worker takes the timeout up.
    end_time = deadlines["wfrun_live_deadline"]["end_time"]
    restarted_deadline = restarted_at + deadline_seconds
    failed = live.task_instance(*timing_out)
    failed_at = timestamp(failed["end_date"])
    assert handed_back.at is not None, "never saw the task leave the deferred state"
    print(
        f"\n[live] triggerer killed {end_time - killed_at:.1f} s before the deadline, restarted after "
        f"{restarted_at - killed_at:.1f} s; the trigger handed the task back "
        f"{handed_back.at - end_time:+.1f} s from the deadline (a restarted deadline: "
        f"{restarted_deadline - end_time:+.1f} s); the task failed "
        f"{failed_at - end_time:.1f} s after the deadline"
    )
    assert restarted_deadline - end_time > 5, "killed too late to tell the two deadlines apart"
    # Nearer the deadline kept than the one a restart would have set (sampling adds a little).
    assert end_time <= handed_back.at < (end_time + restarted_deadline) / 2
    assert failed_at >= end_time
    assert "RunTimeoutError" in task_log(live, *timing_out, attempt=1)
    assert failed["try_number"] == 1

    stats = emulator.state.stats()
    assert stats["submissions"] == {name: int(name in ("dify", "chenyu")) for name in PLATFORMS}
    # At the deadline the worker canceled the Dify run (Dify can cancel).
    assert stats["cancels"] == {name: int(name == "dify") for name in PLATFORMS}
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
    assert stats["submissions"] == {name: int(name == "gptbots") for name in PLATFORMS}, (
        "the task started a second run"
    )
    (run,) = platform_runs(emulator, "gptbots")
    if outcome == "failed":
        assert "RunFailedError" in log
    else:
        assert live.xcom(dag_id, run_id)[-1]["run_id"] == run.run_id
    assert live.xcom(dag_id, run_id, key="run_id").get(-1) == run.run_id
    assert live.xcom(dag_id, run_id, key="run_url").get(-1)


# --- 3. a user marks a deferred task failed ----------------------------------------------------------
def test_marking_a_deferred_task_failed_cancels_the_run_where_the_platform_can(live, emulator):
    mark_deferred_failed_cancels_where_the_platform_can(live, emulator)


# --- 4. a person answers a paused run's form in Airflow ------------------------------------------------
#: The Dify run's Human Input node (the emulator's scenario): what the person is asked.
REVIEW = {"content": "Ship draft v1?", "inputs": {"comment": "looks fine"}, "actions": ["approve", "reject"]}
#: The run pauses 4 s after it starts and ends 6 s after the answer: a trigger that fires within a second or
#: two of its task deferring can hit Airflow's stale-executor-event race (apache/airflow#67287; at 3.1.2
#: it fails the task even once the task is queued again); the soak's cases (live_plan) keep clear of it too.
PAUSING_RUN = {"duration_seconds": 10, "human_inputs": [{**REVIEW, "at": 0.4}]}


def wait_asked(live: LiveAirflow, dag_id: str, run_id: str) -> dict:
    """
    The request once the task waits for its answer, as a person finds it under Required Actions. A person
    takes a moment to read it: answered within a second or two of the task parking or deferring, the task
    could resume before the scheduler took in the end of the process that asked, and fail on Airflow's own
    race (apache/airflow#67287), so the answer comes after that.
    """

    def asked() -> dict | None:
        detail = live.hitl_detail(dag_id, run_id)
        ti = live.task_instance(dag_id, run_id)
        if ti["state"] in ("success", "failed"):
            raise LiveAirflowError(f"{dag_id}/{run_id} ended {ti['state']} before it asked anything")
        return detail if detail and ti["state"] == HUMAN_WAIT.state else None

    detail = wait_for("the task to ask a person", asked, timeout=120, on_fail=live.hint())
    wait_pauses_reported(live, dag_id, run_id)
    return detail


@pytest.mark.parametrize("dag_id", ["wfrun_live_deferrable", "wfrun_live_worker"])
def test_human_input_answered_through_the_rest_api_reaches_dify_once(live, emulator, dag_id):
    """
    The run pauses on a form; the task raises it in Airflow and waits (parked on 3.3+, deferred to
    HITLTrigger in a real triggerer before); a person answers it through the REST API; the answer goes to
    Dify once and the run's outputs come back.
    """
    run_id = live.trigger(dag_id, conf("dify", **PAUSING_RUN))
    asked = wait_asked(live, dag_id, run_id)
    assert asked["subject"] == "Ship draft v1?"
    assert asked["options"] == ["Approve", "Reject"]
    assert asked["params"]["comment"]["value"] == "looks fine"  # the form's default
    assert not asked["response_received"]
    ti = live.task_instance(dag_id, run_id)
    assert (ti.get("trigger") or {}).get("classpath") == HUMAN_WAIT.trigger
    (run,) = platform_runs(emulator, "dify")
    assert run.phase() == "paused"

    answered = live.answer_hitl(dag_id, run_id, "Reject", {"comment": "add a title"})
    assert answered["chosen_options"] == ["Reject"]

    assert live.wait_dag_run_done(dag_id, run_id, timeout=120) == "success"
    ti = live.task_instance(dag_id, run_id)
    assert (ti["state"], ti["try_number"]) == ("success", 1)
    # Dify got the person's answer, once, and the run went on along its branch.
    assert [(action, inputs) for _, action, inputs in run.answers.values()] == [
        ("reject", {"comment": "add a title"})
    ]
    stats = emulator.state.stats()
    assert stats["requests"].get("dify.answer") == 1
    assert stats["submissions"] == {name: int(name == "dify") for name in PLATFORMS}
    result = live.xcom(dag_id, run_id)[-1]
    assert result["run_id"] == run.run_id
    assert result["status"] == "succeeded"
    assert result["outputs"]["approval"] == {"action": "reject", "comment": "add a title"}
    final = live.hitl_detail(dag_id, run_id)
    assert (final["response_received"], final["chosen_options"]) == (True, ["Reject"])


def test_human_input_answered_on_dify_first_fails_the_task_with_a_typed_error(live, emulator):
    dag_id = "wfrun_live_deferrable"
    run_id = live.trigger(dag_id, conf("dify", **PAUSING_RUN))
    wait_asked(live, dag_id, run_id)
    (run,) = platform_runs(emulator, "dify")
    emulator.state.answer(run, 0, "approve", {"comment": "done in the web app"})

    live.answer_hitl(dag_id, run_id, "Reject")

    assert live.wait_dag_run_done(dag_id, run_id, timeout=120) == "failed"
    log = task_log(live, dag_id, run_id, attempt=1)
    assert "FormAnsweredElsewhereError" in log, log[-3000:]
    assert "the one from Airflow was not used" in log
    # The run went on with the answer given on Dify; Airflow's never reached it.
    assert [(action, inputs) for _, action, inputs in run.answers.values()] == [
        ("approve", {"comment": "done in the web app"})
    ]
    stats = emulator.state.stats()
    assert stats["submissions"]["dify"] == 1
    assert stats["requests"].get("dify.answer") == 1  # Airflow's answer, refused, and not retried


# --- 5. soak -------------------------------------------------------------------------------------------
@pytest.mark.timeout(max(600, 120 + SOAK_RUNS * 3))
def test_soak_every_run_ends_right_with_none_lost_and_none_submitted_twice(live, emulator):
    soak(live, emulator, SOAK_RUNS, label="live")


# --- 7. secrets: last, over everything the tests above wrote ------------------------------------------
def test_the_api_key_is_in_no_log_no_xcom_and_no_database_row(live, emulator):
    assert_api_key_nowhere(live, API_KEY, label="live")
