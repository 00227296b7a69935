"""
The browser tier: the Airflow UI's add-connection form, opened in headless Chromium.

Airflow's API server (which serves the UI) runs as in the live tier (``tests/live/live_airflow.py``): its
own ``AIRFLOW_HOME``, SQLite, SimpleAuthManager with everyone an admin, a free loopback port. Playwright
drives Debian's ``chromium`` (``make install-ui``): it cannot download a browser of its own here.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from live.live_airflow import LiveAirflow, wait_for

from airflow_provider_wfrun.emulator import EmulatorServer

CHROMIUM = os.environ.get("WFRUN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Screenshots for the README.
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "img"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/ui/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.ui)


@pytest.fixture(scope="session")
def airflow_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveAirflow]:
    """Airflow's API server alone: the UI needs neither scheduler nor DAGs."""
    with EmulatorServer() as emulator:
        airflow = LiveAirflow(tmp_path_factory.mktemp("airflow-ui"), emulator)
        airflow.migrate()
        airflow.start_component("api-server")
        try:
            wait_for(
                "the API server",
                lambda: (
                    airflow.check_alive()
                    or airflow.api("GET", "/api/v2/version", check=False).status_code == 200
                ),
                timeout=240,
                on_fail=airflow.hint(),
            )
            yield airflow
        finally:
            airflow.kill_component("api-server")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not shutil.which(CHROMIUM):
        pytest.fail(f"no Chromium at {CHROMIUM}: run `make install-ui` (Debian's chromium package)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(90_000)  # generous: CI shares 2 cores with Airflow
    try:
        yield context.new_page()
    finally:
        context.close()
