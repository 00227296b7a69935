"""
Assembles the emulator's ASGI app from whatever platform modules exist.

Platforms are discovered with :mod:`pkgutil` so that a new platform is one new module in
``platforms/`` and nothing else; the control API is added last, outside fault injection.
"""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette

from airflow_provider_wfrun.emulator import platforms
from airflow_provider_wfrun.emulator.core import (
    LLM_RUNS,
    SCENARIO_INPUT_KEY,
    EmulatorState,
    TypicalRuns,
    control_routes,
    unknown_route,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from types import ModuleType

    from starlette.routing import BaseRoute


def discover_platforms() -> list[ModuleType]:
    """Every module in ``platforms/`` that exposes ``DIALECT`` and ``routes``, by name."""
    found = []
    for info in sorted(pkgutil.iter_modules(platforms.__path__), key=lambda item: item.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{platforms.__name__}.{info.name}")
        if hasattr(module, "DIALECT") and callable(getattr(module, "routes", None)):
            found.append(module)
    return found


def build_app(state: EmulatorState) -> Starlette:
    """The Starlette app serving every platform under its root plus ``/_emulator``."""
    routes: list[BaseRoute] = []
    for module in discover_platforms():
        state.register(module.DIALECT)
        routes.extend(module.routes(state))
    routes.extend(control_routes(state))
    # Last, so that they only catch what no platform route or control route serves.
    routes.extend(unknown_route(state, module.DIALECT) for module in discover_platforms())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.loop = asyncio.get_running_loop()
        try:
            yield
        finally:
            state.loop = None

    return Starlette(routes=routes, lifespan=lifespan)


def platform_names() -> list[str]:
    """The emulated platforms, by name (the same set as the adapter registry; a test checks it)."""
    return [module.NAME for module in discover_platforms()]


def example_run(platform: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """
    What a task passes to run ``inputs`` on the emulated ``platform``: ``inputs``, ``workflow_id`` and,
    for platforms that run a document, ``workflow``. A module shapes them with ``example_run(inputs)``
    (ComfyUI: the inputs become node overrides of its example graph); otherwise they go as they are, with
    the module's ``EXAMPLE_WORKFLOW_ID`` (None: the key selects the workflow). Tests, the demo and the
    live tier build every platform's runs with this, so a new platform needs no list edited there.
    """
    module = _module(platform)
    shape = getattr(module, "example_run", None)
    if callable(shape):
        return dict(shape(inputs))
    return {"inputs": inputs, "workflow_id": getattr(module, "EXAMPLE_WORKFLOW_ID", None)}


def example_outputs(platform: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """
    The outputs a run of :func:`example_run` reports when its scenario gives none: the inputs echoed (minus
    the scenario key), as the platform's module shapes them (``example_outputs(inputs)``).
    """
    echoed = {key: value for key, value in inputs.items() if key != SCENARIO_INPUT_KEY}
    shape = getattr(_module(platform), "example_outputs", None)
    return dict(shape(echoed)) if callable(shape) else echoed


def typical_runs(platform: str) -> TypicalRuns:
    """How long ``platform``'s runs usually queue and run: its module's ``TYPICAL_RUNS``, else LLM runs."""
    typical = getattr(_module(platform), "TYPICAL_RUNS", LLM_RUNS)
    if not isinstance(typical, TypicalRuns):
        raise TypeError(f"{platform}'s TYPICAL_RUNS must be a TypicalRuns, got {type(typical).__name__}")
    return typical


def _module(platform: str) -> ModuleType:
    module = next((m for m in discover_platforms() if platform == m.NAME), None)
    if module is None:
        raise ValueError(f"no emulated platform {platform!r}; known: {platform_names()}")
    return module
