"""
Platform adapters, one pure module per platform, found by scanning this package.

A new platform is a new module here defining a :class:`~.base.PlatformAdapter` subclass; the hook,
connection types and provider info pick it up from :func:`adapter_classes`.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import TYPE_CHECKING, Any

from airflow_provider_wfrun.exceptions import InvalidInputError
from airflow_provider_wfrun.platforms.base import ApiRequest, PlatformAdapter

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["ApiRequest", "PlatformAdapter", "adapter_classes", "get_adapter"]


@cache
def adapter_classes() -> dict[str, type[PlatformAdapter]]:
    """Connection type -> adapter class, for every adapter module in this package."""
    found: dict[str, type[PlatformAdapter]] = {}
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, PlatformAdapter)
                and value is not PlatformAdapter
                and value.__module__ == module.__name__
            ):
                found[value.name] = value
    return dict(sorted(found.items()))


def get_adapter(conn_type: str | None, extra: Mapping[str, Any] | None = None) -> PlatformAdapter:
    """The adapter for a connection type; a clear error naming the known types otherwise."""
    classes = adapter_classes()
    adapter_class = classes.get(conn_type or "")
    if adapter_class is None:
        raise InvalidInputError(
            f"connection type {conn_type!r} is not a workflow platform; use one of: {', '.join(classes)}"
        )
    return adapter_class(extra)
