"""
Readings every run on a server shares (ComfyUI's queue), read once for the polls of an event loop: over
real HTTP against the emulator, and the store's own rules (failure, bound) with counted fetches.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import connection_json

from airflow_provider_wfrun.emulator import EmulatorServer
from airflow_provider_wfrun.exceptions import InvalidResponseError, RunNotFoundError
from airflow_provider_wfrun.hooks import shared_reads
from airflow_provider_wfrun.hooks.workflow_run import WorkflowRunHook
from airflow_provider_wfrun.models import RunStatus, WorkflowRun
from airflow_provider_wfrun.platforms import comfyui

GRAPH_FILE = Path(__file__).parent.parent.parent / "example_dags" / "comfyui_txt2img_api.json"
GRAPH = json.loads(GRAPH_FILE.read_text())
ECHO = {"wfrun": {"class_type": "WfrunEcho", "inputs": {"_emulator": "", "prompt": ""}}}


@pytest.fixture
def conn_id(emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AIRFLOW_CONN_WFRUN_COMFYUI_SHARED", connection_json(emulator, "comfyui"))
    return "wfrun_comfyui_shared"


def submit(conn_id: str, **scenario: Any) -> WorkflowRun:
    hook = WorkflowRunHook(conn_id)
    try:
        inputs = {"6.text": "a fox", "wfrun._emulator": scenario, "wfrun.prompt": "fox"}
        return hook.submit_run(inputs, workflow={**GRAPH, **ECHO})
    finally:
        hook.close()


def queue_reads(emulator: EmulatorServer) -> int:
    return int(emulator.state.stats()["requests"].get("comfyui.queue", 0))


async def poll_each(conn_id: str, run_ids: list[str]) -> list[WorkflowRun]:
    """One hook per run, as every waiting trigger has its own, all polling at once on this loop."""
    return list(await asyncio.gather(*(WorkflowRunHook(conn_id).aget_run(r) for r in run_ids)))


def test_the_polls_of_a_loop_share_one_reading_of_the_queue_each_with_its_own_position(emulator, conn_id):
    pending = [submit(conn_id, queue_seconds=60, duration_seconds=1).run_id for _ in range(12)]

    async def scenario() -> tuple[list[WorkflowRun], int, int]:
        first = await poll_each(conn_id, pending)
        after_first = queue_reads(emulator)
        again = await poll_each(conn_id, pending)  # within QUEUE_SHARED_SECONDS: the same reading
        return first + again, after_first, queue_reads(emulator)

    runs, after_first, after_second = asyncio.run(scenario())
    assert (after_first, after_second) == (1, 1)  # 24 polls, one read of the whole queue
    assert {run.status for run in runs} == {RunStatus.QUEUED}
    positions = [run.queue_position for run in runs[:12]]
    assert sorted(positions) == list(range(1, 13))  # each prompt found at its own place
    assert positions == [run.queue_position for run in runs[12:]]


def test_a_reading_is_read_again_once_it_is_older_than_the_request_allows(emulator, conn_id, monkeypatch):
    monkeypatch.setattr(comfyui, "QUEUE_SHARED_SECONDS", 0.2)
    run_id = submit(conn_id, queue_seconds=60, duration_seconds=1).run_id

    async def scenario() -> int:
        await poll_each(conn_id, [run_id, run_id])
        await asyncio.sleep(0.3)
        await poll_each(conn_id, [run_id])
        return queue_reads(emulator)

    assert asyncio.run(scenario()) == 2


def test_a_prompt_newer_than_the_shared_reading_is_read_again_not_called_lost(emulator, conn_id):
    older = submit(conn_id, queue_seconds=60, duration_seconds=1).run_id

    async def scenario() -> WorkflowRun:
        await poll_each(conn_id, [older])  # the loop now holds a reading without the next prompt
        newer = submit(conn_id, queue_seconds=60, duration_seconds=1).run_id
        (run,) = await poll_each(conn_id, [newer])
        return run

    run = asyncio.run(scenario())
    assert (run.status, run.queue_position) == (RunStatus.QUEUED, 2)
    assert queue_reads(emulator) == 2  # the shared reading, then this poll's own


def test_a_prompt_the_server_lost_is_found_lost_once_the_reading_expires(emulator, conn_id, monkeypatch):
    monkeypatch.setattr(comfyui, "QUEUE_SHARED_SECONDS", 0.3)
    run_id = submit(conn_id, queue_seconds=60, duration_seconds=1).run_id

    async def scenario() -> WorkflowRun:
        await poll_each(conn_id, [run_id])
        emulator.state.reset()  # a restart: ComfyUI keeps its queue and history in memory
        (within,) = await poll_each(conn_id, [run_id])  # the trade: the reading is up to 0.3 s old
        await asyncio.sleep(0.4)
        with pytest.raises(RunNotFoundError, match="neither in its queue nor in its history"):
            await poll_each(conn_id, [run_id])
        return within

    assert asyncio.run(scenario()).status is RunStatus.QUEUED


def test_connections_with_other_credentials_do_not_share_a_reading(emulator, conn_id, monkeypatch):
    keyless = json.loads(connection_json(emulator, "comfyui"))
    del keyless["password"]
    monkeypatch.setenv("AIRFLOW_CONN_WFRUN_COMFYUI_KEYLESS", json.dumps(keyless))
    run_id = submit(conn_id, queue_seconds=60, duration_seconds=1).run_id

    async def scenario() -> None:
        keyed, keyless = WorkflowRunHook(conn_id), WorkflowRunHook("wfrun_comfyui_keyless")
        await asyncio.gather(keyed.aget_run(run_id), keyless.aget_run(run_id))

    asyncio.run(scenario())
    assert queue_reads(emulator) == 2


class Fetches:
    """A fetch that counts its calls, and fails or blocks when told."""

    def __init__(self) -> None:
        self.calls = 0
        self.fail = False
        self.release = asyncio.Event()

    async def __call__(self) -> str:
        self.calls += 1
        await self.release.wait()
        if self.fail:
            raise ConnectionError("the server went away")
        return f"reading {self.calls}"


def test_a_failed_reading_is_not_shared_each_waiting_poll_reads_for_itself():
    async def scenario() -> tuple[list[Any], int]:
        fetch = Fetches()
        fetch.fail = True
        leader = asyncio.ensure_future(shared_reads.read_shared("q", 5.0, fetch))
        await asyncio.sleep(0)
        followers = [asyncio.ensure_future(shared_reads.read_shared("q", 5.0, fetch)) for _ in range(3)]
        await asyncio.sleep(0)
        fetch.release.set()
        outcomes = await asyncio.gather(leader, *followers, return_exceptions=True)
        return outcomes, fetch.calls

    outcomes, calls = asyncio.run(scenario())
    assert calls == 4  # the leader's, then each follower's own
    assert all(isinstance(outcome, ConnectionError) for outcome in outcomes)


def test_a_cancelled_reader_leaves_the_others_to_read_for_themselves():
    async def scenario() -> tuple[Any, int]:
        fetch = Fetches()
        leader = asyncio.ensure_future(shared_reads.read_shared("q", 5.0, fetch))
        await asyncio.sleep(0)
        follower = asyncio.ensure_future(shared_reads.read_shared("q", 5.0, fetch))
        await asyncio.sleep(0)
        leader.cancel()
        await asyncio.sleep(0)
        fetch.release.set()
        reading = await asyncio.wait_for(follower, 5)
        return reading, fetch.calls

    reading, calls = asyncio.run(scenario())
    assert (reading.digest, reading.fresh, calls) == ("reading 2", True, 2)


def test_the_store_holds_a_bounded_number_of_readings():
    async def scenario() -> int:
        fetch = Fetches()
        fetch.release.set()
        for key in range(shared_reads.MAX_ENTRIES + 1):
            await shared_reads.read_shared(key, 60.0, fetch)
        calls = fetch.calls
        await shared_reads.read_shared(shared_reads.MAX_ENTRIES, 60.0, fetch)  # the newest: still held
        assert fetch.calls == calls
        await shared_reads.read_shared(0, 60.0, fetch)  # the oldest went when the bound was passed
        return fetch.calls - calls

    assert asyncio.run(scenario()) == 1


@pytest.mark.parametrize("kind", ["malformed", "truncated"])
def test_a_queue_answer_that_is_not_json_is_a_typed_error_and_is_not_shared(emulator, conn_id, kind):
    run_id = submit(conn_id, queue_seconds=60, duration_seconds=1).run_id
    emulator.state.add_fault({"route": "comfyui.queue", "kind": kind, "count": 1})

    async def scenario() -> WorkflowRun:
        hook = WorkflowRunHook(conn_id, retry_limit=1)
        with pytest.raises(InvalidResponseError, match="body that is not JSON"):
            await hook.aget_run(run_id)
        (run,) = await poll_each(conn_id, [run_id])  # the bad answer was not kept for the next poll
        return run

    assert asyncio.run(scenario()).status is RunStatus.QUEUED
    assert queue_reads(emulator) == 2
