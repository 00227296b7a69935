"""Registration with Airflow: the provider info, its connection types and hooks, and import safety."""

from __future__ import annotations

import subprocess
import sys

import pytest

from airflow_provider_wfrun.connection_form import COMMON_EXTRA_FIELDS, form_of
from airflow_provider_wfrun.get_provider_info import get_provider_info
from airflow_provider_wfrun.hooks.workflow_run import PLATFORM_HOOKS
from airflow_provider_wfrun.platforms import adapter_classes


@pytest.mark.parametrize(
    "module",
    [
        "airflow_provider_wfrun.exceptions",
        "airflow_provider_wfrun.models",
        "airflow_provider_wfrun.platforms",
        "airflow_provider_wfrun.hooks.workflow_run",
        "airflow_provider_wfrun.operators.workflow_run",
    ],
)
def test_any_module_can_be_the_first_import(module):
    """Airflow runs get_provider_info while initializing; that must not loop back into our modules."""
    result = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_task_process_that_runs_the_operator_does_not_import_aiohttp():
    """The worker's task process uses the sync path only: aiohttp (the triggerer's client) stays unloaded."""
    code = (
        "import sys\n"
        "from airflow_provider_wfrun.operators.workflow_run import RunWorkflowOperator\n"
        "from airflow_provider_wfrun.sensors.workflow_run import WorkflowRunSensor\n"
        "from airflow_provider_wfrun.triggers.workflow_run import WorkflowRunTrigger\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'aiohttp'))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def test_connection_types_are_read_from_the_adapters_as_they_are():
    declared = {item["connection-type"]: item for item in get_provider_info()["connection-types"]}
    assert list(declared) == list(adapter_classes())
    for conn_type, adapter in adapter_classes().items():
        item = declared[conn_type]
        assert item["hook-name"] == adapter.display_name
        assert item["ui-field-behaviour"]["placeholders"]["host"] == adapter.default_host
        assert item["ui-field-behaviour"]["relabeling"]["password"] == form_of(adapter).password_label
        assert set(item["conn-fields"]) == {*adapter.extra_fields, *COMMON_EXTRA_FIELDS}
        hook_class = PLATFORM_HOOKS[conn_type]
        assert item["hook-class-name"] == f"{hook_class.__module__}.{hook_class.__name__}"
        assert hook_class.conn_type == conn_type


def test_airflow_registers_the_hooks_and_the_extra_link():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-provider-wfrun" in manager.providers
    for conn_type in adapter_classes():
        assert manager.hooks[conn_type].hook_class_name.endswith("Hook")
    assert "airflow_provider_wfrun.operators.workflow_run.WorkflowRunLink" in manager.extra_links_class_names


def _hook_meta() -> dict[str, object]:
    """What the UI's ``/ui/connections/hook_meta`` serves, from the installed Airflow's own service."""
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    return {meta.connection_type: meta for meta in HookMetaService.hook_meta_data()}


@pytest.mark.parametrize("conn_type", list(adapter_classes()))
def test_airflow_serves_the_connection_form_with_labels_and_kinds(conn_type):
    """Airflow 3.1 reads the hook class's methods, 3.2+ the provider info: the UI gets the same form."""
    meta = _hook_meta()[conn_type]
    adapter = adapter_classes()[conn_type]
    standard = meta.standard_fields
    assert standard.host.title == "API root URL"
    assert standard.host.placeholder == adapter.default_host
    if adapter.requires_api_key:
        assert standard.password.title == "API key"
        assert standard.password.placeholder == f"{adapter.display_name} API key"
    else:  # a server that may run without one (ComfyUI): the form says the key is optional
        assert standard.password.title == "API key (optional)"
        assert standard.password.placeholder == f"{adapter.display_name} API key, if the server asks for one"
    for hidden in (standard.login, standard.port, standard.url_schema):
        assert hidden.hidden
    extras = meta.extra_fields
    assert set(extras) == {*adapter.extra_fields, *COMMON_EXTRA_FIELDS}
    assert {"run_url_template", "verify", "cert", "cert_key", "proxy", "trust_env"} <= set(extras)
    for name, spec in adapter.extra_fields.items():
        schema = extras[name]["schema"]
        assert schema["title"] == spec["label"]
        assert schema["type"][0] == ("boolean" if spec.get("kind") == "bool" else "string")
    assert extras["run_url_template"]["schema"]["title"] == "Run URL template"


def test_only_the_platforms_that_may_run_without_a_key_call_it_optional():
    optional = {
        conn_type
        for conn_type, hook_class in PLATFORM_HOOKS.items()
        if "optional" in hook_class.get_ui_field_behaviour()["relabeling"]["password"]
    }
    assert optional == {name for name, adapter in adapter_classes().items() if not adapter.requires_api_key}
    assert "comfyui" in optional


def test_each_platform_hook_carries_the_form_in_its_own_class_dict():
    """Airflow 3.1 looks the methods up in ``hook_class.__dict__``: inherited ones are ignored."""
    for conn_type, hook_class in PLATFORM_HOOKS.items():
        assert "get_ui_field_behaviour" in hook_class.__dict__
        assert "get_connection_form_widgets" in hook_class.__dict__
        placeholders = hook_class.get_ui_field_behaviour()["placeholders"]
        assert placeholders["host"] == adapter_classes()[conn_type].default_host
