"""
Shared machinery of the emulator: run store, scenarios, faults, statistics and the control API.

Platform modules only translate; everything that must behave the same on every platform lives
here so a fault, a scenario or a counter means one thing whatever the wire format. Runs are plain
records whose status is *computed* from ``time.monotonic()`` on each read, so ten thousand
concurrent runs cost ten thousand small objects and no background tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import math
import random
import secrets
import socket
import struct
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from airflow_provider_wfrun.emulator.variants import VARIANTS, vary

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

Outcome = Literal["succeeded", "failed", "canceled", "partial"]
FaultKind = Literal["429", "500", "502", "503", "504", "html", "reset", "delay", "malformed", "truncated"]
Phase = Literal["queued", "running", "paused", "succeeded", "failed", "canceled", "partial"]
TERMINAL_PHASES = frozenset({"succeeded", "failed", "canceled", "partial"})
SCENARIO_INPUT_KEY = "_emulator"
CONTROL_ROOT = "/_emulator"
_COUNTERS = (
    "submissions",
    "idempotent_replays",
    "cancels",
    "requests",
    "responses",
    "faults",
    "client_connections",
)


# --------------------------------------------------------------------------------------------- models
class LogLine(BaseModel):
    """One chenyu log line; ``offset`` is when it appears, as a fraction (0..1) of the running phase."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    offset: float = Field(0.0, ge=0.0, le=1.0)
    event_type: str
    level: str = "info"
    message: str
    node_id: str | None = None
    #: ``None``: ``offset`` as a percentage.
    progress_percent: int | None = None


DEFAULT_LOG_LINES: tuple[LogLine, ...] = (
    LogLine(offset=0.0, event_type="execution_start", message="execution started", progress_percent=0),
    LogLine(offset=0.1, event_type="executing", message="executing node 3 (KSampler)", node_id="3"),
    LogLine(offset=0.5, event_type="progress", message="node 3 progress 10/20", node_id="3"),
    LogLine(offset=0.8, event_type="executing", message="executing node 9 (SaveImage)", node_id="9"),
)


class HumanInputNode(BaseModel):
    """
    A Human Input node (Dify): the run pauses on reaching it until its form is answered or expires.

    The form offers paragraph ``inputs`` (name -> default) and the ``actions``; unanswered, it times out
    ``expires_seconds`` after the pause began and the run goes on along the timeout branch.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: When in the running phase the run reaches the node, as a fraction (0..1) of its duration.
    at: float = Field(0.5, ge=0.0, le=1.0)
    node_id: str = "approval"
    title: str = "Approval"
    content: str = "Please review the draft and approve it or ask for changes."
    inputs: dict[str, str] = Field(default_factory=lambda: {"comment": ""})
    actions: tuple[str, ...] = Field(("approve", "reject"), min_length=1)
    expires_seconds: float = Field(3600.0, gt=0.0)
    #: ``webapp`` forms carry a token the API answers with; ``email`` ones do not.
    delivery: Literal["webapp", "email"] = "webapp"


@dataclass(frozen=True, slots=True)
class Pause:
    """One Human Input node as this run meets it: when it paused, when it resumed and how."""

    index: int
    node: HumanInputNode
    token: str
    reached: float
    resumed: float
    #: ``(action, inputs)`` when answered; None while waiting, or once it timed out.
    answer: tuple[str, dict[str, Any]] | None

    @property
    def expires(self) -> float:
        return self.reached + self.node.expires_seconds

    def waiting(self, now: float) -> bool:
        return self.reached <= now < self.resumed


class Scenario(BaseModel):
    """How a run behaves: how long it queues and runs, how it ends and what it reports."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    queue_seconds: float = Field(0.1, ge=0.0)
    duration_seconds: float = Field(0.4, ge=0.0)
    outcome: Outcome = "succeeded"
    error_reason: str = "Node 'LLM' failed: model timeout"
    error_detail: str = "LLM node 'llm' gave up after waiting 60 s for the model provider"
    error_code: str = "EXECUTION_FAILED"
    #: ``None`` echoes the inputs (minus the ``_emulator`` key) as outputs.
    outputs: dict[str, Any] | None = None
    #: ``None`` takes the platform's default (chenyu CNY, GPTBots credits, Dify node price in USD).
    cost: float | None = None
    external_cost: float = 0.0
    quote_amount: str = "0.03000000"
    tokens: int = Field(150, ge=0)
    queue_position: int = Field(3, ge=0)
    #: ``None`` uses :data:`DEFAULT_LOG_LINES`; the terminal line is always added from the outcome.
    log_lines: tuple[LogLine, ...] | None = None
    #: Realistic variants of the answers about the run (names from
    #: :data:`~airflow_provider_wfrun.emulator.variants.VARIANTS` or ``extra_fields``; ``all``: every one).
    variants: tuple[str, ...] = ()
    #: The inputs the workflow declares (Dify's ``GET /parameters`` lists them as required text inputs).
    declared_inputs: tuple[str, ...] = ("query",)
    #: Human Input nodes the run pauses at, in order (Dify only).
    human_inputs: tuple[HumanInputNode, ...] = ()

    @field_validator("variants")
    @classmethod
    def _known_variants(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        if "all" in names:
            return (*VARIANTS, "extra_fields")
        unknown = sorted(set(names) - {*VARIANTS, "extra_fields"})
        if unknown:
            raise ValueError(f"unknown variants {unknown}; known: {[*VARIANTS, 'extra_fields', 'all']}")
        return names

    def patched(self, overrides: Mapping[str, Any]) -> Scenario:
        """This scenario with the fields given in ``overrides`` replaced (validated)."""
        patch = Scenario.model_validate(dict(overrides))
        return self.model_copy(update={name: getattr(patch, name) for name in patch.model_fields_set})


@dataclass(frozen=True)
class TypicalRuns:
    """
    How long a platform's runs usually queue and run, in seconds: what a realistic mix of runs draws from
    (the benchmarks' part 2). A platform module may set ``TYPICAL_RUNS``; :data:`LLM_RUNS` otherwise.
    """

    queue: tuple[float, float] = (0.0, 0.0)
    duration: tuple[float, float] = (3.0, 300.0)
    #: Durations spread evenly on a log scale (most runs short) rather than evenly.
    log_scale: bool = True

    def draw(self, rng: random.Random) -> tuple[float, float]:
        """One run's ``(queue_seconds, duration_seconds)``."""
        queue = rng.uniform(*self.queue) if self.queue[1] > 0 else 0.0
        low, high = self.duration
        if self.log_scale:
            return queue, math.exp(rng.uniform(math.log(low), math.log(high)))
        return queue, rng.uniform(low, high)


#: LLM workflows: no queue, 3 s to 5 min, most of them short.
LLM_RUNS = TypicalRuns()
#: GPU runs: wait up to a minute for a GPU (the platform may estimate the wait), then run 20 s to 5 min.
GPU_RUNS = TypicalRuns(queue=(0.0, 60.0), duration=(20.0, 300.0), log_scale=False)


class Fault(BaseModel):
    """A failure to inject on matching platform requests (never on the control API)."""

    model_config = ConfigDict(extra="forbid")

    #: A route id (``dify.submit``), a glob (``chenyu.*``) or ``*``.
    route: str = "*"
    kind: FaultKind
    rate: float = Field(1.0, ge=0.0, le=1.0)
    #: Inject this many times, then stop; ``None`` = forever.
    count: int | None = Field(None, ge=0)
    retry_after: float = Field(1.0, ge=0.0)
    retry_after_http_date: bool = False
    delay_seconds: float = Field(2.0, ge=0.0)
    #: ``after``: serve the request for real (a submit creates its run), then fail the response.
    phase: Literal["before", "after"] = "before"

    @field_validator("kind", mode="before")
    @classmethod
    def _kind_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value


# ------------------------------------------------------------------------------------------- dialects
class ApiError(Exception):
    """Raised by handlers; rendered in the platform's own error format."""

    def __init__(self, status: int, message: str | None = None, code: str | int | None = None) -> None:
        super().__init__(message or str(status))
        self.status = status
        self.message = message
        self.code = code


ErrorRenderer = Callable[[int, str | None, str | int | None], Response]


@dataclass(frozen=True)
class Dialect:
    """What the shared machinery needs to know about one platform."""

    name: str
    root: str
    #: Run phase → the platform's status word.
    statuses: Mapping[str, str]
    #: ``error(http_status, message, code)`` → a response in the platform's error format.
    error: ErrorRenderer
    has_queue: bool = True
    accepts_bare_key: bool = False
    #: The platform runs without authentication (a ComfyUI server): no header is fine, a wrong key is not
    #: (the authenticating proxy in front of it).
    auth_optional: bool = False
    default_cost: float = 0.0
    #: Fields of a run's answer a client decides on (run id, status word): variants never touch them.
    essential: frozenset[str] = frozenset({"status"})


Handler = Callable[["EmulatorState", Request], Awaitable[Response]]


# ----------------------------------------------------------------------------------------------- runs
@dataclass(slots=True, eq=False)
class Run:
    """One emulated run. Everything observable derives from the timestamps and the scenario."""

    platform: str
    run_id: str
    workflow_id: str
    inputs: dict[str, Any]
    scenario: Scenario
    cost: float
    created_mono: float
    created_wall: float
    extra: dict[str, Any] = field(default_factory=dict)
    canceled_mono: float | None = None
    #: Answers to Human Input forms by pause index: (monotonic instant, action, inputs).
    answers: dict[int, tuple[float, str, dict[str, Any]]] = field(default_factory=dict)
    _changed: asyncio.Event | None = None

    @property
    def start_mono(self) -> float:
        return self.created_mono + self.scenario.queue_seconds

    def pauses(self) -> list[Pause]:
        """The Human Input pauses reached or to come, each shifting what follows by its wait."""
        pauses: list[Pause] = []
        waited = 0.0
        for index, node in enumerate(self.scenario.human_inputs):
            reached = self.start_mono + node.at * self.scenario.duration_seconds + waited
            if self.canceled_mono is not None and self.canceled_mono < reached:
                break
            answered = self.answers.get(index)
            resumed = answered[0] if answered else reached + node.expires_seconds
            answer = (answered[1], answered[2]) if answered else None
            pauses.append(Pause(index, node, pause_token(self.run_id, index), reached, resumed, answer))
            waited += resumed - reached
        return pauses

    def moment(self, offset: float) -> float:
        """The monotonic instant the run has been running ``offset`` seconds, pauses not counted."""
        waited = sum(
            pause.resumed - pause.reached
            for pause in self.pauses()
            if pause.node.at * self.scenario.duration_seconds <= offset
        )
        return self.start_mono + offset + waited

    @property
    def _natural_end(self) -> float:
        return self.moment(self.scenario.duration_seconds)

    @property
    def end_mono(self) -> float:
        natural = self._natural_end
        if self.canceled_mono is not None and self.canceled_mono < natural:
            return self.canceled_mono
        return natural

    @property
    def final_phase(self) -> Phase:
        """The phase the run ends (or ended) in."""
        if self.canceled_mono is not None and self.canceled_mono < self._natural_end:
            return "canceled"
        return self.scenario.outcome

    @property
    def outputs(self) -> dict[str, Any]:
        if self.scenario.outputs is not None:
            return self.scenario.outputs
        return {key: value for key, value in self.inputs.items() if key != SCENARIO_INPUT_KEY}

    def phase(self, now: float | None = None) -> Phase:
        now = time.monotonic() if now is None else now
        if now >= self.end_mono:
            return self.final_phase
        if any(pause.waiting(now) for pause in self.pauses()):
            return "paused"
        return "running" if now >= self.start_mono else "queued"

    def is_done(self, now: float | None = None) -> bool:
        return self.phase(now) in TERMINAL_PHASES

    def has_started(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        return now >= self.start_mono and self.start_mono <= self.end_mono

    def progress(self, now: float | None = None) -> float:
        """Fraction (0..1) of the running phase elapsed; 1.0 once it ran to its natural end."""
        now = time.monotonic() if now is None else now
        duration = self.scenario.duration_seconds
        if duration <= 0:
            return 1.0 if now >= self.start_mono else 0.0
        return min(max((min(now, self.end_mono) - self.start_mono) / duration, 0.0), 1.0)

    def running_seconds(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        return max(min(now, self.end_mono) - self.start_mono, 0.0)

    def wall(self, mono: float) -> float:
        """Wall-clock (Unix seconds) for a monotonic instant of this run."""
        return self.created_wall + (mono - self.created_mono)

    def served(self, dialect: Dialect, payload: dict[str, Any]) -> dict[str, Any]:
        """``payload`` as this run's scenario serves it: with its variants (stable for the run), if any."""
        if not self.scenario.variants:
            return payload
        seed = zlib.crc32(self.run_id.encode())
        return vary(payload, self.scenario.variants, essential=dialect.essential, seed=seed)

    def summary(self, status_word: str) -> dict[str, Any]:
        return {
            "platform": self.platform,
            "run_id": self.run_id,
            "workflow_id": self.workflow_id,
            "status": status_word,
            "phase": self.phase(),
            "created_at": iso_utc(self.created_wall),
            **{key: value for key, value in self.extra.items() if isinstance(value, str)},
        }


def pause_token(run_id: str, index: int) -> str:
    """The form token of a run's ``index``-th Human Input pause (stable, so any request can name it)."""
    return uuid.uuid5(uuid.NAMESPACE_OID, f"form:{run_id}:{index}").hex


def iso_utc(unix_seconds: float) -> str:
    """``2026-05-08T10:00:00Z``, the timestamp format of chenyu and the control API."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix_seconds))


def hex_id(prefix: str, length: int = 20) -> str:
    return prefix + secrets.token_hex((length + 1) // 2)[:length]


def new_uuid() -> str:
    return str(uuid.uuid4())


# ---------------------------------------------------------------------------------------------- state
class EmulatorState:
    """Everything the emulator knows; shared by the server thread and the tests that configure it."""

    def __init__(
        self,
        api_key: str = "emulator-key",
        seed: int = 0,
        scenarios: Mapping[str, Scenario | Mapping[str, Any]] | None = None,
        ping_interval: float = 10.0,
    ) -> None:
        self.api_key = api_key
        self.seed = seed
        self.default_ping_interval = ping_interval
        self.dialects: dict[str, Dialect] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self._initial_scenarios = {key: _as_scenario(value) for key, value in (scenarios or {}).items()}
        self._lock = threading.RLock()
        self._runs: dict[str, Run] = {}
        self._index: dict[str, Run] = {}
        #: Uploaded and generated files, by id (see ``emulator/files.py``).
        self.files: dict[str, Any] = {}
        self._counters: dict[str, Counter[str]] = {name: Counter() for name in _COUNTERS}
        self.scenarios: dict[str, Scenario] = {}
        self.faults: list[Fault] = []
        self._remaining: list[int | None] = []
        self.rng = random.Random(seed)
        self.ping_interval = ping_interval
        self.reset()

    # -- lifecycle ---------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget runs, faults and counters; restore the start-up scenarios, seed and settings."""
        with self._lock:
            self._runs.clear()
            self._index.clear()
            self.files.clear()
            self.scenarios = dict(self._initial_scenarios)
            self.faults = []
            self._remaining = []
            self.rng = random.Random(self.seed)
            self.ping_interval = self.default_ping_interval
            for counter in self._counters.values():
                counter.clear()

    def register(self, dialect: Dialect) -> None:
        self.dialects[dialect.name] = dialect

    # -- scenarios ---------------------------------------------------------------------------------
    def set_scenario(self, workflow_id: str, scenario: Scenario | Mapping[str, Any]) -> Scenario:
        """Use ``scenario`` for every run of ``workflow_id`` (``"*"``: every workflow without one)."""
        resolved = _as_scenario(scenario)
        with self._lock:
            self.scenarios[workflow_id] = resolved
        return resolved

    def scenario_for(self, workflow_id: str) -> Scenario:
        return self.scenarios.get(workflow_id) or self.scenarios.get("*") or _DEFAULT_SCENARIO

    def knows_workflow(self, workflow_id: str) -> bool:
        return workflow_id != "*" and workflow_id in self.scenarios

    # -- faults ------------------------------------------------------------------------------------
    def set_faults(self, faults: Iterable[Fault | Mapping[str, Any]]) -> list[Fault]:
        """Replace the active faults (order matters: the first one that fires wins)."""
        resolved = [fault if isinstance(fault, Fault) else Fault.model_validate(fault) for fault in faults]
        with self._lock:
            self.faults = resolved
            self._remaining = [fault.count for fault in resolved]
        return resolved

    def add_fault(self, fault: Fault | Mapping[str, Any]) -> Fault:
        resolved = fault if isinstance(fault, Fault) else Fault.model_validate(fault)
        with self._lock:
            self.faults.append(resolved)
            self._remaining.append(resolved.count)
        return resolved

    def clear_faults(self) -> None:
        self.set_faults([])

    def draw_fault(self, route_id: str) -> Fault | None:
        """The fault to inject on this request, if any; consumes ``count`` and the seeded RNG."""
        with self._lock:
            for position, fault in enumerate(self.faults):
                remaining = self._remaining[position]
                if remaining == 0 or not fnmatchcase(route_id, fault.route):
                    continue
                if fault.rate < 1.0 and self.rng.random() >= fault.rate:
                    continue
                if remaining is not None:
                    self._remaining[position] = remaining - 1
                self._counters["faults"][fault.kind] += 1
                return fault
        return None

    # -- runs --------------------------------------------------------------------------------------
    @property
    def runs(self) -> Mapping[str, Run]:
        """Read-only view of every run by run id."""
        return MappingProxyType(self._runs)

    def create_run(
        self,
        dialect: Dialect,
        workflow_id: str,
        inputs: dict[str, Any],
        *,
        run_id: str | None = None,
        extra: dict[str, Any] | None = None,
        aliases: Iterable[str] = (),
    ) -> Run:
        """Start a run of ``workflow_id``; ``inputs[_emulator]`` overrides the scenario for this run."""
        scenario = self._scenario_with_overrides(workflow_id, inputs)
        if scenario.human_inputs and "paused" not in dialect.statuses:
            raise ApiError(400, f"{dialect.name} has no Human Input nodes; only Dify runs pause for a form")
        updates: dict[str, Any] = {} if dialect.has_queue else {"queue_seconds": 0.0}
        run = Run(
            platform=dialect.name,
            run_id=run_id or new_uuid(),
            workflow_id=workflow_id,
            inputs=inputs,
            scenario=scenario.model_copy(update=updates) if updates else scenario,
            cost=dialect.default_cost if scenario.cost is None else scenario.cost,
            created_mono=time.monotonic(),
            created_wall=time.time(),
            extra=extra or {},
        )
        with self._lock:
            self._runs[run.run_id] = run
            for alias in aliases:
                self._index[alias] = run
            for index in range(len(scenario.human_inputs)):
                self._index[pause_token(run.run_id, index)] = run
            self._counters["submissions"][dialect.name] += 1
        return run

    def _scenario_with_overrides(self, workflow_id: str, inputs: Mapping[str, Any]) -> Scenario:
        scenario = self.scenario_for(workflow_id)
        overrides = inputs.get(SCENARIO_INPUT_KEY)
        if overrides is None:
            return scenario
        if not isinstance(overrides, Mapping):
            raise ApiError(400, f"{SCENARIO_INPUT_KEY} must be an object of scenario fields")
        try:
            return scenario.patched(overrides)
        except ValidationError as exc:
            raise ApiError(400, f"invalid {SCENARIO_INPUT_KEY} scenario: {exc.errors()[0]['msg']}") from exc

    def get_run(self, run_id: str, platform: str | None = None) -> Run | None:
        run = self._runs.get(run_id)
        if run is None or (platform is not None and run.platform != platform):
            return None
        return run

    def find(self, alias: str) -> Run | None:
        """A run by a secondary key a platform registered (a Dify task id, a chenyu idempotency key)."""
        return self._index.get(alias)

    def count_replay(self, platform: str) -> None:
        self.count("idempotent_replays", platform)

    def cancel(self, run_id: str) -> bool:
        """Cancel a queued or running run (platform-side). False if unknown or already finished."""
        with self._lock:
            run = self._runs.get(run_id) or self._index.get(run_id)
            now = time.monotonic()
            if run is None or run.is_done(now):
                return False
            run.canceled_mono = now
            self._counters["cancels"][run.platform] += 1
        self._notify(run)
        return True

    def answer(self, run: Run, index: int, action: str, inputs: dict[str, Any]) -> None:
        """Record the answer to a run's waiting form: the run resumes now."""
        with self._lock:
            run.answers[index] = (time.monotonic(), action, inputs)
        self._notify(run)

    def status_word(self, run: Run, now: float | None = None) -> str:
        return self.dialects[run.platform].statuses[run.phase(now)]

    def list_runs(self, platform: str | None = None) -> list[dict[str, Any]]:
        runs = [run for run in list(self._runs.values()) if platform in (None, run.platform)]
        return [run.summary(self.status_word(run)) for run in runs]

    # -- waiting (blocking calls, SSE) ---------------------------------------------------------------
    async def wait_until(self, run: Run, deadline: float) -> None:
        """
        Sleep until ``deadline`` (monotonic), the run's end, or a change (a cancel, an answered form),
        whichever is first.
        """
        remaining = min(deadline, run.end_mono) - time.monotonic()
        if remaining <= 0:
            return
        event = run._changed
        if event is None:
            event = run._changed = asyncio.Event()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(event.wait(), remaining)

    async def wait_done(self, run: Run) -> None:
        while not run.is_done():
            await self.wait_until(run, math.inf)

    def _notify(self, run: Run) -> None:
        """Wake whoever waits on ``run``; events are only touched on the server's loop thread."""
        loop = self.loop
        if loop is None or loop.is_closed() or _running_loop() is loop:
            _wake(run)
        else:
            loop.call_soon_threadsafe(_wake, run)

    # -- statistics --------------------------------------------------------------------------------
    def count(self, counter: str, key: str) -> None:
        with self._lock:
            self._counters[counter][key] += 1

    def stats(self) -> dict[str, Any]:
        """Counters since the last reset. Status codes and fault kinds are string keys (JSON-ready)."""
        per_platform = ("submissions", "idempotent_replays", "cancels")
        result: dict[str, Any] = {
            name: {**dict.fromkeys(self.dialects, 0), **self._counters[name]} for name in per_platform
        }
        for name in ("requests", "responses", "faults"):
            result[name] = dict(self._counters[name])
        result["runs"] = len(self._runs)
        # Distinct client (address, port) pairs: TCP connections opened to the platform APIs, so a test can
        # tell keep-alive reuse from a connection per request.
        result["connections"] = len(self._counters["client_connections"])
        return result


_DEFAULT_SCENARIO = Scenario()


def _wake(run: Run) -> None:
    event, run._changed = run._changed, None
    if event is not None:
        event.set()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _as_scenario(value: Scenario | Mapping[str, Any]) -> Scenario:
    return value if isinstance(value, Scenario) else Scenario.model_validate(dict(value))


# ------------------------------------------------------------------------------------ request pipeline
def platform_route(
    state: EmulatorState, dialect: Dialect, action: str, path: str, handler: Handler, method: str
) -> Route:
    """A route whose requests go through statistics, fault injection and authentication."""
    route_id = f"{dialect.name}.{action}"

    async def endpoint(request: Request) -> Response:
        return await _serve(state, dialect, route_id, handler, request)

    return Route(dialect.root + path, endpoint, methods=[method], name=route_id)


def unknown_route(state: EmulatorState, dialect: Dialect) -> Route:
    """Any other path under the platform's root: a 404 in the platform's own error format, as it would."""

    async def endpoint(request: Request) -> Response:
        return await _serve(state, dialect, f"{dialect.name}.unknown", _not_found, request)

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    return Route(dialect.root + "/{path:path}", endpoint, methods=methods, name=f"{dialect.name}.unknown")


async def _not_found(state: EmulatorState, request: Request) -> Response:
    raise ApiError(404)


async def _serve(
    state: EmulatorState, dialect: Dialect, route_id: str, handler: Handler, request: Request
) -> Response:
    state.count("requests", route_id)
    if request.client is not None:
        state.count("client_connections", f"{request.client.host}:{request.client.port}")
    fault = state.draw_fault(route_id)
    if fault is not None and fault.phase == "before":
        if fault.kind != "delay":
            return _counted(state, fault_response(fault, dialect, None))
        await asyncio.sleep(fault.delay_seconds)
    response = await _authenticated(state, dialect, handler, request)
    if fault is not None and fault.phase == "after":
        if fault.kind == "delay":
            await asyncio.sleep(fault.delay_seconds)
        else:
            response = fault_response(fault, dialect, response)
    return _counted(state, response)


async def _authenticated(
    state: EmulatorState, dialect: Dialect, handler: Handler, request: Request
) -> Response:
    header = request.headers.get("authorization", "")
    if not (dialect.auth_optional and not header) and not _key_ok(
        header, state.api_key, dialect.accepts_bare_key
    ):
        return dialect.error(401, None, None)
    try:
        return await handler(state, request)
    except ApiError as exc:
        return dialect.error(exc.status, exc.message, exc.code)


def _key_ok(header: str, api_key: str, accepts_bare_key: bool) -> bool:
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() == "bearer" and token:
        candidate = token.strip()
    elif accepts_bare_key:
        candidate = header.strip()
    else:
        return False
    return secrets.compare_digest(candidate.encode(), api_key.encode())


def _counted(state: EmulatorState, response: Response) -> Response:
    if not isinstance(response, ConnectionReset):
        state.count("responses", str(response.status_code))
    return response


async def json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object, or an :class:`ApiError` 400."""
    body = await request.body()
    if not body.strip():
        return {}
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise ApiError(400, "Request body is not valid JSON.", code="bad_request") from exc
    if not isinstance(payload, dict):
        raise ApiError(400, "Request body must be a JSON object.", code="bad_request")
    return payload


# ------------------------------------------------------------------------------------- fault responses
NGINX_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
MALFORMED_BODY = b'{"status": ok, "data": {"outputs": [1, 2,], }'


def fault_response(fault: Fault, dialect: Dialect, served: Response | None) -> Response:
    """The response for an injected fault; ``served`` is the real response in phase ``after``."""
    kind = fault.kind
    if kind == "reset":
        return ConnectionReset()
    if kind == "html":
        return HTMLResponse(NGINX_502, status_code=502)
    if kind == "malformed":
        return Response(MALFORMED_BODY, status_code=200, media_type="application/json")
    if kind == "truncated":
        return Response(_truncated(dialect, served), status_code=200, media_type="application/json")
    response = dialect.error(int(kind), None, None)
    if kind == "429":
        response.headers["Retry-After"] = _retry_after(fault)
    return response


def _truncated(dialect: Dialect, served: Response | None) -> bytes:
    """The first half of the real body (or of a platform error body), cut on a character boundary."""
    body = bytes(getattr(served, "body", b"")) if served is not None else b""
    if len(body) < 8 or not body.lstrip().startswith(b"{"):
        body = bytes(dialect.error(500, None, None).body)
    text = body.decode("utf-8")
    return text[: max(len(text) // 2, 1)].encode("utf-8")


def _retry_after(fault: Fault) -> str:
    if fault.retry_after_http_date:
        return email.utils.formatdate(time.time() + fault.retry_after, usegmt=True)
    seconds = fault.retry_after
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


class ConnectionReset(Response):
    """Not a response: aborts the TCP connection (RST) so the client sees a connection reset."""

    def __init__(self) -> None:
        super().__init__(status_code=500)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        cycle = getattr(receive, "__self__", None)
        transport = getattr(cycle, "transport", None)
        if transport is None:
            # Not served by uvicorn's HTTP/1 protocols: start a response and die half-way instead.
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"64")]}
            )
            raise ConnectionAbortedError("emulated connection reset")
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
        for _ in range(20):  # let uvicorn see connection_lost so it does not try to answer
            if getattr(cycle, "disconnected", True):
                break
            await asyncio.sleep(0)


# ---------------------------------------------------------------------------------------- control API
def control_routes(state: EmulatorState) -> list[Route]:
    """``/_emulator/*``: configure and inspect the emulator over HTTP (no auth, no faults)."""
    handlers: list[tuple[str, Callable[[EmulatorState, Request], Awaitable[Any]], str]] = [
        ("/reset", _ctl_reset, "POST"),
        ("/platforms", _ctl_platforms, "GET"),
        ("/scenarios", _ctl_get_scenarios, "GET"),
        ("/scenarios", _ctl_put_scenarios, "PUT"),
        ("/faults", _ctl_get_faults, "GET"),
        ("/faults", _ctl_post_faults, "POST"),
        ("/faults", _ctl_delete_faults, "DELETE"),
        ("/stats", _ctl_stats, "GET"),
        ("/config", _ctl_get_config, "GET"),
        ("/config", _ctl_put_config, "PUT"),
        ("/runs", _ctl_runs, "GET"),
        ("/runs/{run_id}", _ctl_run, "GET"),
        ("/runs/{run_id}/cancel", _ctl_cancel, "POST"),
    ]
    return [
        Route(CONTROL_ROOT + path, _control(state, fn), methods=[method]) for path, fn, method in handlers
    ]


def _control(
    state: EmulatorState, fn: Callable[[EmulatorState, Request], Awaitable[Any]]
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            result = await fn(state, request)
        except ApiError as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        except ValidationError as exc:
            return JSONResponse({"error": json.loads(exc.json())}, status_code=422)
        return result if isinstance(result, Response) else JSONResponse(result)

    return endpoint


async def _control_json(request: Request) -> Any:
    try:
        return json.loads(await request.body() or b"null")
    except ValueError as exc:
        raise ApiError(400, "body is not valid JSON") from exc


async def _ctl_reset(state: EmulatorState, request: Request) -> dict[str, Any]:
    state.reset()
    return {"result": "ok"}


async def _ctl_platforms(state: EmulatorState, request: Request) -> dict[str, Any]:
    return {name: dialect.root for name, dialect in state.dialects.items()}


async def _ctl_get_scenarios(state: EmulatorState, request: Request) -> dict[str, Any]:
    return {key: scenario.model_dump(mode="json") for key, scenario in state.scenarios.items()}


async def _ctl_put_scenarios(state: EmulatorState, request: Request) -> dict[str, Any]:
    payload = await _control_json(request)
    if not isinstance(payload, dict):
        raise ApiError(400, "expected {workflow_id: scenario}")
    resolved = {key: _as_scenario(value) for key, value in payload.items()}
    for key, scenario in resolved.items():
        state.set_scenario(key, scenario)
    return await _ctl_get_scenarios(state, request)


async def _ctl_get_faults(state: EmulatorState, request: Request) -> list[dict[str, Any]]:
    return [fault.model_dump(mode="json") for fault in state.faults]


async def _ctl_post_faults(state: EmulatorState, request: Request) -> list[dict[str, Any]]:
    payload = await _control_json(request)
    if isinstance(payload, dict):
        payload = [payload]
    if not isinstance(payload, list):
        raise ApiError(400, "expected a list of faults")
    state.set_faults(payload)
    return await _ctl_get_faults(state, request)


async def _ctl_delete_faults(state: EmulatorState, request: Request) -> list[dict[str, Any]]:
    state.clear_faults()
    return []


async def _ctl_stats(state: EmulatorState, request: Request) -> dict[str, Any]:
    return state.stats()


async def _ctl_get_config(state: EmulatorState, request: Request) -> dict[str, Any]:
    return {"ping_interval": state.ping_interval, "seed": state.seed}


async def _ctl_put_config(state: EmulatorState, request: Request) -> dict[str, Any]:
    payload = await _control_json(request)
    interval = payload.get("ping_interval") if isinstance(payload, dict) else None
    if not isinstance(interval, int | float) or interval <= 0:
        raise ApiError(400, "expected {ping_interval: seconds > 0}")
    state.ping_interval = float(interval)
    return await _ctl_get_config(state, request)


async def _ctl_runs(state: EmulatorState, request: Request) -> list[dict[str, Any]]:
    return state.list_runs(request.query_params.get("platform"))


async def _ctl_run(state: EmulatorState, request: Request) -> dict[str, Any]:
    run = _control_run(state, request)
    return run.summary(state.status_word(run))


async def _ctl_cancel(state: EmulatorState, request: Request) -> dict[str, Any]:
    run = _control_run(state, request)
    canceled = state.cancel(run.run_id)
    return {**run.summary(state.status_word(run)), "canceled": canceled}


def _control_run(state: EmulatorState, request: Request) -> Run:
    run_id = request.path_params["run_id"]
    run = state.get_run(run_id) or state.find(run_id)
    if run is None:
        raise ApiError(404, f"no run {run_id}")
    return run
