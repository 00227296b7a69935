"""
The add-connection form of every platform, in the two shapes Airflow reads.

Airflow 3.2+ reads the form from provider info (``conn-fields`` and ``ui-field-behaviour``); Airflow 3.1
reads only the hook class's own ``get_connection_form_widgets()`` and ``get_ui_field_behaviour()``
(looked up in ``hook_class.__dict__``, so each per-platform hook class carries them itself). Both are
derived here from an adapter's declared attributes, so a platform is described once, in its adapter.

Pure: no Airflow import, because ``get_provider_info`` runs while Airflow is still starting and passes
the adapters' attributes read from source. Only :func:`wtforms_widgets` imports ``wtforms``, when 3.1
asks for widgets (3.1 builds no form at all without it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

#: What an adapter may declare per extra field instead of a plain description.
ExtraKind = Literal["str", "bool"]


class ExtraFieldSpec(TypedDict, total=False):
    label: str
    description: str
    kind: ExtraKind
    placeholder: str


#: Fields every connection type reads (the adapters' base class uses them).
COMMON_EXTRA_FIELDS: Mapping[str, ExtraFieldSpec] = {
    "run_url_template": {
        "label": "Run URL template",
        "description": "Link shown on the task, with {run_id} and {workflow_id} (default: the run's API URL)",
    },
    # How to reach the platform (hooks/connection.py reads them; the names the HTTP provider uses).
    "verify": {
        "label": "Verify TLS",
        "description": "true (default), false, or the path of a CA bundle (a private CA)",
        "placeholder": "true",
    },
    "cert": {"label": "Client certificate", "description": "Path of a PEM client certificate (mutual TLS)"},
    "cert_key": {"label": "Client certificate key", "description": "Path of the client certificate's key"},
    "proxy": {"label": "Proxy", "description": "An http:// or https:// proxy for this connection"},
    # Text, not a checkbox: it defaults to on, and an unticked box would save "off" for every connection.
    "trust_env": {
        "label": "Use environment proxies",
        "description": "true (default): honour HTTPS_PROXY, NO_PROXY, SSL_CERT_FILE...; false: ignore",
        "placeholder": "true",
    },
}
#: Standard fields the platforms do not use.
HIDDEN_FIELDS = ("schema", "port", "login")
HOST_LABEL = "API root URL"
PASSWORD_LABEL = "API key"  # noqa: S105 (a form label)
#: The key field of a platform whose server may run without one (ComfyUI).
OPTIONAL_PASSWORD_LABEL = "API key (optional)"  # noqa: S105 (a form label)


@dataclass(frozen=True)
class ExtraField:
    name: str
    label: str
    description: str
    kind: ExtraKind = "str"
    placeholder: str | None = None


@dataclass(frozen=True)
class ConnectionForm:
    """The form of one connection type."""

    conn_type: str
    display_name: str
    default_host: str
    extras: tuple[ExtraField, ...]
    #: False where the platform's server may run without a key: the form says the key is optional.
    requires_api_key: bool = True

    @property
    def password_label(self) -> str:
        return PASSWORD_LABEL if self.requires_api_key else OPTIONAL_PASSWORD_LABEL

    @property
    def password_placeholder(self) -> str:
        key = f"{self.display_name} API key"
        return key if self.requires_api_key else f"{key}, if the server asks for one"

    def ui_field_behaviour(self) -> dict[str, Any]:
        """Airflow 3.1's ``get_ui_field_behaviour()`` shape."""
        return {
            "hidden_fields": list(HIDDEN_FIELDS),
            "relabeling": {"host": HOST_LABEL, "password": self.password_label},
            "placeholders": {
                "host": self.default_host,
                "password": self.password_placeholder,
                **{field.name: field.placeholder for field in self.extras if field.placeholder},
            },
        }

    def provider_info(self) -> dict[str, Any]:
        """Airflow 3.2+'s ``ui-field-behaviour`` and ``conn-fields`` of a ``connection-types`` entry."""
        behaviour = self.ui_field_behaviour()
        return {
            "ui-field-behaviour": {
                "hidden-fields": behaviour["hidden_fields"],
                "relabeling": behaviour["relabeling"],
                "placeholders": behaviour["placeholders"],
            },
            "conn-fields": {
                field.name: {
                    "label": field.label,
                    "description": field.description,
                    "schema": _schema(field),
                }
                for field in self.extras
            },
        }

    def wtforms_widgets(self) -> dict[str, Any]:
        """Airflow 3.1's ``get_connection_form_widgets()``: unbound wtforms fields (which 3.1's API mocks)."""
        from wtforms import BooleanField, StringField

        return {
            field.name: (BooleanField if field.kind == "bool" else StringField)(
                field.label, description=field.description
            )
            for field in self.extras
        }

    def hook_methods(self) -> dict[str, classmethod[Any, Any, Any]]:
        """The two classmethods for a hook class's own ``__dict__``, where Airflow 3.1 looks them up."""
        return {
            "get_ui_field_behaviour": _classmethod(self.ui_field_behaviour),
            "get_connection_form_widgets": _classmethod(self.wtforms_widgets),
        }


def connection_form(
    conn_type: str,
    display_name: str,
    default_host: str,
    extra_fields: Mapping[str, str | ExtraFieldSpec],
    requires_api_key: bool = True,
) -> ConnectionForm:
    """
    The form for an adapter's ``name``, ``display_name``, ``default_host``, ``extra_fields`` and
    ``requires_api_key``.
    """
    declared = {**extra_fields, **COMMON_EXTRA_FIELDS}
    return ConnectionForm(
        conn_type=conn_type,
        display_name=display_name,
        default_host=default_host,
        extras=tuple(_extra_field(name, spec) for name, spec in declared.items()),
        requires_api_key=requires_api_key,
    )


def form_of(adapter_class: Any) -> ConnectionForm:
    """The form of an imported adapter class."""
    return connection_form(
        adapter_class.name,
        adapter_class.display_name,
        adapter_class.default_host,
        adapter_class.extra_fields,
        adapter_class.requires_api_key,
    )


def _extra_field(name: str, spec: str | ExtraFieldSpec) -> ExtraField:
    if isinstance(spec, str):
        spec = {"description": spec}
    return ExtraField(
        name=name,
        label=spec.get("label") or name.replace("_", " ").capitalize(),
        description=spec.get("description", ""),
        kind=spec.get("kind", "str"),
        placeholder=spec.get("placeholder"),
    )


def _schema(field: ExtraField) -> dict[str, Any]:
    if field.kind == "bool":
        return {"type": ["boolean", "null"], "default": False}
    return {"type": ["string", "null"]}


def _classmethod(build: Callable[[], dict[str, Any]]) -> classmethod[Any, Any, Any]:
    def method(cls: type) -> dict[str, Any]:
        return build()

    return classmethod(method)
