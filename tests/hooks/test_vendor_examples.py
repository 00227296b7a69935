"""
The vendors' own example payloads, served over real HTTP, come out of ``get_run`` normalized exactly.

A small loopback server answers with the documented examples byte for byte (the emulator generates its
own payloads); the expected normalization is the one ``tests/unit/test_adapters.py`` pins field by field.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from airflow_provider_wfrun.exceptions import AuthenticationError, RunNotFoundError
from airflow_provider_wfrun.hooks.workflow_run import WorkflowRunHook
from airflow_provider_wfrun.models import RunStatus, WorkflowRun
from airflow_provider_wfrun.platforms import get_adapter

FIXTURES = Path(__file__).parent.parent / "fixtures"
KEY = "sk-vendor-example-key"

#: (method, path) -> (HTTP status, fixture file)
ROUTES = {
    ("GET", "/chenyu/workflow/run/execution?run_order_id=wfrun_314ff7d8b7a5beff1388"): (
        200,
        "chenyu/execution_succeeded.json",
    ),
    ("GET", "/chenyu/workflow/run/info?run_order_id=wfrun_314ff7d8b7a5beff1388"): (
        200,
        "chenyu/info_succeeded.json",
    ),
    ("GET", "/chenyu/workflow/run/execution?run_order_id=wfrun_missing"): (
        200,
        "chenyu/execution_not_found.json",
    ),
    ("GET", "/dify/workflows/run/fb47b2e6-5e43-4f90-be01-d5c5a088d156"): (
        200,
        "dify/run_detail_service_api.json",
    ),
    ("GET", "/dify/workflows/run/00000000-0000-0000-0000-000000000000"): (404, "dify/error_not_found.json"),
    ("POST", "/gptbots/workflow/query/result"): (200, "gptbots/query_result_succeed.json"),
}


class VendorExamples(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        if self.headers.get("Authorization") != f"Bearer {KEY}":
            self._send(401, "dify/error_unauthorized.json")
            return
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        status, name = ROUTES.get((self.command, self.path), (404, "dify/error_not_found.json"))
        self._send(status, name)

    def _send(self, status: int, name: str) -> None:
        body = (FIXTURES / name).read_bytes()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def vendor_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), VendorExamples)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def hook_for(vendor_server, monkeypatch):
    def make(platform: str, key: str = KEY) -> WorkflowRunHook:
        conn = {"conn_type": platform, "host": f"{vendor_server}/{platform}", "password": key}
        monkeypatch.setenv(f"AIRFLOW_CONN_VENDOR_{platform.upper()}", json.dumps(conn))
        return WorkflowRunHook(f"vendor_{platform}", retry_limit=1)

    return make


def fixture(name: str) -> object:
    return json.loads((FIXTURES / name).read_text())


def pinned(
    url: str, name: str, run_id: str, settlement: str | None = None, run_url: str | None = None
) -> WorkflowRun:
    """
    What the adapter tests pin for this example, field by field (the exact normalization), with the
    ``run_url`` the hook adds to a terminal run: the status's API address when no template is set.
    """
    platform = name.split("/")[0]
    adapter = get_adapter(platform)
    run = adapter.parse_run(fixture(name), run_id=run_id)
    run = adapter.apply_settlement(run, fixture(settlement)) if settlement else run
    return run.model_copy(update={"run_url": run_url or adapter.get_request(run_id).url(f"{url}/{platform}")})


def test_chenyu_examples_through_get_run(hook_for, vendor_server):
    run = hook_for("chenyu").get_run("wfrun_314ff7d8b7a5beff1388")
    expected = pinned(
        vendor_server,
        "chenyu/execution_succeeded.json",
        "wfrun_314ff7d8b7a5beff1388",
        "chenyu/info_succeeded.json",
    )
    assert run == expected
    assert run.status is RunStatus.SUCCEEDED
    assert str(run.cost.total) == "0.00028780"
    assert run.settlement is not None
    assert str(run.settlement.released) == "0.02971220"
    assert run.run_url == (
        f"{vendor_server}/chenyu/workflow/run/execution?run_order_id=wfrun_314ff7d8b7a5beff1388"
    )


def test_dify_example_through_get_run(hook_for, vendor_server):
    run = hook_for("dify").get_run("fb47b2e6-5e43-4f90-be01-d5c5a088d156")
    expected = pinned(
        vendor_server, "dify/run_detail_service_api.json", "fb47b2e6-5e43-4f90-be01-d5c5a088d156"
    )
    assert run == expected
    assert (run.outputs, run.cost.tokens, run.duration_seconds) == (
        {"result": "Traduisez ceci en francais"},
        150,
        1.23,
    )


def test_gptbots_example_through_get_run(hook_for, vendor_server):
    run = hook_for("gptbots").get_run("xxxxxxxx")
    # GPTBots polls with a POST, so the run's link carries the run id in its query.
    link = f"{vendor_server}/gptbots/workflow/query/result?workflowRunId=xxxxxxxx"
    expected = pinned(vendor_server, "gptbots/query_result_succeed.json", "xxxxxxxx", run_url=link)
    assert run == expected
    assert (str(run.cost.total), run.cost.currency, run.duration_seconds) == ("0.6928", "credits", 8.347)


def test_vendor_error_examples_through_get_run(hook_for):
    with pytest.raises(RunNotFoundError, match=r"\[chenyu run wfrun_missing\] not found: Task not found"):
        hook_for("chenyu").get_run("wfrun_missing")
    with pytest.raises(RunNotFoundError, match=r"Workflow run not found\."):
        hook_for("dify").get_run("00000000-0000-0000-0000-000000000000")
    with pytest.raises(AuthenticationError, match="Access token is invalid"):
        hook_for("dify", key="wrong").get_run("fb47b2e6-5e43-4f90-be01-d5c5a088d156")
