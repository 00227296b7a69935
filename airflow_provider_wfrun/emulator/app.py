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
from typing import TYPE_CHECKING

from starlette.applications import Starlette

from airflow_provider_wfrun.emulator import platforms
from airflow_provider_wfrun.emulator.core import EmulatorState, control_routes, unknown_route

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
