"""
Every error this provider raises derives from :class:`WorkflowRunError`.

Messages always name the platform and, once one exists, the run id, so a failed task's log says
where to look. They never contain the API key: hooks build messages from parsed fields, never from
request headers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.providers.common.compat.sdk import AirflowException, AirflowNotFoundException

if TYPE_CHECKING:
    from airflow_provider_wfrun.models import WorkflowRun


class WorkflowRunError(AirflowException):
    """Base class: something went wrong running a workflow on a platform."""

    def __init__(self, message: str, *, platform: str | None = None, run_id: str | None = None) -> None:
        self.platform = platform
        self.run_id = run_id
        self.message = message
        super().__init__(self._format(message))

    def _format(self, message: str) -> str:
        if self.platform is None:
            return message
        where = f"{self.platform} run {self.run_id}" if self.run_id else f"{self.platform}"
        return f"[{where}] {message}"

    @property
    def error_type(self) -> str:
        """A stable, short name for trigger events and XCom (``authentication``, ``not_found``...)."""
        return _ERROR_TYPES.get(type(self), "error")

    def redact(self, secret: str | None) -> WorkflowRunError:
        """Replace ``secret`` wherever platform text quoted in this error carries it; returns ``self``."""
        if secret:
            self.message = self.message.replace(secret, "***")
            self.args = (self._format(self.message),)
            for name, value in vars(self).items():
                if isinstance(value, str) and secret in value:
                    setattr(self, name, value.replace(secret, "***"))
        return self

    def amend(self, note: str) -> WorkflowRunError:
        """Append ``note`` to the message, keeping the type and every attribute; returns ``self``."""
        self.message = f"{self.message}; {note}"
        self.args = (self._format(self.message),)
        return self


class InvalidInputError(WorkflowRunError, ValueError):
    """A parameter or connection is unusable; raised before anything is sent to the platform."""


class ConnectionNotFoundError(InvalidInputError, AirflowNotFoundException):
    """The connection id is not defined (still an ``AirflowNotFoundException`` for callers catching that)."""


class WorkflowRunConnectionError(WorkflowRunError):
    """The platform could not be reached (refused, reset, timed out) even after retries."""

    #: False when the failure happened before the request left (connect errors): nothing can have run.
    request_sent: bool = True


class AuthenticationError(WorkflowRunError):
    """The platform rejected the API key (HTTP 401/403 or an auth error code)."""


class RunNotFoundError(WorkflowRunError):
    """The platform does not know this run id (or workflow)."""


class RateLimitedError(WorkflowRunError):
    """The platform kept answering 429 after retries; ``retry_after`` is its last hint in seconds."""

    def __init__(
        self,
        message: str,
        *,
        platform: str | None = None,
        run_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, platform=platform, run_id=run_id)


class PlatformError(WorkflowRunError):
    """The platform answered with an error: ``code`` and ``platform_message`` are its own words."""

    def __init__(
        self,
        message: str,
        *,
        platform: str | None = None,
        run_id: str | None = None,
        code: str | None = None,
        platform_message: str | None = None,
        http_status: int | None = None,
        transient: bool = False,
    ) -> None:
        self.code = code
        self.platform_message = platform_message
        self.http_status = http_status
        self.transient = transient
        super().__init__(message, platform=platform, run_id=run_id)

    @property
    def is_transient(self) -> bool:
        """
        5xx answers are worth retrying, and so are codes the platform's adapter declares transient (chenyu's
        engine being unavailable, inside an HTTP 200); business errors (bad params, no balance) are not.
        """
        return self.transient or (self.http_status is not None and self.http_status >= 500)


class InvalidResponseError(WorkflowRunError):
    """The platform answered something this provider cannot read; ``field`` says which part."""

    def __init__(
        self,
        message: str,
        *,
        platform: str | None = None,
        run_id: str | None = None,
        field: str | None = None,
    ) -> None:
        self.field = field
        super().__init__(message, platform=platform, run_id=run_id)


class ResponseTooLargeError(InvalidResponseError):
    """
    An answer was larger than the hook's ``max_response_bytes`` (after decompression); reading stopped at
    the cap. Not retried: the next answer would be as large.
    """


class NotSupportedError(WorkflowRunError):
    """The platform has no API for this (e.g. cancelling a GPTBots run)."""


class RunFailedError(WorkflowRunError):
    """The run ended without success; ``run`` is its final normalized state."""

    def __init__(self, message: str, *, run: WorkflowRun) -> None:
        self.run = run
        super().__init__(message, platform=run.platform, run_id=run.run_id)


class RunCanceledError(RunFailedError):
    """The run was canceled (by a user, on the platform, or by this provider)."""


class RunTimeoutError(WorkflowRunError):
    """The run did not finish before the task's deadline; it was canceled where the platform allows."""


class OutputTooLargeError(WorkflowRunError):
    """
    The run succeeded, but its result is larger than ``max_output_bytes`` allows in XCom.

    Nothing is lost: the run id and URL are already in XCom, and the outputs stay on the platform.
    ``size`` and ``limit`` are in bytes of JSON; ``run`` is the finished run.
    """

    def __init__(self, message: str, *, run: WorkflowRun, size: int, limit: int) -> None:
        self.run = run
        self.size = size
        self.limit = limit
        super().__init__(message, platform=run.platform, run_id=run.run_id)


class FileTransferError(WorkflowRunError):
    """
    An input file could not be uploaded, or an output file could not be copied to ``outputs_to``.

    A failed copy keeps the run id (the run itself finished); nothing is left under the final name.
    """


class HumanInputError(WorkflowRunError):
    """A paused run's form could not be answered from Airflow (base of the cases below)."""


class FormAnsweredElsewhereError(HumanInputError):
    """
    The form was answered on the platform (in Dify's web app, by another client) before the answer given
    in Airflow was submitted; the run went on with that other answer (Dify's 412
    ``human_input_form_submitted``).
    """


class FormExpiredError(HumanInputError):
    """The form expired before it was answered; the platform followed the node's timeout branch."""


class HumanInputUnavailableError(HumanInputError, NotSupportedError):
    """The run paused for a form, and the installed Airflow has no human-in-the-loop feature to ask it."""


_ERROR_TYPES: dict[type[WorkflowRunError], str] = {
    WorkflowRunError: "error",
    InvalidInputError: "invalid_input",
    ConnectionNotFoundError: "connection_not_found",
    WorkflowRunConnectionError: "connection",
    AuthenticationError: "authentication",
    RunNotFoundError: "not_found",
    RateLimitedError: "rate_limited",
    PlatformError: "platform_error",
    InvalidResponseError: "invalid_response",
    ResponseTooLargeError: "response_too_large",
    NotSupportedError: "not_supported",
    RunFailedError: "run_failed",
    RunCanceledError: "run_canceled",
    RunTimeoutError: "timeout",
    OutputTooLargeError: "output_too_large",
    FileTransferError: "file_transfer",
    HumanInputError: "human_input",
    FormAnsweredElsewhereError: "form_answered_elsewhere",
    FormExpiredError: "form_expired",
    HumanInputUnavailableError: "human_input_unavailable",
}

#: Error types a trigger event may carry, mapped back to the exception the worker raises.
EXCEPTIONS_BY_ERROR_TYPE: dict[str, type[WorkflowRunError]] = {v: k for k, v in _ERROR_TYPES.items()}
