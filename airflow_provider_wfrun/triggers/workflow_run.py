"""
Wait for a workflow run in the triggerer, without holding a worker slot.

The trigger only polls, reports what changed, and on a user's kill cancels. Turning the final run into a
task result (fetching outputs, checking partial success, raising the platform's reason) happens in the
operator's ``execute_complete`` on a worker, so the triggerer stays light and the event stays small.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_wfrun.async_log import alog
from airflow_provider_wfrun.checks import finite_number, non_empty_string, positive_int, positive_seconds
from airflow_provider_wfrun.exceptions import (
    AuthenticationError,
    InvalidInputError,
    NotSupportedError,
    RunNotFoundError,
    WorkflowRunError,
)
from airflow_provider_wfrun.hooks.workflow_run import WorkflowRunHook, shared_async_client
from airflow_provider_wfrun.models import RunStatus

if TYPE_CHECKING:
    from airflow_provider_wfrun.models import WorkflowRun

#: Errors no amount of polling fixes: fire the error event at once.
_FATAL_POLL_ERRORS = (InvalidInputError, AuthenticationError, RunNotFoundError)

#: Progress is logged when it crosses a step of this many percent, not on every poll.
PROGRESS_LOG_STEP = 10

#: Adaptive polling without a prediction: wait up to this fraction of the time waited so far.
BACKOFF_FRACTION = 0.25
#: Adaptive polling around a predicted end: polls may come this fraction of ``poll_interval`` apart.
PREDICTED_END_FRACTION = 0.25

#: Event ``status`` values besides the terminal run statuses.
TIMEOUT = "timeout"
ERROR = "error"
#: The run paused for a form a person must answer (``stop_on_pause``).
PAUSED = "paused"


class WorkflowRunTrigger(BaseTrigger):
    """
    Poll a run until it is terminal, the deadline passes, or polling keeps failing.

    Waiting is most of what a deployment does (thousands of runs in one triggerer), so polls are spent
    where they tell something: by default the interval adapts (:func:`next_poll_delay`) to the platform's
    queue estimate, to the run's progress rate, and otherwise to how long the run has gone on. Against
    polling every ``poll_interval`` that is about half the requests per run and a sooner median sight of
    the end; the price is a later sight of long runs on platforms that predict nothing (figures in
    ``docs/benchmarks.md``).

    Every keyword argument is serialized into the metadata database and used to rebuild the trigger after
    a triggerer restart, so they are ids and numbers only, never a secret: the API key is looked up from
    ``conn_id`` (asynchronously) each time the trigger starts. New arguments always get defaults, because
    triggers already stored were serialized without them.

    :param conn_id: A connection whose type is a workflow platform (``platforms.adapter_classes()``).
    :param run_id: The platform's run id.
    :param end_time: Deadline as a Unix timestamp. Wall-clock time, not ``time.monotonic()``: the
        trigger may resume in another triggerer process after a restart, and must keep the same deadline.
    :param poll_interval: Seconds between polls.
    :param platform_task_id: Second handle a cancel needs on some platforms (Dify's task id); serialized
        because a restarted trigger must still be able to cancel.
    :param cancel_on_kill: Cancel the run when a user marks the task failed or clears it (Airflow 3.3+).
    :param max_consecutive_failures: Failed polls in a row tolerated before giving up with an error event;
        a single poll already retries transient errors inside the hook.
    :param max_poll_interval: The longest wait between two polls, however long the run has gone on.
    :param hook_params: The task's keyword arguments for :class:`WorkflowRunHook` (request timeout,
        retries): numbers only, serialized so a restarted trigger polls the same way.
    :param adaptive: Poll by what the platform says and how long the run has gone on (see
        :func:`next_poll_delay`): at the predicted end where chenyu's queue estimate or progress gives
        one, otherwise every ``poll_interval`` at first and ever less often as a run goes on. ``False``
        polls every ``poll_interval`` (stretched to a queue estimate).
    :param stop_on_pause: Fire a ``paused`` event when the run pauses for a form a person answers (Dify's
        Human Input), so the task can ask it in Airflow. ``False`` (triggers stored before it existed)
        keeps waiting through a pause.
    """

    def __init__(
        self,
        *,
        conn_id: str,
        run_id: str,
        end_time: float,
        poll_interval: float = 10.0,
        platform_task_id: str | None = None,
        cancel_on_kill: bool = True,
        max_consecutive_failures: int = 5,
        max_poll_interval: float = 300.0,
        adaptive: bool = True,
        hook_params: dict[str, Any] | None = None,
        stop_on_pause: bool = False,
    ) -> None:
        super().__init__()
        _check_arguments(
            conn_id=conn_id,
            run_id=run_id,
            end_time=end_time,
            poll_interval=poll_interval,
            max_poll_interval=max_poll_interval,
            max_consecutive_failures=max_consecutive_failures,
        )
        self.conn_id = conn_id
        self.run_id = run_id
        self.end_time = end_time
        self.poll_interval = poll_interval
        self.platform_task_id = platform_task_id
        self.cancel_on_kill = cancel_on_kill
        self.max_consecutive_failures = max_consecutive_failures
        self.max_poll_interval = max_poll_interval
        self.adaptive = adaptive
        self.hook_params = dict(hook_params) if hook_params else None
        self.stop_on_pause = stop_on_pause
        self._last_seen: tuple[Any, ...] = ()
        self._log_lines_seen = 0

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "conn_id": self.conn_id,
                "run_id": self.run_id,
                "end_time": self.end_time,
                "poll_interval": self.poll_interval,
                "platform_task_id": self.platform_task_id,
                "cancel_on_kill": self.cancel_on_kill,
                "max_consecutive_failures": self.max_consecutive_failures,
                "max_poll_interval": self.max_poll_interval,
                "adaptive": self.adaptive,
                "hook_params": self.hook_params,
                "stop_on_pause": self.stop_on_pause,
            },
        )

    def _hook(self) -> WorkflowRunHook:
        # Fewer in-hook retries than on a worker by default: the trigger has its own failure budget across
        # polls. The task's hook_params (request timeout, retries) apply here too.
        defaults = {"retry_limit": 3, "retry_max_seconds": min(60.0, self.poll_interval * 3)}
        return WorkflowRunHook(self.conn_id, **{**defaults, **(self.hook_params or {})})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # The wait holds the loop's shared HTTP client, so its pooled connections outlive each poll and
        # close once the last waiting trigger on the loop is done.
        # The run's deadline bounds the whole wait, each poll included: a slow platform cannot hold the
        # trigger past it. One deadline per wait, not one per poll (each would leave a cancelled timer in
        # the event loop's heap). ``asyncio.timeout`` where Python has it (3.11+): it runs in the trigger's
        # own task, where ``wait_for`` before 3.12 starts a task and can swallow a cancellation that lands
        # as the wait finishes, leaving a removed trigger polling.
        seconds = max(self.end_time - time.time(), 0.001)
        async with shared_async_client():
            try:
                if sys.version_info >= (3, 11):
                    async with asyncio.timeout(seconds):
                        event = await self._wait()
                else:
                    event = await asyncio.wait_for(self._wait(), seconds)
            except asyncio.TimeoutError:
                event = self._timeout_event()
        yield event

    async def _wait(self) -> TriggerEvent:
        hook = self._hook()
        failures = 0
        started = time.monotonic()
        run: WorkflowRun | None
        polled: WorkflowRun | None
        while True:
            try:
                polled = await hook.aget_run(self.run_id)
            except _FATAL_POLL_ERRORS as exc:
                return self._error_event(exc)
            except Exception as exc:
                if not isinstance(exc, WorkflowRunError):
                    # Not a failure the hook knows; it counts against the budget like one, never a crash.
                    await alog(self.log, "exception", "Poll failed unexpectedly")
                    exc = WorkflowRunError(f"unexpected {type(exc).__name__} while polling: {exc}")
                failures += 1
                if failures >= self.max_consecutive_failures:
                    return self._error_event(exc, after=failures)
                await alog(
                    self.log,
                    "warning",
                    "Poll %d of %d in a row failed: %s",
                    failures,
                    self.max_consecutive_failures,
                    exc,
                )
                run = None
            else:
                failures = 0
                await self._report(polled)
                if polled.is_terminal:
                    return self._event(polled.status.value, _terminal_message(polled))
                if self.stop_on_pause and polled.status is RunStatus.PAUSED:
                    return self._event(PAUSED, "the run paused for a form a person must answer")
                run = polled
            remaining = self.end_time - time.time()
            if remaining <= 0:
                return self._timeout_event()
            delay = self._next_delay(run, elapsed=time.monotonic() - started, remaining=remaining)
            # Nothing of this poll outlives it: a parsed run kept through the sleep would be promoted to the
            # garbage collector's oldest generation by the thousand and make its full passes frequent.
            run = polled = None
            await asyncio.sleep(delay)

    async def on_kill(self) -> None:
        """Called by Airflow 3.3+ when a user marks the task failed/success or clears it: stop the run."""
        if not self.cancel_on_kill:
            return
        try:
            await self._hook().acancel_run(self.run_id, task_id=self.platform_task_id)
        except NotSupportedError as exc:
            await alog(self.log, "info", "Not canceling: %s", exc)
        except WorkflowRunError as exc:
            await alog(self.log, "warning", "Could not cancel the run: %s", exc)

    def _next_delay(self, run: WorkflowRun | None, *, elapsed: float, remaining: float) -> float:
        return next_poll_delay(
            run,
            poll_interval=self.poll_interval,
            max_poll_interval=self.max_poll_interval,
            elapsed=elapsed if self.adaptive else None,
            remaining=remaining,
        )

    async def _report(self, run: WorkflowRun) -> None:
        """Log what a user follows (status, queue, progress in 10% steps, new log lines), each change once."""
        progress, eta = _finite(run.progress), _finite(run.eta_seconds)
        progress_step = None if progress is None else int(progress // PROGRESS_LOG_STEP)
        seen = (run.status, run.platform_status, progress_step, run.queue_position)
        if seen != self._last_seen:
            self._last_seen = seen
            details = [f"status {run.platform_status or run.status.value}"]
            if run.queue_position is not None and not run.status.is_terminal and run.queue_position > 0:
                details.append(f"queue position {run.queue_position}")
            if eta:
                details.append(f"estimated wait {eta:.0f} s")
            if progress is not None:
                details.append(f"progress {progress:.0f}%")
            await alog(self.log, "info", "%s run %s: %s", run.platform, run.run_id, ", ".join(details))
        for line in run.logs[self._log_lines_seen :]:
            await alog(self.log, "info", "[%s] %s", line.level or "info", line.message)
        self._log_lines_seen = max(self._log_lines_seen, len(run.logs))

    def _timeout_event(self) -> TriggerEvent:
        return self._event(TIMEOUT, "the run did not finish before the deadline", error_type=TIMEOUT)

    def _error_event(self, exc: WorkflowRunError, after: int | None = None) -> TriggerEvent:
        message = str(exc) if after is None else f"{after} polls in a row failed; last error: {exc}"
        return self._event(ERROR, message, error_type=exc.error_type)

    def _event(self, status: str, message: str, *, error_type: str | None = None) -> TriggerEvent:
        """A small event: how waiting ended. Outputs are fetched again on the worker, not carried here."""
        payload = {"status": status, "run_id": self.run_id, "message": message, "error_type": error_type}
        if self.platform_task_id:
            payload["platform_task_id"] = self.platform_task_id
        return TriggerEvent(payload)


def _check_arguments(
    *,
    conn_id: Any,
    run_id: Any,
    end_time: Any,
    poll_interval: Any,
    max_poll_interval: Any,
    max_consecutive_failures: Any,
) -> None:
    """Bad arguments fail at construction, not as a tight poll loop or a crash inside ``run()``."""
    non_empty_string("conn_id", conn_id)
    non_empty_string("run_id", run_id)
    finite_number("end_time", end_time, what="a Unix timestamp (a finite number)")
    positive_seconds("poll_interval", poll_interval)
    positive_seconds("max_poll_interval", max_poll_interval)
    if max_poll_interval < poll_interval:
        raise InvalidInputError(
            f"max_poll_interval ({max_poll_interval}) must be at least poll_interval ({poll_interval})"
        )
    positive_int("max_consecutive_failures", max_consecutive_failures)


def next_poll_delay(
    run: WorkflowRun | None,
    *,
    poll_interval: float,
    max_poll_interval: float,
    elapsed: float | None = None,
    remaining: float | None = None,
    waited: float | None = None,
) -> float:
    """
    Seconds until the next poll: the polling policy, a pure function of what the last poll said.

    ``elapsed`` (seconds this run has been waited for) turns on adaptive polling; without it the interval
    is ``poll_interval``, stretched to the platform's queue estimate when it gives one (the worker-side
    wait and ``adaptive=False`` use that; the worker passes ``waited``, the seconds since its wait began, for
    the first-poll ramp of 3). Adaptive polling spends requests where they can tell something:

    1. **Queued with an estimate** (chenyu ``eta_seconds``): the run cannot end before it starts, so wait
       for the platform's estimate.
    2. **Running with progress** (chenyu ``progress`` and ``duration_seconds``, both by the platform's
       clock, so no clock skew): extrapolate the rate, ``remaining = duration * (100 - p) / p``, and poll
       when it should be done. The wait is capped at the time already waited (at least ``poll_interval``),
       so a poor early estimate is corrected at the next poll rather than slept through.
    3. **Nothing known** (Dify, GPTBots): a short run should not be seen a whole ``poll_interval`` late,
       so the first waits ramp up, each as long as the time waited so far, from
       :data:`PREDICTED_END_FRACTION` of ``poll_interval`` (2.5 s, 2.5 s, 5 s, then 10 s for the default);
       then every ``poll_interval``, backing off to :data:`BACKOFF_FRACTION` of the time waited so far. A
       run is never seen later than a quarter of its age after it ended once past the ramp (nor later than
       ``max_poll_interval``), and an hour-long run costs tens of requests, not hundreds.

    Only around a predicted end (1 and 2) and in the first ``poll_interval`` of a wait (3) do polls come
    closer than ``poll_interval``, never closer than :data:`PREDICTED_END_FRACTION` of it. Every wait is
    capped at ``max_poll_interval`` and at ``remaining``, the time to the deadline, so the trigger never
    sleeps past it. No clock is read here: the caller passes ``elapsed`` and ``remaining``.
    """
    ceiling = max(poll_interval, max_poll_interval)
    eta = _finite(run.eta_seconds) if run is not None else None
    if elapsed is None:
        delay = poll_interval if waited is None else _first_polls(waited, poll_interval)
        if eta:
            delay = max(poll_interval, min(eta, ceiling))
    else:
        near_end = poll_interval * PREDICTED_END_FRACTION
        running = _finite(run.duration_seconds) if run is not None else None
        if running:
            elapsed = max(elapsed, running)
        expected = _expected_remaining(run)
        if run is not None and run.status is RunStatus.QUEUED and eta:
            delay = min(max(eta, near_end), ceiling)
        elif expected is not None:
            delay = min(max(expected, near_end), max(poll_interval, elapsed), ceiling)
        else:
            delay = min(max(elapsed * BACKOFF_FRACTION, _first_polls(elapsed, poll_interval)), ceiling)
    if remaining is not None:
        delay = min(delay, max(remaining, 0.0))
    return delay


def _first_polls(waited: float, poll_interval: float) -> float:
    """Wait as long as already waited, from a fraction of ``poll_interval`` up to all of it."""
    return min(poll_interval, max(waited, poll_interval * PREDICTED_END_FRACTION))


def _expected_remaining(run: WorkflowRun | None) -> float | None:
    """Seconds until the run should end, extrapolated from its progress; None without a usable rate."""
    if run is None or run.status is not RunStatus.RUNNING:
        return None
    progress, running = _finite(run.progress), _finite(run.duration_seconds)
    if progress is None or running is None or not 0 < progress < 100 or running <= 0:
        return None
    return running * (100 - progress) / progress


def _finite(value: float | None) -> float | None:
    """A platform's number, if it is one a schedule can use (not NaN, not infinite)."""
    return value if value is not None and math.isfinite(value) else None


def _terminal_message(run: WorkflowRun) -> str:
    if run.error is not None:
        return f"run {run.status.value}: {run.error.reason}"
    return f"run {run.status.value}"
