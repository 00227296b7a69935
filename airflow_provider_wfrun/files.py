"""
Files in and out of a run.

* **In.** An input value that is an :class:`~airflow.sdk.ObjectStoragePath` or a local
  :class:`~pathlib.Path` (alone or in a list) is uploaded to the platform before the run is submitted
  and replaced by the platform's own file reference. Size and type are checked against the platform's
  documented limits before anything is read or sent.
* **Out.** Every file a finished run names (:meth:`WorkflowRunHook.output_files`) is streamed into
  ``outputs_to`` (any fsspec URL) under ``<run id>/<file name>``, with its size and SHA-256. Platform
  links expire; these copies do not. Each copy is written under a temporary name and moved into place
  when complete, so a failed copy never leaves a partial file under the final name.

The platform wire formats (upload requests, where outputs name files) are the adapters'; the reading,
streaming and writing are here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import suppress
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from airflow.sdk import ObjectStoragePath

from airflow_provider_wfrun.exceptions import FileTransferError, InvalidInputError, WorkflowRunError
from airflow_provider_wfrun.platforms.base import media_type

if TYPE_CHECKING:
    from airflow_provider_wfrun.hooks.workflow_run import WorkflowRunHook
    from airflow_provider_wfrun.models import OutputFile, WorkflowRun
    from airflow_provider_wfrun.platforms.base import PlatformAdapter

log = logging.getLogger(__name__)

#: Largest output file copied to ``outputs_to``, unless the operator says otherwise.
DEFAULT_MAX_FILE_BYTES = 512 * 1024 * 1024
_COPY_CHUNK = 1024 * 1024


# ------------------------------------------------------------------------------------------ inputs
def _is_file(value: Any) -> bool:
    return isinstance(value, (ObjectStoragePath, PurePath))


def _as_storage_path(value: Any) -> ObjectStoragePath:
    return value if isinstance(value, ObjectStoragePath) else ObjectStoragePath(f"file://{value}")


def _map_files(inputs: Mapping[str, Any], convert: Callable[[str, Any], Any]) -> dict[str, Any]:
    """``inputs`` with each file value (top level, or an item of a top-level list) converted."""

    def one(key: str, value: Any) -> Any:
        return convert(key, value) if _is_file(value) else value

    return {
        key: [one(key, item) for item in value] if isinstance(value, list) else one(key, value)
        for key, value in inputs.items()
    }


def has_input_files(inputs: Mapping[str, Any]) -> bool:
    return any(
        _is_file(value) or (isinstance(value, list) and any(_is_file(item) for item in value))
        for value in inputs.values()
    )


def without_files(inputs: Any) -> Any:
    """
    The inputs with each file as its URL: what the JSON checks see before the uploads happen (inputs
    that are not a mapping are returned as they are, for those checks to reject).
    """
    return _map_files(inputs, lambda key, value: str(value)) if isinstance(inputs, Mapping) else inputs


def input_file_urls(inputs: Mapping[str, Any]) -> list[str]:
    """The URLs of the files among the inputs (for lineage); nothing is read."""
    urls: list[str] = []
    _map_files(inputs, lambda key, value: urls.append(str(_as_storage_path(value))))
    return urls


def check_input_files(inputs: Mapping[str, Any], adapter: PlatformAdapter) -> None:
    """Each input file exists, is a file and fits the platform's limits for its type; nothing is read."""
    _map_files(inputs, lambda key, value: _upload_limit(key, _as_storage_path(value), adapter))


def _upload_limit(key: str, path: ObjectStoragePath, adapter: PlatformAdapter) -> int:
    try:
        size = path.stat().st_size if path.is_file() else None
    except OSError as exc:
        raise InvalidInputError(f"input {key!r}: file {path} cannot be read ({exc})") from None
    if size is None:
        raise InvalidInputError(f"input {key!r}: {path} is not a file; pass the path of an existing file")
    limit = adapter.upload_limit(path.name, media_type(path.name))
    if size > limit:
        raise InvalidInputError(
            f"input {key!r}: {path.name} is {size} bytes, more than the {limit} bytes "
            f"({limit // (1024 * 1024)} MB) {adapter.display_name} accepts for this type of file",
            platform=adapter.name,
        )
    return limit


def upload_input_files(hook: WorkflowRunHook, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs with each file uploaded and replaced by the platform's reference to it."""

    def upload(key: str, value: Any) -> Any:
        path = _as_storage_path(value)
        limit = _upload_limit(key, path, hook.adapter)
        try:
            with path.open("rb") as source:
                content = source.read(limit + 1)
        except OSError as exc:
            raise InvalidInputError(f"input {key!r}: file {path} cannot be read ({exc})") from None
        if len(content) > limit:  # it grew since it was checked
            raise InvalidInputError(f"input {key!r}: {path.name} is larger than {limit} bytes")
        kind = media_type(path.name) or "application/octet-stream"
        reference = hook.upload_file(path.name, content, kind)
        log.info("Uploaded input %r (%s, %d bytes) to %s", key, path.name, len(content), hook.adapter.name)
        return reference

    return _map_files(inputs, upload)


# ----------------------------------------------------------------------------------------- outputs
def check_outputs_to(value: Any) -> ObjectStoragePath | None:
    """``outputs_to`` as a storage path: an ``ObjectStoragePath`` or a URL string (``s3://...``)."""
    if value is None or isinstance(value, ObjectStoragePath):
        return value
    if isinstance(value, str) and value.strip():
        return ObjectStoragePath(value.strip())
    raise InvalidInputError(
        "outputs_to must be an ObjectStoragePath or a storage URL such as 's3://bucket/prefix', "
        f"got {value!r}"
    )


def check_max_file_bytes(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"max_file_bytes must be a positive number of bytes, got {value!r}")
    return value


def copy_output_files(
    hook: WorkflowRunHook, run: WorkflowRun, destination: ObjectStoragePath, *, max_file_bytes: int
) -> list[dict[str, Any]]:
    """
    Copy every file the run names into ``destination/<run id>/``; returns one entry per file: where it
    came from (``platform_url``, expiring), where it is now (``path``), its size and SHA-256.
    """
    folder = destination / run.run_id
    taken: set[str] = set()
    copied = []
    for file in hook.output_files(run):
        name = _unique(file.name, taken)
        target = folder / name
        size, digest = _copy_one(hook, run.run_id, file, target, max_file_bytes)
        copied.append(
            {
                "output_key": file.output_key,
                "name": name,
                "media_type": file.media_type,
                "platform_url": file.url,
                "path": str(target),
                "size": size,
                "sha256": digest,
            }
        )
        log.info("Copied output %s (%d bytes) to %s", file.output_key, size, target)
    return copied


def _copy_one(
    hook: WorkflowRunHook, run_id: str, file: OutputFile, target: ObjectStoragePath, max_bytes: int
) -> tuple[int, str]:
    partial = target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.part"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with hook.open_file(file, run_id=run_id, max_bytes=max_bytes) as chunks:
            size, digest = _write(chunks, partial)
        partial.rename(target)
    except (WorkflowRunError, OSError) as exc:
        with suppress(OSError):
            partial.unlink(missing_ok=True)
        message = exc.message if isinstance(exc, WorkflowRunError) else f"{type(exc).__name__}: {exc}"
        raise FileTransferError(
            f"the run finished, but output {file.output_key} ({file.name}) could not be copied to "
            f"{target}: {message}. Nothing was left under that name; the run's outputs stay on the "
            "platform until its links expire",
            platform=hook.adapter.name,
            run_id=run_id,
        ) from exc
    return size, digest


def _write(chunks: Iterator[bytes], partial: ObjectStoragePath) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with partial.open("wb") as out:
        for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    return size, digest.hexdigest()


def _unique(name: str, taken: set[str]) -> str:
    """The platform's file name, made unique within one run (two nodes may both write ``image.png``)."""
    safe = name.replace("/", "_").replace("\\", "_").lstrip(".") or "file"
    candidate, counter = safe, 1
    stem, dot, suffix = safe.rpartition(".")
    while candidate in taken:
        counter += 1
        candidate = f"{stem}-{counter}.{suffix}" if dot and stem else f"{safe}-{counter}"
    taken.add(candidate)
    return candidate


# ------------------------------------------------------------------------------- workflow documents
#: Largest workflow document read from a file (ComfyUI graphs are tens of kilobytes).
MAX_WORKFLOW_BYTES = 16 * 1024 * 1024


def load_workflow(value: Any) -> dict[str, Any] | None:
    """
    A workflow document (``workflow=``) as an object: given inline as a mapping, or as a path, a storage URL
    or an :class:`~airflow.sdk.ObjectStoragePath` of a JSON file. Read once, bounded, before any call; a
    missing or unreadable file is an ``InvalidInputError`` naming it.
    """
    if value is None or isinstance(value, Mapping):
        return None if value is None else dict(value)
    if isinstance(value, str) and value.lstrip().startswith("{"):
        return _workflow_json(value, "the inline workflow")
    if not isinstance(value, (str, ObjectStoragePath, PurePath)):
        raise InvalidInputError(
            f"workflow must be a mapping (the API-format graph), a path or an ObjectStoragePath of a JSON "
            f"file, got {type(value).__name__}"
        )
    path = value if isinstance(value, ObjectStoragePath) else _as_storage_path(value)
    if isinstance(value, str) and "://" in value:
        path = ObjectStoragePath(value)
    try:
        with path.open("rb") as handle:
            content = handle.read(MAX_WORKFLOW_BYTES + 1)
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"workflow file {str(value)!r} cannot be read: {exc}") from None
    if len(content) > MAX_WORKFLOW_BYTES:
        raise InvalidInputError(f"workflow file {str(value)!r} is larger than {MAX_WORKFLOW_BYTES} bytes")
    return _workflow_json(content, f"workflow file {str(value)!r}")


def _workflow_json(content: str | bytes, what: str) -> dict[str, Any]:
    try:
        document = json.loads(content)
    except (ValueError, RecursionError):
        raise InvalidInputError(f"{what} is not JSON; export the workflow in API format") from None
    if not isinstance(document, dict):
        raise InvalidInputError(f"{what} must be a JSON object (the API-format graph)")
    return document
