"""
A log sink that stops taking lines must not stop the event loop.

In Airflow's triggerer a trigger's lines go down a socket that the supervisor drains between database
calls; when it falls behind, a write waits for room. These tests hold a structlog sink shut (as a full
socket does) while a trigger polls, retries and ends over real HTTP against the emulator, and check that
the loop kept running meanwhile and that every line arrives, in order, once the sink opens.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator

import pytest
import structlog
from test_trigger import submit, trigger_for

from airflow_provider_wfrun.async_log import alog

#: Longest a held write waits before the test gives up on it (a failing test must not hang).
HOLD_LIMIT = 20.0


class HeldSink:
    """A structlog logger whose writes block while it is shut (at most :data:`HOLD_LIMIT` each)."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.lines: list[str] = []
        self.waiting = 0
        self._lock = threading.Lock()

    def msg(self, message: str) -> None:
        with self._lock:
            self.waiting += 1
        self.gate.wait(HOLD_LIMIT)
        with self._lock:
            self.waiting -= 1
            self.lines.append(message)

    info = warning = error = exception = msg

    def shut(self) -> None:
        self.lines.clear()
        self.gate.clear()

    def open(self) -> None:
        self.gate.set()


@pytest.fixture
def held_sink() -> Iterator[HeldSink]:
    """Every structlog logger made from now on writes to this sink (open until the test shuts it)."""
    sink = HeldSink()
    saved = structlog.get_config()
    structlog.configure(
        processors=[
            structlog.processors.format_exc_info,
            structlog.processors.KeyValueRenderer(key_order=["event"]),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=lambda *_: sink,
        cache_logger_on_first_use=False,
    )
    try:
        yield sink
    finally:
        sink.open()
        structlog.configure(**saved)


async def ticks_while_held(sink: HeldSink, task: asyncio.Task) -> int:
    """
    Turns of the loop seen while one of ``task``'s writes is held: 0 if the write held the loop itself
    (this coroutine cannot run then, and sees the write only once it is done).
    """
    deadline = time.monotonic() + HOLD_LIMIT
    while not sink.waiting and not task.done() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    ticks = 0
    while sink.waiting and ticks < 20:
        await asyncio.sleep(0.01)
        ticks += 1
    return ticks


async def test_a_shut_log_sink_stalls_no_trigger_and_loses_no_line(connections, held_sink):
    platform = "dify"
    run = submit(connections[platform], platform, duration_seconds=2.0)
    trigger = trigger_for(connections[platform], run)
    held_sink.shut()

    async def waited() -> list[dict]:
        return [event.payload async for event in trigger.run()]

    waiting = asyncio.create_task(waited())
    # The loop sees a write held only if the write is not on the loop's own thread.
    assert await ticks_while_held(held_sink, waiting) > 0
    assert not held_sink.lines
    assert not waiting.done()

    held_sink.open()
    events = await asyncio.wait_for(waiting, HOLD_LIMIT)
    assert [event["status"] for event in events] == ["succeeded"]
    statuses = [line for line in held_sink.lines if f"run {run.run_id}: status" in line]
    assert statuses[0].startswith("event='dify run")
    assert "status running" in statuses[0]
    assert "status succeeded" in statuses[-1]


async def test_a_retry_warning_is_written_off_the_loop_before_the_outcome(connections, emulator, held_sink):
    platform = "dify"
    run = submit(connections[platform], platform, duration_seconds=0.2)
    emulator.state.set_faults([{"route": "dify.*", "kind": "503", "count": 1}])
    trigger = trigger_for(connections[platform], run, hook_params={"retry_delay": 0.01})
    held_sink.shut()

    async def waited() -> list[dict]:
        return [event.payload async for event in trigger.run()]

    waiting = asyncio.create_task(waited())
    assert await ticks_while_held(held_sink, waiting) > 0
    held_sink.open()
    events = await asyncio.wait_for(waiting, HOLD_LIMIT)
    assert [event["status"] for event in events] == ["succeeded"]
    retries = [line for line in held_sink.lines if "retrying in" in line]
    assert len(retries) == 1, held_sink.lines
    assert "503" in retries[0]
    assert "(attempt 2 of 3)" in retries[0]
    assert held_sink.lines.index(retries[0]) < next(
        i for i, line in enumerate(held_sink.lines) if "status succeeded" in line
    )


async def test_a_logger_without_awaitable_twins_is_called_directly(caplog):
    logger = logging.getLogger("wfrun.test.async_log")
    with caplog.at_level(logging.INFO, logger=logger.name):
        await alog(logger, "info", "run %s: %s", "r-1", "status running")
        try:
            raise ValueError("boom")
        except ValueError:
            await alog(logger, "exception", "Poll failed unexpectedly")
    assert [r.getMessage() for r in caplog.records] == ["run r-1: status running", "Poll failed unexpectedly"]
    assert caplog.records[1].exc_info is not None
    assert caplog.records[1].exc_info[0] is ValueError


async def test_an_exception_logged_from_a_thread_keeps_its_traceback(held_sink):
    logger = structlog.get_logger("wfrun.test.async_log")
    try:
        raise ValueError("boom")
    except ValueError:
        await alog(logger, "exception", "Poll failed unexpectedly")
    assert "Poll failed unexpectedly" in held_sink.lines[-1]
    assert "ValueError" in held_sink.lines[-1]
