"""Each connection type's add-connection form, as a person sees it in the Airflow UI."""

from __future__ import annotations

import json
from typing import Any

import pytest
from ui.conftest import SCREENSHOTS

from airflow_provider_wfrun.connection_form import HIDDEN_FIELDS, form_of
from airflow_provider_wfrun.platforms import adapter_classes, get_adapter


def open_form(page: Any, base_url: str, display_name: str) -> Any:
    """The add-connection dialog with a connection type chosen; returns the dialog."""
    page.goto(f"{base_url}/connections", wait_until="networkidle")
    page.get_by_role("button", name="Add Connection").click()
    page.get_by_role("combobox", name="Connection Type").fill(display_name)
    page.get_by_role("option", name=display_name, exact=True).click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("API root URL", exact=True).wait_for()
    return dialog


def extra_row(page: Any, dialog: Any, label: str) -> Any:
    """One extra field's row, found by its visible label (the UI does not tie the label to the input)."""
    return dialog.locator("div[role=group]").filter(has=page.get_by_text(label, exact=True))


@pytest.mark.parametrize("conn_type", list(adapter_classes()))
def test_the_form_has_labels_placeholders_and_only_the_fields_used(airflow_ui, page, conn_type):
    adapter = adapter_classes()[conn_type]
    form = form_of(adapter)
    dialog = open_form(page, airflow_ui.base_url, adapter.display_name)

    host = dialog.get_by_label("API root URL", exact=True)
    assert host.get_attribute("placeholder") == adapter.default_host
    key = dialog.get_by_label(form.password_label, exact=True)
    assert key.get_attribute("placeholder") == form.password_placeholder
    assert ("optional" in form.password_label) == (not adapter.requires_api_key)
    assert key.get_attribute("type") == "password"
    for hidden in ("Login", "Port", "Schema"):
        assert dialog.get_by_label(hidden, exact=True).count() == 0, f"{hidden} shown ({HIDDEN_FIELDS})"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    dialog.screenshot(path=SCREENSHOTS / f"connection-form-{conn_type}.png")

    dialog.get_by_role("button", name="Extra Fields", exact=True).click()
    for field in form.extras:
        row = extra_row(page, dialog, field.label)
        control = row.locator(f'input[name="element_{field.name}"]')
        control.wait_for(state="attached")
        assert (control.get_attribute("type") or "text") == ("checkbox" if field.kind == "bool" else "text")
        assert row.get_by_text(field.description, exact=True).is_visible()
    dialog.screenshot(path=SCREENSHOTS / f"connection-form-{conn_type}-extra.png")


def test_a_connection_saved_from_the_form_is_what_the_adapter_reads(airflow_ui, page):
    """The chenyu checkbox saves a JSON boolean the adapter accepts; ids and URLs are saved as strings."""
    dialog = open_form(page, airflow_ui.base_url, "chenyu.cn")
    dialog.get_by_label("Connection ID").fill("wfrun_ui_chenyu")
    dialog.get_by_label("API root URL", exact=True).fill("https://www.chenyu.cn/api/open/v2")
    dialog.get_by_label("API key", exact=True).fill("cy_form_key")
    dialog.get_by_role("button", name="Extra Fields", exact=True).click()
    extra_row(page, dialog, "Accept external model costs").locator("label[data-part=root]").click()
    run_url = extra_row(page, dialog, "Run URL template").locator('input[name="element_run_url_template"]')
    run_url.fill("https://www.chenyu.cn/runs/{run_id}")
    dialog.get_by_role("button", name="Save").click()
    dialog.wait_for(state="hidden")

    saved = airflow_ui.api("GET", "/api/v2/connections/wfrun_ui_chenyu").json()
    assert saved["conn_type"] == "chenyu"
    assert saved["host"] == "https://www.chenyu.cn/api/open/v2"
    extra = json.loads(saved["extra"])
    assert extra["accept_external_cost_risk"] is True
    adapter = get_adapter("chenyu", extra)
    body = adapter.submit_request({}, workflow_id="wf_861ef31e94dcfb10e6e7", idempotency_key="k").json
    assert body is not None
    assert body["accept_external_cost_risk"] is True
    assert adapter.run_url("wfrun_1", base_url=saved["host"]) == "https://www.chenyu.cn/runs/wfrun_1"
