"""The form as Airflow's human-in-the-loop request, the answer back as Dify's action, and the version gate."""

from __future__ import annotations

import sys
from datetime import datetime, timezone

import pytest

from airflow_provider_wfrun.exceptions import HumanInputError, HumanInputUnavailableError
from airflow_provider_wfrun.hitl import answer_of, hitl_api, hitl_request, timeout_at
from airflow_provider_wfrun.human_input import HumanInputAction, HumanInputField, HumanInputForm

RUN_ID = "fb47b2e6-5e43-4f90-be01-d5c5a088d156"
EXPIRES = datetime(2030, 1, 1, tzinfo=timezone.utc)
FORM = HumanInputForm(
    token="t",
    content="Review the draft",
    node_title="Approval",
    fields=(
        HumanInputField(name="comment", kind="paragraph", default="fine"),
        HumanInputField(name="priority", kind="select", options=("low", "high")),
        HumanInputField(name="attachment", kind="file"),
    ),
    actions=(
        HumanInputAction(id="approve", title="Approve"),
        HumanInputAction(id="reject", title="Send back"),
    ),
    expires_at=EXPIRES,
)


def test_the_request_asks_the_content_with_the_actions_and_the_text_fields_with_defaults():
    request = hitl_request(FORM, platform="dify", run_id=RUN_ID)
    assert request.subject == "Review the draft"
    assert RUN_ID in request.body
    assert "2030-01-01" in request.body
    assert request.options == ["Approve", "Send back"]
    assert sorted(request.params) == ["comment", "priority"]  # a file cannot be given in Airflow's form
    assert request.params["comment"]["value"] == "fine"
    assert request.params["priority"]["schema"]["enum"] == ["low", "high", None]


def test_actions_with_the_same_title_are_offered_by_id():
    twins = FORM.model_copy(
        update={"actions": (HumanInputAction(id="a", title="OK"), HumanInputAction(id="b", title="OK"))}
    )
    assert hitl_request(twins, platform="dify", run_id=RUN_ID).options == ["a", "b"]


def test_a_form_without_actions_cannot_be_asked():
    with pytest.raises(HumanInputError, match="no action"):
        hitl_request(FORM.model_copy(update={"actions": ()}), platform="dify", run_id=RUN_ID)


def test_the_answer_maps_back_to_the_action_id_and_the_known_inputs():
    request = hitl_request(FORM, platform="dify", run_id=RUN_ID)
    event = {"chosen_options": ["Send back"], "params_input": {"comment": "typo", "priority": None, "x": 1}}
    assert answer_of(request, event, platform="dify", run_id=RUN_ID) == ("reject", {"comment": "typo"})
    with pytest.raises(HumanInputError, match="exactly one of"):
        answer_of(request, {"chosen_options": ["Maybe"]}, platform="dify", run_id=RUN_ID)


def test_waiting_ends_at_the_deadline_or_the_expiry_whichever_is_first():
    assert timeout_at(FORM, EXPIRES.timestamp() - 10) == (
        datetime.fromtimestamp(EXPIRES.timestamp() - 10, tz=timezone.utc),
        True,
    )
    assert timeout_at(FORM, EXPIRES.timestamp() + 10) == (EXPIRES, False)
    never = FORM.model_copy(update={"expires_at": None})
    assert timeout_at(never, 1e9)[1] is True


def test_without_airflow_hitl_the_pause_fails_saying_what_is_needed(monkeypatch):
    monkeypatch.setitem(sys.modules, "airflow.providers.standard.triggers.hitl", None)
    with pytest.raises(
        HumanInputUnavailableError, match=r"needs the human-in-the-loop feature of Airflow 3\.1"
    ) as e:
        hitl_api("dify", RUN_ID)
    assert e.value.run_id == RUN_ID
    assert "human_input=False" in str(e.value)


def test_the_installed_airflow_has_it():
    upsert, trigger = hitl_api("dify", RUN_ID)
    assert callable(upsert)
    assert trigger.__name__ == "HITLTrigger"
