"""
The tolerant reading over real HTTP, on the sync and the async path: realistic variants of the documented
payloads, billing that fails after a finished run, chenyu's engine being unavailable, and chenyu times
without an offset.

A small loopback server answers whatever body the test sets for a path (the emulator generates its own
payloads; these tests need the documented ones, varied).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_wfrun.emulator.variants import VARIANTS, vary
from airflow_provider_wfrun.exceptions import PlatformError
from airflow_provider_wfrun.hooks.workflow_run import WorkflowRunHook
from airflow_provider_wfrun.models import RunStatus, WorkflowRun

FIXTURES = Path(__file__).parent.parent / "fixtures"
KEY = "sk-variants-key"
CHENYU_RUN = "wfrun_314ff7d8b7a5beff1388"
DIFY_RUN = "fb47b2e6-5e43-4f90-be01-d5c5a088d156"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


class Answers:
    """What the server answers per path: a list of (status, body bytes); the last one repeats."""

    def __init__(self) -> None:
        self.by_path: dict[str, list[tuple[int, bytes]]] = {}
        self.requests: list[str] = []
        self.lock = threading.Lock()

    def set(self, path: str, *answers: tuple[int, Any]) -> None:
        with self.lock:
            self.by_path[path] = [
                (status, body if isinstance(body, bytes) else json.dumps(body).encode())
                for status, body in answers
            ]

    def next(self, path: str) -> tuple[int, bytes]:
        with self.lock:
            self.requests.append(path)
            queue = self.by_path.get(path) or [(404, b'{"code": "not_found", "message": "no such path"}')]
            return queue.pop(0) if len(queue) > 1 else queue[0]


ANSWERS = Answers()


class Handler(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, body = ANSWERS.next(self.path.split("?")[0])
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    names = []
    for platform in ("dify", "gptbots", "chenyu"):
        for suffix, extra in (("", {}), ("_shanghai", {"timezone": "Asia/Shanghai"})):
            name = f"AIRFLOW_CONN_VARIANTS_{platform.upper()}{suffix.upper()}"
            conn = {"conn_type": platform, "host": f"{url}/{platform}", "password": KEY, "extra": extra}
            os.environ[name] = json.dumps(conn)
            names.append(name)
    yield url
    for name in names:
        os.environ.pop(name, None)
    httpd.shutdown()
    httpd.server_close()


def hook(platform: str, suffix: str = "", **params: Any) -> WorkflowRunHook:
    return WorkflowRunHook(f"variants_{platform}{suffix}", **{"retry_limit": 1, "retry_delay": 0, **params})


def both_paths(platform: str, run_id: str, suffix: str = "", **params: Any) -> list[WorkflowRun]:
    """The run as ``get_run`` and as ``aget_run`` read it (each on a fresh hook)."""
    sync = hook(platform, suffix, **params).get_run(run_id)
    asynchronous = asyncio.run(hook(platform, suffix, **params).aget_run(run_id))
    return [sync, asynchronous]


POLLS = {
    "dify": (
        DIFY_RUN,
        f"/dify/workflows/run/{DIFY_RUN}",
        "dify/run_detail_service_api.json",
        ("id", "status"),
    ),
    "gptbots": (
        "xxxxxxxx",
        "/gptbots/workflow/query/result",
        "gptbots/query_result_succeed.json",
        ("workflowRunId", "status"),
    ),
    "chenyu": (CHENYU_RUN, "/chenyu/workflow/run/execution", "chenyu/execution_succeeded.json", ("status",)),
}


@pytest.mark.parametrize("platform", list(POLLS))
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.sets(st.sampled_from([*VARIANTS, "extra_fields"]), min_size=1), seed=st.integers(0, 2**32))
def test_realistic_variants_read_on_both_paths(server, platform, names, seed):
    run_id, path, name, essential = POLLS[platform]
    payload = fixture(name)
    if platform == "chenyu":
        payload["data"] = vary(payload["data"], names, essential=essential, seed=seed)
        ANSWERS.set("/chenyu/workflow/run/info", (200, fixture("chenyu/info_succeeded.json")))
    else:
        payload = vary(payload, names, essential=essential, seed=seed)
    ANSWERS.set(path, (200, payload))
    for run in both_paths(platform, run_id):
        assert (run.run_id, run.status, run.is_terminal) == (run_id, RunStatus.SUCCEEDED, True)
        assert run.run_url is not None
        json.dumps({k: v for k, v in run.result_dict().items() if k != "outputs"}, allow_nan=False)
        if platform == "chenyu":
            assert run.settlement is not None  # the billing answer was the documented one
            assert str(run.cost.total) == "0.00028780"


def test_the_issue_examples_read_on_both_paths(server):
    dify = fixture("dify/run_detail_service_api.json") | {
        "created_at": 1705407629.5,
        "error": {"message": "boom", "code": "E1"},
        "status": "failed",
    }
    ANSWERS.set(f"/dify/workflows/run/{DIFY_RUN}", (200, dify))
    for run in both_paths("dify", DIFY_RUN):
        assert (run.status, run.error.reason if run.error else None) == (RunStatus.FAILED, "boom")
        assert run.created_at == datetime(2024, 1, 16, 12, 20, 29, 500000, tzinfo=timezone.utc)

    gptbots = fixture("gptbots/query_result_succeed.json")
    gptbots |= {"workflowVersion": 101, "startTime": 1758765323024.5, "output": json.dumps(gptbots["output"])}
    ANSWERS.set("/gptbots/workflow/query/result", (200, gptbots))
    for run in both_paths("gptbots", "xxxxxxxx"):
        assert run.outputs == fixture("gptbots/query_result_succeed.json")["output"]
        assert run.started_at == datetime(2025, 9, 25, 1, 55, 23, 24500, tzinfo=timezone.utc)

    chenyu = fixture("chenyu/execution_succeeded.json")
    chenyu["data"]["logs"][0]["node_id"] = 9
    chenyu["data"] |= {"status": "failed", "error": "CUDA out of memory"}
    ANSWERS.set("/chenyu/workflow/run/execution", (200, chenyu))
    ANSWERS.set("/chenyu/workflow/run/info", (200, fixture("chenyu/info_succeeded.json")))
    for run in both_paths("chenyu", CHENYU_RUN):
        assert (run.status, run.logs[0].node_id) == (RunStatus.FAILED, "9")
        assert run.error is not None
        assert run.error.reason == "CUDA out of memory"


BROKEN_BILLING = {
    "http-500": (500, {"code": 500, "msg": "服务器内部错误", "data": None}),
    "truncated": (200, json.dumps(fixture("chenyu/info_succeeded.json")).encode()[:90]),
    "empty-amounts": (
        200,
        {
            "code": 0,
            "msg": "ok",
            "data": fixture("chenyu/info_succeeded.json")["data"] | {"final_amount": ""},
        },
    ),
    "not-an-envelope": (200, ["unexpected"]),
}


@pytest.mark.parametrize("answer", list(BROKEN_BILLING))
def test_billing_that_fails_leaves_a_succeeded_run_succeeded(server, caplog, capsys, answer):
    ANSWERS.set("/chenyu/workflow/run/execution", (200, fixture("chenyu/execution_succeeded.json")))
    ANSWERS.set("/chenyu/workflow/run/info", BROKEN_BILLING[answer])
    with caplog.at_level(logging.WARNING):
        runs = both_paths("chenyu", CHENYU_RUN)
    for run in runs:
        assert (run.status, run.settlement, run.outputs) == (
            RunStatus.SUCCEEDED,
            None,
            {"n9_images": "https://www.chenyu.cn/media/example-output"},
        )
        assert (run.cost.total, run.cost.currency) == (Decimal("0.0002878"), "CNY")  # the execution's
        assert run.result_dict()["settlement"] is None
    # The hook logs through Airflow's logging (stdout under structlog, records otherwise): read both.
    logged = capsys.readouterr().out + "\n".join(record.getMessage() for record in caplog.records)
    why = f"chenyu.cn run {CHENYU_RUN} is succeeded, but /workflow/run/info failed, so the run is reported"
    assert logged.count(why) == 2  # once per path


def test_engine_unavailable_is_retried_like_a_503(server):
    engine = fixture("chenyu/error_engine.json")
    ANSWERS.set("/chenyu/workflow/run/info", (200, fixture("chenyu/info_succeeded.json")))
    for attempt in ("sync", "async"):
        ANSWERS.set(
            "/chenyu/workflow/run/execution", (200, engine), (200, fixture("chenyu/execution_succeeded.json"))
        )
        ANSWERS.requests.clear()
        params = {"retry_limit": 3}
        run = (
            hook("chenyu", **params).get_run(CHENYU_RUN)
            if attempt == "sync"
            else asyncio.run(hook("chenyu", **params).aget_run(CHENYU_RUN))
        )
        assert run.status is RunStatus.SUCCEEDED
        assert ANSWERS.requests.count("/chenyu/workflow/run/execution") == 2
    ANSWERS.set("/chenyu/workflow/run/execution", (200, fixture("chenyu/error_insufficient_balance.json")))
    ANSWERS.requests.clear()
    with pytest.raises(PlatformError) as raised:
        hook("chenyu", retry_limit=3).get_run(CHENYU_RUN)
    assert (raised.value.code, raised.value.is_transient) == ("1001", False)
    assert ANSWERS.requests.count("/chenyu/workflow/run/execution") == 1  # a business error: not retried


def test_chenyu_times_without_offset_are_utc_unless_the_connection_says_otherwise(server):
    execution = fixture("chenyu/execution_succeeded.json")
    execution["data"] |= {"started_at": "2026-05-08T18:00:01", "terminal_at": "2026-05-08T18:00:10+08:00"}
    ANSWERS.set("/chenyu/workflow/run/execution", (200, execution))
    ANSWERS.set("/chenyu/workflow/run/info", (200, fixture("chenyu/info_succeeded.json")))
    for run in both_paths("chenyu", CHENYU_RUN):
        assert run.started_at == datetime(2026, 5, 8, 18, 0, 1, tzinfo=timezone.utc)
        assert run.finished_at == datetime(2026, 5, 8, 10, 0, 10, tzinfo=timezone.utc)  # the offset honoured
    for run in both_paths("chenyu", CHENYU_RUN, suffix="_shanghai"):
        assert run.started_at == datetime(2026, 5, 8, 10, 0, 1, tzinfo=timezone.utc)
        assert run.finished_at == datetime(2026, 5, 8, 10, 0, 10, tzinfo=timezone.utc)
