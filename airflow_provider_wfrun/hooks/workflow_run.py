"""
The public hook: submit, poll and cancel workflow runs, returning normalized runs.

One hook serves every platform; the connection's type picks the adapter. What a call sends and how the
answer is read are the adapter's (``platforms/``); how it travels is the base hook's (``hooks/base.py``:
connection, bounded transport, retries). Airflow registers one hook class per connection type; those are
built from the adapter registry (:data:`PLATFORM_HOOKS`, importable by name, e.g. ``DifyHook``), so a new
platform needs no code here.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Generator, Iterator, Mapping
from contextlib import contextmanager
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, NamedTuple

from airflow_provider_wfrun.async_log import alog
from airflow_provider_wfrun.connection_form import form_of
from airflow_provider_wfrun.exceptions import (
    FileTransferError,
    FormAnsweredElsewhereError,
    FormExpiredError,
    InvalidInputError,
    InvalidResponseError,
    PlatformError,
    ResponseTooLargeError,
    RunNotFoundError,
    WorkflowRunError,
)
from airflow_provider_wfrun.files import load_workflow
from airflow_provider_wfrun.hooks.base import WorkflowRunBaseHook
from airflow_provider_wfrun.hooks.shared_reads import Reading, read_shared
from airflow_provider_wfrun.hooks.transport import (
    Bounds,
    Outgoing,
    aevents,
    deadline_error,
    shared_async_client,
)
from airflow_provider_wfrun.human_input import FORM_ALREADY_SUBMITTED, FORM_EXPIRED
from airflow_provider_wfrun.models import RunStatus, WorkflowRun
from airflow_provider_wfrun.platforms import PlatformAdapter, adapter_classes

if TYPE_CHECKING:
    from airflow_provider_wfrun.hooks.transport import EventStream
    from airflow_provider_wfrun.human_input import HumanInputForm
    from airflow_provider_wfrun.models import OutputFile
    from airflow_provider_wfrun.platforms.base import ApiRequest

__all__ = ["PLATFORM_HOOKS", "WorkflowRunHook", "platform_hook", "shared_async_client"]

#: Events read from a streamed submit before the platform must have named the run.
MAX_EVENTS_BEFORE_START = 1000
#: Further reads one poll may make (ComfyUI: its queue after an empty history, then the history again).
MAX_FOLLOWUPS = 3
#: Events read from a reopened run stream (its replay included) before the pause must have been reached.
MAX_EVENTS_BEFORE_PAUSE = 10_000


class WorkflowRunHook(WorkflowRunBaseHook):
    """
    Submit, poll and cancel workflow runs on any registered platform, returning normalized runs.

    Every method has an async twin (``a...``) for triggers; both behave the same. Only
    :class:`~airflow_provider_wfrun.exceptions.WorkflowRunError` subclasses leave them.
    """

    #: What the last poll's follow-up reads made of a run, while it lasts (the adapter's
    #: ``lasting_followup``).
    _lasting: _Followed | None = None

    def run_url(self, run_id: str, workflow_id: str | None = None) -> str:
        connection = self.get_platform_connection()
        return self.adapter.run_url(run_id, base_url=connection.base_url, workflow_id=workflow_id)

    def output_files(self, run: WorkflowRun) -> list[OutputFile]:
        """
        The files ``run`` produced, with absolute URLs (no request is made). A file whose
        ``authenticated`` is True is fetched with :meth:`auth_headers`.
        """
        connection = self.get_platform_connection()
        with self.platform_errors(run.run_id):
            return self.adapter.output_files(run, base_url=connection.base_url)

    def auth_headers(self) -> dict[str, str]:
        """The headers that authenticate a request to this connection's platform (none without a key)."""
        connection = self.get_platform_connection()
        return self.adapter.auth_headers(connection.api_key) if connection.api_key else {}

    # --- files --------------------------------------------------------------------------------------
    def upload_file(self, name: str, content: bytes, media_type: str) -> Any:
        """
        Upload one input file; returns the value the workflow's input takes (Dify's file object, chenyu's
        ``asset://`` URI). Retried like a read: a repeated upload only leaves an unused copy.
        """
        self.get_platform_connection()
        request = self.adapter.upload_request(name, content, media_type)
        payload = self._call(request, None)
        with self.platform_errors(None):
            return self.adapter.parse_upload(payload, media_type=media_type)

    @contextmanager
    def open_file(self, file: OutputFile, *, run_id: str, max_bytes: int) -> Iterator[Iterator[bytes]]:
        """
        An output file's bytes, streamed in chunks within the hook's deadline (for the whole download)
        and ``max_bytes``. Platform credentials go only to files on the platform's own API.
        """
        headers = self.auth_headers() if file.authenticated else {}
        outgoing = Outgoing("GET", file.url, headers)
        where = self._where(run_id)
        bounds = Bounds(self.timeout, max_bytes)
        with self._sync_transport().download(outgoing, bounds, where) as (status, chunks):
            if status >= 400:
                raise FileTransferError(
                    f"downloading output file {file.name!r} ({file.output_key}) answered HTTP {status}",
                    platform=self.adapter.name,
                    run_id=run_id,
                )
            try:
                yield chunks
            except ResponseTooLargeError:
                raise FileTransferError(
                    f"output file {file.name!r} is larger than max_file_bytes={max_bytes}; reading stopped",
                    platform=self.adapter.name,
                    run_id=run_id,
                ) from None

    # --- human input (paused runs) ---------------------------------------------------------------
    def pending_form(self, run_id: str) -> HumanInputForm | None:
        """
        The form a paused run waits on, or None if it waits on none (it resumed or ended meanwhile).

        Read from the run's event stream, reopened with its replay: within the hook's ``timeout`` for the
        whole read, ``max_response_bytes`` and :data:`MAX_EVENTS_BEFORE_PAUSE` events. Retried like a read.
        """
        self.get_platform_connection()
        self._check_run_id(run_id)
        request = self.adapter.events_request(run_id)
        return self.retry_policy.call(
            self._read_pending_form,
            request,
            run_id,
            replay_safe=True,
            action=self._action(request),
            log=self.log,
        )

    def answer_form(
        self, form: HumanInputForm, *, run_id: str, action: str, inputs: Mapping[str, Any]
    ) -> None:
        """
        Answer a waiting form; the run resumes. One-shot, so not retried. A form answered elsewhere first is
        a :class:`FormAnsweredElsewhereError`, one that ran out of time a :class:`FormExpiredError`.
        """
        self.get_platform_connection()
        if action not in {choice.id for choice in form.actions}:
            raise InvalidInputError(
                f"{action!r} is not an action of the form; it offers {[each.id for each in form.actions]}",
                platform=self.adapter.name,
                run_id=run_id,
            )
        request = self.adapter.answer_request(form.token, action=action, inputs=inputs)
        try:
            self.retry_policy.call(
                self._send, request, run_id, replay_safe=False, action=self._action(request), log=self.log
            )
        except PlatformError as exc:
            raise self._form_error(exc, run_id) from exc
        self.log.info("Answered the form of %s run %s with %r", self.adapter.display_name, run_id, action)

    def _form_error(self, exc: PlatformError, run_id: str) -> WorkflowRunError:
        where = {"platform": self.adapter.name, "run_id": run_id}
        if exc.code == FORM_ALREADY_SUBMITTED:
            return FormAnsweredElsewhereError(
                "the form was answered on the platform before the answer given in Airflow was submitted; "
                "the run went on with that other answer, and the one from Airflow was not used",
                **where,
            )
        if exc.code == FORM_EXPIRED:
            return FormExpiredError(
                "the form expired before it was answered; the run followed its timeout branch", **where
            )
        return exc

    def _read_pending_form(self, request: ApiRequest, run_id: str) -> HumanInputForm | None:
        connection = self.get_platform_connection()
        outgoing = Outgoing(request.method, request.url(connection.base_url), **self._content(request))
        with self._sync_transport().events(outgoing, self.bounds, self._where(run_id)) as stream:
            if not stream.is_event_stream:
                self._decode(stream.reply(), run_id)
                raise InvalidResponseError(
                    "the run's event stream was answered with an ordinary body",
                    platform=self.adapter.name,
                    run_id=run_id,
                    field="<body>",
                )
            pending = self._pending(stream.events(), run_id)
            if stream.cut():
                raise deadline_error(self._where(run_id), self.bounds)
            return pending

    def _pending(self, events: Iterator[str], run_id: str) -> HumanInputForm | None:
        pending: HumanInputForm | None = None
        for count, data in enumerate(events, 1):
            if count > MAX_EVENTS_BEFORE_PAUSE:
                raise InvalidResponseError(
                    f"the run's event stream went on for more than {MAX_EVENTS_BEFORE_PAUSE} events without "
                    "reaching the pause; reading stopped",
                    platform=self.adapter.name,
                    run_id=run_id,
                )
            if not data:
                continue
            with self.platform_errors(run_id):
                pending, said_all = self.adapter.follow_form(self._event_json(data), pending, run_id=run_id)
            if said_all:
                break
        return pending

    # --- sync API -------------------------------------------------------------------------------
    def submit_run(
        self,
        inputs: Mapping[str, Any],
        *,
        workflow_id: str | None = None,
        idempotency_key: str | None = None,
        workflow: Mapping[str, Any] | str | PurePath | None = None,
    ) -> WorkflowRun:
        """
        Start a run and return it as soon as the platform has given it an id. ``workflow`` is the
        document of a platform that runs one (ComfyUI's API-format graph): a mapping, or a path or
        ObjectStoragePath of its JSON file.
        """
        self.get_platform_connection()
        request = self._submit_request(inputs, workflow_id, idempotency_key, workflow)
        run = self.retry_policy.call(
            self._send_submit,
            request,
            replay_safe=self.adapter.idempotent_submit,
            action=f"{self.adapter.display_name} submit",
            log=self.log,
        )
        self.log.info("Submitted %s run %s", self.adapter.display_name, run.run_id)
        return run

    def get_run(self, run_id: str) -> WorkflowRun:
        """The run's current state; a terminal run includes its settlement where the platform has one."""
        self.get_platform_connection()
        self._check_run_id(run_id)
        run = self._parse_run(self._call(self.adapter.get_request(run_id), run_id), run_id)
        if self._needs_followups(run):
            steps = self._followups(run)
            step = _next_step(steps, None)
            while not isinstance(step, WorkflowRun):
                step = _next_step(steps, self._follow(step, run_id))
            run = step
        return self.settle(run) if run.is_terminal else run

    def settle(self, run: WorkflowRun) -> WorkflowRun:
        """
        A terminal run with its settlement (billing, where the platform has a second call for it) and its
        URL. That call enriches a result and never decides it: if it fails or cannot be read, the run comes
        back as it was, with ``settlement`` None, and the log says why.
        """
        request = self.adapter.settlement_request(run)
        if request is not None:
            try:
                run = self._settled(run, self._call(request, run.run_id))
            except WorkflowRunError as exc:
                self.log.warning(*self._unsettled_warning(run, request, exc))
        return self._with_url(run)

    def cancel_run(self, run_id: str, *, task_id: str | None = None) -> WorkflowRun:
        """Ask the platform to stop the run and return its state; ``NotSupportedError`` where it cannot."""
        self.get_platform_connection()
        self._check_run_id(run_id)
        for request in self.adapter.cancel_requests(run_id, task_id=task_id):
            self._call(request, run_id)
        self.log.info("Asked %s to cancel run %s", self.adapter.display_name, run_id)
        try:
            return self.get_run(run_id)
        except RunNotFoundError as exc:
            return self._removed(run_id, exc)

    def test_connection(self) -> tuple[bool, str]:
        """Airflow's connection test: one cheap authenticated call."""
        try:
            connection = self.get_platform_connection()
            self._call(self.adapter.probe_request(), None)
        except WorkflowRunError as exc:
            return False, str(exc)
        return True, f"Connected to {self.adapter.display_name} at {connection.base_url}"

    # --- async API ------------------------------------------------------------------------------
    async def asubmit_run(
        self,
        inputs: Mapping[str, Any],
        *,
        workflow_id: str | None = None,
        idempotency_key: str | None = None,
        workflow: Mapping[str, Any] | None = None,
    ) -> WorkflowRun:
        """The async twin of :meth:`submit_run`; ``workflow`` inline only (a file read would block)."""
        await self.aget_platform_connection()
        if workflow is not None and not isinstance(workflow, Mapping):
            raise InvalidInputError(
                "asubmit_run takes the workflow as a mapping; load a file with submit_run or beforehand",
                platform=self.adapter.name,
            )
        request = self._submit_request(inputs, workflow_id, idempotency_key, workflow)
        async with shared_async_client():
            run = await self.retry_policy.acall(
                self._asend_submit,
                request,
                replay_safe=self.adapter.idempotent_submit,
                action=f"{self.adapter.display_name} submit",
                log=self.log,
            )
        await alog(self.log, "info", "Submitted %s run %s", self.adapter.display_name, run.run_id)
        return run

    async def aget_run(self, run_id: str) -> WorkflowRun:
        await self.aget_platform_connection()
        self._check_run_id(run_id)
        async with shared_async_client():  # a settlement call reuses the poll's connection
            run = self._parse_run(await self._acall(self.adapter.get_request(run_id), run_id), run_id)
            if self._needs_followups(run):
                steps = self._followups(run)
                step = _next_step(steps, None)
                while not isinstance(step, WorkflowRun):
                    step = _next_step(steps, await self._afollow(step, run_id))
                run = step
            return await self.asettle(run) if run.is_terminal else run

    async def asettle(self, run: WorkflowRun) -> WorkflowRun:
        """The async twin of :meth:`settle`."""
        request = self.adapter.settlement_request(run)
        if request is not None:
            try:
                run = self._settled(run, await self._acall(request, run.run_id))
            except WorkflowRunError as exc:
                await alog(self.log, "warning", *self._unsettled_warning(run, request, exc))
        return self._with_url(run)

    async def acancel_run(self, run_id: str, *, task_id: str | None = None) -> WorkflowRun:
        await self.aget_platform_connection()
        self._check_run_id(run_id)
        async with shared_async_client():
            for request in self.adapter.cancel_requests(run_id, task_id=task_id):
                await self._acall(request, run_id)
            await alog(self.log, "info", "Asked %s to cancel run %s", self.adapter.display_name, run_id)
            try:
                return await self.aget_run(run_id)
            except RunNotFoundError as exc:
                return self._removed(run_id, exc)

    # --- plumbing -------------------------------------------------------------------------------
    def _submit_request(
        self,
        inputs: Mapping[str, Any],
        workflow_id: str | None,
        idempotency_key: str | None,
        workflow: Mapping[str, Any] | str | PurePath | None = None,
    ) -> ApiRequest:
        if not isinstance(inputs, Mapping):
            raise InvalidInputError(
                f"inputs must be a mapping of input names to values, got {type(inputs).__name__}",
                platform=self.adapter.name,
            )
        if self.adapter.idempotent_submit and not idempotency_key:
            idempotency_key = str(uuid.uuid4())
        document = self.workflow_document(workflow)
        return self.adapter.submit_request(
            inputs, workflow_id=workflow_id, idempotency_key=idempotency_key, workflow=document
        )

    def workflow_document(self, workflow: Mapping[str, Any] | str | PurePath | None) -> dict[str, Any] | None:
        """
        ``workflow`` loaded (see :func:`~airflow_provider_wfrun.files.load_workflow`), or an error before
        any call where the platform runs stored workflows only.
        """
        if workflow is None or (isinstance(workflow, str) and not workflow.strip()):
            return None  # unset, or a template that rendered empty
        if not self.adapter.takes_workflow:
            raise InvalidInputError(
                f"{self.adapter.display_name} runs workflows stored on the platform, so a workflow document "
                "cannot be passed; leave workflow empty (use workflow_id where the platform takes one)",
                platform=self.adapter.name,
            )
        return load_workflow(workflow)

    def _removed(self, run_id: str, not_found: RunNotFoundError) -> WorkflowRun:
        """A run unknown right after its cancel was accepted: canceled where the adapter says so."""
        removed = self.adapter.removed_by_cancel(run_id)
        if removed is None:
            raise not_found
        return removed

    def _check_run_id(self, run_id: str) -> None:
        if not isinstance(run_id, str) or not run_id.strip():
            raise InvalidInputError(
                f"run_id must be a non-empty string, got {run_id!r}", platform=self.adapter.name
            )
        self.adapter.check_run_id(run_id)

    def _parse_run(self, payload: Any, run_id: str) -> WorkflowRun:
        """The run an answer describes, which must be the run asked about (never a stale answer's)."""
        with self.platform_errors(run_id):
            run = self.adapter.parse_run(payload, run_id=run_id)
        if run.run_id != run_id:
            raise InvalidResponseError(
                f"asked for run {run_id!r}, the platform answered about run {run.run_id!r}; the answer "
                "was not used",
                platform=self.adapter.name,
                run_id=run_id,
                field="run_id",
            )
        return run

    def _parse_submit(self, payload: Any, request: ApiRequest) -> WorkflowRun:
        with self.platform_errors(None):
            return self.adapter.submitted(payload, request)

    def _followed(self, run: WorkflowRun, payload: Any, step: int) -> WorkflowRun:
        with self.platform_errors(run.run_id):
            return self.adapter.apply_followup(run, payload, step=step)

    def _needs_followups(self, first: WorkflowRun) -> bool:
        """Whether a poll's first read leaves anything to do: most polls of most platforms, nothing."""
        return self._lasting is not None or self.adapter.followup_request(first, step=0) is not None

    def _followups(self, first: WorkflowRun) -> Generator[ApiRequest | _ReadAgain, Reading, WorkflowRun]:
        """
        The further reads a poll needs after its first (``first``): yields each request, is sent its
        answer (a :class:`Reading`), returns the run. None are made while what earlier ones said still
        lasts. A reading shared with other polls may be older than this run: if it leaves the run open
        (ComfyUI: a prompt in neither list), the request is read again for this poll alone.
        """
        run = self._still_lasting(first)
        if run is not None:
            return run
        run = first
        for step in range(MAX_FOLLOWUPS):
            request = self.adapter.followup_request(run, step=step)
            if request is None:
                break
            reading = yield request
            followed = self._followed(run, reading.digest, step)
            if not reading.fresh and self.adapter.followup_request(followed, step=step + 1) is not None:
                followed = self._followed(run, (yield _ReadAgain(request)).digest, step)
            run = followed
        self._remember_followed(first, run)
        return run

    def _follow(self, step: ApiRequest | _ReadAgain, run_id: str) -> Reading:
        request = step.request if isinstance(step, _ReadAgain) else step
        return Reading(self._call(request, run_id), fresh=True)

    async def _afollow(self, step: ApiRequest | _ReadAgain, run_id: str) -> Reading:
        """A follow-up read; one every run on the server shares is read once for the loop's polls."""
        again = isinstance(step, _ReadAgain)
        request = step.request if isinstance(step, _ReadAgain) else step
        if not request.shared_seconds:
            return Reading(await self._acall(request, run_id), fresh=True)

        async def fetch() -> Any:
            return await self._acall(request, run_id)  # the adapter's digest (``_decode``)

        return await read_shared(self._shared_key(request), request.shared_seconds, fetch, fresh=again)

    def _still_lasting(self, first: WorkflowRun) -> WorkflowRun | None:
        """
        ``first`` (a poll's first read) as the follow-up reads of an earlier poll made it, while that lasts
        and the first read says what it said then; None when the follow-ups must be read (again).
        """
        lasting = self._lasting
        if (
            lasting is None
            or lasting.run_id != first.run_id
            or lasting.first_said != first.platform_status
            or time.monotonic() >= lasting.until
            or self.adapter.followup_request(first, step=0) is None
        ):
            return None
        update = {
            "status": lasting.status,
            "platform_status": lasting.platform_status,
            "queue_position": lasting.queue_position,
        }
        return first.model_copy(update=update)

    def _remember_followed(self, first: WorkflowRun, run: WorkflowRun) -> None:
        """What this poll's follow-ups made of the run, for later polls while the adapter says it lasts."""
        seconds = self.adapter.lasting_followup(run) if run is not first else 0.0
        if seconds > 0:
            self._lasting = _Followed(
                run_id=run.run_id,
                until=time.monotonic() + seconds,
                first_said=first.platform_status,
                status=run.status,
                platform_status=run.platform_status,
                queue_position=run.queue_position,
            )
        elif self._lasting is not None and self._lasting.run_id == run.run_id:
            self._lasting = None

    def _settled(self, run: WorkflowRun, payload: Any) -> WorkflowRun:
        with self.platform_errors(run.run_id):
            return self.adapter.apply_settlement(run, payload)

    def _unsettled_warning(
        self, run: WorkflowRun, request: ApiRequest, exc: WorkflowRunError
    ) -> tuple[Any, ...]:
        """The warning (format and arguments) for a run reported without its settlement."""
        return (
            "%s run %s is %s, but %s failed, so the run is reported without its settlement (the costs are "
            "those of the run's status): %s",
            self.adapter.display_name,
            run.run_id,
            run.status.value,
            request.path,
            exc,
        )

    def _with_url(self, run: WorkflowRun) -> WorkflowRun:
        connection = self._connection
        assert connection is not None
        return self.adapter.with_run_url(run, base_url=connection.base_url)

    def _send_submit(self, request: ApiRequest) -> WorkflowRun:
        if not request.stream:
            return self._parse_submit(self._send(request, None), request)
        connection = self.get_platform_connection()
        outgoing = Outgoing(request.method, request.url(connection.base_url), **self._content(request))
        with self._sync_transport().events(outgoing, self.bounds, self._where(None)) as stream:
            if not stream.is_event_stream:
                return self._parse_submit(self._decode(stream.reply(), None), request)
            return self._first_run(stream.events())

    async def _asend_submit(self, request: ApiRequest) -> WorkflowRun:
        if not request.stream:
            return self._parse_submit(await self._asend(request, None), request)
        try:
            return await asyncio.wait_for(self._astream_submit(request), self.timeout)
        except asyncio.TimeoutError:
            raise deadline_error(self._where(None), self.bounds) from None

    async def _astream_submit(self, request: ApiRequest) -> WorkflowRun:
        connection = self._connection
        assert connection is not None
        outgoing = Outgoing(request.method, request.url(connection.base_url), **self._content(request))
        async with aevents(connection.http, outgoing, self.bounds, self._where(None)) as stream:
            if not stream.is_event_stream:
                return self._parse_submit(self._decode(await stream.areply(), None), request)
            return await self._afirst_run(stream)

    def _first_run(self, events: Iterator[str]) -> WorkflowRun:
        """Read a streamed submit until an event names the run (Dify: ``workflow_started``)."""
        for count, data in enumerate(events, 1):
            run = self._read_event(data)
            if run is not None:
                return run
            if count >= MAX_EVENTS_BEFORE_START:
                break
        raise self._stream_ended()

    async def _afirst_run(self, stream: EventStream) -> WorkflowRun:
        events: AsyncIterator[str] = stream.aevents()
        count = 0
        async for data in events:
            run = self._read_event(data)
            if run is not None:
                return run
            count += 1
            if count >= MAX_EVENTS_BEFORE_START:
                break
        raise self._stream_ended()

    def _read_event(self, data: str) -> WorkflowRun | None:
        if not data:
            return None
        with self.platform_errors(None):
            return self.adapter.read_submit_event(self._event_json(data))

    def _event_json(self, data: str) -> Any:
        try:
            return json.loads(data)
        except (ValueError, RecursionError):
            raise InvalidResponseError(
                "the run's event stream carried an event that is not JSON", platform=self.adapter.name
            ) from None

    def _stream_ended(self) -> InvalidResponseError:
        return InvalidResponseError(
            "the event stream ended before the platform reported the run's id; the run may have started, "
            "look for it on the platform before retrying",
            platform=self.adapter.name,
            field="workflow_started",
        )


class _Followed(NamedTuple):
    """
    What a poll's follow-up reads made of a run, kept while the adapter says it lasts. Atoms only, so
    nothing a poll parsed outlives it.
    """

    run_id: str
    #: ``time.monotonic()`` after which the follow-ups are read again.
    until: float
    #: What the poll's first read said (``platform_status``): reused only while it says the same.
    first_said: str | None
    status: RunStatus
    platform_status: str | None
    queue_position: int | None


class _ReadAgain(NamedTuple):
    """A follow-up read again for one poll alone: a shared reading of it left the run open."""

    request: ApiRequest


def _next_step(
    steps: Generator[ApiRequest | _ReadAgain, Reading, WorkflowRun], answer: Reading | None
) -> ApiRequest | _ReadAgain | WorkflowRun:
    """The next request of a poll's follow-ups, given the last one's answer; the run once they are done."""
    try:
        return steps.send(answer)  # type: ignore[arg-type]  # None starts it
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


# --- one registered hook class per connection type -------------------------------------------------
def _hook_class_name(adapter_class: type[PlatformAdapter]) -> str:
    return f"{adapter_class.__name__.removesuffix('Adapter')}Hook"


def platform_hook(adapter_class: type[PlatformAdapter]) -> type[WorkflowRunHook]:
    """
    The hook Airflow registers for one connection type: ProvidersManager wants one class per type, whose
    ``conn_type`` and ``hook_name`` are that platform's.
    """
    name = _hook_class_name(adapter_class)
    namespace: dict[str, Any] = {
        "conn_type": adapter_class.name,
        "hook_name": adapter_class.display_name,
        # Airflow 3.1 reads the connection form from the class's own __dict__ (3.2+: provider info).
        **form_of(adapter_class).hook_methods(),
        "__module__": __name__,
        "__qualname__": name,
        "__doc__": f":class:`WorkflowRunHook` registered for ``{adapter_class.name}`` connections.",
    }
    return type(name, (WorkflowRunHook,), namespace)


#: Connection type -> its registered hook class: ``DifyHook``, ``GptbotsHook``, ``ChenyuHook``...
PLATFORM_HOOKS: dict[str, type[WorkflowRunHook]] = {
    conn_type: platform_hook(adapter_class) for conn_type, adapter_class in adapter_classes().items()
}
_HOOKS_BY_NAME = {hook.__name__: hook for hook in PLATFORM_HOOKS.values()}


def __getattr__(name: str) -> type[WorkflowRunHook]:
    """``from ...hooks.workflow_run import DifyHook`` (and Airflow's import of it by name), PEP 562."""
    try:
        return _HOOKS_BY_NAME[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOOKS_BY_NAME])
