"""The Dify adapter's human-input forms, file uploads and output files, on its documented shapes."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_wfrun.exceptions import (
    InvalidInputError,
    InvalidResponseError,
    NotSupportedError,
    PlatformError,
)
from airflow_provider_wfrun.human_input import HumanInputAction, HumanInputForm
from airflow_provider_wfrun.platforms import get_adapter

FIXTURES = Path(__file__).parent.parent / "fixtures" / "dify"
RUN_ID = "fb47b2e6-5e43-4f90-be01-d5c5a088d156"
FORM = {
    "form_content": "Please review the draft.",
    "inputs": [{"type": "paragraph", "output_variable_name": "feedback"}],
    "user_actions": [{"id": "approve", "title": "Approve"}],
}


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def adapter():
    return get_adapter("dify", {"user": "pipeline-7"})


# --- forms ---------------------------------------------------------------------------------------------
def test_the_form_and_its_event_stream_are_gets(adapter):
    form = adapter.form_request("tok-1")
    assert (form.method, form.path, form.params, form.json) == ("GET", "/form/human_input/tok-1", None, None)
    events = adapter.events_request(RUN_ID)
    assert (events.method, events.path) == ("GET", f"/workflow/{RUN_ID}/events")


def test_a_form_delivered_by_mail_names_the_run_that_waits(adapter):
    event = {"event": "human_input_required", "data": {**FORM, "form_token": None}}
    expected = (
        f"[dify run {RUN_ID}] run {RUN_ID} waits for a Human Input form delivered by e-mail or the console, "
        "which cannot be answered through the API; answer it in Dify, or set the node's delivery to WebApp"
    )
    with pytest.raises(NotSupportedError) as read:
        adapter.read_form_event(event, run_id=RUN_ID)
    assert str(read.value) == expected
    with pytest.raises(NotSupportedError) as followed:
        adapter.follow_form(event, None, run_id=RUN_ID)
    assert str(followed.value) == expected


@pytest.mark.parametrize("data", ["not a form", None, {"inputs": "x"}])
def test_an_unreadable_form_event_names_the_run_and_the_field(adapter, data):
    with pytest.raises(InvalidResponseError) as caught:
        adapter.read_form_event({"event": "human_input_required", "data": data}, run_id=RUN_ID)
    assert caught.value.run_id == RUN_ID
    assert caught.value.field.startswith("data")
    assert str(caught.value).startswith(f"[dify run {RUN_ID}] unexpected response: field 'data")


def test_a_form_without_content_or_user_actions_uses_what_it_has(adapter):
    event = {
        "event": "human_input_required",
        "data": {"form_token": "t", "actions": [{"id": "ok"}], "inputs": []},
    }
    assert adapter.read_form_event(event, run_id=RUN_ID) == HumanInputForm(
        token="t", content="", actions=(HumanInputAction(id="ok", title="ok"),)
    )


@pytest.mark.parametrize("payload", [["event"], "human_input_required", None, {"data": {}}])
def test_anything_but_a_form_event_leaves_the_pending_form(adapter, payload):
    pending = HumanInputForm(token="t")
    assert adapter.read_form_event(payload, run_id=RUN_ID) is None
    assert adapter.follow_form(payload, pending, run_id=RUN_ID) == (pending, False)


@pytest.mark.parametrize(("event", "status"), [({"status": 400}, 400), ({}, 500), ({"status": "x"}, 500)])
def test_an_error_event_while_following_is_the_platforms_error_for_the_run(adapter, event, status):
    body = {"event": "error", "code": "invalid_param", "message": "form expired", **event}
    with pytest.raises(PlatformError) as caught:
        adapter.follow_form(body, None, run_id=RUN_ID)
    assert (caught.value.http_status, caught.value.code, caught.value.run_id) == (
        status,
        "invalid_param",
        RUN_ID,
    )
    assert (
        str(caught.value) == f"[dify run {RUN_ID}] platform error invalid_param (HTTP {status}): form expired"
    )


# --- uploads -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("photo.PNG", "image"),
        ("archive.tar.png", "image"),
        ("notes.md", "document"),
        ("voice.m4a", "audio"),
        ("clip.webm", "video"),
        ("data.bin", "custom"),
        ("png", "custom"),
        ("", "custom"),
    ],
)
def test_an_upload_is_the_files_input_of_its_category(adapter, name, kind):
    answer = {"id": "a1b2c3d4-5678-90ab-cdef-1234567890ab", "name": name}
    assert adapter.parse_upload(answer, media_type="x/y")["type"] == kind


def test_a_file_whose_type_cannot_be_told_is_refused_by_name(adapter):
    with pytest.raises(InvalidInputError) as caught:
        adapter.upload_limit("blob", None)
    assert str(caught.value) == (
        "[dify] the type of input file 'blob' cannot be told from its name, and Dify refuses files without "
        "one; give it an extension such as .png, .pdf or .txt"
    )


# --- output files --------------------------------------------------------------------------------------
def _file(**fields: Any) -> dict[str, Any]:
    return {"dify_model_identity": "__dify__file__", **fields}


def test_output_files_without_a_link_are_skipped_and_names_and_types_are_found(adapter):
    run = adapter.parse_run(fixture("run_detail_file_output.json"), run_id="r").model_copy(
        update={
            "outputs": {
                "a": _file(filename="no-link.png"),
                "b": _file(url="/files/x/chart.svg?sign=1"),
                "c": _file(remote_url="https://cdn.example.com/a/report", filename="report.pdf"),
                "d": _file(url="https://cdn.example.com/data", mime_type="text/csv", filename="data"),
            }
        }
    )
    files = adapter.output_files(run, base_url="https://dify.example.com/v1")
    assert [(f.name, f.url, f.media_type, f.output_key) for f in files] == [
        ("chart.svg", "https://dify.example.com/files/x/chart.svg?sign=1", "image/svg+xml", "b"),
        ("report.pdf", "https://cdn.example.com/a/report", "application/pdf", "c"),
        ("data", "https://cdn.example.com/data", "text/csv", "d"),
    ]


def test_an_unreadable_file_object_is_logged_by_its_output_key(adapter, caplog):
    run = adapter.parse_run(fixture("run_detail_file_output.json"), run_id="r").model_copy(
        update={"outputs": {"doc": _file(url="/files/a.pdf", size="big")}}
    )
    with caplog.at_level(logging.WARNING, logger="airflow_provider_wfrun.platforms.dify"):
        assert adapter.output_files(run, base_url="https://dify.example.com/v1") == []
    assert [record.getMessage() for record in caplog.records] == [
        "Dify output doc looks like a file but could not be read; skipped"
    ]
