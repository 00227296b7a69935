"""
The bad-input catalogue: every way a task can be given something unusable, and what the user sees.

Each case asserts (a) the typed exception, (b) a message that names what is wrong and says what to do,
and (c) no side effect: the emulator's request, submission and cancel counters do not move (the wrong-key
cases make exactly the one refused request, and start nothing). Every case id is listed in
``docs/failure-semantics.md``, which a test below checks. The catalogue prints at the end of the run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2
import pendulum
import pytest
from airflow.providers.common.compat.sdk import TaskDeferred
from conftest import API_KEY, BUNDLES, WORKFLOW_IDS, connection_json, needs_airflow

from airflow_provider_wfrun.exceptions import (
    AuthenticationError,
    InvalidInputError,
    OutputTooLargeError,
    WorkflowRunError,
)
from airflow_provider_wfrun.hooks.workflow_run import WorkflowRunHook
from airflow_provider_wfrun.operators.workflow_run import RunWorkflowOperator
from airflow_provider_wfrun.platforms import adapter_classes
from airflow_provider_wfrun.sensors.workflow_run import WorkflowRunSensor
from airflow_provider_wfrun.triggers.workflow_run import WorkflowRunTrigger

from ._support import StateStore, TaskInstanceStandIn, context, counters

DOC = Path(__file__).parents[2] / "docs" / "failure-semantics.md"
DIFY_RUN_ID = "fb47b2e6-5e43-4f90-be01-d5c5a088d156"
CHENYU_RUN_ID = "wfrun_314ff7d8b7a5beff1388"


class Env:
    """What a case can use: the emulator, connections to it, and a way to define a broken one."""

    def __init__(self, emulator: Any, connections: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
        self.emulator = emulator
        self.conn = connections
        self._monkeypatch = monkeypatch

    def define(self, conn_id: str, platform: str = "dify", **overrides: Any) -> str:
        """A connection like the emulator's ``platform`` one, with ``overrides`` (JSON fields)."""
        self._monkeypatch.setenv(
            f"AIRFLOW_CONN_{conn_id.upper()}", connection_json(self.emulator, platform, **overrides)
        )
        return conn_id

    def operator(self, platform: str = "dify", **kwargs: Any) -> RunWorkflowOperator:
        arguments = {
            "task_id": "run",
            "conn_id": self.conn[platform],
            "workflow_id": WORKFLOW_IDS[platform],
            "inputs": {"text": "hello"},
            "poll_interval": 0.05,
            **kwargs,
        }
        return RunWorkflowOperator(**arguments)

    def run(self, op: RunWorkflowOperator, store: StateStore | None = None) -> Any:
        return op.execute(context(TaskInstanceStandIn(), store if store is not None else StateStore()))

    def sense(self, platform: str, run_id: Any, **kwargs: Any) -> Any:
        sensor = WorkflowRunSensor(
            task_id="wait", conn_id=self.conn[platform], run_id=run_id, poke_interval=0.05, **kwargs
        )
        return sensor.execute(context())


@dataclass(frozen=True)
class Case:
    id: str
    act: Callable[[Env], Any]
    error: type[WorkflowRunError]
    #: Regexes the message must match: what is wrong, and what to do about it.
    wrong: str
    todo: str
    #: Requests the case may make: only the wrong-key cases, whose first request is refused.
    requests: int = 0
    xfail: str | None = None


def rendered(platform: str = "dify", **fields: Any) -> Callable[[Env], Any]:
    """A task whose templated fields rendered to ``fields`` (what Airflow sets before ``execute``)."""

    def act(env: Env) -> Any:
        op = env.operator(platform)
        for name, value in fields.items():
            setattr(op, name, value)
        return env.run(op)

    return act


def with_connection(platform: str = "dify", **overrides: Any) -> Callable[[Env], Any]:
    def act(env: Env) -> Any:
        conn_id = env.define(f"wfrun_bad_{platform}", platform, **overrides)
        return env.run(env.operator(platform, conn_id=conn_id))

    return act


def constructed(platform: str = "dify", **kwargs: Any) -> Callable[[Env], Any]:
    return lambda env: env.operator(platform, **kwargs)


def sensor_constructed(**kwargs: Any) -> Callable[[Env], Any]:
    return lambda env: WorkflowRunSensor(task_id="wait", conn_id="wfrun_dify", run_id=DIFY_RUN_ID, **kwargs)


def templated(field: str, template: Any, *, lenient_dag: bool) -> Callable[[Env], Any]:
    """Render the operator's fields as a worker does, with a DAG and a context, then execute."""

    def act(env: Env) -> Any:
        from airflow.sdk import DAG

        dag_kwargs = {"template_undefined": jinja2.Undefined} if lenient_dag else {}
        with DAG(
            "wfrun_templates",
            schedule=None,
            start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
            params={"prompt": "hello"},
            **dag_kwargs,
        ):
            op = env.operator("chenyu", **{field: template})
        op.render_template_fields({"params": {"prompt": "hello"}, "ds": "2026-01-01"})
        return env.run(op)

    return act


def stored_run_of_another_platform(env: Env) -> Any:
    store = StateStore(wfrun_run={"run_id": CHENYU_RUN_ID, "generation": 0})
    return env.run(env.operator("dify"), store)


def dify_cancel_without_task_id(env: Env) -> Any:
    return WorkflowRunHook(env.conn["dify"]).cancel_run(DIFY_RUN_ID, task_id=None)


def wrong_key_operator(env: Env) -> Any:
    conn_id = env.define("wfrun_wrong_key", "dify", password="sk-not-the-right-key")
    return env.run(env.operator("dify", conn_id=conn_id))


def wrong_key_sensor(env: Env) -> Any:
    env.define("wfrun_wrong_key", "chenyu", password="sk-not-the-right-key")
    env.conn = {**env.conn, "chenyu": "wfrun_wrong_key"}
    return env.sense("chenyu", CHENYU_RUN_ID)


def trigger(**kwargs: Any) -> Callable[[Env], Any]:
    arguments = {"conn_id": "wfrun_dify", "run_id": DIFY_RUN_ID, "end_time": 1_900_000_000.0, **kwargs}
    return lambda env: WorkflowRunTrigger(**arguments)


CASES = [
    # --- the connection ----------------------------------------------------------------------------
    Case(
        "missing-connection",
        lambda env: env.run(env.operator(conn_id="wfrun_defined_nowhere")),
        InvalidInputError,
        r"'wfrun_defined_nowhere' is not defined",
        "create it with one of the types " + ", ".join(adapter_classes()),
    ),
    Case(
        "connection-of-type-http",
        with_connection(conn_type="http"),
        InvalidInputError,
        r"has type 'http'",
        f"use one of: {', '.join(adapter_classes())}",
    ),
    Case(
        "unknown-connection-type",
        with_connection(conn_type="dify_cloud"),
        InvalidInputError,
        r"has type 'dify_cloud'",
        f"use one of: {', '.join(adapter_classes())}",
    ),
    Case(
        "empty-api-key",
        with_connection(password=""),
        InvalidInputError,
        r"has no API key",
        r"put the Dify API key in the connection's password field",
    ),
    Case(
        "whitespace-api-key",
        with_connection("gptbots", password="   "),
        InvalidInputError,
        r"has no API key",
        r"put the GPTBots API key in the connection's password field",
    ),
    Case(
        "host-without-scheme",
        with_connection(host="api.dify.ai/v1"),
        InvalidInputError,
        r"host 'api\.dify\.ai/v1' is not an API root URL",
        r"write it with its scheme and version segment",
    ),
    Case(
        "host-with-credentials",
        with_connection(host="https://admin:secret@api.dify.ai/v1"),
        InvalidInputError,
        r"must be a plain URL \(no credentials",
        r"put the API key in the password field",
    ),
    Case(
        "host-with-query",
        with_connection("chenyu", host="https://www.chenyu.cn/api/open/v2?key=abc"),
        InvalidInputError,
        r"must be a plain URL \(no credentials, query",
        r"put the API key in the password field",
    ),
    Case(
        "run-url-template-unknown-placeholder",
        with_connection(extra=json.dumps({"run_url_template": "https://cloud.dify.ai/app/x/logs/{run}"})),
        InvalidInputError,
        r"run_url_template .* cannot be filled in \(KeyError",
        r"use only the placeholders \{run_id\} and \{workflow_id\}",
    ),
    Case(
        "chenyu-cost-risk-flag-not-boolean",
        with_connection("chenyu", extra=json.dumps({"accept_external_cost_risk": "maybe"})),
        InvalidInputError,
        r"accept_external_cost_risk",
        r"true or false",
    ),
    Case(
        "wrong-api-key",
        wrong_key_operator,
        AuthenticationError,
        r"\[dify\] the API key was rejected",
        r"check the connection's password",
        requests=1,
    ),
    Case(
        "wrong-api-key-sensor",
        wrong_key_sensor,
        AuthenticationError,
        r"\[chenyu run wfrun_\w+\] the API key was rejected",
        r"check the connection's password",
        requests=1,
    ),
    # --- inputs -----------------------------------------------------------------------------------
    Case(
        "inputs-a-list",
        constructed(inputs=["query", "hello"]),
        InvalidInputError,
        r"inputs must be a mapping of input names to values, got list",
        r"mapping of input names to values",
    ),
    Case(
        "inputs-an-int",
        constructed(inputs=42),
        InvalidInputError,
        r"inputs must be a mapping .* got int",
        r"mapping of input names to values",
    ),
    Case(
        "inputs-rendered-to-text",
        rendered(inputs="{'query': 'hello'}"),
        InvalidInputError,
        r"inputs rendered to str, not a mapping",
        r"render_template_as_native_obj=True",
    ),
    Case(
        "inputs-rendered-to-none",
        rendered(inputs=None),
        InvalidInputError,
        r"inputs rendered to NoneType, not a mapping",
        r"use a dict",
    ),
    Case(
        "inputs-not-json-serializable",
        rendered(inputs={"when": datetime(2026, 1, 1)}),
        InvalidInputError,
        r"inputs must be JSON-serializable .*datetime",
        r"str, int, float, bool, None, lists, dicts",
    ),
    Case(
        "inputs-with-bytes",
        rendered(inputs={"file": b"\x89PNG"}),
        InvalidInputError,
        r"inputs must be JSON-serializable .*bytes",
        r"str, int, float, bool, None, lists, dicts",
    ),
    Case(
        "inputs-with-nan",
        rendered(inputs={"temperature": float("nan")}),
        InvalidInputError,
        r"inputs must be JSON-serializable",
        r"no NaN or infinity",
    ),
    Case(
        "inputs-with-non-string-keys",
        rendered(inputs={1: "first"}),
        InvalidInputError,
        r"got keys \[1\]",
        r"keyed by input names \(strings\)",
    ),
    # --- workflow id ------------------------------------------------------------------------------
    Case(
        "chenyu-without-workflow-id",
        rendered("chenyu", workflow_id=None),
        InvalidInputError,
        r"\[chenyu\] chenyu needs workflow_id",
        r"e\.g\. 'wf_861ef31e94dcfb10e6e7'",
    ),
    Case(
        "gptbots-with-workflow-id",
        rendered("gptbots", workflow_id="wf_1234"),
        InvalidInputError,
        r"workflow_id='wf_1234' cannot be honoured",
        r"leave it empty and use a connection holding that workflow's key",
    ),
    Case(
        "workflow-id-rendered-to-none-text",
        rendered("dify", workflow_id="None"),
        InvalidInputError,
        r"workflow_id rendered to the text 'None'",
        r"render_template_as_native_obj=True",
    ),
    Case(
        "workflow-id-with-a-slash",
        rendered("dify", workflow_id="../../info"),
        InvalidInputError,
        r"workflow_id '\.\./\.\./info' contains whitespace or one of",
        r"copy the id from the platform",
    ),
    Case(
        "workflow-id-not-a-string",
        rendered("chenyu", workflow_id=861.5),
        InvalidInputError,
        r"workflow_id must be a string, got float",
        r"must be a string",
    ),
    # --- run ids ----------------------------------------------------------------------------------
    Case(
        "dify-run-id-to-chenyu",
        lambda env: env.sense("chenyu", DIFY_RUN_ID),
        InvalidInputError,
        r"is not a chenyu\.cn run id \(they look like wfrun_",
        r"is the run from another platform's connection\?",
    ),
    Case(
        "chenyu-run-id-to-dify",
        lambda env: env.sense("dify", CHENYU_RUN_ID),
        InvalidInputError,
        r"is not a Dify run id \(they look like fb47b2e6",
        r"is the run from another platform's connection\?",
    ),
    Case(
        "empty-run-id",
        lambda env: env.sense("dify", ""),
        InvalidInputError,
        r"run_id must be a non-empty string, got ''",
        r"check that it rendered to a value",
    ),
    Case(
        "run-id-none",
        lambda env: env.sense("dify", None),
        InvalidInputError,
        r"run_id must be a non-empty string, got None",
        r"check that it rendered to a value",
    ),
    Case(
        "stored-run-of-another-platform",
        stored_run_of_another_platform,
        InvalidInputError,
        r"started run 'wfrun_314ff7d8b7a5beff1388', which is not a Dify run id",
        r"Restore the connection .* or clear the task instance",
    ),
    Case(
        "dify-cancel-without-task-id",
        dify_cancel_without_task_id,
        InvalidInputError,
        r"Dify stops run .* by its task id",
        r"pass task_id",
    ),
    # --- durations and switches -------------------------------------------------------------------
    Case(
        "poll-interval-zero",
        constructed(poll_interval=0),
        InvalidInputError,
        r"poll_interval must be a positive number of seconds .* got 0",
        r"or a timedelta",
    ),
    Case(
        "poll-interval-negative",
        constructed(poll_interval=-5),
        InvalidInputError,
        r"poll_interval must be a positive number .* got -5",
        r"or a timedelta",
    ),
    Case(
        "poll-interval-text",
        constructed(poll_interval="10"),
        InvalidInputError,
        r"poll_interval must be a positive number .* got '10'",
        r"or a timedelta",
    ),
    Case(
        "poll-interval-nan",
        constructed(poll_interval=float("nan")),
        InvalidInputError,
        r"poll_interval must be a positive number of seconds \(finite\)",
        r"or a timedelta",
    ),
    Case(
        "timeout-zero",
        constructed(timeout=0),
        InvalidInputError,
        r"timeout must be a positive number .* got 0",
        r"or a timedelta",
    ),
    Case(
        "timeout-timedelta-zero",
        constructed(timeout=timedelta(0)),
        InvalidInputError,
        r"timeout must be a positive number .* got datetime\.timedelta\(0\)",
        r"or a timedelta",
    ),
    Case(
        "timeout-infinite",
        constructed(timeout=float("inf")),
        InvalidInputError,
        r"timeout must be a positive number of seconds \(finite\) .* got inf",
        r"or a timedelta",
    ),
    Case(
        "sensor-poke-interval-zero",
        sensor_constructed(poke_interval=0),
        InvalidInputError,
        r"poke_interval must be a positive number .* got 0",
        r"or a timedelta",
    ),
    Case(
        "sensor-poke-interval-negative",
        sensor_constructed(poke_interval=-1),
        InvalidInputError,
        r"poke_interval must be a positive number .* got -1",
        r"or a timedelta",
    ),
    Case(
        "sensor-timeout-zero",
        sensor_constructed(timeout=0),
        InvalidInputError,
        r"timeout must be a positive number .* got 0",
        r"or a timedelta",
    ),
    Case(
        "wait-as-text",
        constructed(wait="false"),
        InvalidInputError,
        r"wait must be True or False, got 'false'",
        r"True or False",
    ),
    Case(
        "human-input-as-text",
        constructed(human_input="no"),
        InvalidInputError,
        r"human_input must be True or False, got 'no'",
        r"True or False",
    ),
    # --- templates --------------------------------------------------------------------------------
    Case(
        "undefined-template-variable-in-inputs",
        templated("inputs", {"prompt": "{{ params.promt }}"}, lenient_dag=True),
        InvalidInputError,
        r"inputs: its template uses an undefined variable \(.*'promt'",
        r"define it \(the DAG's params, the run's conf, a macro\) or fix its name",
    ),
    Case(
        "undefined-template-variable-in-workflow-id",
        templated("workflow_id", "{{ workflow_of_the_day }}", lenient_dag=False),
        InvalidInputError,
        r"workflow_id: its template uses an undefined variable \('workflow_of_the_day' is undefined\)",
        r"define it .* or fix its name",
    ),
    # --- hook_params, max_output_bytes ------------------------------------------------------------
    Case(
        "hook-params-unknown-key",
        constructed(hook_params={"retries": 3}),
        InvalidInputError,
        r"hook_params has unknown keys \['retries'\]",
        r"WorkflowRunHook accepts: timeout, retry_limit",
    ),
    Case(
        "hook-params-zero-timeout",
        constructed(hook_params={"timeout": 0}),
        InvalidInputError,
        r"hook_params \{'timeout': 0\} are out of range",
        r"timeout and retry_max_seconds must be positive",
    ),
    Case(
        "hook-params-text-value",
        constructed(hook_params={"retry_limit": "3"}),
        InvalidInputError,
        r"hook_params\['retry_limit'\] must be a whole number, got '3'",
        r"whole number",
    ),
    Case(
        "hook-params-not-a-mapping",
        constructed(hook_params=[("timeout", 5)]),
        InvalidInputError,
        r"hook_params must be a mapping of WorkflowRunHook arguments, got list",
        r"mapping of WorkflowRunHook arguments",
    ),
    Case(
        "max-output-bytes-zero",
        constructed(max_output_bytes=0),
        InvalidInputError,
        r"max_output_bytes must be a positive number of bytes",
        r"or None for no limit",
    ),
    # --- the trigger, for those who build one themselves ------------------------------------------
    Case(
        "trigger-poll-interval-zero",
        trigger(poll_interval=0),
        InvalidInputError,
        r"poll_interval",
        r"positive",
    ),
    Case(
        "trigger-max-consecutive-failures-zero",
        trigger(max_consecutive_failures=0),
        InvalidInputError,
        r"max_consecutive_failures",
        r"at least 1",
    ),
    Case(
        "trigger-end-time-not-a-number",
        trigger(end_time="tomorrow"),
        InvalidInputError,
        r"end_time",
        r"number",
    ),
]


def _params() -> list[Any]:
    return [
        pytest.param(case, id=case.id, marks=[pytest.mark.xfail(strict=True, reason=case.xfail)])
        if case.xfail
        else pytest.param(case, id=case.id)
        for case in CASES
    ]


@pytest.mark.parametrize("case", _params())
def test_bad_input(case: Case, emulator, connections, monkeypatch, reports):
    env = Env(emulator, connections, monkeypatch)
    before = counters(emulator)
    outcome: Any = None
    try:
        outcome = case.act(env)
    except TaskDeferred:
        outcome = "deferred: a run was started"
    except WorkflowRunError as exc:
        outcome = exc
    after = counters(emulator)
    requests = after["requests"] - before["requests"]
    reports.catalogue.append(
        {
            "id": case.id,
            "error": type(outcome).__name__ if isinstance(outcome, Exception) else "no error",
            "message": str(outcome),
            "requests": requests,
        }
    )

    assert isinstance(outcome, case.error), f"expected {case.error.__name__}, got {outcome!r}"
    message = str(outcome)
    assert re.search(case.wrong, message), message
    assert re.search(case.todo, message), message
    assert API_KEY not in message
    # No side effect: nothing submitted or canceled, no request beyond the one a wrong key costs.
    assert requests == case.requests
    assert after["submissions"] == before["submissions"]
    assert after["cancels"] == before["cancels"]


def test_the_catalogue_has_at_least_30_cases_each_documented():
    assert len(CASES) >= 30
    assert len({case.id for case in CASES}) == len(CASES)
    documented = DOC.read_text()
    missing = [case.id for case in CASES if f"`{case.id}`" not in documented]
    assert not missing, f"add these cases to {DOC.name}: {missing}"


# --- outputs too large for XCom: after the run, so checked apart -----------------------------------
@needs_airflow("3.3", "the retry reattaches through ResumableJobMixin and task_state_store")
@pytest.mark.parametrize("platform", ["dify", "chenyu"])
def test_outputs_far_larger_than_an_xcom_should_hold(emulator, connections, reports, platform):
    blob = "x" * (2 * 1024 * 1024)
    emulator.state.set_scenario("*", {"queue_seconds": 0, "duration_seconds": 0.1, "outputs": {"text": blob}})
    store, ti = StateStore(), TaskInstanceStandIn()
    op = RunWorkflowOperator(
        task_id="run",
        conn_id=connections[platform],
        workflow_id=WORKFLOW_IDS[platform],
        inputs={"text": "hello"},
        poll_interval=0.05,
    )
    with pytest.raises(OutputTooLargeError) as raised:
        op.execute(context(ti, store))
    error = raised.value
    message = str(error)
    reports.catalogue.append(
        {
            "id": f"outputs-too-large-{platform}",
            "error": type(error).__name__,
            "message": message,
            "requests": sum(emulator.state.stats()["requests"].values()),
        }
    )
    run_id = store["wfrun_run"]["run_id"]
    assert message.startswith(f"[{platform} run {run_id}] the run succeeded, but its result is 2.0 MiB")
    assert "max_output_bytes=1048576 (1.0 MiB)" in message
    assert "XCom 'run_id' and 'run_url' name the run" in message
    assert "object storage" in message
    assert (error.size > error.limit, error.run.run_id) == (True, run_id)
    # Nothing lost: the run is findable from XCom, and its outputs are intact on the platform.
    assert ti.xcoms["run_id"] == run_id
    assert ti.xcoms["run_url"]
    assert "return_value" not in ti.xcoms
    # Airflow's retry reattaches to the finished run and fails the same way: it never starts another.
    with pytest.raises(OutputTooLargeError):
        RunWorkflowOperator(**{**_args(op), "task_id": "run"}).execute(
            context(TaskInstanceStandIn(try_number=2), store)
        )
    assert emulator.state.stats()["submissions"][platform] == 1
    # And a raised limit (with an object-storage XCom backend) returns them.
    result = RunWorkflowOperator(**_args(op), max_output_bytes=4 * 1024 * 1024).execute(
        context(TaskInstanceStandIn(try_number=3), store)
    )
    assert len(result["outputs"]["text"]) == len(blob)
    assert emulator.state.stats()["submissions"][platform] == 1


def _args(op: RunWorkflowOperator) -> dict[str, Any]:
    return {
        "task_id": op.task_id,
        "conn_id": op.conn_id,
        "workflow_id": op.workflow_id,
        "inputs": op.inputs,
        "poll_interval": op.poll_interval,
    }


# --- through real Airflow ---------------------------------------------------------------------------
@pytest.mark.airflow_db
def test_an_undefined_template_variable_fails_a_real_dag_run_before_any_request(
    airflow_db, connections, emulator, capfd
):
    from airflow.utils.state import DagRunState
    from conftest import DagBag

    dag = DagBag(str(BUNDLES["wfrun_test_dags"])).dags["wfrun_test_undefined_template"]
    dag_run = dag.test()
    assert dag_run.state == DagRunState.FAILED
    assert dag_run.get_task_instance("run").state == "failed"
    out = capfd.readouterr().out
    assert "InvalidInputError" in out
    assert "inputs: its template uses an undefined variable" in out
    assert counters(emulator) == {"requests": 0, "submissions": 0, "cancels": 0}
