"""
Answers every run on a server shares, read once for all the waits of an event loop.

Some platforms answer a run's poll only in part and leave the rest to a read that is the same for every run
on the server: ComfyUI's ``GET /queue`` lists every running and pending prompt with its whole graph. A
triggerer waiting on a thousand prompts of one server would read and decode that list a thousand times per
interval; here the first poll reads it and the others on the loop reuse its digest (what the adapter makes
of it, :meth:`~airflow_provider_wfrun.platforms.base.PlatformAdapter.digest_shared`) for the seconds the
request allows (``ApiRequest.shared_seconds``). Polls that ask while a reading is on its way wait for it
instead of sending their own.

A reading is shared only between callers with the same URL, headers (the key among them), TLS context and
proxy, so no connection sees an answer fetched under another's credentials or trust. The store is bounded
(:data:`MAX_ENTRIES` readings per loop, each dropped when it expires) and a failed or cancelled reading is
never shared: each waiting caller then reads for itself, under its own retry policy.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

#: Readings kept per event loop at most; the oldest goes first. One per server and request in practice.
MAX_ENTRIES = 64


class Reading:
    """A shared answer's digest, and whether this caller's own request fetched it (``fresh``)."""

    __slots__ = ("digest", "fresh")

    def __init__(self, digest: Any, *, fresh: bool) -> None:
        self.digest, self.fresh = digest, fresh


class _Entry:
    __slots__ = ("digest", "expires", "pending")

    def __init__(self, pending: asyncio.Future[Any]) -> None:
        self.pending: asyncio.Future[Any] | None = pending
        self.expires = 0.0
        self.digest: Any = None


#: Says "no reading to share" to the callers waiting on one that failed or was cancelled.
_FAILED = object()

_stores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, _Entry]] = (
    weakref.WeakKeyDictionary()
)


async def read_shared(
    key: Hashable, seconds: float, fetch: Callable[[], Awaitable[Any]], *, fresh: bool = False
) -> Reading:
    """
    The digest of the reading ``key`` names: a recent one (less than ``seconds`` old) or the one on its
    way; else ``fetch()``'s, kept for the others. ``fresh`` skips what is kept (the caller needs an answer
    read after it asked) and replaces it.
    """
    loop = asyncio.get_running_loop()
    store = _stores.get(loop)
    if store is None:
        store = _stores[loop] = {}
    entry = store.get(key)
    if entry is not None and not fresh:
        if entry.pending is not None:
            digest = await asyncio.shield(entry.pending)
            if digest is not _FAILED:
                return Reading(digest, fresh=False)
        elif loop.time() < entry.expires:
            return Reading(entry.digest, fresh=False)
    return Reading(await _fetch(store, key, seconds, fetch, loop), fresh=True)


async def _fetch(
    store: dict[Hashable, _Entry],
    key: Hashable,
    seconds: float,
    fetch: Callable[[], Awaitable[Any]],
    loop: asyncio.AbstractEventLoop,
) -> Any:
    pending: asyncio.Future[Any] = loop.create_future()
    entry = _Entry(pending)
    store.pop(key, None)
    store[key] = entry
    _evict(store, loop.time())
    try:
        digest = await fetch()
    except BaseException:
        if store.get(key) is entry:
            del store[key]
        pending.set_result(_FAILED)
        raise
    entry.pending, entry.digest, entry.expires = None, digest, loop.time() + seconds
    pending.set_result(digest)
    return digest


def _evict(store: dict[Hashable, _Entry], now: float) -> None:
    """Expired readings out, then the oldest while over the bound (dicts keep insertion order)."""
    for stale in [k for k, e in store.items() if e.pending is None and e.expires <= now]:
        del store[stale]
    while len(store) > MAX_ENTRIES:
        del store[next(iter(store))]
