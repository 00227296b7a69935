"""
The contract every platform adapter fulfils, and the unit conversions they share.

An adapter is pure: it builds :class:`ApiRequest` descriptions and turns decoded response bodies into
:class:`~airflow_provider_wfrun.models.WorkflowRun` or typed errors. It never performs I/O, so the same
adapter serves the sync hook, the async hook and the tests, and a new platform is one new module here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import mimetypes
import re
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from functools import partial
from typing import Annotated, Any, ClassVar, TypeVar
from urllib.parse import unquote, urlencode, urljoin, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)

from airflow_provider_wfrun.connection_form import ExtraFieldSpec
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
from airflow_provider_wfrun.human_input import HumanInputForm
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
    #: The answer is the same for every run on the server (ComfyUI's queue): a triggerer's polls may share
    #: one reading of it for this many seconds (``hooks/shared_reads.py``). 0: each poll reads its own.
    shared_seconds: float = 0.0

    def url(self, base_url: str) -> str:
        query = f"?{urlencode(self.params)}" if self.params else ""
        return f"{base_url.rstrip('/')}{self.path}{query}"


@dataclass(frozen=True)
class ErrorInfo:
    """A platform error body, reduced to its code and message."""

    code: str | None
    message: str | None


class WireFormat(BaseModel):
    """
    Per-platform response schemas: extra fields are tolerated, missing optional ones are None.

    Only the fields a decision needs (the run id, the status word) are declared with plain strict types;
    every other field uses one of the tolerant types below, so an odd value degrades to None instead of
    failing the poll (see :func:`tolerant`).

    Their validators are built on first use (``defer_build``), not on import: a task process uses one
    platform and imports them all through the registry.
    """

    model_config = ConfigDict(extra="ignore", populate_by_name=True, defer_build=True)


# --- tolerant reading ----------------------------------------------------------------------------------
#: Validation context keys: where unreadable fields are noted, and the zone of timestamps without offset.
UNREADABLE = "wfrun_unreadable"
ZONE = "wfrun_zone"
#: Outputs that are not an object (a list, a number, a plain string) are kept under this key.
OUTPUT_VALUE_KEY = "value"
#: Money at or beyond this magnitude (10**12 of any currency or credits) is not a real run's cost.
MONEY_LIMIT = Decimal(10) ** 12
#: Money with more decimal places than this is not an amount either (and would print as pages of zeros).
MONEY_MAX_PLACES = 18
#: Upper bounds of plausible durations and counts; beyond them a value is noise, not a measurement.
MAX_SECONDS = 10 * 366 * 24 * 3600.0
MAX_COUNT = 10**15
MAX_QUEUE_POSITION = 10**9
#: Errors a reading step may raise on hostile input; all of them mean "this field is unreadable".
_READ_ERRORS = (ValidationError, ValueError, TypeError, ArithmeticError, RecursionError, KeyError, OSError)

Reader = Callable[[Any, Mapping[str, Any]], Any]
#: In :attr:`PlatformAdapter.status_path`: the key that is the run's id.
RUN_ID = "{run_id}"


def tolerant(read: Reader) -> WrapValidator:
    """
    A field validator that turns an unreadable value into None and notes the field's name.

    ``read(value, context)`` converts the wire value first (numbers given as text, an object where text
    was expected...); then pydantic validates the result against the field's type. Whatever fails, the
    field is None and ``(field name, value)`` is appended to the context's :data:`UNREADABLE` list, which
    :meth:`PlatformAdapter.validate` logs once per run.
    """
    # A partial of a module-level function rather than a closure: the field types below are built at
    # import, and a closure's body could then not be mutation-tested (make mutation). This line itself
    # runs only at import, where mutmut cannot switch a mutant on, hence the pragma.
    return WrapValidator(partial(_read_tolerantly, read))  # pragma: no mutate


def _read_tolerantly(
    read: Reader, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
) -> Any:
    """The validator :func:`tolerant` builds, given its ``read``."""
    if value is None:
        return None
    context = info.context or {}
    try:
        return handler(read(value, context))
    except _READ_ERRORS:
        notes = context.get(UNREADABLE)
        if notes is not None:
            notes.append((info.field_name or "?", value))
        return None


def _number(value: Any) -> float:
    """A finite float from a JSON number or numeric text; booleans are not numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise TypeError(f"not a number: {type(value).__name__}")
    number = float(value.strip() if isinstance(value, str) else value)
    if not math.isfinite(number):
        raise ValueError("not a finite number")
    return number


def _bounded(
    low: float, high: float, value: Any, context: Mapping[str, Any], *, integral: bool = False
) -> float | int:
    """A number within ``low..high`` (a whole one if ``integral``); bind the bounds with ``partial``."""
    number = _number(value)
    if not low <= number <= high:
        raise ValueError(f"{number} is outside {low}..{high}")
    if integral:
        if not number.is_integer():
            raise ValueError(f"{number} is not a whole number")
        return int(number)
    return number


def _money(value: Any, context: Mapping[str, Any]) -> Decimal:
    """Exact money: text and integers as written, floats by their shortest repr (0.0002878)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise TypeError(f"not an amount: {type(value).__name__}")
    text = repr(value) if isinstance(value, float) else str(value).strip()
    if len(text) > 64:
        raise ValueError("an amount of more than 64 characters")
    amount = Decimal(text)
    if not amount.is_finite() or abs(amount) >= MONEY_LIMIT:
        raise ValueError(f"{text} is not a plausible amount")
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MONEY_MAX_PLACES:
        raise ValueError(f"{text} has more than {MONEY_MAX_PLACES} decimal places")
    return amount


def _scalar_text(value: Any, context: Mapping[str, Any]) -> str:
    """Text from text or a number (ids given as integers); anything else is unreadable."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise TypeError("a boolean is not text")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (float, Decimal)):
        return _number_text(value)
    raise TypeError(f"not text: {type(value).__name__}")


def _number_text(value: float | Decimal) -> str:
    """A number as an id or a message would have written it: ``9`` for 9.0, ``12.5``, never ``1E+13``."""
    number = Decimal(repr(value)) if isinstance(value, float) else value
    if not number.is_finite():
        raise ValueError("not a finite number")
    if number == number.to_integral_value():
        return str(int(number))
    return format(number.normalize(), "f")


_MESSAGE_KEYS = ("message", "msg", "reason", "error", "detail", "description")


def _message(value: Any, context: Mapping[str, Any], depth: int = 0) -> str:
    """A human message from text, an object carrying one (``{"message": ...}``) or a list of them."""
    if depth > 4:
        raise ValueError("message nested too deeply")
    if isinstance(value, dict):
        for key in _MESSAGE_KEYS:
            if value.get(key) not in (None, "", {}, []):
                return _message(value[key], context, depth + 1)
        return json.dumps(value, ensure_ascii=False, default=str)[:2000]
    if isinstance(value, list):
        return "; ".join(_message(item, context, depth + 1) for item in value[:20] if item is not None)
    return _scalar_text(value, context)


def _decoded(value: Any) -> Any:
    """A JSON document given as text is decoded; anything else is returned as it is."""
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in ("{", "["):
            return json.loads(text)
    return value


def _record(value: Any, context: Mapping[str, Any]) -> Any:
    """
    An object, also when given as JSON text or as a list holding it (its first object). Other values go
    to the model, which may read them (an error given as plain text) or not (then the field is None).
    """
    value = _decoded(value)
    if isinstance(value, list):
        value = next((item for item in value if isinstance(item, dict)), None)
    return value


def _records(value: Any, context: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A list of objects; a lone object counts as a list of one, items that are not objects are dropped."""
    value = _decoded(value)
    if isinstance(value, dict):
        return [value]
    if not isinstance(value, list):
        raise TypeError("not a list")
    kept = [item for item in value if isinstance(item, dict)]
    if len(kept) < len(value):
        notes = context.get(UNREADABLE)
        if notes is not None:
            notes.append(("<list item>", [item for item in value if not isinstance(item, dict)][:3]))
    return kept


def _outputs(value: Any, context: Mapping[str, Any]) -> dict[str, Any]:
    """Outputs are an object; JSON text is decoded, a non-object is kept under :data:`OUTPUT_VALUE_KEY`."""
    with contextlib.suppress(ValueError):  # text that merely starts like JSON stays the text it is
        value = _decoded(value)
    if isinstance(value, dict):
        return value
    return {OUTPUT_VALUE_KEY: value}


def _instant(unit_seconds: float, value: Any, context: Mapping[str, Any]) -> datetime | None:
    """
    A timestamp to aware UTC: a number (or numeric text) counts ``unit_seconds`` per unit since the Unix
    epoch; other text is ISO 8601, and one without an offset is in the context's zone (UTC by default).
    Bind the unit with ``partial``.
    """
    if isinstance(value, str) and not _looks_numeric(value):
        return from_iso(value, zone=context.get(ZONE) or timezone.utc)
    return datetime.fromtimestamp(_number(value) * unit_seconds, tz=timezone.utc)


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


#: Free text and ids (a number is taken as its digits).
Text = Annotated[str | None, tolerant(_scalar_text)]
#: A human message: text, or the message of an object or of a list of them.
Message = Annotated[str | None, tolerant(_message)]
#: Counts (tokens, steps): whole, non-negative and plausible.
Count = Annotated[int | None, tolerant(partial(_bounded, 0, MAX_COUNT, integral=True))]
QueuePosition = Annotated[int | None, tolerant(partial(_bounded, 0, MAX_QUEUE_POSITION, integral=True))]
Percent = Annotated[float | None, tolerant(partial(_bounded, 0.0, 100.0))]
Seconds = Annotated[float | None, tolerant(partial(_bounded, 0.0, MAX_SECONDS))]
Millis = Annotated[float | None, tolerant(partial(_bounded, 0.0, MAX_SECONDS * 1000))]
Amount = Annotated[Decimal | None, tolerant(_money)]
UnixSeconds = Annotated[datetime | None, tolerant(partial(_instant, 1.0))]
UnixMillis = Annotated[datetime | None, tolerant(partial(_instant, 0.001))]
IsoTime = UnixSeconds  # the same reader: ISO text, or Unix seconds if a platform sends a number
Outputs = Annotated[dict[str, Any] | None, tolerant(_outputs)]
#: Wrap a nested model: ``Annotated[_Error | None, Record]``.
Record = tolerant(_record)
Records = tolerant(_records)


class _OncePerRun:
    """
    Remembers which (run, field) pairs were logged already; bounded, the oldest are forgotten first. Every
    hook (every waiting trigger) has one, and most never log anything: its memory is made on first use.
    """

    __slots__ = ("_limit", "_seen")

    def __init__(self, limit: int = 10_000) -> None:
        self._seen: OrderedDict[tuple[str | None, str], None] | None = None
        self._limit = limit

    def first(self, run_id: str | None, what: str) -> bool:
        key = (run_id, what)
        if self._seen is None:
            self._seen = OrderedDict()
        elif key in self._seen:
            return False
        self._seen[key] = None
        if len(self._seen) > self._limit:
            self._seen.popitem(last=False)
        return True


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
    #: Runs may pause for a form a person answers (Dify's Human Input node).
    supports_human_input: ClassVar[bool] = False
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
    #: Codes that mean "too many requests" whatever the HTTP status (Coze answers 200 with its code).
    rate_limit_error_codes: ClassVar[frozenset[str]] = frozenset()
    #: Codes that mean "try again shortly" whatever the HTTP status (chenyu's engine being unavailable):
    #: the error is transient, so it is retried like a 503.
    transient_error_codes: ClassVar[frozenset[str]] = frozenset()
    #: Zone of timestamps the platform writes without an offset; the connection extra ``timezone``
    #: (an IANA name such as ``Asia/Shanghai``, or ``+08:00``) overrides it.
    default_timezone: ClassVar[tzinfo] = timezone.utc
    #: Platform status word -> normalized status.
    statuses: ClassVar[Mapping[str, RunStatus]]
    #: Where a poll's answer carries the status word, as keys from the body's root: :data:`RUN_ID` where
    #: the run id is the key (ComfyUI's history), an integer for a list item (Coze's ``data[0]``).
    status_path: ClassVar[tuple[str | int, ...]]
    #: Connection extra fields this platform reads, as the connection form shows them (label, description,
    #: ``kind`` str or bool, placeholder); ``connection_form`` builds Airflow's forms from them.
    extra_fields: ClassVar[Mapping[str, ExtraFieldSpec]] = {}
    #: What this platform's run ids look like, to catch an id meant for another platform before calling.
    run_id_pattern: ClassVar[re.Pattern[str] | None] = None
    run_id_example: ClassVar[str] = ""
    #: Authentication: the header the key travels in and what precedes it (``Bearer`` by default; a
    #: platform with a named key header sets ``auth_header = "X-Api-Key"`` and ``auth_prefix = ""``).
    auth_header: ClassVar[str] = "Authorization"
    auth_prefix: ClassVar[str] = "Bearer "
    #: False for servers that may run without authentication (a self-hosted engine on a private network).
    requires_api_key: ClassVar[bool] = True
    #: The platform runs a workflow given as a document (ComfyUI's API-format graph, ``workflow=``) rather
    #: than one stored on the platform; the hook loads it (inline, a path or an ObjectStoragePath) and hands
    #: it to :meth:`submit_request`. Platforms without this refuse a ``workflow`` before any call.
    takes_workflow: ClassVar[bool] = False

    def __init__(self, extra: Mapping[str, Any] | None = None) -> None:
        self.extra: Mapping[str, Any] = extra or {}
        self.timezone = self._zone()
        # What was logged already (unknown status words, unreadable fields), per run: an instance
        # attribute, not module state, so one hook (one trigger, one task) logs each thing once per run.
        self._logged = _OncePerRun()

    def _zone(self) -> tzinfo:
        """The ``timezone`` extra as a zone; a bad value is a connection error, raised before any call."""
        value = self.extra.get("timezone")
        if value in (None, ""):
            return self.default_timezone
        text = str(value).strip()
        offset = re.fullmatch(r"(?:UTC)?([+-])(\d{2}):?(\d{2})", text)
        if offset:
            sign = -1 if offset.group(1) == "-" else 1
            return timezone(sign * timedelta(hours=int(offset.group(2)), minutes=int(offset.group(3))))
        try:
            return ZoneInfo(text)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidInputError(
                f"connection extra timezone {value!r} is not a time zone; use an IANA name such as "
                "'Asia/Shanghai' or 'UTC', or an offset such as '+08:00'",
                platform=self.name,
            ) from None

    @classmethod
    def auth_headers(cls, api_key: str) -> dict[str, str]:
        """The headers that authenticate a request with ``api_key``."""
        return {cls.auth_header: f"{cls.auth_prefix}{api_key}"}

    # --- requests ------------------------------------------------------------------------------
    @abstractmethod
    def submit_request(
        self,
        inputs: Mapping[str, Any],
        *,
        workflow_id: str | None,
        idempotency_key: str | None,
        workflow: Mapping[str, Any] | None = None,
    ) -> ApiRequest:
        """
        The request that starts a run. ``workflow`` is the loaded document of a platform that
        :attr:`takes_workflow` (None otherwise; the hook refuses one for other platforms).
        """

    @abstractmethod
    def get_request(self, run_id: str) -> ApiRequest: ...

    def followup_request(self, run: WorkflowRun, *, step: int) -> ApiRequest | None:
        """
        A further read a poll needs before ``run`` is known (ComfyUI: its history is empty until the run
        ends, so ``GET /queue`` tells queued from running from unknown); None when the run is known.
        ``step`` counts the follow-ups made in this poll (0 first); the hook stops after a few.
        """
        return None

    def apply_followup(self, run: WorkflowRun, payload: Any, *, step: int) -> WorkflowRun:
        """``run`` completed by the answer to :meth:`followup_request` (same ``step``)."""
        return run

    def digest_shared(self, request: ApiRequest, body: bytes) -> Any:
        """
        What :meth:`apply_followup` needs of a successful answer to a request with ``shared_seconds``,
        read from its bytes once per reading and handed to every poll that shares it (ComfyUI: the queue's
        prompt ids and positions, not its graphs). It must not change afterwards. The default is the
        answer's JSON. An answer that is not JSON raises ``ValueError`` (or ``RecursionError``), which the
        hook reports as such. An answer with an error status is read as any other, by :meth:`raise_for_error`.
        """
        return json.loads(body) if body else None

    def lasting_followup(self, run: WorkflowRun) -> float:
        """
        Seconds for which what the follow-up reads made of ``run`` stays true while the first read of the
        run says what it said (ComfyUI: a prompt seen running stays running until its history lists it);
        0, the default, when it may change any moment. Within them the hook's later polls of the run reuse
        it instead of reading again; after them it reads again, to see what the first read cannot (a
        prompt the server lost).
        """
        return 0.0

    def cancel_request(self, run_id: str, *, task_id: str | None) -> ApiRequest:
        raise NotSupportedError(
            f"{self.display_name} has no API to cancel a workflow run; it will run to completion",
            platform=self.name,
            run_id=run_id,
        )

    def cancel_requests(self, run_id: str, *, task_id: str | None) -> list[ApiRequest]:
        """
        The calls that stop a run, in order (ComfyUI: remove it from the queue, then interrupt it if it is
        running: each is harmless where it does not apply). One :meth:`cancel_request` by default.
        """
        return [self.cancel_request(run_id, task_id=task_id)]

    def removed_by_cancel(self, run_id: str) -> WorkflowRun | None:
        """
        The run, when the platform no longer knows it right after accepting its cancel and that means the
        cancel removed it; None where a run never vanishes so (then the lookup's not-found error stands).
        """
        return None

    def settlement_request(self, run: WorkflowRun) -> ApiRequest | None:
        """A second call that completes a terminal run (billing); None when the platform has none."""
        return None

    # --- human input (paused runs) ---------------------------------------------------------------
    def events_request(self, run_id: str) -> ApiRequest:
        """The run's event stream reopened with its state so far, where a paused run's form is announced."""
        raise NotSupportedError(f"{self.display_name} runs do not pause for a form", platform=self.name)

    def follow_form(
        self, payload: Any, pending: HumanInputForm | None, *, run_id: str
    ) -> tuple[HumanInputForm | None, bool]:
        """
        One event of that stream read: the form still waiting after it (``pending`` if it changes nothing)
        and whether the stream has said all it will (the run paused or ended).
        """
        raise NotSupportedError(f"{self.display_name} runs do not pause for a form", platform=self.name)

    def answer_request(self, token: str, *, action: str, inputs: Mapping[str, Any]) -> ApiRequest:
        """The request that answers a waiting form with one of its actions and its inputs."""
        raise NotSupportedError(f"{self.display_name} runs do not pause for a form", platform=self.name)

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

    def submitted(self, payload: Any, request: ApiRequest) -> WorkflowRun:
        """
        The run a submit's answer describes, given the request that made it: the hook calls this, so a
        platform whose run id needs what only the request carried (Coze: the workflow id besides the
        execute id) can build it. :meth:`parse_submit` by default.
        """
        return self.parse_submit(payload)

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
        request = self.get_request(run_id)
        if request.json and not request.params:  # a POST query (GPTBots): the link carries its body
            request = replace(request, params={key: str(value) for key, value in request.json.items()})
        return request.url(base_url)

    def with_run_url(self, run: WorkflowRun, *, base_url: str) -> WorkflowRun:
        """``run`` with its :meth:`run_url`; unchanged (and logged) when the URL template cannot be filled."""
        try:
            url = self.run_url(run.run_id, base_url=base_url, workflow_id=run.workflow_id)
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            if self._logged.first(run.run_id, "run_url"):
                log.warning(
                    "%s run %s: no run_url, its template cannot be filled (%r)", self.name, run.run_id, exc
                )
            return run
        return run.model_copy(update={"run_url": url})

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
        where: dict[str, Any] = {"platform": self.name, "run_id": run_id}
        if code in self.quota_error_codes:
            raise PlatformError(
                f"quota exhausted ({code}): {message}",
                code=code,
                platform_message=message,
                http_status=status_code,
                **where,
            )
        if status_code == 429 or code == "429" or code in self.rate_limit_error_codes:
            raise RateLimitedError(f"rate limited: {message}", retry_after=retry_after, **where)
        if status_code == 401 or code in self.auth_error_codes:
            raise AuthenticationError(
                f"the API key was rejected ({message}); check the connection's password", **where
            )
        if status_code == 404 or code in self.not_found_error_codes:
            # A 404 without the platform's error body is usually the API root, not the run.
            hint = "" if info else f"; check that the host has its version segment, like {self.default_host}"
            raise RunNotFoundError(f"not found: {message}{hint}", **where)
        label = f"{code} (HTTP {status_code})" if code and code != str(status_code) else str(status_code)
        raise PlatformError(
            f"platform error {label}: {message}",
            code=code,
            platform_message=info.message if info else None,
            http_status=status_code,
            transient=code in self.transient_error_codes,
            **where,
        )

    def validate(
        self,
        model: type[WireModel],
        payload: Any,
        *,
        run_id: str | None = None,
        at: str = "",
        essential: Collection[str] = (),
    ) -> WireModel:
        """
        Parse a body into its wire schema, turning a validation failure into a one-line typed error.

        ``at`` is the path of ``payload`` inside the response (``"data"`` in an envelope), so the error
        names the field as it appears on the wire. Tolerant fields that could not be read are None and
        logged once per run; naming one in ``essential`` makes it fail the read instead.
        """
        unreadable: list[tuple[str, Any]] = []
        try:
            parsed = model.model_validate(payload, context={UNREADABLE: unreadable, ZONE: self.timezone})
        except RecursionError:
            raise InvalidResponseError(
                "unexpected response: nested too deeply to read",
                platform=self.name,
                run_id=run_id,
                field=at or "<body>",
            ) from None
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
        for name, value in unreadable:
            field = ".".join(part for part in (at, name) if part)
            if name in essential:
                raise InvalidResponseError(
                    f"unexpected response: field '{field}' cannot be read (got {_shown(value)})",
                    platform=self.name,
                    run_id=run_id,
                    field=field,
                )
            if self._logged.first(run_id, f"field:{field}"):
                log.warning(
                    "%s run %s: field '%s' could not be read (got %s); it is left empty, and the "
                    "answer is kept whole in the run's raw",
                    self.name,
                    run_id or "(new)",
                    field,
                    _shown(value),
                )
        return parsed

    def status_word(self, payload: Any, *, run_id: str) -> str | None:
        """
        The status word alone, read along :attr:`status_path` without validating anything else: what a
        client that checks only that field sees (the benchmarks' peers); :meth:`parse_run` reads the whole
        answer. None where the answer has no word there (ComfyUI's history of a prompt still running).
        """
        value = payload
        for step in self.status_path:
            try:
                value = value[run_id if step == RUN_ID else step]
            except (KeyError, IndexError, TypeError):
                return None
        return value if isinstance(value, str) else None

    def map_status(self, word: str | None, *, run_id: str | None = None) -> RunStatus:
        if word is None:
            return RunStatus.UNKNOWN
        status = self.statuses.get(word)
        if status is None:
            if self._logged.first(run_id, f"status:{word}"):
                log.warning(
                    "%s reported run status %r, which this provider does not know; treating it as not "
                    "finished",
                    self.name,
                    word,
                )
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


def readable(value: Any) -> str | None:
    """Text of an error code or message, whatever shape it came in (never raises); None when absent."""
    if value is None:
        return None
    try:
        return _message(value, {})
    except _READ_ERRORS:
        return f"<unreadable {type(value).__name__}>"


def _shown(value: Any) -> str:
    """A short, safe description of an unreadable value for a log line."""
    try:
        text = repr(value)
    except RecursionError:
        text = "<nested too deeply to show>"
    return f"{type(value).__name__} {text[:80]}{'...' if len(text) > 80 else ''}"


# --- output files ------------------------------------------------------------------------------------
#: How deep and how many output values are searched for files: outputs are platform data.
MAX_OUTPUT_DEPTH = 8
MAX_OUTPUT_FILES = 1000


def walk_outputs(outputs: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """
    Every value in ``outputs`` with its key path (``"a.b[0]"``), depth first, bounded in depth and count.
    """
    found: list[tuple[str, Any]] = []
    stack: list[tuple[str, Any, int]] = [
        (str(key), value, 1) for key, value in reversed(list(outputs.items()))
    ]
    while stack and len(found) < MAX_OUTPUT_FILES * 10:
        path, value, depth = stack.pop()
        found.append((path, value))
        if depth >= MAX_OUTPUT_DEPTH:
            continue
        if isinstance(value, Mapping):
            stack.extend((f"{path}.{key}", item, depth + 1) for key, item in reversed(list(value.items())))
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
def from_iso(value: str | None, *, zone: tzinfo = timezone.utc) -> datetime | None:
    """ISO-8601 text to aware UTC; a string without offset is in ``zone`` (UTC unless told otherwise)."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(timezone.utc)


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None or end < start:
        return None
    return round((end - start).total_seconds(), 3)


def duration(reported: float | None, start: datetime | None, end: datetime | None) -> float | None:
    """The platform's own duration when it gives one, else the time between start and end."""
    return reported if reported is not None else seconds_between(start, end)
