"""
A paused run's form asked in Airflow's own human-in-the-loop feature (Airflow 3.1+, the standard provider).

The operator does what ``HITLOperator`` does: it writes the request for its task instance
(``upsert_hitl_detail``: subject = the form's content, options = its actions, params = its inputs with their
defaults), so it appears under Required Actions and in the REST API, and waits until a person answers or the
request times out: parked in ``awaiting_input`` on Airflow 3.3+, deferred to ``HITLTrigger`` before. This
module turns a :class:`HumanInputForm` into that request and the person's answer back into the platform's
action and inputs; it holds no state.

Airflow keeps one request per task instance and, on a second request, only clears the answer: the subject,
options and params stay those of the first. A run that pauses again with a different form therefore ends
in a clear error instead of a person answering the wrong question.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from airflow_provider_wfrun.exceptions import HumanInputError, HumanInputUnavailableError
from airflow_provider_wfrun.human_input import HumanInputForm

log = logging.getLogger(__name__)

#: Kinds of form fields a person can fill in Airflow's form (files cannot be given there).
_TEXT_KINDS = frozenset({"paragraph", "select"})
#: Longest subject written (Airflow shows it as the request's headline).
MAX_SUBJECT_CHARS = 2000


@dataclass(frozen=True)
class HitlRequest:
    """What is written to Airflow: the request, and how an answer maps back to the form."""

    subject: str
    body: str
    #: Option shown -> the form's action id.
    actions: dict[str, str]
    #: Param name -> its serialized ``Param`` (HITLTrigger's format).
    params: dict[str, Any]

    @property
    def options(self) -> list[str]:
        return list(self.actions)

    def signature(self) -> dict[str, Any]:
        """What Airflow keeps of a request for the task instance's later requests."""
        return {"subject": self.subject, "options": self.options, "params": sorted(self.params)}


def hitl_api(platform: str, run_id: str) -> tuple[Any, Any]:
    """
    ``(upsert_hitl_detail, HITLTrigger)`` from the installed Airflow, or a typed error saying what is needed:
    raised at the pause, before anything is written.
    """
    try:
        from airflow.providers.standard.triggers.hitl import HITLTrigger
        from airflow.sdk.execution_time.hitl import upsert_hitl_detail
    except Exception as exc:  # ImportError, or the provider's "needs Airflow 3.1+" feature exception
        from airflow import __version__ as airflow_version

        raise HumanInputUnavailableError(
            "the run paused for a form a person must answer, and asking it in Airflow needs the "
            "human-in-the-loop feature of Airflow 3.1+ with apache-airflow-providers-standard 1.9+ "
            f"(installed: Airflow {airflow_version}; {type(exc).__name__}: {exc}). Upgrade, answer the form "
            "in the platform, or pass human_input=False to wait through pauses",
            platform=platform,
            run_id=run_id,
        ) from exc
    return upsert_hitl_detail, HITLTrigger


def awaiting_input() -> Any:
    """
    Airflow 3.3+'s ``TaskAwaitingInput`` (the task parks in ``awaiting_input``; an answer through the UI
    or REST API, or the scheduler's timeout sweep, resumes it, with no trigger), or None before 3.3, where
    the task defers to ``HITLTrigger`` as ``HITLOperator`` does there.
    """
    try:
        from airflow.sdk.exceptions import TaskAwaitingInput
    except ImportError:
        return None
    return TaskAwaitingInput


def hitl_request(form: HumanInputForm, *, platform: str, run_id: str) -> HitlRequest:
    """The HITL request for ``form``: its content, its actions as options, its text fields as params."""
    if not form.actions:
        raise HumanInputError("the form offers no action to answer it with", platform=platform, run_id=run_id)
    titles = [action.title for action in form.actions]
    shown = titles if len(set(titles)) == len(titles) else [action.id for action in form.actions]
    actions = {option: action.id for option, action in zip(shown, form.actions, strict=True)}
    subject = (form.content or form.node_title or "The workflow asks for an answer")[:MAX_SUBJECT_CHARS]
    expires = f", until {form.expires_at.isoformat()}" if form.expires_at else ""
    body = (
        f"**{form.node_title or 'Human input'}**: {platform} run `{run_id}` waits for this answer{expires}."
    )
    return HitlRequest(subject=subject, body=body, actions=actions, params=_params(form, run_id))


def _params(form: HumanInputForm, run_id: str) -> dict[str, Any]:
    from airflow.sdk import Param

    params: dict[str, Any] = {}
    for field in form.fields:
        if field.kind not in _TEXT_KINDS:
            log.warning(
                "Run %s: form field %r is a %s, which Airflow cannot ask; left out",
                run_id,
                field.name,
                field.kind,
            )
            continue
        schema: dict[str, Any] = {"type": ["string", "null"]}
        if field.options:
            schema["enum"] = [*field.options, None]
        param = Param(field.default, title=field.name, description=f"{field.kind} field", **schema)
        params[field.name] = param.serialize() if hasattr(param, "serialize") else param.dump()
    return params


def answer_of(
    request: HitlRequest, event: Mapping[str, Any], *, platform: str, run_id: str
) -> tuple[str, dict[str, Any]]:
    """The form's action and inputs from HITLTrigger's success event."""
    chosen = event.get("chosen_options") or []
    if len(chosen) != 1 or chosen[0] not in request.actions:
        raise HumanInputError(
            f"the answer chose {chosen!r}; exactly one of {request.options} was expected",
            platform=platform,
            run_id=run_id,
        )
    given = event.get("params_input") or {}
    inputs = {name: value for name, value in given.items() if name in request.params and value is not None}
    return request.actions[chosen[0]], inputs


def timeout_at(form: HumanInputForm, end_time: float) -> tuple[datetime, bool]:
    """When waiting for the person ends, and whether that is the run's deadline (not the form's expiry)."""
    expires = form.expires_at.timestamp() if form.expires_at else None
    if expires is None or end_time <= expires:
        return datetime.fromtimestamp(end_time, tz=timezone.utc), True
    return datetime.fromtimestamp(expires, tz=timezone.utc), False
