"""Wait for a run started elsewhere (another task, an app, a person) to finish."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowSensorTimeout,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
)

from airflow_provider_wfrun.checks import (
    StrictTemplateFieldsMixin,
    check_flags,
    check_hook_params,
    check_max_output_bytes,
    check_rendered_ids,
    positive_seconds,
    resolve_connection,
)
from airflow_provider_wfrun.hooks.workflow_run import WorkflowRunHook
from airflow_provider_wfrun.results import (
    DEFAULT_MAX_OUTPUT_BYTES,
    check_event,
    is_timeout,
    raise_if_error,
    result_of,
    summary,
)
from airflow_provider_wfrun.triggers.workflow_run import WorkflowRunTrigger

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_wfrun.models import WorkflowRun


class WorkflowRunSensor(StrictTemplateFieldsMixin, BaseSensorOperator):
    """
    Wait until a workflow run is finished, in poke, reschedule or deferrable mode.

    It never cancels the run: it did not start it. At ``timeout`` it stops waiting and fails.

    :param conn_id: A connection whose type is a platform (``platforms.adapter_classes()``; templated).
    :param run_id: The run to wait for (templated).
    :param allow_partial_success: Accept a partially succeeded run (Dify) as success.
    :param deferrable: Wait in the triggerer. Defaults to ``[operators] default_deferrable``.
    :param hook_params: Extra keyword arguments for :class:`WorkflowRunHook`.
    :param max_output_bytes: Largest result (as JSON) to return to XCom, default 1 MiB; a larger one fails
        the task with ``OutputTooLargeError``. None: no limit.
    :return: The result dict, as :class:`~airflow_provider_wfrun.operators.workflow_run.RunWorkflowOperator`.
    """

    template_fields: Sequence[str] = ("conn_id", "run_id")
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        conn_id: str,
        run_id: str,
        allow_partial_success: bool = False,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        hook_params: Mapping[str, Any] | None = None,
        max_output_bytes: int | None = DEFAULT_MAX_OUTPUT_BYTES,
        **kwargs: Any,
    ) -> None:
        # Checked before Airflow's own checks, which raise a bare ValueError and accept 0.
        for name in ("poke_interval", "timeout"):
            if name in kwargs:
                positive_seconds(name, kwargs[name])
        check_flags(allow_partial_success=allow_partial_success, deferrable=deferrable)
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.run_id = run_id
        self.allow_partial_success = allow_partial_success
        self.deferrable = deferrable
        self.hook_params = check_hook_params(hook_params)
        self.max_output_bytes = check_max_output_bytes(max_output_bytes)
        self._final_run: WorkflowRun | None = None

    @cached_property
    def hook(self) -> WorkflowRunHook:
        return WorkflowRunHook(self.conn_id, **self.hook_params)

    def execute(self, context: Context) -> Any:
        check_rendered_ids(conn_id=self.conn_id, run_id=self.run_id)
        resolve_connection(self.hook)
        self.hook.adapter.check_run_id(self.run_id)
        if not self.deferrable:
            return super().execute(context)
        outcome = self.poke(context)
        if isinstance(outcome, PokeReturnValue) and outcome.is_done:
            return outcome.xcom_value
        self.defer(
            trigger=WorkflowRunTrigger(
                conn_id=self.conn_id,
                run_id=self.run_id,
                end_time=time.time() + self.timeout,
                poll_interval=self.poke_interval,
                cancel_on_kill=False,
                hook_params=self.hook_params or None,
            ),
            method_name="execute_complete",
            timeout=None,
        )

    def poke(self, context: Context) -> PokeReturnValue:
        run = self.hook.get_run(self.run_id)
        if not run.is_terminal:
            self.log.info(
                "%s run %s is %s", run.platform, run.run_id, run.platform_status or run.status.value
            )
            return PokeReturnValue(is_done=False)
        self.log.info(summary(run))
        return PokeReturnValue(is_done=True, xcom_value=self._result(run))

    def _result(self, run: WorkflowRun) -> Any:
        self._final_run = run
        return result_of(
            run, allow_partial_success=self.allow_partial_success, max_output_bytes=self.max_output_bytes
        )

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """The awaited run's lineage, as the operator's (the sensor knows no workflow id but the run's)."""
        from airflow_provider_wfrun.lineage import operator_lineage

        return operator_lineage(self.hook, self.run_id, run=self._final_run)

    def execute_complete(self, context: Context, event: Any = None) -> Any:
        event = check_event(event, self.run_id)
        if is_timeout(event):
            raise AirflowSensorTimeout(f"run {self.run_id} did not finish within {self.timeout:.0f} s")
        raise_if_error(event)
        run = self.hook.get_run(self.run_id)
        self.log.info(summary(run))
        return self._result(run)
