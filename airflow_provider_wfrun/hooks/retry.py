"""
When a failed call is tried again, and how long to wait: one tenacity policy for the sync and async paths.

Connection errors, timeouts, 5xx and 429 are retried with exponential backoff and jitter, honouring
``Retry-After`` (capped), until ``limit`` attempts or ``max_seconds`` from the first attempt's start. A
submit is retried only where that cannot start a second run: always on platforms that deduplicate by
idempotency key, otherwise only when the request never reached the server or was refused before any
work (429). A body over the size cap is never retried: the next answer would be as large.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)
from tenacity.stop import stop_base

from airflow_provider_wfrun.async_log import alog
from airflow_provider_wfrun.exceptions import (
    InvalidResponseError,
    PlatformError,
    RateLimitedError,
    ResponseTooLargeError,
    WorkflowRunConnectionError,
)

_T = TypeVar("_T")


class _Log(Protocol):
    def warning(self, event: Any, *args: Any, **kw: Any) -> Any: ...


class _StopAfterTime(stop_base):
    """Stop once ``seconds`` have passed since ``started`` (the first attempt's start, which may precede
    tenacity's own clock: the async path makes its first attempt before setting tenacity up)."""

    def __init__(self, started: float, seconds: float) -> None:
        self.started, self.seconds = started, seconds

    def __call__(self, retry_state: RetryCallState) -> bool:
        return time.monotonic() - self.started >= self.seconds


def parse_retry_after(value: str | None, *, cap: float) -> float | None:
    """``Retry-After`` as seconds (an integer or an HTTP date), capped; None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, OverflowError):
            return None
    if seconds != seconds:  # NaN
        return None
    return max(0.0, min(seconds, cap))


def is_retryable(exc: BaseException, *, replay_safe: bool) -> bool:
    if isinstance(exc, RateLimitedError):
        return True
    if isinstance(exc, WorkflowRunConnectionError):
        return replay_safe or not exc.request_sent
    if isinstance(exc, PlatformError):
        return replay_safe and exc.is_transient
    if isinstance(exc, ResponseTooLargeError):
        return False
    if isinstance(exc, InvalidResponseError):
        return replay_safe and exc.field == "<body>"
    return False


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """
    :param limit: Attempts per call, the first included.
    :param delay: Base of the exponential backoff, in seconds.
    :param max_seconds: Give up retrying once this much time has passed since the first attempt.
    :param retry_after_cap: Never wait longer than this for a ``Retry-After`` hint.
    """

    limit: int
    delay: float
    max_seconds: float
    retry_after_cap: float

    def call(self, send: Callable[..., _T], *args: Any, replay_safe: bool, action: str, log: _Log) -> _T:
        retrying = self._retrying(
            Retrying,
            replay_safe=replay_safe,
            before_sleep=lambda state: log.warning(*self._retry_warning(state, action)),
        )
        return retrying(send, *args)  # type: ignore[no-any-return]

    async def acall(
        self,
        send: Callable[..., Awaitable[_T]],
        *args: Any,
        replay_safe: bool,
        action: str,
        log: _Log,
    ) -> _T:
        """
        The async twin of :meth:`call`: the same policy, attempts, waits and logs.

        The first attempt runs before tenacity is set up: a triggerer makes hundreds of polls a second and
        nearly all succeed at once, while setting up tenacity's attempt loop cost each poll about a third
        of its CPU (docs/benchmarks.md). A first attempt that fails is handed to the policy as its attempt
        1, so what follows (waits, logs, stop rules, counted from the first attempt's start) is unchanged.
        """
        started = time.monotonic()
        try:
            return await send(*args)
        except Exception as exc:
            if not is_retryable(exc, replay_safe=replay_safe) or self.limit < 2:
                raise
            first_failure: Exception | None = exc

        async def attempt(*call_args: Any) -> _T:
            nonlocal first_failure
            if first_failure is not None:
                failure, first_failure = first_failure, None
                raise failure
            return await send(*call_args)

        # The warning is noted before the wait and written at its start, off the event loop (async_log).
        warnings: list[tuple[Any, ...]] = []

        async def sleep(seconds: float) -> None:
            while warnings:
                await alog(log, "warning", *warnings.pop(0))
            await asyncio.sleep(seconds)

        retrying = self._retrying(
            AsyncRetrying,
            replay_safe=replay_safe,
            before_sleep=lambda state: warnings.append(self._retry_warning(state, action)),
            started=started,
            sleep=sleep,
        )
        return await retrying(attempt, *args)  # type: ignore[no-any-return]

    def _retrying(
        self,
        retrying_class: type[Any],
        *,
        replay_safe: bool,
        before_sleep: Callable[[RetryCallState], None],
        started: float | None = None,
        **extra: Any,
    ) -> Any:
        first_attempt_at = time.monotonic() if started is None else started
        return retrying_class(
            stop=stop_after_attempt(self.limit) | _StopAfterTime(first_attempt_at, self.max_seconds),
            wait=self._wait,
            retry=retry_if_exception(lambda exc: is_retryable(exc, replay_safe=replay_safe)),
            before_sleep=before_sleep,
            reraise=True,
            **extra,
        )

    def _retry_warning(self, state: RetryCallState, action: str) -> tuple[Any, ...]:
        """The line logged before a retry's wait (format and arguments)."""
        exc = state.outcome.exception() if state.outcome else None
        return (
            "%s failed (%s); retrying in %.1f s (attempt %d of %d)",
            action,
            exc,
            state.upcoming_sleep,
            state.attempt_number + 1,
            self.limit,
        )

    def _wait(self, state: RetryCallState) -> float:
        """Seconds before the next attempt: the platform's Retry-After, else backoff with jitter."""
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
            return exc.retry_after
        backoff = wait_random_exponential(multiplier=self.delay, max=max(self.delay, self.retry_after_cap))
        return float(backoff(state))
