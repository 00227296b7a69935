"""
ComfyUI input files (what ``/upload/image`` is sent, what it takes, the name a load node then reads), and a
prompt that a cancel removed.
"""

from __future__ import annotations

import pytest

from airflow_provider_wfrun.exceptions import InvalidInputError, InvalidResponseError
from airflow_provider_wfrun.models import RunStatus
from airflow_provider_wfrun.platforms import get_adapter


@pytest.fixture
def adapter():
    return get_adapter("comfyui")


def test_an_upload_is_the_image_part_into_the_input_folder(adapter):
    request = adapter.upload_request("cat.png", b"\x89PNG", "image/png")
    assert (request.method, request.path, request.json) == ("POST", "/upload/image", None)
    assert request.form == {"type": "input"}
    assert request.files == {"image": ("cat.png", b"\x89PNG", "image/png")}


@pytest.mark.parametrize(
    ("name", "kind"), [("cat.png", "image/png"), ("clip.mp4", "video/mp4"), ("voice.wav", "audio/x-wav")]
)
def test_images_video_and_audio_fit_under_the_servers_default_cap(adapter, name, kind):
    assert adapter.upload_limit(name, kind) == 100 * 1024 * 1024


def test_a_file_no_load_node_reads_is_refused_before_reading(adapter):
    with pytest.raises(InvalidInputError) as err:
        adapter.upload_limit("notes.pdf", "application/pdf")
    assert str(err.value) == (
        "[comfyui] input file 'notes.pdf' is application/pdf; ComfyUI's load nodes read images, video and "
        "audio, so pass one of those (or its URL as text to a node that downloads it)"
    )
    assert err.value.platform == "comfyui"
    with pytest.raises(InvalidInputError, match="the type of input file 'blob' cannot be told from its name"):
        adapter.upload_limit("blob", None)


def test_a_prompt_gone_after_its_cancel_was_removed_by_it(adapter):
    """Deleting a pending prompt leaves no trace; the hook asks the adapter what a vanished run means."""
    removed = adapter.removed_by_cancel("p-1")
    assert (removed.platform, removed.run_id, removed.status) == ("comfyui", "p-1", RunStatus.CANCELED)
    assert removed.error.reason == "ComfyUI removed the prompt from its queue when asked to cancel it"
    assert get_adapter("dify").removed_by_cancel("r-1") is None


@pytest.mark.parametrize(
    ("answer", "reference"),
    [
        ({"name": "cat.png", "subfolder": "", "type": "input"}, "cat.png"),
        ({"name": "cat (1).png", "subfolder": "", "type": "input"}, "cat (1).png"),
        ({"name": "cat.png", "subfolder": "pets", "type": "input"}, "pets/cat.png"),
        ({"name": "cat.png", "subfolder": "", "type": "temp"}, "cat.png [temp]"),
        ({"name": "cat.png"}, "cat.png"),
    ],
)
def test_the_reference_is_the_name_the_server_gave_as_a_load_node_reads_it(adapter, answer, reference):
    assert adapter.parse_upload(answer, media_type="image/png") == reference


@pytest.mark.parametrize("answer", [{}, {"subfolder": "", "type": "input"}, [], "ok"])
def test_an_answer_without_a_name_is_an_invalid_response(adapter, answer):
    with pytest.raises(InvalidResponseError):
        adapter.parse_upload(answer, media_type="image/png")
