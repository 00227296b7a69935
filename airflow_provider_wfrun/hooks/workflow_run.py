"""
One hook for every workflow platform; the connection's type picks the platform adapter.

Design notes:

* **HTTP clients are reused.** The sync path keeps one :class:`httpx.Client` per hook. The async path uses
  one :class:`httpx.AsyncClient` per event loop (:func:`shared_async_client`), shared by every hook on
  that loop while any of them is working, because a triggerer may poll thousands of runs at once and a
  client (with its connection pool) per poll or per trigger costs CPU, sockets and memory. The API key
  travels in a per-request header, so one client serves many connections.
* **Retries are bounded and honest.** Connection errors, timeouts, 5xx and 429 are retried with exponential
  backoff and jitter, honouring ``Retry-After`` (capped), until ``retry_limit`` attempts or
  ``retry_max_seconds`` pass. A submit is retried only where that cannot start a second run: always on
  platforms that deduplicate by idempotency key, otherwise only when the request never reached the server
  (connect errors) or was refused before any work (429).
* **Secrets stay out.** The key lives only in the request header; no message, log line or repr holds it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import ssl
import time
import urllib.request
import uuid
import weakref
import zlib
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import httpcore
import httpx
from airflow.providers.common.compat.connection import get_async_connection
from airflow.providers.common.compat.sdk import AirflowNotFoundException, BaseHook
from httpx_sse import aconnect_sse, connect_sse
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from airflow_provider_wfrun import __version__
from airflow_provider_wfrun.connection_form import form_of
from airflow_provider_wfrun.exceptions import (
    ConnectionNotFoundError,
    InvalidInputError,
    InvalidResponseError,
    PlatformError,
    RateLimitedError,
    WorkflowRunConnectionError,
    WorkflowRunError,
)
from airflow_provider_wfrun.hooks.lean_pool import LeanConnectionPool
from airflow_provider_wfrun.platforms import PlatformAdapter, adapter_classes, get_adapter
from airflow_provider_wfrun.platforms.base import ApiRequest

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from airflow_provider_wfrun.models import WorkflowRun

USER_AGENT = f"airflow-provider-wfrun/{__version__}"
_T = TypeVar("_T")
#: Errors raised before a request reached the server: safe to retry even a non-idempotent submit.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class PlatformConnection:
    """A validated connection: where the platform is and how to authenticate. The key is never printed."""

    conn_id: str
    platform: str
    base_url: str
    api_key: str = field(repr=False)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}", "User-Agent": USER_AGENT}

    @cached_property
    def direct_headers(self) -> tuple[tuple[bytes, bytes], ...]:
        """The headers of the hook's direct path (no compression asked: poll answers are small)."""
        own = [(name.encode(), value.encode()) for name, value in self.headers.items()]
        return (*own, (b"Accept", b"*/*"))

    @cached_property
    def async_headers(self) -> dict[str, str]:
        """What the async path sends: it bypasses the client's default headers, so these say it all."""
        return {**self.headers, "Accept": "*/*", "Accept-Encoding": "gzip, deflate"}


def platform_connection(conn: Connection) -> PlatformConnection:
    """Validate a connection before anything is sent; every problem is an :class:`InvalidInputError`."""
    adapter_class = adapter_classes().get(conn.conn_type or "")
    if adapter_class is None:
        raise InvalidInputError(
            f"connection {conn.conn_id!r} has type {conn.conn_type!r}; "
            f"use one of: {', '.join(adapter_classes())}"
        )
    api_key = (conn.password or "").strip()
    if not api_key:
        raise InvalidInputError(
            f"connection {conn.conn_id!r} has no API key: put the {adapter_class.display_name} API key "
            "in the connection's password field"
        )
    base_url = _base_url(conn.conn_id, (conn.host or "").strip() or adapter_class.default_host)
    return PlatformConnection(
        conn_id=conn.conn_id,
        platform=adapter_class.name,
        base_url=base_url,
        api_key=api_key,
        extra=conn.extra_dejson or {},
    )


def _base_url(conn_id: str, host: str) -> str:
    parts = urlsplit(host)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInputError(
            f"connection {conn_id!r} host {host!r} is not an API root URL; write it with its scheme and "
            "version segment, e.g. https://api.dify.ai/v1"
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        raise InvalidInputError(
            f"connection {conn_id!r} host must be a plain URL (no credentials, query or fragment); "
            "put the API key in the password field"
        )
    return host.rstrip("/")


@contextmanager
def _connection_lookup(conn_id: str) -> Iterator[None]:
    """A missing connection is bad input: say which id and how to define it."""
    try:
        yield
    except AirflowNotFoundException:
        raise ConnectionNotFoundError(
            f"connection {conn_id!r} is not defined: create it with type dify, gptbots or chenyu "
            f'(e.g. AIRFLOW_CONN_{conn_id.upper()}=\'{{"conn_type": "dify", "password": "..."}}\')'
        ) from None


def parse_retry_after(value: str | None, *, cap: float) -> float | None:
    """``Retry-After`` as seconds (an integer or an HTTP date), capped; None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return max(0.0, min(seconds, cap))


#: Connections of the shared async client: enough for thousands of runs polled over real latencies.
ASYNC_MAX_CONNECTIONS = 100
#: Idle keep-alive connections are closed after this long: under the 5 s of common servers (uvicorn).
ASYNC_KEEPALIVE_SECONDS = 4.0


class _LoopClient:
    __slots__ = ("client", "holders")

    def __init__(self) -> None:
        self.client: httpx.AsyncClient | None = None
        self.holders = 0


_loop_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClient] = weakref.WeakKeyDictionary()


class shared_async_client:  # lower case: used like a function, ``async with shared_async_client()``
    """
    The running event loop's one :class:`httpx.AsyncClient`, held open for the ``async with`` block.

    One per loop because a triggerer polls thousands of runs from one loop, and a client (with its
    connection pool) per poll or per trigger costs a TCP connection, CPU and memory each time. Every async
    hook call and every waiting trigger holds it, and it closes when the last holder leaves: a triggerer
    with any run waiting keeps its pooled connections, and a loop that ends (``dag.test()``, a test) leaves
    no socket open behind it. A class rather than ``@asynccontextmanager``: a waiting trigger keeps one for
    hours, and a generator frame per wait costs memory.
    """

    __slots__ = ("_client", "_shared")

    async def __aenter__(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        shared = _loop_clients.get(loop)
        if shared is None:
            shared = _loop_clients[loop] = _LoopClient()
        if shared.client is None or shared.client.is_closed:
            shared.client = _new_async_client()
        shared.holders += 1
        self._shared, self._client = shared, shared.client
        return shared.client

    async def __aexit__(self, *exc_info: object) -> None:
        shared, client = self._shared, self._client
        shared.holders -= 1
        if shared.holders == 0 and shared.client is client:
            shared.client = None
            await client.aclose()


def _new_async_client() -> httpx.AsyncClient:
    client = httpx.AsyncClient(
        verify=_default_ssl_context(),
        limits=httpx.Limits(
            max_connections=ASYNC_MAX_CONNECTIONS,
            max_keepalive_connections=ASYNC_MAX_CONNECTIONS,
            keepalive_expiry=ASYNC_KEEPALIVE_SECONDS,
        ),
        follow_redirects=False,
    )
    _use_lean_pool(client)
    return client


@functools.lru_cache(maxsize=1)
def _default_ssl_context() -> ssl.SSLContext:
    """
    httpx's default verifying TLS context, built once per process and shared by every client: building
    one loads the CA bundle, about 30 ms of CPU, which each new hook's client paid (twice per deferred
    task: ``execute`` and ``execute_complete``).
    """
    return httpx.create_ssl_context()


def _direct_pool(client: httpx.AsyncClient) -> LeanConnectionPool | None:
    """
    The client's :class:`LeanConnectionPool` when the hook may call it directly: no proxy is configured in
    the environment (httpx would route through a proxy transport then, so the hook goes through httpx).
    """
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    if not isinstance(pool, LeanConnectionPool) or _environment_has_proxies():
        return None
    return pool


@functools.lru_cache(maxsize=1)
def _environment_has_proxies() -> bool:
    return bool(urllib.request.getproxies())


def _use_lean_pool(client: httpx.AsyncClient) -> None:
    """
    Put :class:`LeanConnectionPool` under the client's default transport.

    httpx's own pool (httpcore) rescans every connection and every queued request on each request and
    each response, and checks idle sockets with a system call each time: with hundreds of polls per second
    that was most of a poll's CPU (see docs/benchmarks.md). httpx still builds the requests, maps the
    errors and applies proxies from the environment (those are separate mounts, left as they are). If
    httpx's internals are not what this expects, the client keeps its own pool.
    """
    transport = getattr(client, "_transport", None)
    pool = getattr(transport, "_pool", None)
    if isinstance(transport, httpx.AsyncHTTPTransport) and isinstance(pool, httpcore.AsyncConnectionPool):
        ssl_context = getattr(pool, "_ssl_context", None) or httpx.create_ssl_context()
        transport._pool = LeanConnectionPool(  # type: ignore[assignment]
            ssl_context=ssl_context,
            max_connections=ASYNC_MAX_CONNECTIONS,
            keepalive_expiry=ASYNC_KEEPALIVE_SECONDS,
        )


class WorkflowRunHook(BaseHook):
    """
    Submit, poll and cancel workflow runs on Dify, GPTBots or chenyu.cn, returning normalized runs.

    :param conn_id: A connection of type ``dify``, ``gptbots`` or ``chenyu``.
    :param timeout: Seconds to wait for the platform on each request (connect, read and write).
    :param retry_limit: Attempts per call, the first included.
    :param retry_delay: Base of the exponential backoff, in seconds.
    :param retry_max_seconds: Give up retrying once this much time has passed since the first attempt.
    :param retry_after_cap: Never wait longer than this for a ``Retry-After`` hint.
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
    ) -> None:
        super().__init__()
        if timeout <= 0 or retry_limit < 1 or retry_delay < 0 or retry_max_seconds <= 0:
            raise InvalidInputError(
                "timeout and retry_max_seconds must be positive, retry_limit at least 1, retry_delay >= 0"
            )
        self.conn_id = conn_id
        self.timeout = timeout
        self.retry_limit = retry_limit
        self.retry_delay = retry_delay
        self.retry_max_seconds = retry_max_seconds
        self.retry_after_cap = retry_after_cap
        self._connection: PlatformConnection | None = None
        self._adapter: PlatformAdapter | None = None
        self._client: httpx.Client | None = None
        self._urls: dict[tuple[str, tuple[tuple[str, str], ...]], httpx.URL] = {}
        self._timeouts = httpx.Timeout(timeout).as_dict()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(conn_id={self.conn_id!r})"

    # --- connection ------------------------------------------------------------------------------
    def get_platform_connection(self) -> PlatformConnection:
        if self._connection is None:
            with _connection_lookup(self.conn_id):
                conn = self.get_connection(self.conn_id)
            self._set_connection(platform_connection(conn))
        assert self._connection is not None
        return self._connection

    async def aget_platform_connection(self) -> PlatformConnection:
        """Resolve the connection without blocking the event loop (the triggerer's rule)."""
        if self._connection is None:
            with _connection_lookup(self.conn_id):
                conn = await get_async_connection(self.conn_id, hook=self)
            self._set_connection(platform_connection(conn))
        assert self._connection is not None
        return self._connection

    def _set_connection(self, connection: PlatformConnection) -> None:
        self._connection = connection
        self._adapter = get_adapter(connection.platform, connection.extra)

    @property
    def adapter(self) -> PlatformAdapter:
        """The platform adapter; resolves the connection synchronously if not done yet."""
        if self._adapter is None:
            self.get_platform_connection()
        assert self._adapter is not None
        return self._adapter

    def get_conn(self) -> httpx.Client:
        """The hook's sync HTTP client, created once."""
        if self._client is None:
            self._client = httpx.Client(
                timeout=self.timeout, follow_redirects=False, verify=_default_ssl_context()
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def run_url(self, run_id: str, workflow_id: str | None = None) -> str:
        connection = self.get_platform_connection()
        return self.adapter.run_url(run_id, base_url=connection.base_url, workflow_id=workflow_id)

    # --- sync API -------------------------------------------------------------------------------
    def submit_run(
        self,
        inputs: Mapping[str, Any],
        *,
        workflow_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> WorkflowRun:
        """Start a run and return it as soon as the platform has given it an id."""
        self.get_platform_connection()
        request = self._submit_request(inputs, workflow_id, idempotency_key)
        retrying = self._retrying(Retrying, replay_safe=self.adapter.idempotent_submit, action="submit")
        run = retrying(self._send_submit, request)
        self.log.info("Submitted %s run %s", self.adapter.display_name, run.run_id)
        return run

    def get_run(self, run_id: str) -> WorkflowRun:
        """The run's current state; a terminal run includes its settlement where the platform has one."""
        self.get_platform_connection()
        self._check_run_id(run_id)
        run = self.adapter.parse_run(self._call(self.adapter.get_request(run_id), run_id), run_id=run_id)
        settlement = self.adapter.settlement_request(run)
        if settlement is not None:
            run = self.adapter.apply_settlement(run, self._call(settlement, run_id))
        return run

    def cancel_run(self, run_id: str, *, task_id: str | None = None) -> WorkflowRun:
        """Ask the platform to stop the run and return its state; ``NotSupportedError`` where it cannot."""
        self.get_platform_connection()
        self._check_run_id(run_id)
        self._call(self.adapter.cancel_request(run_id, task_id=task_id), run_id)
        self.log.info("Asked %s to cancel run %s", self.adapter.display_name, run_id)
        return self.get_run(run_id)

    def test_connection(self) -> tuple[bool, str]:
        """Airflow's connection test: one cheap authenticated call."""
        try:
            connection = self.get_platform_connection()
            self._call(self.adapter.probe_request(), None)
        except WorkflowRunError as exc:
            return False, str(exc)
        return True, f"Connected to {self.adapter.display_name} at {connection.base_url}"

    # --- async API ------------------------------------------------------------------------------
    async def asubmit_run(
        self,
        inputs: Mapping[str, Any],
        *,
        workflow_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> WorkflowRun:
        await self.aget_platform_connection()
        request = self._submit_request(inputs, workflow_id, idempotency_key)
        async with shared_async_client():
            run = await self._aretry("submit", self.adapter.idempotent_submit, self._asend_submit, request)
        self.log.info("Submitted %s run %s", self.adapter.display_name, run.run_id)
        return run

    async def aget_run(self, run_id: str) -> WorkflowRun:
        await self.aget_platform_connection()
        self._check_run_id(run_id)
        async with shared_async_client():  # a settlement call reuses the poll's connection
            payload = await self._acall(self.adapter.get_request(run_id), run_id)
            run = self.adapter.parse_run(payload, run_id=run_id)
            settlement = self.adapter.settlement_request(run)
            if settlement is not None:
                run = self.adapter.apply_settlement(run, await self._acall(settlement, run_id))
        return run

    async def acancel_run(self, run_id: str, *, task_id: str | None = None) -> WorkflowRun:
        await self.aget_platform_connection()
        self._check_run_id(run_id)
        async with shared_async_client():
            await self._acall(self.adapter.cancel_request(run_id, task_id=task_id), run_id)
            self.log.info("Asked %s to cancel run %s", self.adapter.display_name, run_id)
            return await self.aget_run(run_id)

    # --- plumbing -------------------------------------------------------------------------------
    def _submit_request(
        self, inputs: Mapping[str, Any], workflow_id: str | None, idempotency_key: str | None
    ) -> ApiRequest:
        if not isinstance(inputs, Mapping):
            raise InvalidInputError(
                f"inputs must be a mapping of input names to values, got {type(inputs).__name__}",
                platform=self.adapter.name,
            )
        if self.adapter.idempotent_submit and not idempotency_key:
            idempotency_key = str(uuid.uuid4())
        return self.adapter.submit_request(inputs, workflow_id=workflow_id, idempotency_key=idempotency_key)

    def _check_run_id(self, run_id: str) -> None:
        if not isinstance(run_id, str) or not run_id.strip():
            raise InvalidInputError(
                f"run_id must be a non-empty string, got {run_id!r}", platform=self.adapter.name
            )
        self.adapter.check_run_id(run_id)

    def _call(self, request: ApiRequest, run_id: str | None) -> Any:
        return self._retrying(Retrying, replay_safe=True, action=request.path)(self._send, request, run_id)

    async def _acall(self, request: ApiRequest, run_id: str | None) -> Any:
        return await self._aretry(request.path, True, self._asend, request, run_id)

    async def _aretry(
        self, action: str, replay_safe: bool, send: Callable[..., Awaitable[_T]], *args: Any
    ) -> _T:
        """
        The async twin of :meth:`_retrying`: the same tenacity policy, attempts, waits and logs.

        The first attempt runs before tenacity is set up: a triggerer makes hundreds of polls a second and
        nearly all succeed at once, while setting up tenacity's attempt loop cost each poll about a third
        of its CPU (docs/benchmarks.md). A first attempt that fails is handed to the policy as its attempt
        1, so what follows (waits, logs, stop rules, counted from the first attempt's start) is unchanged.
        """
        started = time.monotonic()
        try:
            return await send(*args)
        except Exception as exc:
            if not _is_retryable(exc, replay_safe=replay_safe) or self.retry_limit < 2:
                raise
            first_failure: Exception | None = exc

        async def attempt(*call_args: Any) -> _T:
            nonlocal first_failure
            if first_failure is not None:
                failure, first_failure = first_failure, None
                raise failure
            return await send(*call_args)

        retrying = self._retrying(AsyncRetrying, replay_safe=replay_safe, action=action, started=started)
        return await retrying(attempt, *args)

    def _send(self, request: ApiRequest, run_id: str | None) -> Any:
        connection = self.get_platform_connection()
        with self._transport_errors(run_id):
            response = self.get_conn().request(
                request.method,
                connection.base_url + request.path,
                params=request.params,
                json=request.json,
                headers=connection.headers,
                timeout=self.timeout,
            )
        return self._decode(response.status_code, response.headers, response.content, run_id)

    async def _asend(self, request: ApiRequest, run_id: str | None) -> Any:
        async with shared_async_client() as client:
            pool = _direct_pool(client)
            with self._transport_errors(run_id):
                if pool is None:
                    response = await client.send(self._http_request(request))
                    return self._decode(response.status_code, response.headers, response.content, run_id)
                status, raw_headers, content = await self._fetch(pool, request)
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in raw_headers}
        return self._decode(status, headers, _decoded_body(headers, content), run_id)

    async def _fetch(
        self, pool: LeanConnectionPool, request: ApiRequest
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """
        The direct path: the bytes of a small JSON call, straight through the shared pool. httpx's request
        and response objects, cookie jar and event hooks cost a poll more than the pool and the parsing
        together; the API calls need none of them. Transport errors come out as httpx's.
        """
        url = self._url(request)
        connection = self._connection
        assert connection is not None
        headers = list(connection.direct_headers)
        headers.append((b"Host", url.netloc))
        body = b""
        if request.json is not None:
            body = json.dumps(request.json, ensure_ascii=False, separators=(",", ":")).encode()
            headers.append((b"Content-Type", b"application/json"))
            headers.append((b"Content-Length", str(len(body)).encode()))
        origin = (url.raw_scheme, url.raw_host, url.port or (443 if url.raw_scheme == b"https" else 80))
        try:
            return await pool.fetch(
                origin, request.method.encode(), url.raw_path, headers, body, self._timeouts
            )
        except httpcore.UnsupportedProtocol as exc:
            raise httpx.UnsupportedProtocol(str(exc)) from exc
        except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError) as exc:
            raise _HTTPX_ERRORS.get(type(exc), httpx.TransportError)(str(exc)) from exc

    def _url(self, request: ApiRequest) -> httpx.URL:
        """The request's URL, parsed once per hook (a trigger polls the same URL for hours)."""
        connection = self._connection
        assert connection is not None
        key = (request.path, tuple(request.params.items()) if request.params else ())
        url = self._urls.get(key)
        if url is None:
            url = httpx.URL(connection.base_url + request.path, params=request.params)
            if len(self._urls) < 4:
                self._urls[key] = url
        return url

    def _http_request(self, request: ApiRequest) -> httpx.Request:
        """The request for httpx (when a proxy is configured), without ``client.request()``'s merging."""
        connection = self._connection
        assert connection is not None
        return httpx.Request(
            request.method,
            self._url(request),
            json=request.json,
            headers=connection.async_headers,
            extensions={"timeout": self._timeouts},
        )

    def _send_submit(self, request: ApiRequest) -> WorkflowRun:
        if not request.stream:
            return self.adapter.parse_submit(self._send(request, None))
        self.get_platform_connection()
        method, url, options = self._stream_request(request)
        with (
            self._transport_errors(None),
            connect_sse(self.get_conn(), method, url, **options) as source,
        ):
            if not _is_event_stream(source.response):
                source.response.read()
                return self.adapter.parse_submit(self._decode_response(source.response))
            for event in source.iter_sse():
                run = self._read_event(event.data)
                if run is not None:
                    return run
        raise self._stream_ended()

    async def _asend_submit(self, request: ApiRequest) -> WorkflowRun:
        if not request.stream:
            return self.adapter.parse_submit(await self._asend(request, None))
        method, url, options = self._stream_request(request)
        with self._transport_errors(None):
            async with (
                shared_async_client() as client,
                aconnect_sse(client, method, url, **options) as source,
            ):
                if not _is_event_stream(source.response):
                    await source.response.aread()
                    return self.adapter.parse_submit(self._decode_response(source.response))
                async for event in source.aiter_sse():
                    run = self._read_event(event.data)
                    if run is not None:
                        return run
        raise self._stream_ended()

    def _stream_request(self, request: ApiRequest) -> tuple[str, str, dict[str, Any]]:
        """Method, URL and options of a streamed submit (Dify), for httpx-sse on either path."""
        connection = self._connection
        assert connection is not None
        options = {"json": request.json, "headers": connection.headers, "timeout": self.timeout}
        return request.method, connection.base_url + request.path, options

    def _read_event(self, data: str) -> WorkflowRun | None:
        if not data:
            return None
        try:
            payload = json.loads(data)
        except ValueError:
            raise InvalidResponseError(
                "the run's event stream carried an event that is not JSON", platform=self.adapter.name
            ) from None
        return self.adapter.read_submit_event(payload)

    def _stream_ended(self) -> InvalidResponseError:
        return InvalidResponseError(
            "the event stream ended before the platform reported the run's id; the run may have started, "
            "look for it on the platform before retrying",
            platform=self.adapter.name,
            field="workflow_started",
        )

    def _decode_response(self, response: httpx.Response) -> Any:
        return self._decode(response.status_code, response.headers, response.content, None)

    def _decode(self, status: int, headers: Mapping[str, str], content: bytes, run_id: str | None) -> Any:
        """Body bytes to JSON, then to a typed error if the platform says it is one."""
        retry_after = parse_retry_after(headers.get("retry-after"), cap=self.retry_after_cap)
        try:
            payload = json.loads(content) if content else None
        except ValueError:
            if status >= 400:
                kind = headers.get("content-type", "unknown").split(";")[0]
                self.adapter.raise_for_error(
                    status,
                    None,
                    run_id=run_id,
                    retry_after=retry_after,
                    fallback=f"HTTP {status}, {kind} body",
                )
            raise InvalidResponseError(
                f"HTTP {status} with a body that is not JSON ({len(content)} bytes; malformed or truncated)",
                platform=self.adapter.name,
                run_id=run_id,
                field="<body>",
            ) from None
        self.adapter.raise_for_error(status, payload, run_id=run_id, retry_after=retry_after)
        return payload

    def _transport_errors(self, run_id: str | None) -> _TransportErrors:
        return _TransportErrors(self.adapter.name, run_id)

    def _retrying(
        self, retrying_class: type[Any], *, replay_safe: bool, action: str, started: float | None = None
    ) -> Any:
        first_attempt_at = time.monotonic() if started is None else started

        def should_retry(exc: BaseException) -> bool:
            return _is_retryable(exc, replay_safe=replay_safe)

        def out_of_time(state: RetryCallState) -> bool:
            return time.monotonic() - first_attempt_at >= self.retry_max_seconds

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            self.log.warning(
                "%s %s failed (%s); retrying in %.1f s (attempt %d of %d)",
                self.adapter.display_name,
                action,
                exc,
                state.upcoming_sleep,
                state.attempt_number + 1,
                self.retry_limit,
            )

        return retrying_class(
            stop=stop_after_attempt(self.retry_limit) | out_of_time,
            wait=self._wait,
            retry=retry_if_exception(should_retry),
            before_sleep=before_sleep,
            reraise=True,
        )

    def _wait(self, state: RetryCallState) -> float:
        """Seconds before the next attempt: the platform's Retry-After, else backoff with jitter."""
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
            return exc.retry_after
        backoff: Callable[[RetryCallState], float] = wait_random_exponential(
            multiplier=self.retry_delay, max=max(self.retry_delay, self.retry_after_cap)
        )
        return backoff(state)


#: httpcore's errors (the direct path) as httpx's, which the rest of the hook speaks.
_HTTPX_ERRORS: dict[type[Exception], type[httpx.TransportError]] = {
    httpcore.ConnectTimeout: httpx.ConnectTimeout,
    httpcore.ReadTimeout: httpx.ReadTimeout,
    httpcore.WriteTimeout: httpx.WriteTimeout,
    httpcore.PoolTimeout: httpx.PoolTimeout,
    httpcore.ConnectError: httpx.ConnectError,
    httpcore.ReadError: httpx.ReadError,
    httpcore.WriteError: httpx.WriteError,
    httpcore.RemoteProtocolError: httpx.RemoteProtocolError,
    httpcore.LocalProtocolError: httpx.LocalProtocolError,
}


def _decoded_body(headers: Mapping[str, str], content: bytes) -> bytes:
    """The body without its content coding (the direct path asks for none; a server may still send one)."""
    coding = headers.get("content-encoding", "identity").strip().lower()
    if coding in ("", "identity") or not content:
        return content
    try:
        if coding in ("gzip", "x-gzip"):
            return zlib.decompress(content, 16 + zlib.MAX_WBITS)
        if coding == "deflate":
            try:
                return zlib.decompress(content)
            except zlib.error:
                return zlib.decompress(content, -zlib.MAX_WBITS)
    except zlib.error:
        return content  # reported as a body that is not JSON
    return content


class _TransportErrors:
    """Turns httpx transport failures into :class:`WorkflowRunConnectionError`, noting if a request left."""

    def __init__(self, platform: str, run_id: str | None) -> None:
        self.platform = platform
        self.run_id = run_id

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if isinstance(exc, httpx.TransportError):
            kind = type(exc).__name__
            error = WorkflowRunConnectionError(
                f"could not complete the request ({kind}: {str(exc) or 'no detail'})",
                platform=self.platform,
                run_id=self.run_id,
            )
            error.request_sent = not isinstance(exc, _NOT_SENT)
            raise error from exc
        return None


def _is_retryable(exc: BaseException, *, replay_safe: bool) -> bool:
    if isinstance(exc, RateLimitedError):
        return True
    if isinstance(exc, WorkflowRunConnectionError):
        return replay_safe or not exc.request_sent
    if isinstance(exc, PlatformError):
        return replay_safe and exc.is_transient
    if isinstance(exc, InvalidResponseError):
        return replay_safe and exc.field == "<body>"
    return False


def _is_event_stream(response: httpx.Response) -> bool:
    return response.headers.get("content-type", "").startswith("text/event-stream")


def _platform_hook(adapter_class: type[PlatformAdapter]) -> type[WorkflowRunHook]:
    """The hook Airflow registers for one connection type (ProvidersManager wants one class per type)."""
    name = f"{adapter_class.__name__.removesuffix('Adapter')}Hook"
    return type(
        name,
        (WorkflowRunHook,),
        {
            "conn_type": adapter_class.name,
            "hook_name": adapter_class.display_name,
            # Airflow 3.1 reads the connection form from the class's own __dict__ (3.2+: provider info).
            **form_of(adapter_class).hook_methods(),
            "__module__": __name__,
            "__qualname__": name,
            "__doc__": f":class:`WorkflowRunHook` registered for ``{adapter_class.name}`` connections.",
        },
    )


#: Connection type -> its registered hook class: ``DifyHook``, ``GptbotsHook``, ``ChenyuHook``...
PLATFORM_HOOKS: dict[str, type[WorkflowRunHook]] = {
    conn_type: _platform_hook(adapter_class) for conn_type, adapter_class in adapter_classes().items()
}
globals().update({hook.__name__: hook for hook in PLATFORM_HOOKS.values()})
