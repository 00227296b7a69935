"""Provider metadata for Airflow's ProvidersManager (the ``apache_airflow_provider`` entry point)."""

from __future__ import annotations

from typing import Any

from airflow_provider_wfrun import __version__

_INTEGRATION = "AI workflow platforms"
_PACKAGE = "airflow_provider_wfrun"


def _connection_type(adapter_class: Any) -> dict[str, Any]:
    fields = {
        name: {"label": name, "description": text, "schema": {"type": ["string", "boolean", "null"]}}
        for name, text in adapter_class.extra_fields.items()
    }
    fields["run_url_template"] = {
        "label": "Run URL template",
        "description": "Link shown on the task, with {run_id} and {workflow_id} (default: the run's API URL)",
        "schema": {"type": ["string", "null"]},
    }
    hook_class = f"{adapter_class.__name__.removesuffix('Adapter')}Hook"
    return {
        "hook-class-name": f"{_PACKAGE}.hooks.workflow_run.{hook_class}",
        "hook-name": adapter_class.display_name,
        "connection-type": adapter_class.name,
        "ui-field-behaviour": {
            "hidden-fields": ["schema", "port", "login"],
            "relabeling": {"host": "API root URL", "password": "API key"},
            "placeholders": {"host": adapter_class.default_host},
        },
        "conn-fields": fields,
    }


def _modules(layer: str) -> list[dict[str, Any]]:
    return [{"integration-name": _INTEGRATION, "python-modules": [f"{_PACKAGE}.{layer}.workflow_run"]}]


def get_provider_info() -> dict[str, Any]:
    from airflow_provider_wfrun.platforms import adapter_classes

    return {
        "package-name": "airflow-provider-wfrun",
        "name": "AI workflow runs (Dify, GPTBots, chenyu.cn)",
        "description": "Run Dify, GPTBots and chenyu.cn workflows as Airflow tasks.",
        "versions": [__version__],
        "integrations": [{"integration-name": _INTEGRATION, "tags": ["ai"]}],
        "hooks": _modules("hooks"),
        "triggers": _modules("triggers"),
        "sensors": _modules("sensors"),
        "operators": _modules("operators"),
        "connection-types": [_connection_type(cls) for cls in adapter_classes().values()],
        "extra-links": [f"{_PACKAGE}.operators.workflow_run.WorkflowRunLink"],
    }
