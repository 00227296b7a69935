"""
Logging from async code without blocking the event loop.

In Airflow's triggerer a trigger's log line goes down a socket that the triggerer's supervisor drains
between its database calls. When the supervisor falls behind (thousands of triggers ending together), a
plain ``log.info`` waits for room in that socket and holds the whole event loop meanwhile: every trigger
on it stalls and their polls run past their deadlines (docs/benchmarks.md). Airflow's structlog loggers
have awaitable twins (``ainfo``, ``awarning``, ``aexception``) that write from a worker thread, keeping the
loop free and one trigger's lines in order; loggers without them (the standard library's, as in tests)
are called directly.
"""

from __future__ import annotations

import inspect
from typing import Any


async def alog(logger: Any, level: str, message: str, *args: Any) -> None:
    """Log ``message % args`` at ``level`` (``info``, ``warning``, ``exception``, ...) without blocking."""
    twin = getattr(logger, f"a{level}", None)
    if twin is not None and inspect.iscoroutinefunction(twin):
        await twin(message, *args)
    else:
        getattr(logger, level)(message, *args)
