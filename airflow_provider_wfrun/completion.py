"""
What the operator and the sensor share: checking what a task was given before anything is sent, and
turning a finished run or a trigger event into a task outcome.

Checks raise :class:`~airflow_provider_wfrun.exceptions.InvalidInputError` naming the parameter and what
to do, before any request (resolving a connection and building a request are local). Completion runs on
the worker: the trigger event only says how waiting ended, and the final run is fetched again here, so
outputs never travel through the triggerer or the trigger event table.
"""

from __future__ import annotations

import inspect
import json
import math
import re
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import jinja2

from airflow_provider_wfrun.exceptions import (
    EXCEPTIONS_BY_ERROR_TYPE,
    InvalidInputError,
    InvalidResponseError,
    OutputTooLargeError,
    RunCanceledError,
    RunFailedError,
    RunTimeoutError,
    WorkflowRunError,
)
from airflow_provider_wfrun.hooks.workflow_run import WorkflowRunHook
from airflow_provider_wfrun.models import RunStatus, WorkflowRun
from airflow_provider_wfrun.triggers.workflow_run import ERROR, TIMEOUT

if TYPE_CHECKING:
    from airflow_provider_wfrun.hooks.workflow_run import PlatformConnection

#: Default cap on a result pushed to XCom: the metadata database is not an object store.
DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024

#: Errors a trigger event can name whose constructor takes just a message.
_SIMPLE_ERRORS = {
    name: cls
    for name, cls in EXCEPTIONS_BY_ERROR_TYPE.items()
    if not issubclass(cls, (RunFailedError, RunTimeoutError, OutputTooLargeError))
}

#: A workflow id goes into URL paths (Dify) and JSON bodies; these never belong in one.
_NOT_IN_WORKFLOW_ID = re.compile(r"[\s/?#%\\]")


# --- checks before anything is sent ---------------------------------------------------------------
def positive_seconds(name: str, value: float | timedelta) -> float:
    """A duration parameter in seconds; a clear error for anything not a positive, finite number."""
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or not math.isfinite(seconds)
        or seconds <= 0
    ):
        raise InvalidInputError(
            f"{name} must be a positive number of seconds (finite) or a timedelta, got {value!r}"
        )
    return float(seconds)


def check_flags(**flags: Any) -> None:
    """Switches must be real booleans: the text ``"false"`` would count as true."""
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise InvalidInputError(f"{name} must be True or False, got {value!r}")


def check_max_output_bytes(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidInputError(
            f"max_output_bytes must be a positive number of bytes, or None for no limit, got {value!r}"
        )
    return value


def _hook_parameters() -> dict[str, inspect.Parameter]:
    parameters = inspect.signature(WorkflowRunHook.__init__).parameters
    return {name: p for name, p in parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def check_hook_params(hook_params: Any) -> dict[str, Any]:
    """``hook_params``, checked against :class:`WorkflowRunHook`'s keyword arguments and their rules."""
    if hook_params is None:
        return {}
    if not isinstance(hook_params, Mapping):
        raise InvalidInputError(
            f"hook_params must be a mapping of WorkflowRunHook arguments, got {type(hook_params).__name__}"
        )
    known = _hook_parameters()
    unknown = sorted(str(key) for key in hook_params if key not in known)
    if unknown:
        raise InvalidInputError(
            f"hook_params has unknown keys {unknown}; WorkflowRunHook accepts: {', '.join(known)}"
        )
    for name, value in hook_params.items():
        annotation = str(known[name].annotation)
        if annotation not in ("int", "float"):
            continue
        wanted = int if annotation == "int" else (int, float)
        if isinstance(value, bool) or not isinstance(value, wanted) or not math.isfinite(value):
            kind = "a whole number" if annotation == "int" else "a finite number"
            raise InvalidInputError(f"hook_params[{name!r}] must be {kind}, got {value!r}")
    try:
        WorkflowRunHook("hook_params_check", **hook_params)
    except InvalidInputError as exc:
        raise InvalidInputError(
            f"hook_params {dict(hook_params)!r} are out of range: {exc.message}"
        ) from None
    return dict(hook_params)


def check_rendered_ids(**ids: Any) -> None:
    """Templated ids, once rendered, must be non-empty strings (before, an XComArg may stand in)."""
    for name, value in ids.items():
        if not isinstance(value, str) or not value.strip():
            raise InvalidInputError(
                f"{name} must be a non-empty string, got {value!r}; if it comes from a template or an "
                "upstream task, check that it rendered to a value"
            )


def check_workflow_id(workflow_id: Any) -> str | None:
    """The rendered workflow id: None/empty (the platform's default), or an id as the platform writes it."""
    if workflow_id is None or workflow_id == "":
        return None
    if not isinstance(workflow_id, str):
        raise InvalidInputError(
            f"workflow_id must be a string, got {type(workflow_id).__name__} {workflow_id!r}"
        )
    if workflow_id.strip() in ("None", "null"):
        raise InvalidInputError(
            f"workflow_id rendered to the text {workflow_id!r}: its template produced no value; leave "
            "workflow_id unset, or set render_template_as_native_obj=True on the DAG so None stays None"
        )
    if _NOT_IN_WORKFLOW_ID.search(workflow_id):
        raise InvalidInputError(
            f"workflow_id {workflow_id!r} contains whitespace or one of / ? # % \\, which no workflow id "
            "has; copy the id from the platform (e.g. wf_861ef31e94dcfb10e6e7 on chenyu)"
        )
    return workflow_id


def check_inputs(inputs: Any) -> None:
    """Rendered inputs: a mapping with string keys that serializes to strict JSON."""
    if not isinstance(inputs, Mapping):
        raise InvalidInputError(
            f"inputs rendered to {type(inputs).__name__}, not a mapping; use a dict, or set "
            "render_template_as_native_obj=True on the DAG for a template that builds one"
        )
    bad_keys = [key for key in inputs if not isinstance(key, str)]
    if bad_keys:
        raise InvalidInputError(f"inputs must be keyed by input names (strings), got keys {bad_keys!r}")
    try:
        json.dumps(inputs, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"inputs must be JSON-serializable (str, int, float, bool, None, lists, dicts; no NaN or "
            f"infinity): {exc}"
        ) from None


def resolve_connection(hook: WorkflowRunHook) -> PlatformConnection:
    """The hook's validated connection (a missing one is a ``ConnectionNotFoundError``); no request."""
    return hook.get_platform_connection()


def check_run_url_template(hook: WorkflowRunHook, workflow_id: str | None) -> None:
    """The connection's ``run_url_template`` must format, or the task would fail after submitting."""
    connection = resolve_connection(hook)
    example = hook.adapter.run_id_example or "run-id"
    try:
        hook.run_url(example, workflow_id)
    except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
        raise InvalidInputError(
            f"connection {connection.conn_id!r} extra run_url_template "
            f"{connection.extra.get('run_url_template')!r} cannot be filled in ({type(exc).__name__}: "
            f"{exc}); use only the placeholders {{run_id}} and {{workflow_id}}",
            platform=hook.adapter.name,
        ) from None


class StrictTemplateFieldsMixin:
    """
    Render the task's templated fields so that an undefined variable is an error, never ``""``.

    A typo in ``{{ params.promt }}`` would otherwise send an empty input to a paid workflow (with a DAG
    whose ``template_undefined`` is lenient, or no DAG at all). The error names the field. Overriding
    ``_do_render_template_fields`` covers mapped tasks too, which render through it.
    """

    def _do_render_template_fields(
        self,
        parent: Any,
        template_fields: Iterable[str],
        context: Any,
        jinja_env: jinja2.Environment,
        seen_oids: set[int],
    ) -> None:
        if not issubclass(jinja_env.undefined, jinja2.StrictUndefined):
            jinja_env = jinja_env.overlay(undefined=jinja2.StrictUndefined)
        render = super()._do_render_template_fields  # type: ignore[misc]
        for name in template_fields:
            try:
                render(parent, [name], context, jinja_env, seen_oids)
            except jinja2.UndefinedError as exc:
                raise InvalidInputError(
                    f"{name}: its template uses an undefined variable ({exc}); define it (the DAG's "
                    "params, the run's conf, a macro) or fix its name. Nothing was sent to the platform"
                ) from None


# --- completion -----------------------------------------------------------------------------------
def check_event(event: Any, run_id: str) -> dict[str, Any]:
    """The trigger's event, validated: a mapping about this run with a status."""
    if not isinstance(event, Mapping) or "status" not in event:
        raise InvalidResponseError(f"the trigger sent an unreadable event for run {run_id}: {event!r}")
    if event.get("run_id") != run_id:
        raise InvalidResponseError(
            f"the trigger sent an event for run {event.get('run_id')!r} while waiting for run {run_id!r}"
        )
    return dict(event)


def is_timeout(event: Mapping[str, Any]) -> bool:
    return event["status"] == TIMEOUT


def raise_if_error(event: Mapping[str, Any]) -> None:
    """A polling failure the trigger gave up on becomes the typed error it named."""
    if event["status"] != ERROR:
        return
    error_class = _SIMPLE_ERRORS.get(str(event.get("error_type")), WorkflowRunError)
    raise error_class(str(event.get("message") or "waiting for the run failed"))


def result_of(
    run: WorkflowRun, *, allow_partial_success: bool, max_output_bytes: int | None = None
) -> dict[str, Any]:
    """The result dict of a terminal run, or the typed error carrying the platform's reason."""
    reason = f": {run.error.reason}" if run.error else ""
    if run.status is RunStatus.SUCCEEDED:
        return _fitting(run, max_output_bytes)
    if run.status is RunStatus.PARTIALLY_SUCCEEDED:
        if allow_partial_success:
            return _fitting(run, max_output_bytes)
        raise RunFailedError(
            f"the run only partially succeeded{reason}; pass allow_partial_success=True to accept that",
            run=run,
        )
    if run.status is RunStatus.CANCELED:
        raise RunCanceledError(f"the run was canceled{reason}", run=run)
    if run.status is RunStatus.FAILED:
        raise RunFailedError(f"the run failed{reason}", run=run)
    raise InvalidResponseError(
        f"the run is not finished (status {run.platform_status or run.status.value})",
        platform=run.platform,
        run_id=run.run_id,
    )


def _fitting(run: WorkflowRun, max_output_bytes: int | None) -> dict[str, Any]:
    """The result dict, unless it is too large for XCom: then a typed error saying where the outputs are."""
    result = run.result_dict()
    if max_output_bytes is None:
        return result
    size = len(json.dumps(result, separators=(",", ":"), ensure_ascii=False, default=str).encode())
    if size <= max_output_bytes:
        return result
    raise OutputTooLargeError(
        f"the run {run.status.value}, but its result is {_size(size)} of JSON, more than "
        f"max_output_bytes={max_output_bytes} ({_size(max_output_bytes)}) allows in XCom, so it was not "
        "returned. Nothing is lost: XCom 'run_id' and 'run_url' name the run, and its outputs stay on the "
        "platform (WorkflowRunHook(conn_id).get_run(run_id).outputs). To return them, use an XCom backend "
        "that keeps large values in object storage and raise max_output_bytes (None: no limit), or have "
        "the workflow write large outputs to storage and return a reference",
        run=run,
        size=size,
        limit=max_output_bytes,
    )


def _size(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MiB" if size >= 1024 * 1024 else f"{size / 1024:.1f} KiB"


def summary(run: WorkflowRun) -> str:
    """One log line a person reads at the end of a task."""
    parts = [f"{run.platform} run {run.run_id} {run.status.value}"]
    if run.duration_seconds is not None:
        parts.append(f"in {run.duration_seconds:.1f} s")
    if run.cost.total is not None:
        parts.append(f"cost {format(run.cost.total, 'f')} {run.cost.currency or ''}".rstrip())
    if run.cost.tokens is not None:
        parts.append(f"{run.cost.tokens} tokens")
    return ", ".join(parts)
