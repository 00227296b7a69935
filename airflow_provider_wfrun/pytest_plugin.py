"""
A pytest plugin for testing your own DAGs against the emulator, loaded through the ``pytest11`` entry point.

* ``wfrun_emulator`` (session): the emulator of every platform on a free loopback port, reset before each
  test that uses it. Script runs with ``wfrun_emulator.state.set_scenario(...)`` or inject faults.
* ``wfrun_connections``: ``AIRFLOW_CONN_WFRUN_<PLATFORM>`` variables pointing at it for the test's
  duration (``wfrun_dify``, ``wfrun_gptbots``, ``wfrun_chenyu``); returns platform -> connection id.
  Name your own ids with ``--wfrun-conn-prefix`` (default ``wfrun_``).

The emulator is imported only when a fixture is used, so a project that has the provider installed without
its ``emulator`` extra still starts pytest, and nothing here imports Airflow before your conftest
configures it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from airflow_provider_wfrun.emulator import EmulatorServer

#: The key the emulator accepts; deliberately not a real platform's key format.
EMULATOR_API_KEY = "wfrun-emulator-key"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("wfrun", "airflow-provider-wfrun emulator")
    group.addoption(
        "--wfrun-conn-prefix",
        default="wfrun_",
        help="prefix of the connection ids the wfrun_connections fixture sets (default: wfrun_)",
    )


@pytest.fixture(scope="session")
def wfrun_emulator_server() -> Iterator[EmulatorServer]:
    """One emulator for the session, on a free port of 127.0.0.1."""
    try:
        from airflow_provider_wfrun.emulator import EmulatorServer
    except ImportError as exc:  # starlette/uvicorn missing
        pytest.fail(
            f"the wfrun emulator needs its extra: pip install 'airflow-provider-wfrun[emulator]' ({exc})",
            pytrace=False,
        )
    with EmulatorServer(api_key=EMULATOR_API_KEY) as server:
        yield server


@pytest.fixture
def wfrun_emulator(wfrun_emulator_server: EmulatorServer) -> Iterator[EmulatorServer]:
    """The session's emulator with no runs, scenarios or faults left from another test."""
    wfrun_emulator_server.state.reset()
    yield wfrun_emulator_server
    wfrun_emulator_server.state.reset()


@pytest.fixture
def wfrun_connections(
    wfrun_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> dict[str, str]:
    """Connections to the emulator, one per platform, as ``AIRFLOW_CONN_*`` variables; platform -> conn id."""
    prefix = request.config.getoption("--wfrun-conn-prefix")
    conn_ids = {}
    for platform in sorted(wfrun_emulator.state.dialects):
        conn_id = f"{prefix}{platform}"
        connection = {
            "conn_type": platform,
            "host": wfrun_emulator.base_url(platform),
            "password": wfrun_emulator.api_key,
        }
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection))
        conn_ids[platform] = conn_id
    return conn_ids
