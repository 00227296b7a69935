"""
The emulator answers what the platforms' documents say: unknown routes in each platform's own error
envelope, a canceled chenyu run released rather than charged, Dify's ``/parameters`` and
``/workflows/logs`` (driven with Dify's own Python SDK where it has the call), and the realistic variants
a scenario can ask for.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from dify_client import DifyClient

from airflow_provider_wfrun.emulator import EmulatorServer
from airflow_provider_wfrun.emulator.variants import EXTRA_FIELDS, VARIANTS

ENVELOPES = {
    "dify": {"status": 404, "code": "not_found", "message": "Not found."},
    "gptbots": {"code": 40400, "message": "Not found"},
    "chenyu": {"code": 404, "msg": "资源不存在", "data": None},
}


@pytest.fixture
def http(emulator: EmulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=emulator.url, headers={"Authorization": f"Bearer {emulator.api_key}"}, timeout=5
    ) as client:
        yield client


@pytest.mark.parametrize("platform", list(ENVELOPES))
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_unknown_routes_answer_the_platforms_json_envelope(
    emulator: EmulatorServer, http: httpx.Client, platform: str, method: str
) -> None:
    response = http.request(method, f"{emulator.state.dialects[platform].root}/no/such/route")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == ENVELOPES[platform]
    assert emulator.state.stats()["requests"] == {f"{platform}.unknown": 1}


def test_canceled_chenyu_run_releases_the_whole_quote(emulator: EmulatorServer, http: httpx.Client) -> None:
    root = emulator.state.dialects["chenyu"].root
    body = {
        "workflow_id": "wf_1",
        "idempotency_key": "k",
        "inputs": {"_emulator": {"queue_seconds": 0, "duration_seconds": 5}},
    }
    run_id = http.post(f"{root}/workflow/run/submit", json=body).json()["data"]["run_order_id"]
    time.sleep(0.05)  # running: a canceled run that had started must not be charged either
    assert emulator.state.cancel(run_id)
    info = http.get(f"{root}/workflow/run/info", params={"run_order_id": run_id}).json()["data"]
    assert (info["run_status"], info["settlement_status"], info["freeze_status"]) == (
        "canceled",
        "released",
        "released",
    )
    assert (info["final_amount"], info["total_cost"], info["released_amount"]) == (
        "0.00000000",
        "0.00000000",
        info["quote_amount"],
    )
    execution = http.get(f"{root}/workflow/run/execution", params={"run_order_id": run_id}).json()["data"]
    assert (execution["status"], execution["total_cost"]) == ("canceled", 0)


def test_dify_sdk_reads_the_declared_inputs(emulator: EmulatorServer) -> None:
    """Dify's own SDK (dify-client on PyPI), unchanged but for its documented base URL attribute."""
    emulator.state.set_scenario("*", {"declared_inputs": ["city", "topic"]})
    client = DifyClient(emulator.api_key)
    client.base_url = emulator.base_url("dify")
    response = client.get_application_parameters(user="etl-bot")
    assert response.status_code == 200
    parameters = response.json()
    assert parameters["user_input_form"] == [
        {"text-input": {"label": "city", "variable": "city", "required": True, "default": ""}},
        {"text-input": {"label": "topic", "variable": "topic", "required": True, "default": ""}},
    ]
    assert parameters["system_parameters"]["file_size_limit"] == 15
    wrong_key = DifyClient("not-the-key")
    wrong_key.base_url = client.base_url
    rejected = wrong_key.get_application_parameters(user="etl-bot")
    assert (rejected.status_code, rejected.json()["code"]) == (401, "unauthorized")


def _dify_runs(http: httpx.Client, root: str, count: int, **scenario: object) -> list[str]:
    ids = []
    for number in range(count):
        body = {
            "inputs": {"n": number, "_emulator": {"duration_seconds": 0, **scenario}},
            "user": f"user-{number % 2}",
            "response_mode": "blocking",
        }
        ids.append(http.post(f"{root}/workflows/run", json=body).json()["workflow_run_id"])
        time.sleep(0.002)  # distinct creation instants for the ordering
    return ids


def test_dify_workflow_logs_filters_and_pages(emulator: EmulatorServer, http: httpx.Client) -> None:
    """The documented wire format (the PyPI SDK, 0.1.10, has no call for this route)."""
    root = emulator.state.dialects["dify"].root
    succeeded = _dify_runs(http, root, 5)
    failed = _dify_runs(http, root, 1, outcome="failed")
    page = http.get(f"{root}/workflows/logs", params={"limit": 2}).json()
    assert (page["page"], page["limit"], page["total"], page["has_more"]) == (1, 2, 6, True)
    assert [entry["workflow_run"]["id"] for entry in page["data"]] == [failed[0], succeeded[4]]
    last = http.get(f"{root}/workflows/logs", params={"limit": 2, "page": 3}).json()
    assert ([entry["workflow_run"]["id"] for entry in last["data"]], last["has_more"]) == (
        [succeeded[1], succeeded[0]],
        False,
    )
    only_failed = http.get(f"{root}/workflows/logs", params={"status": "failed"}).json()
    assert [entry["workflow_run"]["status"] for entry in only_failed["data"]] == ["failed"]
    user_1 = http.get(f"{root}/workflows/logs", params={"created_by_end_user_session_id": "user-1"}).json()
    assert user_1["total"] == 2  # runs 1 and 3 of the five; the failed run was user-0's
    assert {entry["created_by_end_user"]["session_id"] for entry in user_1["data"]} == {"user-1"}
    after = http.get(f"{root}/workflows/logs", params={"created_at__after": "2999-01-01T00:00:00Z"}).json()
    assert (after["total"], after["data"]) == (0, [])
    entry = page["data"][1]
    assert set(entry) == {
        "id",
        "workflow_run",
        "created_from",
        "created_by_role",
        "created_by_account",
        "created_by_end_user",
        "created_at",
    }
    assert entry["workflow_run"]["total_tokens"] == 150
    for bad in ({"status": "running"}, {"limit": 0}, {"page": "x"}, {"created_at__before": "yesterday"}):
        answer = http.get(f"{root}/workflows/logs", params=bad)
        assert (answer.status_code, answer.json()["code"]) == (400, "invalid_param")


def test_variants_scenario_changes_types_but_never_id_or_status(
    emulator: EmulatorServer, http: httpx.Client
) -> None:
    root = emulator.state.dialects["gptbots"].root
    plain = {"input": {"_emulator": {"duration_seconds": 0}}}
    varied = {
        "input": {"_emulator": {"duration_seconds": 0, "variants": ["numbers_as_strings", "extra_fields"]}}
    }
    normal = http.post(f"{root}/workflow/invoke", json=plain).json()
    odd = http.post(f"{root}/workflow/invoke", json=varied).json()
    assert (odd["status"], type(odd["workflowRunId"])) == ("SUCCEED", str)
    assert odd["totalTokens"] == str(normal["totalTokens"])
    assert odd["x_new_field"] == EXTRA_FIELDS["x_new_field"]
    unknown = http.post(f"{root}/workflow/invoke", json={"input": {"_emulator": {"variants": ["sideways"]}}})
    assert unknown.status_code == 400
    assert "unknown variants ['sideways']" in unknown.json()["message"]
    everything = emulator.state.set_scenario("*", {"variants": ["all"]})
    assert set(everything.variants) == {*VARIANTS, "extra_fields"}
