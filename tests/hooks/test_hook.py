"""
The hook over real HTTP against the emulator: run lifecycles, errors, retries, submit safety, secrets.

Nothing is mocked: every call goes through httpx to the session's loopback emulator, which injects the
faults. Most tests run twice, through the sync API and through its async twin (on one event loop per
test), because the triggerer and the workers take different code paths.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
import traceback
import uuid
from collections.abc import Callable, Coroutine, Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from airflow.exceptions import AirflowNotFoundException
from conftest import PLATFORMS, WORKFLOW_IDS, connection_json

from airflow_provider_wfrun.emulator import EmulatorServer, Scenario
from airflow_provider_wfrun.exceptions import (
    AuthenticationError,
    ConnectionNotFoundError,
    InvalidInputError,
    InvalidResponseError,
    NotSupportedError,
    PlatformError,
    RateLimitedError,
    RunNotFoundError,
    WorkflowRunConnectionError,
    WorkflowRunError,
)
from airflow_provider_wfrun.hooks.workflow_run import WorkflowRunHook, shared_async_client
from airflow_provider_wfrun.models import RunCost, RunSettlement, RunStatus, WorkflowRun
from airflow_provider_wfrun.platforms import adapter_classes

CHENYU_WORKFLOW = WORKFLOW_IDS["chenyu"]
#: The route the emulator serves a poll on, per platform (fault targets).
GET_ROUTE = {platform: f"{platform}.get" for platform in PLATFORMS} | {"chenyu": "chenyu.execution"}
SUBMIT_ROUTE = {platform: f"{platform}.submit" for platform in PLATFORMS}
#: Run ids in each platform's own format that the emulator has never issued.
UNKNOWN_RUN_IDS = {
    "dify": "fb47b2e6-5e43-4f90-be01-d5c5a088d156",
    "gptbots": "0f6c2c1e-0000-4000-8000-000000000000",
    "chenyu": "wfrun_00000000000000000000",
    "coze": "7484523878849822754:1000000000000000000",
}
WRONG_KEY = "wrong-key-7f3a9c1d-do-not-log"
INPUTS = {"topic": "otters", "count": 3, "tags": ["a", "b"]}
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


# ------------------------------------------------------------------------------------------- helpers
class Api:
    """The hook's sync API, or its async twin run on one event loop kept for the whole test."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.loop = asyncio.new_event_loop() if mode == "async" else None

    def _run(self, sync_call: Callable[[], Any], async_call: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        if self.loop is None:
            return sync_call()
        return self.loop.run_until_complete(async_call())

    def submit(self, hook: WorkflowRunHook, inputs: Any, **kwargs: Any) -> WorkflowRun:
        return self._run(
            lambda: hook.submit_run(inputs, **kwargs), lambda: hook.asubmit_run(inputs, **kwargs)
        )

    def get(self, hook: WorkflowRunHook, run_id: str) -> WorkflowRun:
        return self._run(lambda: hook.get_run(run_id), lambda: hook.aget_run(run_id))

    def cancel(self, hook: WorkflowRunHook, run_id: str, **kwargs: Any) -> WorkflowRun:
        return self._run(
            lambda: hook.cancel_run(run_id, **kwargs), lambda: hook.acancel_run(run_id, **kwargs)
        )

    def close(self) -> None:
        if self.loop is not None:
            self.loop.close()


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest) -> Iterator[Api]:
    driver = Api(request.param)
    yield driver
    driver.close()


@pytest.fixture
def make_hook(connections: dict[str, str]) -> Iterator[Callable[..., WorkflowRunHook]]:
    """A hook for a platform (or a conn id) with fast retries; closed after the test."""
    made: list[WorkflowRunHook] = []

    def make(platform_or_conn_id: str, **options: Any) -> WorkflowRunHook:
        conn_id = connections.get(platform_or_conn_id, platform_or_conn_id)
        settings = {"retry_delay": 0.01, "retry_limit": 3, "timeout": 5.0, **options}
        hook = WorkflowRunHook(conn_id, **settings)
        made.append(hook)
        return hook

    yield make
    for hook in made:
        hook.close()


def submit(api: Api, hook: WorkflowRunHook, platform: str, inputs: Any = None, **kwargs: Any) -> WorkflowRun:
    """Submit with the workflow id the platform needs (chenyu) unless one is given."""
    kwargs.setdefault("workflow_id", WORKFLOW_IDS[platform])
    return api.submit(hook, dict(INPUTS) if inputs is None else inputs, **kwargs)


def wait_terminal(
    api: Api, hook: WorkflowRunHook, run_id: str, timeout: float = 5.0
) -> tuple[WorkflowRun, list[RunStatus]]:
    """Poll until terminal; returns the final run and every distinct status seen, in order."""
    seen: list[RunStatus] = []
    deadline = time.monotonic() + timeout
    while True:
        run = api.get(hook, run_id)
        if not seen or seen[-1] is not run.status:
            seen.append(run.status)
        if run.is_terminal:
            return run, seen
        assert time.monotonic() < deadline, f"run {run_id} still {run.status} after {timeout} s"
        time.sleep(0.02)


def requests_sent(emulator: EmulatorServer, route: str | None = None) -> int:
    """Platform requests the emulator received (control API excluded), on one route or all."""
    counts = emulator.state.stats()["requests"]
    return counts.get(route, 0) if route else sum(counts.values())


def add_bad_connection(
    monkeypatch: pytest.MonkeyPatch, emulator: EmulatorServer, platform: str, **overrides: object
) -> str:
    conn_id = f"wfrun_bad_{platform}"
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", connection_json(emulator, platform, **overrides))
    return conn_id


def finished_run(api: Api, hook: WorkflowRunHook, emulator: EmulatorServer, platform: str) -> WorkflowRun:
    """A run that already succeeded (instant scenario), to poll under faults."""
    emulator.state.set_scenario("*", Scenario(queue_seconds=0.0, duration_seconds=0.0))
    run, _ = wait_terminal(api, hook, submit(api, hook, platform).run_id)
    assert run.status is RunStatus.SUCCEEDED
    return run


def assert_utc_between(value: datetime | None, earliest: float, latest: float) -> None:
    assert value is not None
    assert value.tzinfo is not None
    assert value.utcoffset() == timedelta(0)
    # Dify and chenyu report whole seconds.
    assert earliest - 1.0 <= value.timestamp() <= latest + 1.0


# ----------------------------------------------------------------------------- 1. status paths
@pytest.mark.parametrize("platform", PLATFORMS)
def test_run_goes_through_its_statuses_to_success_with_normalized_result(
    api: Api, make_hook: Callable[..., WorkflowRunHook], emulator: EmulatorServer, platform: str
) -> None:
    emulator.state.set_scenario("*", Scenario(queue_seconds=0.2, duration_seconds=0.4, tokens=42))
    hook = make_hook(platform)
    wall_before = time.time()

    submitted = submit(api, hook, platform)
    final, seen = wait_terminal(api, hook, submitted.run_id)

    wall_after = time.time()
    assert final.run_id == submitted.run_id
    assert final.platform == platform
    # Dify and Coze have no queue and their submit already reports the run as running.
    expected = [RunStatus.RUNNING, RunStatus.SUCCEEDED]
    if emulator.state.dialects[platform].has_queue:
        expected.insert(0, RunStatus.QUEUED)
        assert submitted.status is RunStatus.QUEUED
    else:
        assert submitted.status is RunStatus.RUNNING
    assert seen == expected
    assert final.is_terminal
    assert final.outputs == INPUTS
    assert final.error is None
    assert (
        final.platform_status
        == {"dify": "succeeded", "gptbots": "SUCCEED", "chenyu": "succeeded", "coze": "Success"}[platform]
    )
    for stamp in (final.created_at, final.started_at, final.finished_at):
        assert_utc_between(stamp, wall_before, wall_after)
    assert final.finished_at >= final.started_at
    # Coze times its runs in whole seconds, the others to the millisecond (or report the duration).
    assert final.duration_seconds == pytest.approx(0.4, abs=1.0 if platform == "coze" else 0.06)

    if platform in ("dify", "coze"):  # tokens only, no money
        assert final.cost == RunCost(tokens=42)
        assert final.settlement is None
    elif platform == "gptbots":
        assert final.cost == RunCost(total=Decimal("0.6928"), currency="credits", tokens=42)
        assert isinstance(final.cost.total, Decimal)
        assert final.settlement is None
    else:
        assert final.cost == RunCost(
            total=Decimal("0.0002878"), compute=Decimal("0.0002878"), external=Decimal(0), currency="CNY"
        )
        assert submitted.settlement == RunSettlement(quote=Decimal("0.03"), currency="CNY")
        assert final.settlement == RunSettlement(
            quote=Decimal("0.03"),
            final=Decimal("0.0002878"),
            released=Decimal("0.0297122"),
            currency="CNY",
            status="settled",
        )
        # The 8-decimal amounts from /info are kept exactly, not through a float.
        assert str(final.settlement.released) == "0.02971220"
        assert final.progress == 100
        # The settlement is fetched once, when the run is over, not on every poll.
        assert requests_sent(emulator, "chenyu.info") == 1
        assert requests_sent(emulator, "chenyu.execution") >= 3


@pytest.mark.parametrize("platform", PLATFORMS)
def test_failed_run_reports_the_platform_reason(
    api: Api, make_hook: Callable[..., WorkflowRunHook], emulator: EmulatorServer, platform: str
) -> None:
    reason = "Node 'LLM' failed: provider quota exhausted"
    emulator.state.set_scenario(
        "*", Scenario(queue_seconds=0.0, duration_seconds=0.1, outcome="failed", error_reason=reason)
    )
    hook = make_hook(platform)

    final, _ = wait_terminal(api, hook, submit(api, hook, platform).run_id)

    assert final.status is RunStatus.FAILED
    assert final.is_terminal
    assert final.outputs == {}
    assert final.error is not None
    if platform == "gptbots":
        # GPTBots sends no reason for a failed run (neither does the emulator): the hook says so.
        assert final.platform_status == "FAILED"
        assert "gives no reason" in final.error.reason
    else:
        assert final.error.reason == reason
    if platform == "chenyu":
        assert final.error.code == "EXECUTION_FAILED"
        assert final.error.detail == Scenario().error_detail
        assert final.settlement is not None
        assert final.settlement.status == "settled"


@pytest.mark.parametrize(
    ("platform", "status", "platform_status"),
    [
        ("dify", RunStatus.CANCELED, "stopped"),
        # GPTBots has no canceled status: a run stopped on the platform reads FAILED.
        ("gptbots", RunStatus.FAILED, "FAILED"),
        ("chenyu", RunStatus.CANCELED, "canceled"),
    ],
)
def test_run_canceled_on_the_platform(
    api: Api,
    make_hook: Callable[..., WorkflowRunHook],
    emulator: EmulatorServer,
    platform: str,
    status: RunStatus,
    platform_status: str,
) -> None:
    emulator.state.set_scenario("*", Scenario(queue_seconds=0.0, duration_seconds=0.5))
    hook = make_hook(platform)
    run = submit(api, hook, platform)

    assert emulator.state.cancel(run.run_id)
    final = api.get(hook, run.run_id)

    assert final.status is status
    assert final.platform_status == platform_status
    assert final.is_terminal
    assert final.outputs == {}
    assert final.error is not None


def test_chenyu_run_canceled_while_queued_is_fully_refunded(
    api: Api, make_hook: Callable[..., WorkflowRunHook], emulator: EmulatorServer
) -> None:
    emulator.state.set_scenario("*", Scenario(queue_seconds=0.5, duration_seconds=0.2))
    hook = make_hook("chenyu")
    run = submit(api, hook, "chenyu")
    assert api.get(hook, run.run_id).status is RunStatus.QUEUED

    assert emulator.state.cancel(run.run_id)
    final = api.get(hook, run.run_id)

    assert final.status is RunStatus.CANCELED
    assert final.error is not None
    assert "cancel" in final.error.reason
    assert final.settlement is not None
    assert final.settlement.final == Decimal(0)
    assert final.settlement.released == final.settlement.quote == Decimal("0.03")
    assert final.cost.total == Decimal(0)


def test_dify_partial_success(
    api: Api, make_hook: Callable[..., WorkflowRunHook], emulator: EmulatorServer
) -> None:
    emulator.state.set_scenario("*", Scenario(duration_seconds=0.1, outcome="partial"))
    hook = make_hook("dify")

    final, _ = wait_terminal(api, hook, submit(api, hook, "dify").run_id)

    assert final.status is RunStatus.PARTIALLY_SUCCEEDED
    assert final.platform_status == "partial-succeeded"
    assert final.is_terminal
    assert not final.status.is_success
    assert final.outputs == INPUTS


# ------------------------------------------------------------------------------ 2. Dify specifics
def test_dify_submit_returns_while_the_run_is_still_running(
    api: Api, make_hook: Callable[..., WorkflowRunHook], emulator: EmulatorServer
) -> None:
    emulator.state.set_scenario("*", Scenario(duration_seconds=0.5))
    hook = make_hook("dify")

    started = time.monotonic()
    run = submit(api, hook, "dify")
    elapsed = time.monotonic() - started

    assert elapsed < 0.3, "submit waited for the run instead of returning at workflow_started"
    assert run.status is RunStatus.RUNNING
    assert not run.is_terminal
    emulated = emulator.state.runs[run.run_id]
    assert not emulated.is_done()
    assert run.task_id == emulated.extra["task_id"]
    assert UUID_RE.fullmatch(run.task_id)
    assert run.created_at is not None
    assert run.created_at.utcoffset() == timedelta(0)
    # Closing the stream did not stop the run.
    final, _ = wait_terminal(api, hook, run.run_id)
    assert final.status is RunStatus.SUCCEEDED


def test_dify_workflow_id_runs_that_version(
    api: Api, make_hook: Callable[..., WorkflowRunHook], emulator: EmulatorServer
) -> None:
    version = "3b1f6f0e-9d2a-4c7b-8e55-0a1b2c3d4e5f"
    emulator.state.set_scenario(version, Scenario(duration_seconds=0.1, outputs={"answer": "from v2"}))
    hook = make_hook("dify")

    run = submit(api, hook, "dify", workflow_id=version)
    final, _ = wait_terminal(api, hook, run.run_id)

    assert run.workflow_id == version
    assert final.workflow_id == version
    assert final.outputs == {"answer": "from v2"}


def test_dify_unknown_workflow_version_is_not_found(
    api: Api, make_hook: Callable[..., WorkflowRunHook], emulator: EmulatorServer
) -> None:
    version = "99999999-9d2a-4c7b-8e55-0a1b2c3d4e5f"
    with pytest.raises(RunNotFoundError, match=version):
        submit(api, make_hook("dify"), "dify", workflow_id=version)
    assert emulator.state.stats()["submissions"]["dify"] == 0
    assert requests_sent(emulator, "dify.submit") == 1


def test_dify_cancel_with_task_id_stops_the_run(
    api: Api, make_hook: Callable[..., WorkflowRunHook], emulator: EmulatorServer
) -> None:
    emulator.state.set_scenario("*", Scenario(duration_seconds=0.5))
    hook = make_hook("dify")
    run = submit(api, hook, "dify")

    canceled = api.cancel(hook, run.run_id, task_id=run.task_id)

    assert canceled.status is RunStatus.CANCELED
    assert canceled.platform_status == "stopped"
    assert emulator.state.stats()["cancels"]["dify"] == 1
    assert requests_sent(emulator, "dify.stop") == 1
    time.sleep(0.55)  # past the natural end: it stays canceled
    assert api.get(hook, run.run_id).status is RunStatus.CANCELED


def test_dify_cancel_without_task_id_is_refused_before_sending(
    api: Api, make_hook: Callable[..., WorkflowRunHook], emulator: EmulatorServer
) -> None:
    emulator.state.set_scenario("*", Scenario(duration_seconds=0.2))
    hook = make_hook("dify")
    run = submit(api, hook, "dify")
    sent = requests_sent(emulator)

    with pytest.raises(InvalidInputError, match="task_id"):
        api.cancel(hook, run.run_id)

    assert requests_sent(emulator) == sent
    assert emulator.state.stats()["cancels"]["dify"] == 0
    final, _ = wait_terminal(api, hook, run.run_id)
    assert final.status is RunStatus.SUCCEEDED


@pytest.mark.parametrize("platform", ["gptbots", "chenyu"])
def test_cancel_unsupported_platform_sends_nothing(
    api: Api, make_hook: Callable[..., WorkflowRunHook], emulator: EmulatorServer, platform: str
) -> None:
    emulator.state.set_scenario("*", Scenario(queue_seconds=0.0, duration_seconds=0.2))
    hook = make_hook(platform)
    run = submit(api, hook, platform)
    sent = requests_sent(emulator)

    with pytest.raises(NotSupportedError, match=re.escape(f"[{platform} run {run.run_id}]")):
        api.cancel(hook, run.run_id, task_id=run.task_id)

    assert requests_sent(emulator) == sent
    assert emulator.state.stats()["cancels"][platform] == 0
    final, _ = wait_terminal(api, hook, run.run_id)
    assert final.status is RunStatus.SUCCEEDED


# ---------------------------------------------------------------------------- 3. chenyu idempotency
def test_chenyu_same_idempotency_key_returns_the_same_run(
    api: Api, make_hook: Callable[..., WorkflowRunHook], emulator: EmulatorServer
) -> None:
    hook = make_hook("chenyu")

    first = submit(api, hook, "chenyu", idempotency_key="nightly-2026-05-08")
    second = submit(api, hook, "chenyu", idempotency_key="nightly-2026-05-08")

    assert second.run_id == first.run_id
    stats = emulator.state.stats()
    assert stats["submissions"]["chenyu"] == 1
    assert stats["idempotent_replays"]["chenyu"] == 1
    assert emulator.state.runs[first.run_id].extra["idempotency_key"] == "nightly-2026-05-08"


def test_chenyu_without_key_generates_one_per_submit(
    api: Api, make_hook: Callable[..., WorkflowRunHook], emulator: EmulatorServer
) -> None:
    hook = make_hook("chenyu")

    first = submit(api, hook, "chenyu")
    second = submit(api, hook, "chenyu")

    assert first.run_id != second.run_id
    assert emulator.state.stats()["submissions"]["chenyu"] == 2
    keys = {emulator.state.runs[run.run_id].extra["idempotency_key"] for run in (first, second)}
    assert len(keys) == 2
    assert all(keys)


# ------------------------------------------------------------------------------------ 4. error types
@pytest.mark.parametrize("platform", PLATFORMS)
def test_wrong_key_is_an_authentication_error(
    api: Api,
    make_hook: Callable[..., WorkflowRunHook],
    emulator: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
    platform: str,
) -> None:
    hook = make_hook(add_bad_connection(monkeypatch, emulator, platform, password=WRONG_KEY))

    with pytest.raises(AuthenticationError) as submitted:
        submit(api, hook, platform)
    with pytest.raises(AuthenticationError) as polled:
        api.get(hook, UNKNOWN_RUN_IDS[platform])

    for error in (submitted.value, polled.value):
        assert error.platform == platform
        assert f"[{platform}" in str(error)
        assert WRONG_KEY not in str(error)
    assert "rejected" in str(submitted.value)
    # A rejected key is not retried.
    assert requests_sent(emulator, SUBMIT_ROUTE[platform]) == 1
    assert requests_sent(emulator, GET_ROUTE[platform]) == 1
    assert emulator.state.stats()["submissions"][platform] == 0


@pytest.mark.parametrize("platform", PLATFORMS)
def test_unknown_run_id(
    api: Api, make_hook: Callable[..., WorkflowRunHook], emulator: EmulatorServer, platform: str
) -> None:
    run_id = UNKNOWN_RUN_IDS[platform]
    expected = PlatformError if platform == "gptbots" else RunNotFoundError

    with pytest.raises(expected) as caught:
        api.get(make_hook(platform), run_id)

    error = caught.value
    assert type(error) is expected
    assert error.run_id == run_id
    assert f"[{platform} run {run_id}]" in str(error)
    if platform == "gptbots":
        # GPTBots documents no "not found": it answers HTTP 200 with its "Invalid parameter" error body.
        assert error.code == "40000"
        assert error.http_status == 200
        assert error.platform_message == "Invalid parameter"
    assert requests_sent(emulator, GET_ROUTE[platform]) == 1


BAD_CALLS: dict[str, tuple[str, Callable[[Api, WorkflowRunHook], Any], str]] = {
    "dify-inputs-not-a-mapping": ("dify", lambda api, hook: api.submit(hook, ["otters"]), "mapping"),
    "gptbots-inputs-not-a-mapping": ("gptbots", lambda api, hook: api.submit(hook, "topic=x"), "mapping"),
    "chenyu-inputs-not-a-mapping": (
        "chenyu",
        lambda api, hook: api.submit(hook, [("topic", "x")], workflow_id=CHENYU_WORKFLOW),
        "mapping",
    ),
    "chenyu-without-workflow-id": ("chenyu", lambda api, hook: api.submit(hook, INPUTS), "workflow_id"),
    "gptbots-with-workflow-id": (
        "gptbots",
        lambda api, hook: api.submit(hook, INPUTS, workflow_id="wf-other"),
        "workflow_id",
    ),
    "dify-get-chenyu-run-id": (
        "dify",
        lambda api, hook: api.get(hook, "wfrun_314ff7d8b7a5beff1388"),
        "not a Dify run id",
    ),
    "dify-cancel-chenyu-run-id": (
        "dify",
        lambda api, hook: api.cancel(hook, "wfrun_314ff7d8b7a5beff1388", task_id=str(uuid.uuid4())),
        "not a Dify run id",
    ),
    "chenyu-get-dify-run-id": (
        "chenyu",
        lambda api, hook: api.get(hook, "fb47b2e6-5e43-4f90-be01-d5c5a088d156"),
        "not a chenyu.cn run id",
    ),
    "gptbots-empty-run-id": ("gptbots", lambda api, hook: api.get(hook, "  "), "non-empty"),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_call_is_refused_before_any_request(
    api: Api, make_hook: Callable[..., WorkflowRunHook], emulator: EmulatorServer, case: str
) -> None:
    platform, call, message = BAD_CALLS[case]
    hook = make_hook(platform)

    with pytest.raises(InvalidInputError, match=message) as caught:
        call(api, hook)

    assert caught.value.platform == platform
    assert requests_sent(emulator) == 0
    assert emulator.state.stats()["runs"] == 0


BAD_CONNECTIONS: dict[str, tuple[Callable[[EmulatorServer], dict[str, object]], str]] = {
    "empty-key": (lambda server: {"password": ""}, "no API key"),
    "blank-key": (lambda server: {"password": "   "}, "no API key"),
    "host-without-scheme": (
        lambda server: {"host": server.base_url("dify").split("://", 1)[1]},
        "not an API root URL",
    ),
    "host-with-credentials": (
        lambda server: {"host": server.base_url("dify").replace("http://", "http://user:secret@")},
        "plain URL",
    ),
    "unknown-conn-type": (
        lambda server: {"conn_type": "http"},
        f"use one of: {', '.join(adapter_classes())}",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CONNECTIONS))
def test_bad_connection_is_refused_before_any_request(
    api: Api,
    make_hook: Callable[..., WorkflowRunHook],
    emulator: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
) -> None:
    overrides, message = BAD_CONNECTIONS[case]
    conn_id = add_bad_connection(monkeypatch, emulator, "dify", **overrides(emulator))
    hook = make_hook(conn_id)

    with pytest.raises(InvalidInputError, match=message) as caught:
        submit(api, hook, "dify")

    assert conn_id in str(caught.value)
    assert "secret" not in str(caught.value)
    assert requests_sent(emulator) == 0
    ok, text = hook.test_connection()
    assert not ok
    assert conn_id in text
    assert requests_sent(emulator) == 0


def test_missing_connection_is_refused_before_any_request(
    api: Api, make_hook: Callable[..., WorkflowRunHook], emulator: EmulatorServer
) -> None:
    hook = make_hook("wfrun_not_defined_anywhere")

    with pytest.raises(
        ConnectionNotFoundError, match="'wfrun_not_defined_anywhere' is not defined"
    ) as raised:
        submit(api, hook, "dify")

    assert isinstance(raised.value, AirflowNotFoundException)  # callers catching Airflow's error still do
    assert "AIRFLOW_CONN_WFRUN_NOT_DEFINED_ANYWHERE" in str(raised.value)
    assert requests_sent(emulator) == 0


# ------------------------------------------------------------------------------------------ 5. faults
TRANSIENT_FAULTS: dict[str, dict[str, Any]] = {
    "429": {"kind": "429", "retry_after": 0.0},
    "500": {"kind": "500"},
    "502": {"kind": "502"},
    "503": {"kind": "503"},
    "504": {"kind": "504"},
    "html-error-page": {"kind": "html"},
    "connection-reset": {"kind": "reset"},
    "read-timeout": {"kind": "delay", "delay_seconds": 0.6},
    "malformed-json": {"kind": "malformed"},
    "truncated-body": {"kind": "truncated"},
}


@pytest.mark.parametrize("fault", list(TRANSIENT_FAULTS))
@pytest.mark.parametrize("platform", PLATFORMS)
def test_poll_recovers_from_transient_fault(
    api: Api,
    make_hook: Callable[..., WorkflowRunHook],
    emulator: EmulatorServer,
    platform: str,
    fault: str,
) -> None:
    spec = TRANSIENT_FAULTS[fault]
    done = finished_run(api, make_hook(platform), emulator, platform)
    # A read timeout needs a hook timeout shorter than the emulator's delay.
    count, timeout = (1, 0.2) if spec["kind"] == "delay" else (2, 5.0)
    hook = make_hook(platform, retry_limit=4, timeout=timeout)
    route = GET_ROUTE[platform]
    sent = requests_sent(emulator, route)

    emulator.state.add_fault({"route": route, "count": count, **spec})
    run = api.get(hook, done.run_id)

    assert run.status is RunStatus.SUCCEEDED
    assert run.outputs == INPUTS
    assert run.run_id == done.run_id
    assert emulator.state.stats()["faults"][spec["kind"]] == count
    assert requests_sent(emulator, route) - sent == count + 1


def test_chenyu_settlement_call_is_retried_too(
    api: Api, make_hook: Callable[..., WorkflowRunHook], emulator: EmulatorServer
) -> None:
    hook = make_hook("chenyu")
    done = finished_run(api, hook, emulator, "chenyu")
    sent = requests_sent(emulator, "chenyu.info")

    emulator.state.add_fault({"route": "chenyu.info", "kind": "503", "count": 2})
    run = api.get(hook, done.run_id)

    assert run.settlement == done.settlement
    assert run.settlement is not None
    assert run.settlement.status == "settled"
    assert requests_sent(emulator, "chenyu.info") - sent == 3


@pytest.mark.parametrize("platform", PLATFORMS)
def test_retry_after_seconds_is_honoured(
    api: Api, make_hook: Callable[..., WorkflowRunHook], emulator: EmulatorServer, platform: str
) -> None:
    hook = make_hook(platform)
    done = finished_run(api, hook, emulator, platform)
    emulator.state.add_fault({"route": GET_ROUTE[platform], "kind": "429", "retry_after": 0.3, "count": 1})

    started = time.monotonic()
    run = api.get(hook, done.run_id)
    waited = time.monotonic() - started

    assert run.status is RunStatus.SUCCEEDED
    assert requests_sent(emulator, GET_ROUTE[platform]) == 2 + 1  # finished_run polled once
    # retry_delay is 0.01 s: only the hint explains a wait this long.
    assert waited >= 0.9 * 0.3


@pytest.mark.parametrize(
    ("api", "platform"), [("sync", "dify"), ("async", "gptbots"), ("sync", "chenyu")], indirect=["api"]
)
def test_retry_after_http_date_is_honoured(
    api: Api, make_hook: Callable[..., WorkflowRunHook], emulator: EmulatorServer, platform: str
) -> None:
    hook = make_hook(platform)
    done = finished_run(api, hook, emulator, platform)
    emulator.state.add_fault(
        {
            "route": GET_ROUTE[platform],
            "kind": "429",
            "retry_after": 1,
            "retry_after_http_date": True,
            "count": 1,
        }
    )
    # An HTTP date has whole seconds: start half-way through a second, so the date the emulator sends
    # (floor(now + 1)) is about 0.45 s away and ignoring it would finish far too early.
    time.sleep((0.5 - time.time() % 1.0) % 1.0)
    wall_before = time.time()

    run = api.get(hook, done.run_id)

    assert run.status is RunStatus.SUCCEEDED
    assert requests_sent(emulator, GET_ROUTE[platform]) == 2 + 1
    not_before = math.floor(wall_before + 1)
    assert not_before - wall_before > 0.3
    assert time.time() >= not_before - 0.02


def test_retry_after_is_capped(make_hook: Callable[..., WorkflowRunHook], emulator: EmulatorServer) -> None:
    api = Api("sync")
    hook = make_hook("gptbots", retry_after_cap=0.1)
    done = finished_run(api, hook, emulator, "gptbots")
    emulator.state.add_fault({"route": "gptbots.get", "kind": "429", "retry_after": 30, "count": 1})

    started = time.monotonic()
    run = api.get(hook, done.run_id)

    assert run.status is RunStatus.SUCCEEDED
    assert time.monotonic() - started < 3


PERSISTENT_FAULTS: dict[str, tuple[dict[str, Any], type[WorkflowRunError], int | None]] = {
    "429": ({"kind": "429", "retry_after": 0.01}, RateLimitedError, None),
    "500": ({"kind": "500"}, PlatformError, 500),
    "502": ({"kind": "502"}, PlatformError, 502),
    "503": ({"kind": "503"}, PlatformError, 503),
    "504": ({"kind": "504"}, PlatformError, 504),
    "html-error-page": ({"kind": "html"}, PlatformError, 502),
    "connection-reset": ({"kind": "reset"}, WorkflowRunConnectionError, None),
    "read-timeout": ({"kind": "delay", "delay_seconds": 0.5}, WorkflowRunConnectionError, None),
    "malformed-json": ({"kind": "malformed"}, InvalidResponseError, None),
    "truncated-body": ({"kind": "truncated"}, InvalidResponseError, None),
}


@pytest.mark.parametrize("fault", list(PERSISTENT_FAULTS))
@pytest.mark.parametrize("platform", PLATFORMS)
def test_persistent_fault_raises_typed_error_after_the_retry_budget(
    api: Api,
    make_hook: Callable[..., WorkflowRunHook],
    emulator: EmulatorServer,
    platform: str,
    fault: str,
) -> None:
    spec, expected, http_status = PERSISTENT_FAULTS[fault]
    done = submit(api, make_hook(platform), platform)
    hook = make_hook(platform, retry_limit=3, timeout=0.1 if spec["kind"] == "delay" else 5.0)
    route = GET_ROUTE[platform]
    sent = requests_sent(emulator, route)

    emulator.state.add_fault({"route": route, **spec})
    with pytest.raises(expected) as caught:
        api.get(hook, done.run_id)

    error = caught.value
    assert type(error) is expected
    assert error.platform == platform
    assert error.run_id == done.run_id
    assert f"[{platform} run {done.run_id}]" in str(error)
    # On the async path aiohttp sends an idempotent request (GET) once more within one attempt when the
    # connection drops (RFC 9112, 9.3.1); every other case is one request per attempt.
    per_attempt = 2 if api.mode == "async" and spec["kind"] == "reset" and platform != "gptbots" else 1
    assert requests_sent(emulator, route) - sent == 3 * per_attempt
    if http_status is not None:
        assert isinstance(error, PlatformError)
        assert error.http_status == http_status
    if isinstance(error, RateLimitedError):
        assert error.retry_after == pytest.approx(0.01)
    if isinstance(error, InvalidResponseError):
        assert error.field == "<body>"


def test_retry_max_seconds_counts_from_the_first_attempt(
    api: Api, make_hook: Callable[..., WorkflowRunHook], emulator: EmulatorServer
) -> None:
    run = submit(api, make_hook("dify"), "dify")
    # Every attempt times out after 0.4 s. The budget of 0.6 s is spent during attempt 2 when counted from
    # attempt 1's start (0.8 s > 0.6 s); counted from anywhere later, attempt 3 would still be sent.
    hook = make_hook("dify", retry_limit=10, timeout=0.4, retry_max_seconds=0.6)
    emulator.state.add_fault({"route": "dify.get", "kind": "delay", "delay_seconds": 3.0})
    sent = requests_sent(emulator, "dify.get")

    with pytest.raises(WorkflowRunConnectionError):
        api.get(hook, run.run_id)

    assert requests_sent(emulator, "dify.get") - sent == 2


@pytest.mark.parametrize(
    "spec", [{"kind": "reset"}, {"kind": "delay", "delay_seconds": 0.5}], ids=["reset", "read-timeout"]
)
def test_connection_error_message_says_what_went_wrong(
    api: Api, make_hook: Callable[..., WorkflowRunHook], emulator: EmulatorServer, spec: dict[str, Any]
) -> None:
    run = submit(api, make_hook("dify"), "dify")
    hook = make_hook("dify", retry_limit=1, timeout=0.1)
    emulator.state.add_fault({"route": "dify.get", **spec})

    with pytest.raises(WorkflowRunConnectionError) as caught:
        api.get(hook, run.run_id)

    # The task log says what happened: the deadline that passed, or the transport's error with its detail.
    message = str(caught.value)
    if spec["kind"] == "delay":
        assert message.endswith("(no complete answer within the 0.1 s deadline)")
        return
    found = re.search(r"\((\w+): (.*)\)$", message)
    assert found is not None
    assert found.group(1) in {"ReadError", "RemoteProtocolError", "ClientOSError", "ServerDisconnectedError"}
    assert found.group(2).strip(), f"empty detail in {message!r}"


LOST_SUBMIT_RESPONSES: dict[str, tuple[dict[str, Any], type[WorkflowRunError]]] = {
    "500-after-creating": ({"kind": "500", "phase": "after"}, PlatformError),
    "reset-after-creating": ({"kind": "reset", "phase": "after"}, WorkflowRunConnectionError),
    # Slow platform: it created the run but answers after the hook gave up reading.
    "read-timeout-after-creating": (
        {"kind": "delay", "phase": "after", "delay_seconds": 0.4},
        WorkflowRunConnectionError,
    ),
}


@pytest.mark.parametrize("fault", list(LOST_SUBMIT_RESPONSES))
@pytest.mark.parametrize("platform", ["dify", "gptbots"])
def test_submit_is_not_replayed_when_the_response_was_lost(
    api: Api, make_hook: Callable[..., WorkflowRunHook], emulator: EmulatorServer, platform: str, fault: str
) -> None:
    spec, expected = LOST_SUBMIT_RESPONSES[fault]
    hook = make_hook(platform, timeout=0.15 if spec["kind"] == "delay" else 5.0)
    emulator.state.add_fault({"route": SUBMIT_ROUTE[platform], "count": 1, **spec})

    with pytest.raises(expected) as caught:
        submit(api, hook, platform)

    assert caught.value.platform == platform
    # The run was created but its answer was lost: a second POST would start a duplicate run.
    assert emulator.state.stats()["submissions"][platform] == 1
    assert requests_sent(emulator, SUBMIT_ROUTE[platform]) == 1
    assert len(emulator.state.runs) == 1


@pytest.mark.parametrize("platform", PLATFORMS)
def test_submit_is_retried_on_429_and_starts_one_run(
    api: Api, make_hook: Callable[..., WorkflowRunHook], emulator: EmulatorServer, platform: str
) -> None:
    hook = make_hook(platform)
    emulator.state.add_fault({"route": SUBMIT_ROUTE[platform], "kind": "429", "retry_after": 0, "count": 1})

    run = submit(api, hook, platform)

    assert requests_sent(emulator, SUBMIT_ROUTE[platform]) == 2
    assert emulator.state.stats()["submissions"][platform] == 1
    (stored,) = emulator.state.runs.values()
    assert run.run_id.endswith(stored.run_id)  # Coze's run id is "<workflow id>:<execute id>"


@pytest.mark.parametrize("fault", list(LOST_SUBMIT_RESPONSES))
def test_chenyu_submit_is_replayed_idempotently_after_a_lost_response(
    api: Api, make_hook: Callable[..., WorkflowRunHook], emulator: EmulatorServer, fault: str
) -> None:
    spec, _ = LOST_SUBMIT_RESPONSES[fault]
    hook = make_hook("chenyu", timeout=0.15 if spec["kind"] == "delay" else 5.0)
    emulator.state.add_fault({"route": "chenyu.submit", "count": 1, **spec})

    run = submit(api, hook, "chenyu")

    stats = emulator.state.stats()
    assert requests_sent(emulator, "chenyu.submit") == 2
    assert stats["submissions"]["chenyu"] == 1
    assert stats["idempotent_replays"]["chenyu"] == 1
    assert list(emulator.state.runs) == [run.run_id]


# ----------------------------------------------------------------------------------------- 6. secrets
@pytest.mark.parametrize("platform", PLATFORMS)
def test_api_key_never_appears_in_logs_errors_or_reprs(
    api: Api,
    make_hook: Callable[..., WorkflowRunHook],
    emulator: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    platform: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "airflow", "airflow_provider_wfrun"):
        caplog.set_level(logging.DEBUG, logger=name)
    keys = (emulator.api_key, WRONG_KEY)
    errors: list[BaseException] = []
    texts: list[str] = []

    wrong = make_hook(add_bad_connection(monkeypatch, emulator, platform, password=WRONG_KEY))
    with pytest.raises(AuthenticationError) as caught:
        submit(api, wrong, platform)
    errors.append(caught.value)
    ok, message = wrong.test_connection()
    assert not ok
    texts.append(message)

    hook = make_hook(platform)
    run = submit(api, hook, platform)
    emulator.state.add_fault({"route": GET_ROUTE[platform], "kind": "500", "count": 2})
    api.get(hook, run.run_id)  # retried twice, with a warning each time
    with pytest.raises(WorkflowRunError) as caught:
        api.get(hook, UNKNOWN_RUN_IDS[platform])
    errors.append(caught.value)
    emulator.state.add_fault({"route": GET_ROUTE[platform], "kind": "reset"})
    with pytest.raises(WorkflowRunConnectionError) as caught:
        api.get(hook, run.run_id)
    errors.append(caught.value)

    for error in errors:
        texts += [str(error), repr(error), repr(error.args), "".join(traceback.format_exception(error))]
    for record in caplog.records:
        texts += [record.getMessage(), repr(record.args), record.exc_text or ""]
    captured = capsys.readouterr()
    texts += [captured.out, captured.err]
    for target in (hook, wrong):
        texts += [repr(target), str(target), repr(target.get_platform_connection())]
    everything = "\n".join(texts)

    assert "retrying" in everything, "the retry warnings were not captured, so this test proves nothing"
    assert caplog.records, "no log records were captured, so this test proves nothing"
    for key in keys:
        assert key not in everything


# ------------------------------------------------------------------------------------- 7. HTTP clients
def test_sync_hook_reuses_one_client(
    make_hook: Callable[..., WorkflowRunHook], emulator: EmulatorServer
) -> None:
    hook = make_hook("chenyu")
    client = hook.get_conn()
    assert hook.get_conn() is client

    run = hook.submit_run(INPUTS, workflow_id=CHENYU_WORKFLOW)
    hook.get_run(run.run_id)
    hook.get_run(run.run_id)
    assert hook.test_connection()[0]

    assert hook.get_conn() is client
    assert not client.is_closed
    assert make_hook("chenyu").get_conn() is not client  # one client per hook, not a global one

    hook.close()
    assert client.is_closed
    assert hook.get_run(run.run_id).run_id == run.run_id  # a closed hook opens a fresh client
    assert hook.get_conn() is not client


async def test_async_hooks_share_one_client_and_its_connections_per_event_loop(
    connections: dict[str, str], emulator: EmulatorServer
) -> None:
    emulator.state.set_scenario("*", Scenario(queue_seconds=0.0, duration_seconds=0.3))
    dify = WorkflowRunHook(connections["dify"], retry_delay=0.01)
    chenyu = WorkflowRunHook(connections["chenyu"], retry_delay=0.01)
    async with shared_async_client() as client:
        dify_run = await dify.asubmit_run(INPUTS)
        chenyu_run = await chenyu.asubmit_run(INPUTS, workflow_id=CHENYU_WORKFLOW)
        before = emulator.state.stats()
        for _ in range(10):
            polls = await asyncio.gather(dify.aget_run(dify_run.run_id), chenyu.aget_run(chenyu_run.run_id))
            assert [run.run_id for run in polls] == [dify_run.run_id, chenyu_run.run_id]
        after = emulator.state.stats()
        async with shared_async_client() as inner:
            assert inner is client
        assert not client.closed
        # Another event loop gets its own client.
        other = await asyncio.to_thread(asyncio.run, _client_of_a_new_loop())
        assert other is not client
    # 20 polls of two hooks kept their connections alive: at most one new connection per concurrent poll.
    assert sum(after["requests"].values()) - sum(before["requests"].values()) == 20
    assert after["connections"] - before["connections"] <= 2
    # The last holder left: the client closed, and the next call opens a fresh one.
    assert client.closed
    assert (await dify.aget_run(dify_run.run_id)).run_id == dify_run.run_id


async def _client_of_a_new_loop() -> Any:
    async with shared_async_client() as client:
        return client


# ---------------------------------------------------------------------------------- 8. test_connection
@pytest.mark.parametrize("platform", PLATFORMS)
def test_test_connection(
    make_hook: Callable[..., WorkflowRunHook],
    emulator: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
    platform: str,
) -> None:
    ok, message = make_hook(platform).test_connection()
    assert ok
    assert emulator.base_url(platform) in message

    ok, message = make_hook(
        add_bad_connection(monkeypatch, emulator, platform, password=WRONG_KEY)
    ).test_connection()
    assert not ok
    assert "rejected" in message
    assert WRONG_KEY not in message
    assert emulator.api_key not in message


@pytest.mark.parametrize(
    "platform", [name for name in PLATFORMS if not adapter_classes()[name].takes_workflow]
)
def test_a_workflow_document_is_refused_where_the_platform_runs_stored_workflows(
    make_hook, emulator, platform
):
    hook = make_hook(platform)
    with pytest.raises(InvalidInputError, match="workflow document cannot be passed"):
        hook.submit_run({"query": "x"}, workflow_id=WORKFLOW_IDS[platform], workflow={"1": {}})
    assert emulator.state.stats()["submissions"][platform] == 0


def test_an_empty_workflow_is_no_workflow(make_hook, emulator):
    run = make_hook("dify").submit_run({"query": "x"}, workflow="")
    assert emulator.state.stats()["submissions"]["dify"] == 1
    assert run.platform == "dify"
