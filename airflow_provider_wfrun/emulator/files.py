"""
Files the emulated platforms take and serve: uploads, and small PNGs "generated" by a run.

A workflow on the emulator passes files through: an uploaded file given as an input comes back as an
output file (in the platform's output shape), and the input text ``emulator:png`` becomes a generated
image. Both are served on loopback, so copying outputs is tested over real HTTP.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.datastructures import UploadFile
from starlette.responses import Response

from airflow_provider_wfrun.emulator.core import ApiError, hex_id

if TYPE_CHECKING:
    from starlette.requests import Request

    from airflow_provider_wfrun.emulator.core import EmulatorState

#: The input text a run turns into a generated PNG output.
GENERATE_PNG = "emulator:png"


@dataclass(frozen=True)
class StoredFile:
    file_id: str
    name: str
    content: bytes
    media_type: str

    @property
    def extension(self) -> str:
        return self.name.rpartition(".")[2].lower() if "." in self.name else ""


def png(label: str, size: int = 8) -> bytes:
    """A small one-colour PNG whose colour depends on ``label`` (so copies can be told apart)."""
    red, green, blue = hashlib.sha256(label.encode()).digest()[:3]
    row = b"\x00" + bytes((red, green, blue)) * size
    raw = row * size

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def store(state: EmulatorState, name: str, content: bytes, media_type: str, prefix: str) -> StoredFile:
    stored = StoredFile(hex_id(prefix, 32), name, content, media_type)
    state.files[stored.file_id] = stored
    return stored


def generated_png(state: EmulatorState, prefix: str) -> StoredFile:
    file_id = hex_id(prefix, 32)
    stored = StoredFile(file_id, f"image_{file_id[-8:]}.png", png(file_id), "image/png")
    state.files[file_id] = stored
    return stored


async def read_upload(
    request: Request, state: EmulatorState, prefix: str, limit: Callable[[str, str], int]
) -> StoredFile:
    """The multipart ``file`` part of an upload, stored; ``limit(name, media_type)`` is the platform's cap."""
    form = await request.form(max_files=1, max_fields=10)
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        raise ApiError(400, "No file uploaded.", "no_file_uploaded")
    media_type = upload.content_type or ""
    if not media_type:
        raise ApiError(415, "File type not allowed.", "unsupported_file_type")
    cap = limit(upload.filename, media_type)
    content = await upload.read(cap + 1)  # never more than the cap (plus one byte to see past it)
    if len(content) > cap:
        raise ApiError(413, "", "file_too_large")
    return store(state, upload.filename, content, media_type, prefix)


def serve(state: EmulatorState, file_id: str) -> Response:
    stored = state.files.get(file_id)
    if not isinstance(stored, StoredFile):
        return Response(b"not found", status_code=404, media_type="text/plain")
    return Response(stored.content, media_type=stored.media_type)


def replace_files(value: Any, convert: Callable[[Any], Any | None]) -> Any:
    """``value`` with every part ``convert`` recognizes (returns non-None for) replaced, recursively."""
    converted = convert(value)
    if converted is not None:
        return converted
    if isinstance(value, dict):
        return {key: replace_files(item, convert) for key, item in value.items()}
    if isinstance(value, list):
        return [replace_files(item, convert) for item in value]
    return value
