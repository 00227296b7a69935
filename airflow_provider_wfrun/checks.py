"""
Checks of what a task or a trigger was given, before anything is sent: one set of validators for the
operator, the sensor and the trigger.

Each raises :class:`~airflow_provider_wfrun.exceptions.InvalidInputError` naming the parameter and what to
do, before any request (resolving a connection and building a request are local).
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

from airflow_provider_wfrun.exceptions import InvalidInputError
from airflow_provider_wfrun.hooks.workflow_run import WorkflowRunHook

if TYPE_CHECKING:
    from airflow_provider_wfrun.hooks.connection import PlatformConnection

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


def non_empty_string(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(f"{name} must be a non-empty string, got {value!r}")
    return value


def finite_number(name: str, value: Any, *, what: str = "a finite number") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInputError(f"{name} must be {what}, got {value!r}")
    return float(value)


def positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{name} must be a whole number, got {value!r}")
    if value < 1:
        raise InvalidInputError(f"{name} must be at least 1, got {value}")
    return value


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
    """
    The rendered workflow id: None/empty (the platform's default), or an id as the platform writes it; a
    whole number is taken as its digits.
    """
    if workflow_id is None or workflow_id == "":
        return None
    if isinstance(workflow_id, int) and not isinstance(workflow_id, bool) and workflow_id >= 0:
        # Numeric ids (Coze's) come back as numbers from a template rendered as native objects.
        return str(workflow_id)
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
