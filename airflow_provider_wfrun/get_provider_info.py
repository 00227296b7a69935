"""
Provider metadata for Airflow's ProvidersManager (the ``apache_airflow_provider`` entry point).

Airflow calls this while it is still initializing its configuration, so it must not import anything
that imports Airflow: the connection types are read from the adapter modules' source (their literal
class attributes) rather than by importing them. The adapters stay the one place a platform is
described; ``tests/unit/test_provider_info.py`` checks this reading against the imported classes.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from airflow_provider_wfrun import __version__
from airflow_provider_wfrun.connection_form import connection_form

_INTEGRATION = "AI workflow platforms"
_PACKAGE = "airflow_provider_wfrun"
_PLATFORMS_DIR = Path(__file__).parent / "platforms"
_ADAPTER_FIELDS = ("name", "display_name", "default_host", "extra_fields", "requires_api_key")


def _adapter_declarations() -> list[dict[str, Any]]:
    """The literal attributes of every ``...Adapter`` class in ``platforms/``, without importing it."""
    adapters = []
    for path in sorted(_PLATFORMS_DIR.glob("*.py")):
        if path.stem in ("__init__", "base"):
            continue
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef) and node.name.endswith("Adapter"):
                fields: dict[str, Any] = {"class_name": node.name}
                for statement in node.body:
                    target, value = _assignment(statement)
                    if target in _ADAPTER_FIELDS and value is not None:
                        fields[target] = ast.literal_eval(value)
                adapters.append(fields)
    return adapters


def _assignment(statement: ast.stmt) -> tuple[str | None, ast.expr | None]:
    if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
        target = statement.targets[0]
        return (target.id if isinstance(target, ast.Name) else None), statement.value
    if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
        return statement.target.id, statement.value
    return None, None


def _connection_type(adapter: dict[str, Any]) -> dict[str, Any]:
    form = connection_form(
        adapter["name"],
        adapter["display_name"],
        adapter["default_host"],
        adapter.get("extra_fields", {}),
        adapter.get("requires_api_key", True),
    )
    hook_class = f"{adapter['class_name'].removesuffix('Adapter')}Hook"
    return {
        "hook-class-name": f"{_PACKAGE}.hooks.workflow_run.{hook_class}",
        "hook-name": adapter["display_name"],
        "connection-type": adapter["name"],
        **form.provider_info(),
    }


def _modules(layer: str) -> list[dict[str, Any]]:
    return [{"integration-name": _INTEGRATION, "python-modules": [f"{_PACKAGE}.{layer}.workflow_run"]}]


def get_provider_info() -> dict[str, Any]:
    adapters = _adapter_declarations()
    names = [adapter["display_name"] for adapter in adapters]
    listed = ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else "".join(names)
    return {
        "package-name": "airflow-provider-wfrun",
        "name": f"AI workflow runs ({', '.join(names)})",
        "description": f"Run {listed} workflows as Airflow tasks.",
        "versions": [__version__],
        "integrations": [{"integration-name": _INTEGRATION, "tags": ["ai"]}],
        "hooks": _modules("hooks"),
        "triggers": _modules("triggers"),
        "sensors": _modules("sensors"),
        "operators": _modules("operators"),
        "connection-types": [_connection_type(adapter) for adapter in adapters],
        "extra-links": [f"{_PACKAGE}.operators.workflow_run.WorkflowRunLink"],
    }
