"""
The contract every platform adapter fulfils, and the unit conversions they share.

An adapter is pure: it builds :class:`ApiRequest` descriptions and turns decoded response bodies into
:class:`~airflow_provider_wfrun.models.WorkflowRun` or typed errors. It never performs I/O, so the same
adapter serves the sync hook, the async hook and the tests, and a new platform is one new module here.
"""

from __future__ import annotations

import logging
import mimetypes
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, ClassVar, TypeVar
from urllib.parse import unquote, urlencode, urljoin, urlsplit

from pydantic import BaseModel, ConfigDict, ValidationError

from airflow_provider_wfrun.exceptions import (
    AuthenticationError,
    InvalidInputError,
    InvalidResponseError,
    NotSupportedError,
    PlatformError,
    RateLimitedError,
    RunNotFoundError,
    WorkflowRunError,
)
from airflow_provider_wfrun.models import OutputFile, RunStatus, WorkflowRun

log = logging.getLogger(__name__)

WireModel = TypeVar("WireModel", bound=BaseModel)


@dataclass(frozen=True)
class ApiRequest:
    """One HTTP call, relative to the connection's API root."""

    method: str
    path: str
    params: Mapping[str, str] | None = None
    json: Mapping[str, Any] | None = None
    #: The answer is a server-sent-event stream, read only until :meth:`PlatformAdapter.read_submit_event`
    #: returns a run (Dify streaming submit).
    stream: bool = False
    #: A multipart form instead of JSON (file uploads): plain fields, and files as
    #: ``name -> (file name, content, media type)``.
    form: Mapping[str, str] | None = None
    files: Mapping[str, tuple[str, bytes, str]] | None = None

    def url(self, base_url: str) -> str:
        query = f"?{urlencode(self.params)}" if self.params else ""
        return f"{base_url.rstrip('/')}{self.path}{query}"


@dataclass(frozen=True)
class ErrorInfo:
    """A platform error body, reduced to its code and message."""

    code: str | None
    message: str | None


class WireFormat(BaseModel):
    """Per-platform response schemas: extra fields are tolerated, missing optional ones are None."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class PlatformAdapter(ABC):
    """Wire format of one platform. Subclasses set the class attributes and implement the abstract methods."""

    #: Connection type and platform name, e.g. ``"dify"``.
    name: ClassVar[str]
    #: Human-readable name for the connection form and messages.
    display_name: ClassVar[str]
    #: API root used when the connection's host is empty.
    default_host: ClassVar[str]
    #: Whether a run can be canceled through the API.
    supports_cancel: ClassVar[bool] = False
    #: The platform deduplicates submissions (an idempotency key), so a failed submit may be retried
    #: whatever the failure; otherwise only failures that provably created no run are retried.
    idempotent_submit: ClassVar[bool] = False
    #: ``submit_run`` must be given a ``workflow_id``.
    requires_workflow_id: ClassVar[bool] = False
    #: Error codes (as strings) that mean the key was rejected / the thing does not exist.
    auth_error_codes: ClassVar[frozenset[str]] = frozenset()
    not_found_error_codes: ClassVar[frozenset[str]] = frozenset()
    #: Codes of a 429 that is a spent quota rather than a momentary limit: retrying cannot help.
    quota_error_codes: ClassVar[frozenset[str]] = frozenset()
    #: Platform status word -> normalized status.
    statuses: ClassVar[Mapping[str, RunStatus]]
    #: Connection extra fields this platform reads, with a description for the connection form.
    extra_fields: ClassVar[Mapping[str, str]] = {}
    #: What this platform's run ids look like, to catch an id meant for another platform before calling.
    run_id_pattern: ClassVar[re.Pattern[str] | None] = None
    run_id_example: ClassVar[str] = ""
    #: Authentication: the header the key travels in and what precedes it (``Bearer`` by default; a
    #: platform with a named key header sets ``auth_header = "X-Api-Key"`` and ``auth_prefix = ""``).
    auth_header: ClassVar[str] = "Authorization"
    auth_prefix: ClassVar[str] = "Bearer "
    #: False for servers that may run without authentication (a self-hosted engine on a private network).
    requires_api_key: ClassVar[bool] = True

    def __init__(self, extra: Mapping[str, Any] | None = None) -> None:
        self.extra: Mapping[str, Any] = extra or {}

    @classmethod
    def auth_headers(cls, api_key: str) -> dict[str, str]:
        """The headers that authenticate a request with ``api_key``."""
        return {cls.auth_header: f"{cls.auth_prefix}{api_key}"}

    # --- requests ------------------------------------------------------------------------------
    @abstractmethod
    def submit_request(
        self, inputs: Mapping[str, Any], *, workflow_id: str | None, idempotency_key: str | None
    ) -> ApiRequest: ...

    @abstractmethod
    def get_request(self, run_id: str) -> ApiRequest: ...

    def cancel_request(self, run_id: str, *, task_id: str | None) -> ApiRequest:
        raise NotSupportedError(
            f"{self.display_name} has no API to cancel a workflow run; it will run to completion",
            platform=self.name,
            run_id=run_id,
        )

    def settlement_request(self, run: WorkflowRun) -> ApiRequest | None:
        """A second call that completes a terminal run (billing); None when the platform has none."""
        return None

    # --- input files (uploads) -------------------------------------------------------------------
    def upload_limit(self, name: str, media_type: str | None) -> int:
        """
        Largest upload the platform takes for this file, in bytes; checked before reading or sending it.
        Raises ``NotSupportedError`` where the platform documents no upload, ``InvalidInputError`` for a
        type it cannot take.
        """
        raise NotSupportedError(
            f"{self.display_name} documents no API to upload input files, so {name!r} cannot be passed "
            "as a file; pass a public URL in inputs instead, or upload it yourself",
            platform=self.name,
        )

    def upload_request(self, name: str, content: bytes, media_type: str) -> ApiRequest:
        """The multipart request that uploads one input file."""
        raise NotSupportedError(f"{self.display_name} takes no file uploads", platform=self.name)

    def parse_upload(self, payload: Any, *, media_type: str) -> Any:
        """The upload's answer as the value the workflow's input takes (the platform's own file form)."""
        raise NotSupportedError(f"{self.display_name} takes no file uploads", platform=self.name)

    def _require_media_type(self, name: str, media_type: str | None) -> str:
        if not media_type:
            raise InvalidInputError(
                f"the type of input file {name!r} cannot be told from its name, and {self.display_name} "
                "refuses files without one; give it an extension such as .png, .pdf or .txt",
                platform=self.name,
            )
        return media_type

    @abstractmethod
    def probe_request(self) -> ApiRequest:
        """The cheapest authenticated call, for ``test_connection``."""

    # --- responses -----------------------------------------------------------------------------
    @abstractmethod
    def parse_submit(self, payload: Any) -> WorkflowRun:
        """The run as the submit answer describes it."""

    def read_submit_event(self, payload: Any) -> WorkflowRun | None:
        """For streaming submits: the run once an event identifies it, None to keep reading."""
        raise NotImplementedError

    @abstractmethod
    def parse_run(self, payload: Any, *, run_id: str) -> WorkflowRun: ...

    def apply_settlement(self, run: WorkflowRun, payload: Any) -> WorkflowRun:
        return run

    def output_files(self, run: WorkflowRun, *, base_url: str) -> list[OutputFile]:
        """
        The files a finished run produced, named and addressed (``base_url`` resolves relative links).

        Platforms put files in their outputs in their own shapes (chenyu: URL strings, Dify: file objects,
        ComfyUI: ``filename``/``subfolder``/``type`` triples behind ``/view``); this is the one place that
        knows each shape, so copying files out works the same for all. None by default.
        """
        return []

    @abstractmethod
    def error_info(self, payload: Any) -> ErrorInfo | None:
        """The error a body carries, whatever the HTTP status (some platforms answer 200 with an error)."""

    def run_url(self, run_id: str, *, base_url: str, workflow_id: str | None = None) -> str:
        """
        Where a person can look at the run: the connection extra ``run_url_template`` (with ``{run_id}``
        and ``{workflow_id}``) when set, else the API address of the run's status.
        """
        template = self.extra.get("run_url_template")
        if template:
            return str(template).format(run_id=run_id, workflow_id=workflow_id or "")
        return self.get_request(run_id).url(base_url)

    # --- shared machinery ------------------------------------------------------------------------
    def raise_for_error(
        self,
        status_code: int,
        payload: Any,
        *,
        run_id: str | None = None,
        retry_after: float | None = None,
        fallback: str | None = None,
    ) -> None:
        """Raise the typed error an answer stands for; return quietly if it is a success."""
        info = self.error_info(payload) if payload is not None else None
        if status_code < 400 and info is None:
            return
        code = info.code if info else None
        message = (info.message if info else None) or fallback or f"HTTP {status_code}"
        where = {"platform": self.name, "run_id": run_id}
        if code in self.quota_error_codes:
            raise PlatformError(
                f"quota exhausted ({code}): {message}",
                code=code,
                platform_message=message,
                http_status=status_code,
                **where,
            )
        if status_code == 429 or code == "429":
            raise RateLimitedError(f"rate limited: {message}", retry_after=retry_after, **where)
        if status_code == 401 or code in self.auth_error_codes:
            raise AuthenticationError(
                f"the API key was rejected ({message}); check the connection's password", **where
            )
        if status_code == 404 or code in self.not_found_error_codes:
            raise RunNotFoundError(f"not found: {message}", **where)
        label = f"{code} (HTTP {status_code})" if code and code != str(status_code) else str(status_code)
        raise PlatformError(
            f"platform error {label}: {message}",
            code=code,
            platform_message=info.message if info else None,
            http_status=status_code,
            **where,
        )

    def validate(
        self, model: type[WireModel], payload: Any, *, run_id: str | None = None, at: str = ""
    ) -> WireModel:
        """
        Parse a body into its wire schema, turning a validation failure into a one-line typed error.

        ``at`` is the path of ``payload`` inside the response (``"data"`` in an envelope), so the error
        names the field as it appears on the wire.
        """
        try:
            return model.model_validate(payload)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(part) for part in (at, *first["loc"]) if part != "") or "<body>"
            raise InvalidResponseError(
                f"unexpected response: field '{field}' {first['msg'].lower()} "
                f"(got {type(first.get('input')).__name__})",
                platform=self.name,
                run_id=run_id,
                field=field,
            ) from None

    def map_status(self, word: str | None) -> RunStatus:
        if word is None:
            return RunStatus.UNKNOWN
        status = self.statuses.get(word)
        if status is None:
            _warn_unknown_status(self.name, word)
            return RunStatus.UNKNOWN
        return status

    def check_run_id(self, run_id: str) -> None:
        if self.run_id_pattern is not None and not self.run_id_pattern.fullmatch(run_id):
            raise InvalidInputError(
                f"{run_id!r} is not a {self.display_name} run id (they look like {self.run_id_example}); "
                "is the run from another platform's connection?",
                platform=self.name,
            )

    def missing_input(self, message: str) -> WorkflowRunError:
        return InvalidInputError(message, platform=self.name)


_unknown_statuses_seen: set[tuple[str, str]] = set()


def _warn_unknown_status(platform: str, word: str) -> None:
    if (platform, word) in _unknown_statuses_seen:
        return
    _unknown_statuses_seen.add((platform, word))
    log.warning(
        "%s reported run status %r, which this provider does not know; treating it as not finished",
        platform,
        word,
    )


# --- output files ------------------------------------------------------------------------------------
#: How deep and how many output values are searched for files: outputs are platform data.
MAX_OUTPUT_DEPTH = 8
MAX_OUTPUT_FILES = 1000


def walk_outputs(outputs: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """
    Every value in ``outputs`` with its key path (``"a.b[0]"``), depth first, bounded in depth and count.
    """
    found: list[tuple[str, Any]] = []
    stack: list[tuple[str, Any, int]] = [(str(key), value, 1) for key, value in reversed(outputs.items())]
    while stack and len(found) < MAX_OUTPUT_FILES * 10:
        path, value, depth = stack.pop()
        found.append((path, value))
        if depth >= MAX_OUTPUT_DEPTH:
            continue
        if isinstance(value, Mapping):
            stack.extend((f"{path}.{key}", item, depth + 1) for key, item in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend(
                (f"{path}[{index}]", item, depth + 1) for index, item in reversed(list(enumerate(value)))
            )
    return found


def url_files(outputs: Mapping[str, Any]) -> list[OutputFile]:
    """Output values that are http(s) URLs with a file name, as files (chenyu's image outputs)."""
    files = []
    for path, value in walk_outputs(outputs):
        if isinstance(value, str) and value.startswith(("http://", "https://")) and " " not in value:
            name = file_name(value)
            if name:
                files.append(OutputFile(name=name, url=value, media_type=media_type(name), output_key=path))
    return files[:MAX_OUTPUT_FILES]


def file_name(url: str) -> str:
    """The last path segment of a URL, decoded; "" when the path has none."""
    segment = unquote(urlsplit(url).path.rstrip("/").rpartition("/")[2])
    return segment.replace("\\", "_").strip()


def media_type(name: str) -> str | None:
    return mimetypes.guess_type(name, strict=False)[0]


def absolute_url(url: str, base_url: str) -> str:
    """A platform link made absolute: relative ones (``/files/...``) are on the API's host."""
    return urljoin(base_url.rstrip("/") + "/", url)


# --- unit conversions -------------------------------------------------------------------------------
def from_unix_seconds(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, tz=timezone.utc)


def from_unix_millis(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1000, tz=timezone.utc)


def from_iso(value: str | None) -> datetime | None:
    """ISO-8601 text to aware UTC; a string without offset is taken as UTC."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)
