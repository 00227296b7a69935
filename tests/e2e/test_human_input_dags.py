"""
A paused Dify run asks its question in Airflow, through real Airflow (``dag.test()`` on SQLite) against
the emulator. A person is played by a thread that waits for the human-in-the-loop request to appear in
Airflow's metadata database and answers it through the REST API's own handler, as the UI does.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from airflow.utils.state import DagRunState
from conftest import BUNDLES, DagBag, needs_airflow

from airflow_provider_wfrun.emulator import EmulatorServer

pytestmark = [
    pytest.mark.airflow_db,
    # Before 3.3 the task defers to HITLTrigger, whose calls only the triggerer serves: dag.test() runs
    # triggers in-process without them. The trigger path is Airflow's own (HITLOperator's).
    needs_airflow("3.3", "dag.test() resumes a human-in-the-loop task only from awaiting_input"),
]

#: How long the person looks at a request before answering it.
READING_SECONDS = 1.5
APPROVAL = {
    "content": "Ship draft v1?",
    "inputs": {"comment": "looks fine"},
    "actions": ["approve", "reject"],
}


def run_dag(dag_id: str, conn_id: str, **scenario: Any):
    inputs = {"draft": "v1", "_emulator": {"duration_seconds": 0.4, **scenario}}
    dagbag = DagBag(str(BUNDLES["wfrun_test_dags"]))
    return dagbag.dags[dag_id].test(run_conf={"conn_id": conn_id, "inputs": inputs})


def requests(dag_id: str) -> list[Any]:
    """
    The task's human-in-the-loop requests waiting for an answer, once the task waits for it (a person who
    answers faster than the task parks is answered but never resumed, in ``dag.test()`` as in Airflow).
    """
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        query = select(HITLDetail).join(TaskInstance, HITLDetail.ti_id == TaskInstance.id)
        rows = session.scalars(query.where(TaskInstance.dag_id == dag_id)).all()
        return [
            {"subject": row.subject, "options": row.options, "params": row.params, "ti": row.task_instance}
            for row in rows
            if not row.response_received and row.task_instance.state in ("awaiting_input", "deferred")
        ]


def respond(request: dict[str, Any], option: str, **params: Any) -> None:
    """Answer as the UI does: the REST API's PATCH handler, as a signed-in user."""
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
    from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
    from airflow.utils.session import create_session

    ti = request["ti"]
    with create_session() as session:
        update_hitl_detail(
            dag_id=ti.dag_id,
            dag_run_id=ti.run_id,
            task_id=ti.task_id,
            update_hitl_detail_payload=UpdateHITLDetailPayload(chosen_options=[option], params_input=params),
            user=SimpleAuthManagerUser(username="reviewer", role="admin"),
            session=session,
            map_index=ti.map_index,
        )


class Person(threading.Thread):
    """Answers each request the task raises with the next of ``answers``; records what it was asked."""

    def __init__(self, dag_id: str, answers: list[Callable[[dict[str, Any]], None]]) -> None:
        super().__init__(daemon=True)
        self.dag_id, self.answers, self.asked = dag_id, list(answers), []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        failures, seen = 0, 0.0
        while self.answers and not self.stop.wait(0.1):
            try:
                waiting = requests(self.dag_id)
                seen = (seen or time.monotonic()) if waiting else 0.0
                # A person reads the question first: dag.test() writes the parked state once more just
                # after the task parks, which would undo a resume by an answer given within that instant.
                if waiting and time.monotonic() - seen >= READING_SECONDS:
                    self.answers[0](waiting[0])
                    self.asked.append({k: v for k, v in waiting[0].items() if k != "ti"})
                    self.answers.pop(0)
                failures = 0
            except Exception as exc:  # SQLite may be busy with the task: try again, a few times
                traceback.print_exc()
                failures += 1
                if failures >= 20:
                    self.error = exc
                    return


@pytest.fixture
def person() -> Iterator[Callable[..., Person]]:
    started: list[Person] = []

    def start(dag_id: str, *answers: Callable[[dict[str, Any]], None]) -> Person:
        thread = Person(dag_id, list(answers))
        thread.start()
        started.append(thread)
        return thread

    yield start
    for thread in started:
        thread.stop.set()
        thread.join(10)


@pytest.fixture
def scheduler_sweep() -> Iterator[None]:
    """
    The scheduler's timeout sweep of tasks awaiting input, every 0.2 s, as a running scheduler does each
    loop: ``dag.test()`` runs no scheduler, and without it a request past its deadline is never resolved.
    """
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

    runner = object.__new__(SchedulerJobRunner)
    stop = threading.Event()

    def sweep() -> None:
        while not stop.wait(0.2):
            runner.check_awaiting_input_timeouts()

    thread = threading.Thread(target=sweep, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(10)


def choose(option: str, **params: Any) -> Callable[[dict[str, Any]], None]:
    return lambda request: respond(request, option, **params)


def dify_outputs(emulator: EmulatorServer) -> dict[str, Any]:
    [run] = [run for run in emulator.state.runs.values() if run.platform == "dify"]
    with httpx.Client(headers={"Authorization": f"Bearer {emulator.api_key}"}) as http:
        return dict(http.get(f"{emulator.base_url('dify')}/workflows/run/{run.run_id}").json()["outputs"])


def xcom(dag_run, key: str = "return_value") -> Any:
    return dag_run.get_task_instance("run").xcom_pull(task_ids="run", key=key)


@pytest.mark.parametrize("dag_id", ["wfrun_test_human_input", "wfrun_test_human_input_worker"])
def test_the_form_is_asked_in_airflow_and_the_answer_reaches_dify(
    airflow_db, connections, emulator, person, dag_id
):
    someone = person(dag_id, choose("Reject", comment="add a title"))
    dag_run = run_dag(dag_id, connections["dify"], human_inputs=[APPROVAL])
    assert someone.error is None
    assert dag_run.state == DagRunState.SUCCESS
    [asked] = someone.asked
    assert asked["subject"] == "Ship draft v1?"
    assert asked["options"] == ["Approve", "Reject"]
    assert asked["params"]["comment"]["value"] == "looks fine"  # the form's default
    result = xcom(dag_run)
    assert result["status"] == "succeeded"
    assert result["outputs"]["approval"] == {"action": "reject", "comment": "add a title"}
    assert emulator.state.stats()["submissions"]["dify"] == 1


def test_several_pauses_are_each_asked_and_answered(airflow_db, connections, emulator, person):
    review = {**APPROVAL, "node_id": "review"}
    pauses = [{**review, "at": 0.2, "node_id": "first"}, {**review, "at": 0.8, "node_id": "second"}]
    someone = person("wfrun_test_human_input", choose("Approve"), choose("Reject", comment="one more pass"))
    dag_run = run_dag("wfrun_test_human_input", connections["dify"], human_inputs=pauses)
    assert someone.error is None
    assert dag_run.state == DagRunState.SUCCESS
    assert len(someone.asked) == 2
    outputs = xcom(dag_run)["outputs"]
    assert outputs["first"] == {"action": "approve", "comment": "looks fine"}
    assert outputs["second"] == {"action": "reject", "comment": "one more pass"}


def test_a_second_pause_with_another_question_fails_clearly(airflow_db, connections, emulator, person, capfd):
    pauses = [{**APPROVAL, "at": 0.2}, {"at": 0.8, "node_id": "publish", "content": "Publish now?"}]
    person("wfrun_test_human_input", choose("Approve"))
    dag_run = run_dag("wfrun_test_human_input", connections["dify"], human_inputs=pauses)
    assert dag_run.state == DagRunState.FAILED
    out = capfd.readouterr().out
    assert "HumanInputError" in out
    assert "paused again with a different form" in out


def test_a_form_answered_on_dify_first_fails_with_a_typed_error(
    airflow_db, connections, emulator, person, capfd
):
    def dify_side_then_airflow(request: dict[str, Any]) -> None:
        [run] = [run for run in emulator.state.runs.values() if run.platform == "dify"]
        emulator.state.answer(run, 0, "approve", {"comment": "done in the web app"})
        respond(request, "Reject")

    person("wfrun_test_human_input", dify_side_then_airflow)
    dag_run = run_dag("wfrun_test_human_input", connections["dify"], human_inputs=[APPROVAL])
    assert dag_run.state == DagRunState.FAILED
    assert "FormAnsweredElsewhereError" in capfd.readouterr().out
    assert dify_outputs(emulator)["approval"]["comment"] == "done in the web app"


def test_a_form_nobody_answers_before_it_expires_fails_with_a_typed_error(
    airflow_db, connections, emulator, capfd, scheduler_sweep
):
    expiring = {**APPROVAL, "expires_seconds": 1.5}
    dag_run = run_dag("wfrun_test_human_input", connections["dify"], human_inputs=[expiring])
    assert dag_run.state == DagRunState.FAILED
    out = capfd.readouterr().out
    assert "FormExpiredError" in out
    assert "nobody answered the form before it expired" in out


def test_the_deadline_reached_while_waiting_for_a_person_cancels_the_run(
    airflow_db, connections, emulator, capfd, scheduler_sweep
):
    started = time.monotonic()
    dag_run = run_dag("wfrun_test_human_input_deadline", connections["dify"], human_inputs=[APPROVAL])
    assert dag_run.state == DagRunState.FAILED
    out = capfd.readouterr().out
    assert "RunTimeoutError" in out
    assert "while waiting for a person to answer its form" in out
    assert emulator.state.stats()["cancels"]["dify"] == 1
    assert time.monotonic() - started < 60
