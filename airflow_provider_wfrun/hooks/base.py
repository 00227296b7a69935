"""
The hook's base: connection, transport and retries, with no knowledge of any platform's API.

As in the Databricks provider, the base hook sends requests and turns answers into JSON or typed errors;
:class:`~airflow_provider_wfrun.hooks.workflow_run.WorkflowRunHook` says which requests make a run. Only
:class:`~airflow_provider_wfrun.exceptions.WorkflowRunError` subclasses leave either: a platform answer
that the adapter cannot read, however odd, is an ``InvalidResponseError``, and platform text quoted in an
error is redacted of the API key.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import httpx
import yarl
from airflow.providers.common.compat.connection import get_async_connection
from airflow.providers.common.compat.sdk import BaseHook

from airflow_provider_wfrun.exceptions import InvalidInputError, InvalidResponseError, WorkflowRunError
from airflow_provider_wfrun.hooks.connection import PlatformConnection, connection_lookup, platform_connection
from airflow_provider_wfrun.hooks.retry import RetryPolicy, parse_retry_after
from airflow_provider_wfrun.hooks.transport import (
    DEFAULT_MAX_RESPONSE_BYTES,
    Bounds,
    Outgoing,
    Reply,
    SyncTransport,
    Where,
    asend,
    shared_async_client,
)
from airflow_provider_wfrun.platforms import PlatformAdapter, get_adapter

if TYPE_CHECKING:
    import ssl

    from airflow_provider_wfrun.platforms.base import ApiRequest

#: What an adapter may raise on an answer it cannot read, besides its own typed errors.
_PARSE_FAILURES = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    ArithmeticError,
    RecursionError,
)


class WorkflowRunBaseHook(BaseHook):
    """
    Connection, transport and retries for every workflow platform.

    :param conn_id: A connection whose type names a platform (one of ``platforms.adapter_classes()``).
    :param timeout: Seconds one attempt may take in all (connect, send, the answer's headers and body).
    :param retry_limit: Attempts per call, the first included.
    :param retry_delay: Base of the exponential backoff, in seconds.
    :param retry_max_seconds: Give up retrying once this much time has passed since the first attempt.
    :param retry_after_cap: Never wait longer than this for a ``Retry-After`` hint.
    :param max_response_bytes: Largest answer body read (after decompression); a larger one is a
        ``ResponseTooLargeError``, not retried.
    """

    conn_name_attr = "conn_id"
    default_conn_name = "wfrun_default"
    conn_type = "wfrun"
    hook_name = "AI workflow run"

    def __init__(
        self,
        conn_id: str = default_conn_name,
        *,
        timeout: float = 30.0,
        retry_limit: int = 5,
        retry_delay: float = 1.0,
        retry_max_seconds: float = 120.0,
        retry_after_cap: float = 60.0,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        super().__init__()
        if (
            not 0 < timeout < math.inf
            or retry_limit < 1
            or retry_delay < 0
            or retry_max_seconds <= 0
            or max_response_bytes < 1
        ):
            raise InvalidInputError(
                "timeout and retry_max_seconds must be positive (timeout finite), retry_limit and "
                "max_response_bytes at least 1, retry_delay >= 0"
            )
        self.conn_id = conn_id
        self.timeout = timeout
        self.retry_limit = retry_limit
        self.retry_delay = retry_delay
        self.retry_max_seconds = retry_max_seconds
        self.retry_after_cap = retry_after_cap
        self.max_response_bytes = max_response_bytes
        self.retry_policy = RetryPolicy(retry_limit, retry_delay, retry_max_seconds, retry_after_cap)
        self.bounds = Bounds(timeout, max_response_bytes)
        self._connection: PlatformConnection | None = None
        self._adapter: PlatformAdapter | None = None
        self._transport: SyncTransport | None = None
        self._urls: dict[tuple[str, tuple[tuple[str, str], ...]], yarl.URL] = {}
        self._route: tuple[ssl.SSLContext, str | None] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(conn_id={self.conn_id!r})"

    # --- connection ------------------------------------------------------------------------------
    def get_platform_connection(self) -> PlatformConnection:
        if self._connection is None:
            with connection_lookup(self.conn_id):
                conn = self.get_connection(self.conn_id)
            self._set_connection(platform_connection(conn))
        assert self._connection is not None
        return self._connection

    async def aget_platform_connection(self) -> PlatformConnection:
        """Resolve the connection without blocking the event loop (the triggerer's rule)."""
        if self._connection is None:
            with connection_lookup(self.conn_id):
                conn = await get_async_connection(self.conn_id, hook=self)
            self._set_connection(platform_connection(conn))
        assert self._connection is not None
        return self._connection

    def _set_connection(self, connection: PlatformConnection) -> None:
        self._connection = connection
        self._adapter = get_adapter(connection.platform, connection.extra)
        self._route = None

    @property
    def adapter(self) -> PlatformAdapter:
        """The platform adapter; resolves the connection synchronously if not done yet."""
        if self._adapter is None:
            self.get_platform_connection()
        assert self._adapter is not None
        return self._adapter

    def get_conn(self) -> httpx.Client:
        """The hook's sync HTTP client, created once (again after :meth:`close`)."""
        return self._sync_transport().client

    def _sync_transport(self) -> SyncTransport:
        if self._transport is None:
            connection = self.get_platform_connection()
            self._transport = SyncTransport(connection.http, connection.base_url)
        return self._transport

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # --- calls -----------------------------------------------------------------------------------
    def _call(self, request: ApiRequest, run_id: str | None) -> Any:
        """One API call with the retry policy (replay-safe: reads, stops): its decoded JSON."""
        return self.retry_policy.call(
            self._send, request, run_id, replay_safe=True, action=self._action(request), log=self.log
        )

    async def _acall(self, request: ApiRequest, run_id: str | None) -> Any:
        return await self.retry_policy.acall(
            self._asend, request, run_id, replay_safe=True, action=self._action(request), log=self.log
        )

    def _send(self, request: ApiRequest, run_id: str | None) -> Any:
        connection = self.get_platform_connection()
        outgoing = Outgoing(request.method, request.url(connection.base_url), **self._content(request))
        reply = self._sync_transport().send(outgoing, self.bounds, self._where(run_id))
        return self._decode(reply, run_id, request)

    def _async_route(self) -> tuple[ssl.SSLContext, str | None]:
        """
        TLS context and proxy of the async path, once per hook as the sync path's client has them: reading
        the environment's proxies scans every variable, the largest cost of a poll (docs/benchmarks.md).
        """
        route = self._route
        if route is None:
            connection = self._connection
            assert connection is not None
            http = connection.http
            route = self._route = (http.ssl_context(), http.proxy_for(connection.base_url))
        return route

    def _shared_key(self, request: ApiRequest) -> tuple[Any, ...]:
        """What a reading shared between polls is keyed by: only the same URL, credentials and trust share."""
        connection = self._connection
        assert connection is not None
        return (str(self._url(request)), tuple(sorted(connection.headers.items())), *self._async_route())

    async def _asend(self, request: ApiRequest, run_id: str | None) -> Any:
        route = self._async_route()
        async with shared_async_client() as session:
            reply = await asend(
                session,
                Outgoing(request.method, self._url(request), **self._content(request)),
                ssl_context=route[0],
                proxy=route[1],
                bounds=self.bounds,
                where=self._where(run_id),
            )
        return self._decode(reply, run_id, request)

    def _action(self, request: ApiRequest) -> str:
        return f"{self.adapter.display_name} {request.method} {request.path}"

    def _where(self, run_id: str | None) -> Where:
        return Where(self.adapter.name, run_id)

    def _content(self, request: ApiRequest) -> dict[str, Any]:
        """Headers and body of a request: JSON, a multipart form (uploads), or none."""
        connection = self._connection
        assert connection is not None
        if request.files or request.form:
            # httpx encodes the form (boundary, escaping); both transports send the bytes as they are.
            encoded = httpx.Request("POST", connection.base_url, data=request.form, files=request.files)
            content_type = encoded.headers["Content-Type"]
            return {"headers": {**connection.headers, "Content-Type": content_type}, "body": encoded.read()}
        if request.json is None:
            return {"headers": connection.headers}
        body = json.dumps(request.json, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return {"headers": {**connection.headers, "Content-Type": "application/json"}, "body": body.encode()}

    def _url(self, request: ApiRequest) -> yarl.URL:
        """The request's URL, parsed once per hook (a trigger polls the same URL for hours)."""
        key = (request.path, tuple(request.params.items()) if request.params else ())
        url = self._urls.get(key)
        if url is None:
            connection = self._connection
            assert connection is not None
            url = yarl.URL(request.url(connection.base_url), encoded=True)
            if len(self._urls) < 4:
                self._urls[key] = url
        return url

    def _decode(self, reply: Reply, run_id: str | None, request: ApiRequest | None = None) -> Any:
        """
        Body bytes to JSON, then to a typed error if the platform says it is one. A successful answer to
        a request polls share (``shared_seconds``) becomes the adapter's digest of its bytes instead.
        """
        if request is not None and request.shared_seconds and reply.status < 400:
            with self.platform_errors(run_id):
                try:
                    return self.adapter.digest_shared(request, reply.body)
                except (ValueError, RecursionError):
                    raise self._not_json(reply, run_id) from None
        retry_after = parse_retry_after(reply.headers.get("retry-after"), cap=self.retry_after_cap)
        with self.platform_errors(run_id):
            try:
                payload = json.loads(reply.body) if reply.body else None
            except (ValueError, RecursionError):
                if reply.status >= 400:
                    kind = reply.headers.get("content-type", "unknown").split(";")[0]
                    self.adapter.raise_for_error(
                        reply.status,
                        None,
                        run_id=run_id,
                        retry_after=retry_after,
                        fallback=f"HTTP {reply.status}, {kind} body",
                    )
                raise self._not_json(reply, run_id) from None
            self.adapter.raise_for_error(reply.status, payload, run_id=run_id, retry_after=retry_after)
        return payload

    def _not_json(self, reply: Reply, run_id: str | None) -> InvalidResponseError:
        return InvalidResponseError(
            f"HTTP {reply.status} with a body that is not JSON ({len(reply.body)} bytes; "
            "malformed, truncated or nested too deeply)",
            platform=self.adapter.name,
            run_id=run_id,
            field="<body>",
        )

    def platform_errors(self, run_id: str | None) -> _PlatformErrors:
        """
        Around anything that reads a platform's answer: typed errors come out redacted of the key, and
        whatever else an odd answer provokes comes out as an ``InvalidResponseError``.
        """
        return _PlatformErrors(self, run_id)


class _PlatformErrors:
    """:meth:`WorkflowRunBaseHook.platform_errors`: a class, not a generator, as it wraps every poll twice."""

    __slots__ = ("_hook", "_run_id")

    def __init__(self, hook: WorkflowRunBaseHook, run_id: str | None) -> None:
        self._hook, self._run_id = hook, run_id

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, traceback: object) -> None:
        if isinstance(exc, WorkflowRunError):
            connection = self._hook._connection
            exc.redact(connection.api_key if connection else None)
        elif isinstance(exc, _PARSE_FAILURES):
            raise InvalidResponseError(
                f"the answer could not be read ({type(exc).__name__})",
                platform=self._hook.adapter.name,
                run_id=self._run_id,
            ) from exc
