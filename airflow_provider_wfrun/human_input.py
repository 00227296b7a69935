"""
A form a paused run waits on (Dify's Human Input node), normalized.

Dify announces the form on the run's event stream (``human_input_required``, with the one-shot
``form_token``) and serves it at ``/form/human_input/{token}``; the adapter turns both into
:class:`HumanInputForm`, which is what a person is asked: the content, the fields with their defaults and
the actions to choose from. The hook reads it (``pending_form``) and answers it (``answer_form``); the
operator asks it in Airflow's human-in-the-loop feature (``airflow_provider_wfrun/hitl.py``).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

#: Dify's 412 codes: the form was answered elsewhere first, or its time ran out.
FORM_ALREADY_SUBMITTED = "human_input_form_submitted"
FORM_EXPIRED = "human_input_form_expired"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HumanInputField(_Model):
    """One field of the form: ``paragraph`` or ``select`` (text), ``file`` or ``file-list``."""

    name: str
    kind: str
    default: str | None = None
    #: The choices of a ``select`` whose options are listed in the form (not taken from a variable).
    options: tuple[str, ...] = ()


class HumanInputAction(_Model):
    """A button the person may press; ``id`` is what the answer names."""

    id: str
    title: str


class HumanInputForm(_Model):
    """What a paused run asks a person, and the token that answers it."""

    token: str
    content: str = ""
    node_title: str | None = None
    fields: tuple[HumanInputField, ...] = ()
    actions: tuple[HumanInputAction, ...] = ()
    expires_at: datetime | None = None
