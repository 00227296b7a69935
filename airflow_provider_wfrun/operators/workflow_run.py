"""
Run a workflow as a task: submit, wait (deferrable or in the worker), return outputs and costs.

Design notes:

* **One task, one run.** The run's handle is written to ``task_state_store`` (Airflow 3.3+, through
  ``ResumableJobMixin``) the moment the platform returns it, so a retry after a worker crash reattaches to
  the run instead of starting another. chenyu also gets an idempotency key derived from the task instance,
  which covers the gap between submit and that write, and older Airflow versions without the store.
* **Our own deadline.** The task defers with no framework timeout: Airflow's deferral timeout skips
  ``execute_complete`` and ``on_kill`` and would leave the run going unseen. The trigger carries an
  absolute deadline; on a timeout event the worker cancels the run where the platform can and fails with
  :class:`~airflow_provider_wfrun.exceptions.RunTimeoutError`.
* **Thin events.** The trigger reports how waiting ended; the worker fetches the final run itself.
* **Bad input fails before anything is sent.** ``execute`` first checks the rendered fields, resolves and
  validates the connection and builds the submit request locally, so a typo never reaches a paid API. A
  result larger than ``max_output_bytes`` fails the task instead of bloating the metadata database.
* **A paused run asks in Airflow.** When a run pauses for a form (Dify's Human Input), the task raises it
  in Airflow's human-in-the-loop feature (``airflow_provider_wfrun/hitl.py``), defers to ``HITLTrigger``
  until a person answers, submits the answer to the platform and waits on; each pause the same way.
* **A lost submit answer is said so.** Dify and GPTBots cannot deduplicate a submit, so one whose answer
  was lost is not retried, and the error says that a run may have started.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, cast

from airflow.providers.common.compat.sdk import (
    BaseOperator,
    BaseOperatorLink,
    XCom,
    conf,
)

from airflow_provider_wfrun._compat import ResumableJobMixin
from airflow_provider_wfrun.checks import (
    StrictTemplateFieldsMixin,
    check_flags,
    check_hook_params,
    check_inputs,
    check_max_output_bytes,
    check_rendered_ids,
    check_run_url_template,
    check_workflow_id,
    positive_seconds,
    resolve_connection,
)
from airflow_provider_wfrun.exceptions import (
    FormExpiredError,
    HumanInputError,
    InvalidInputError,
    InvalidResponseError,
    NotSupportedError,
    PlatformError,
    RunTimeoutError,
    WorkflowRunConnectionError,
    WorkflowRunError,
)
from airflow_provider_wfrun.files import (
    DEFAULT_MAX_FILE_BYTES,
    check_input_files,
    check_max_file_bytes,
    check_outputs_to,
    copy_output_files,
    has_input_files,
    input_file_urls,
    upload_input_files,
    without_files,
)
from airflow_provider_wfrun.hitl import answer_of, awaiting_input, hitl_api, hitl_request, timeout_at
from airflow_provider_wfrun.hooks.workflow_run import WorkflowRunHook
from airflow_provider_wfrun.human_input import HumanInputForm
from airflow_provider_wfrun.models import RunStatus, WorkflowRun
from airflow_provider_wfrun.platforms import adapter_classes
from airflow_provider_wfrun.results import (
    DEFAULT_MAX_OUTPUT_BYTES,
    check_event,
    is_timeout,
    raise_if_error,
    result_of,
    summary,
)
from airflow_provider_wfrun.triggers.workflow_run import PAUSED, WorkflowRunTrigger, next_poll_delay

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context
    from airflow.sdk import ObjectStoragePath
    from airflow.sdk.types import TaskInstanceKey

XCOM_RUN_ID = "run_id"
XCOM_RUN_URL = "run_url"
XCOM_COST = "cost"
#: The form a paused run waits on while a person is asked, with the run's handle (read back on resume).
XCOM_HUMAN_INPUT = "human_input"
#: Longest wait between two looks at Airflow's human-in-the-loop request.
MAX_HITL_POKE_SECONDS = 5.0
DEFAULT_TIMEOUT = timedelta(days=7)
_IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1c2b8e-6a8a-4f0e-9d7e-2f5b8c0e7a11")


class WorkflowRunLink(BaseOperatorLink):
    """
    Opens the run on its platform, while the run is still going.

    Airflow 3 resolves a link from the XCom named by ``xcom_key`` and writes that XCom only when a task
    attempt ends or defers. Pointing it at ``run_url``, which the operator pushes the moment the run
    exists, makes the link work during a wait in the worker too.
    """

    name = "Workflow run"
    xcom_key = XCOM_RUN_URL

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return XCom.get_value(key=XCOM_RUN_URL, ti_key=ti_key) or ""


def _handle_from_event(event: Any) -> dict[str, Any]:
    """Where neither defer kwargs nor the state store survived (``dag.test()``), the event names the run."""
    if not isinstance(event, Mapping) or not event.get("run_id"):
        raise InvalidInputError(f"the trigger event does not name a run: {event!r}")
    return {"run_id": event["run_id"], "platform_task_id": event.get("platform_task_id")}


class RunWorkflowOperator(StrictTemplateFieldsMixin, ResumableJobMixin, BaseOperator):
    """
    Run an AI workflow on any registered platform (see the README's table) and return its outputs and cost.

    :param conn_id: A connection whose type is a workflow platform (``dify``, ``chenyu``...; templated).
    :param inputs: The workflow's inputs, a mapping (templated, shown as JSON). ComfyUI: node input
        overrides keyed ``"<node id>.<input name>"``.
    :param workflow_id: The workflow to run where the platform stores workflows: what it means and whether
        it is required is the platform's (the README's table; templated).
    :param workflow: The workflow document, for platforms that run one instead of a stored workflow
        (ComfyUI's API-format graph): a mapping, or a path or ObjectStoragePath of its JSON file, read once
        before the run is submitted (templated).
    :param wait: Wait for the run to finish (default). False submits and returns the run id.
    :param deferrable: Wait in the triggerer, freeing the worker slot. Defaults to
        ``[operators] default_deferrable``.
    :param poll_interval: Seconds between status checks.
    :param timeout: How long the run may take (seconds or timedelta, default 7 days; the task's
        ``execution_timeout`` if shorter). At the deadline the run is canceled where the platform can.
    :param cancel_on_kill: Cancel the run when the task is killed (marked failed, cleared, timed out).
    :param allow_partial_success: Accept a partially succeeded run (Dify) as success.
    :param hook_params: Keyword arguments for :class:`WorkflowRunHook` (``timeout``, ``retry_limit``...).
    :param max_output_bytes: Largest result (as JSON) to return to XCom, default 1 MiB; a larger one fails
        the task with ``OutputTooLargeError`` (the run id and URL are in XCom already). None: no limit.
    :param outputs_to: Copy every output file (images, documents) to this ``ObjectStoragePath`` or storage
        URL, under ``<run id>/``; the result's ``files`` lists each copy's path, size and SHA-256 beside
        the platform's (expiring) URL. Input values that are ``ObjectStoragePath`` or ``pathlib.Path``
        are uploaded to the platform whatever this is.
    :param max_file_bytes: Largest output file copied (default 512 MiB); each copy must also finish within
        the hook's ``timeout``.
    :param human_input: When the run pauses for a form (Dify's Human Input node), ask it in Airflow's
        human-in-the-loop feature (Airflow 3.1+; Required Actions in the UI, the REST API) and submit the
        answer to the platform. The task defers while a person answers, even when not ``deferrable``. A
        form that expires, one answered on the platform first, or the deadline reached while waiting each
        fail the task with a typed error. False: wait through pauses (until answered on the platform).
    :return: ``{"run_id", "platform", "workflow_id", "status", "outputs", "cost", "duration_seconds"}``, or
        the run id when ``wait=False``.
    """

    template_fields: Sequence[str] = ("conn_id", "inputs", "workflow_id", "workflow")
    template_fields_renderers = {"inputs": "json"}
    operator_extra_links = (WorkflowRunLink(),)
    ui_color = "#e8f0fe"
    #: Key of the run handle in ``task_state_store``. Never rename it: retries in flight read the old key.
    external_id_key = "wfrun_run"

    def __init__(
        self,
        *,
        conn_id: str,
        inputs: Mapping[str, Any] | str | None = None,
        workflow_id: str | None = None,
        workflow: Mapping[str, Any] | str | PurePath | None = None,
        wait: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 10.0,
        timeout: float | timedelta = DEFAULT_TIMEOUT,
        cancel_on_kill: bool = True,
        allow_partial_success: bool = False,
        hook_params: Mapping[str, Any] | None = None,
        max_output_bytes: int | None = DEFAULT_MAX_OUTPUT_BYTES,
        outputs_to: ObjectStoragePath | str | None = None,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        human_input: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if conn_id is None or (isinstance(conn_id, str) and not conn_id.strip()):
            raise InvalidInputError(
                f"conn_id must name a connection whose type is one of: {', '.join(adapter_classes())}"
            )
        if inputs is not None and not isinstance(inputs, (Mapping, str)) and not hasattr(inputs, "resolve"):
            raise InvalidInputError(
                f"inputs must be a mapping of input names to values, got {type(inputs).__name__} {inputs!r}"
            )
        check_flags(
            wait=wait,
            deferrable=deferrable,
            cancel_on_kill=cancel_on_kill,
            allow_partial_success=allow_partial_success,
            human_input=human_input,
        )
        self.conn_id = conn_id
        self.inputs = inputs if inputs is not None else {}
        self.workflow_id = workflow_id
        self.workflow = workflow
        #: ``workflow`` loaded, once, before the run is submitted.
        self._workflow: dict[str, Any] | None = None
        self.wait = wait
        self.deferrable = deferrable
        self.poll_interval = positive_seconds("poll_interval", poll_interval)
        self.timeout = positive_seconds("timeout", timeout)
        self.cancel_on_kill = cancel_on_kill
        self.allow_partial_success = allow_partial_success
        self.hook_params = check_hook_params(hook_params)
        self.max_output_bytes = check_max_output_bytes(max_output_bytes)
        self.outputs_to = check_outputs_to(outputs_to)
        self.max_file_bytes = check_max_file_bytes(max_file_bytes)
        self.human_input = human_input
        #: Files written to ``outputs_to``, for lineage.
        self._output_files: list[str] = []
        self._handle: dict[str, Any] | None = None
        self._result: Any = None
        #: The final run as fetched, for lineage.
        self._final_run: WorkflowRun | None = None

    @cached_property
    def hook(self) -> WorkflowRunHook:
        return WorkflowRunHook(self.conn_id, **self.hook_params)

    def execute(self, context: Context) -> Any:
        stored = self._check_before_sending(context)
        if stored is not None and stored.get("try_number") == context["ti"].try_number:
            # The same try entered execute() again (a resume rescheduled at start-up): the run it started is
            # this try's outcome, whatever its state. The mixin would resubmit after a failed run.
            self.log.info("Resuming with run %s, started earlier in this try", stored["run_id"])
            return self.poll_until_complete(stored, context)
        return self.execute_resumable(context)

    def _check_before_sending(self, context: Context) -> dict[str, Any] | None:
        """
        Every check that needs no request: rendered fields, the connection, the submit request.

        Returns the run handle an earlier try stored (read once here: each read asks the supervisor).
        """
        check_rendered_ids(conn_id=self.conn_id)
        self.workflow_id = check_workflow_id(self.workflow_id)
        check_inputs(without_files(self.inputs))
        resolve_connection(self.hook)
        adapter = self.hook.adapter
        check_input_files(self._inputs, adapter)
        # Adapters are pure: building the request checks what the platform needs (chenyu's workflow_id,
        # GPTBots' lack of one) without sending anything.
        self._workflow = self.hook.workflow_document(self.workflow)
        adapter.submit_request(
            self._inputs, workflow_id=self.workflow_id, idempotency_key="check-only", workflow=self._workflow
        )
        check_run_url_template(self.hook, self.workflow_id)
        stored = self._stored_handle(context)
        if stored and stored.get("run_id"):
            try:
                adapter.check_run_id(str(stored["run_id"]))
            except InvalidInputError:
                raise InvalidInputError(
                    f"an earlier try of this task started run {stored['run_id']!r}, which is not a "
                    f"{adapter.display_name} run id: connection {self.conn_id!r} changed platform between "
                    "tries. Restore the connection to reattach to that run, or clear the task instance to "
                    "start a new one",
                    platform=adapter.name,
                ) from None
        return stored

    # --- ResumableJobMixin ---------------------------------------------------------------------------
    def submit_job(self, context: Context) -> dict[str, Any]:
        generation = self._generation(context)
        inputs = self._inputs
        if has_input_files(inputs):
            inputs = upload_input_files(self.hook, inputs)
        try:
            run = self.hook.submit_run(
                inputs,
                workflow_id=self.workflow_id or None,
                idempotency_key=self._idempotency_key(context, generation),
                workflow=self._workflow,
            )
        except WorkflowRunError as exc:
            note = self._lost_submit_note(exc)
            if note:
                exc.amend(note)
            raise
        handle = {
            "run_id": run.run_id,
            "platform_task_id": run.task_id,
            "end_time": time.time() + self._effective_timeout(),
            "generation": generation,
            "try_number": context["ti"].try_number,
        }
        self._handle = handle
        return handle

    def get_job_status(self, external_id: Any, context: Context) -> str:
        return self.hook.get_run(external_id["run_id"]).status.value

    def is_job_active(self, status: str) -> bool:
        return not RunStatus(status).is_terminal

    def is_job_succeeded(self, status: str) -> bool:
        return status == RunStatus.SUCCEEDED.value or (
            self.allow_partial_success and status == RunStatus.PARTIALLY_SUCCEEDED.value
        )

    def poll_until_complete(self, external_id: Any, context: Context) -> Any:
        self._handle = dict(external_id)
        self._push_run_reference(context)
        if not self.wait:
            return self.get_job_result(external_id, context)
        self._wait(context)
        return self.get_job_result(external_id, context)

    def get_job_result(self, external_id: Any, context: Context) -> Any:
        if self._result is None:
            self._handle = dict(external_id)
            # A retry that finds the run already finished comes here directly: XCom was cleared when the
            # try started, and the link and downstream tasks still need the run's reference.
            self._push_run_reference(context)
            if not self.wait:
                self._result = external_id["run_id"]
            else:
                self._result = self._complete(self.hook.get_run(external_id["run_id"]), context)
        return self._result

    def _wait(self, context: Context) -> None:
        """Wait for the run, in the triggerer or in the worker; returns once it is terminal."""
        if self.deferrable:
            self._defer_unless_finished(context)
        else:
            self._wait_in_worker(context)

    @property
    def _asks_people(self) -> bool:
        return self.human_input and self.hook.adapter.supports_human_input

    # --- deferrable path ---------------------------------------------------------------------------
    def _defer_unless_finished(self, context: Context) -> None:
        handle = self._require_handle()
        run = self.hook.get_run(handle["run_id"])
        if run.is_terminal:
            return
        if run.status is RunStatus.PAUSED and self._asks_people:
            self._ask_person(context)
            return
        self.log.info(
            "%s run %s is %s; deferring until it finishes", run.platform, run.run_id, run.status.value
        )
        self.defer(
            trigger=WorkflowRunTrigger(
                conn_id=self.conn_id,
                run_id=handle["run_id"],
                end_time=handle["end_time"],
                poll_interval=self.poll_interval,
                platform_task_id=handle.get("platform_task_id"),
                cancel_on_kill=self.cancel_on_kill,
                hook_params=self.hook_params or None,
                stop_on_pause=self._asks_people,
            ),
            method_name="execute_complete",
            kwargs={"handle": handle},
            timeout=None,
        )

    def execute_complete(
        self, context: Context, event: Any = None, handle: dict[str, Any] | None = None
    ) -> Any:
        """Back on a worker after the trigger fired: check the event, fetch the final run, return it."""
        handle = handle or self._stored_handle(context) or _handle_from_event(event)
        self._handle = handle
        event = check_event(event, handle["run_id"])
        if is_timeout(event):
            self._give_up_at_deadline()
        raise_if_error(event)
        if event["status"] == PAUSED:
            self._ask_person(context)
        return self._complete(self.hook.get_run(handle["run_id"]), context)

    # --- human input ---------------------------------------------------------------------------------
    def _ask_person(self, context: Context) -> None:
        """
        The run waits on a form: write it as Airflow's human-in-the-loop request and defer to HITLTrigger
        until a person answers (or the form expires, or the run's deadline comes). Returns only if the run
        no longer waits on a form (answered on the platform meanwhile): then waiting goes on.
        """
        handle = self._require_handle()
        run_id, platform = handle["run_id"], self.hook.adapter.name
        upsert_hitl_detail, hitl_trigger = hitl_api(platform, run_id)
        form = self.hook.pending_form(run_id)
        if form is None:
            self.log.info("Run %s no longer waits on a form; waiting for it goes on", run_id)
            self._wait(context)
            return
        request = hitl_request(form, platform=platform, run_id=run_id)
        ti = context["ti"]
        earlier = self._asked(context)
        if earlier and earlier.get("asked") != request.signature():
            raise HumanInputError(
                "the run paused again with a different form, and Airflow keeps one human-in-the-loop "
                "request per task instance (its subject, options and params stay those of the first "
                f"pause), so a person would answer the wrong question. The form asks: {request.subject!r}. "
                "Answer it in the platform, or give the workflow's forms the same content and actions",
                platform=platform,
                run_id=run_id,
            )
        until, is_deadline = timeout_at(form, handle["end_time"])
        if until.timestamp() <= time.time():
            self._end_wait_for_person(is_deadline, form)
        upsert_hitl_detail(
            ti_id=ti.id,
            options=request.options,
            subject=request.subject,
            body=request.body,
            defaults=None,
            multiple=False,
            params=request.params,
        )
        state = {"handle": handle, "form": form.model_dump(mode="json"), "asked": request.signature()}
        ti.xcom_push(key=XCOM_HUMAN_INPUT, value=state)
        self.log.info(
            "Run %s waits for a person: asked in Airflow (Required Actions) until %s",
            run_id,
            until.isoformat(),
        )
        park = awaiting_input()
        if park is not None:
            left = timedelta(seconds=max(until.timestamp() - time.time(), 0.001))
            raise park(method_name="execute_answered", kwargs={"human_input": state}, timeout=left)
        self.defer(
            trigger=hitl_trigger(
                ti_id=ti.id,
                options=request.options,
                params=request.params,
                defaults=None,
                multiple=False,
                timeout_datetime=until,
                poke_interval=min(self.poll_interval, MAX_HITL_POKE_SECONDS),
            ),
            method_name="execute_answered",
            kwargs={"human_input": state},
            timeout=None,
        )

    def execute_answered(
        self, context: Context, event: Any = None, human_input: dict[str, Any] | None = None
    ) -> Any:
        """Back from HITLTrigger: submit the person's answer to the platform, then wait for the run again."""
        state = human_input or self._asked(context)
        if not state:
            raise HumanInputError("the answer came back, but the form it answers was not found in XCom")
        self._handle = handle = dict(state["handle"])
        form = HumanInputForm.model_validate(state["form"])
        run_id, platform = handle["run_id"], self.hook.adapter.name
        if not isinstance(event, Mapping):
            raise HumanInputError(f"unreadable answer event: {event!r}", platform=platform, run_id=run_id)
        if "error" in event:
            if event.get("error_type") == "timeout":
                self._end_wait_for_person(time.time() >= handle["end_time"], form)
            raise HumanInputError(
                f"Airflow's human-in-the-loop request failed ({event.get('error_type')}): {event['error']}",
                platform=platform,
                run_id=run_id,
            )
        request = hitl_request(form, platform=platform, run_id=run_id)
        action, inputs = answer_of(request, event, platform=platform, run_id=run_id)
        self.hook.answer_form(form, run_id=run_id, action=action, inputs=inputs)
        self._push_run_reference(context)
        self._wait(context)
        return self.get_job_result(handle, context)

    def _asked(self, context: Context) -> dict[str, Any] | None:
        ti = context["ti"]
        stored = ti.xcom_pull(task_ids=ti.task_id, key=XCOM_HUMAN_INPUT, map_indexes=ti.map_index)
        return dict(stored) if isinstance(stored, Mapping) else None

    def _end_wait_for_person(self, is_deadline: bool, form: HumanInputForm) -> None:
        """Nobody answered in time: the run's deadline (cancel, like any deadline) or the form's expiry."""
        if is_deadline:
            self._give_up_at_deadline("while waiting for a person to answer its form")
        handle = self._require_handle()
        raise FormExpiredError(
            f"nobody answered the form before it expired at {form.expires_at}; the platform follows the "
            "form's timeout branch",
            platform=self.hook.adapter.name,
            run_id=handle["run_id"],
        )

    # --- worker path --------------------------------------------------------------------------------
    def _wait_in_worker(self, context: Context) -> None:
        handle = self._require_handle()
        last_status = None
        started = time.monotonic()
        while True:
            run = self.hook.get_run(handle["run_id"])
            if run.status is not last_status:
                self.log.info(
                    "%s run %s: %s", run.platform, run.run_id, run.platform_status or run.status.value
                )
                last_status = run.status
            if run.is_terminal:
                return
            if run.status is RunStatus.PAUSED and self._asks_people:
                self._ask_person(context)
                return
            remaining = handle["end_time"] - time.time()
            if remaining <= 0:
                self._give_up_at_deadline()
            delay = next_poll_delay(
                run,
                poll_interval=self.poll_interval,
                max_poll_interval=300,
                waited=time.monotonic() - started,
            )
            time.sleep(min(delay, remaining))

    def on_kill(self) -> None:
        """Worker-side kill (non-deferrable mode): cancel the run, best effort."""
        if self.cancel_on_kill and self._handle is not None:
            self._cancel_quietly()

    # --- OpenLineage -------------------------------------------------------------------------------
    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """
        The run's lineage: platform and workflow, run id, outcome, URL and spend. The OpenLineage provider
        also asks this on failure, when the run (if any) is named with what is known of it.
        """
        from airflow_provider_wfrun.lineage import operator_lineage

        return operator_lineage(
            self.hook,
            self._handle["run_id"] if self._handle else None,
            workflow_id=self.workflow_id or None,
            run=self._final_run,
            inputs=input_file_urls(self.inputs) if isinstance(self.inputs, Mapping) else [],
            outputs=self._output_files,
        )

    # --- helpers ------------------------------------------------------------------------------------
    def _complete(self, run: WorkflowRun, context: Context) -> Any:
        if run.is_terminal and run.settlement is None and self.hook.adapter.settlement_request(run):
            run = self.hook.settle(run)  # billing failed when the run was fetched: once more, never fatal
        self._final_run = run
        self.log.info(summary(run))
        cost = {**run.cost.model_dump(mode="json"), "try_number": context["ti"].try_number}
        try:
            context["ti"].xcom_push(key=XCOM_COST, value=cost)
        except Exception as exc:  # recording cost must never fail the task
            self.log.warning("Could not push the run's cost to XCom: %s", exc)
        result = result_of(
            run, allow_partial_success=self.allow_partial_success, max_output_bytes=self.max_output_bytes
        )
        return self._with_copied_files(run, result)

    def _with_copied_files(self, run: WorkflowRun, result: dict[str, Any]) -> dict[str, Any]:
        """The result with ``files``: the run's output files copied to ``outputs_to``."""
        if self.outputs_to is None:
            return result
        files = copy_output_files(self.hook, run, self.outputs_to, max_file_bytes=self.max_file_bytes)
        self._output_files = [entry["path"] for entry in files]
        return {**result, "files": files}

    def _give_up_at_deadline(self, waiting: str = "") -> None:
        handle = self._require_handle()
        canceled = self._cancel_quietly()
        outcome = "it was canceled" if canceled else "it could not be canceled and may still be running"
        within = timedelta(seconds=round(self._effective_timeout()))
        raise RunTimeoutError(
            f"the run did not finish within {within}{' ' + waiting if waiting else ''}; {outcome}",
            platform=self.hook.adapter.name,
            run_id=handle["run_id"],
        )

    def _cancel_quietly(self) -> bool:
        handle = self._require_handle()
        try:
            self.hook.cancel_run(handle["run_id"], task_id=handle.get("platform_task_id"))
        except NotSupportedError as exc:
            self.log.warning("%s", exc)
            return False
        except WorkflowRunError as exc:
            self.log.warning("Could not cancel the run: %s", exc)
            return False
        return True

    def _push_run_reference(self, context: Context) -> None:
        handle = self._require_handle()
        ti = context["ti"]
        ti.xcom_push(key=XCOM_RUN_ID, value=handle["run_id"])
        ti.xcom_push(key=XCOM_RUN_URL, value=self.hook.run_url(handle["run_id"], self.workflow_id or None))

    @property
    def _inputs(self) -> Mapping[str, Any]:
        """``inputs`` once rendered and checked (``check_inputs``): a mapping, whatever its template was."""
        return cast("Mapping[str, Any]", self.inputs)

    def _require_handle(self) -> dict[str, Any]:
        if self._handle is None:
            raise InvalidInputError("no run has been submitted or reattached yet")
        return self._handle

    def _stored_handle(self, context: Context) -> dict[str, Any] | None:
        store = context.get("task_state_store")
        stored = store.get(self.external_id_key) if store is not None else None
        return dict(stored) if isinstance(stored, Mapping) else None

    def _effective_timeout(self) -> float:
        if self.execution_timeout is not None:
            return min(self.timeout, self.execution_timeout.total_seconds())
        return self.timeout

    def _lost_submit_note(self, exc: WorkflowRunError) -> str | None:
        """What to tell the user when a failed submit may have reached the platform and started a run."""
        if "may have started" in exc.message:
            return None
        if isinstance(exc, PlatformError) and exc.is_transient:
            what = f"HTTP {exc.http_status} after the request was sent"
        elif isinstance(exc, WorkflowRunConnectionError) and exc.request_sent:
            what = "the connection failed after the request was sent"
        elif isinstance(exc, InvalidResponseError):
            what = "the answer to the submit could not be read"
        else:
            return None
        name = self.hook.adapter.display_name
        if self.hook.adapter.idempotent_submit:
            return (
                f"{what}: the submit may have started a run. A retry of this task sends the same "
                f"idempotency key, so {name} hands back that run instead of starting another"
            )
        return (
            f"{what}, and {name} cannot deduplicate submits, so it was not retried: the submit may have "
            f"started a run this task cannot see. Look for it on {name} before the task is retried; a "
            "retry submits a new run"
        )

    def _generation(self, context: Context) -> int:
        """How many runs this task instance started before; a fresh one after a failed run gets a new key."""
        previous = self._stored_handle(context)
        return int(previous.get("generation", 0)) + 1 if previous else 0

    def _idempotency_key(self, context: Context, generation: int) -> str:
        ti = context["ti"]
        identity = [ti.dag_id, ti.task_id, ti.run_id, ti.map_index, generation]
        return str(uuid.uuid5(_IDEMPOTENCY_NAMESPACE, json.dumps(identity)))
