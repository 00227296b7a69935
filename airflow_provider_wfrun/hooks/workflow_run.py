"""
One hook for every workflow platform; the connection's type picks the platform adapter.

Design notes:

* **HTTP clients are reused.** The sync path keeps one :class:`httpx.Client` per hook. The async path uses
  one :class:`httpx.AsyncClient` per event loop, shared by every hook on that loop, because a triggerer may
  poll thousands of runs at once and a client (with its connection pool) per poll or per trigger costs CPU,
  sockets and memory. The API key travels in a per-request header, so one client serves many connections.
* **Retries are bounded and honest.** Connection errors, timeouts, 5xx and 429 are retried with exponential
  backoff and jitter, honouring ``Retry-After`` (capped), until ``retry_limit`` attempts or
  ``retry_max_seconds`` pass. A submit is retried only where that cannot start a second run: always on
  platforms that deduplicate by idempotency key, otherwise only when the request never reached the server
  (connect errors) or was refused before any work (429).
* **Secrets stay out.** The key lives only in the request header; no message, log line or repr holds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import ssl
import time
import urllib.request
import uuid
import weakref
import zlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from functools import cached_property
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar
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
    stop_after_delay,
    wait_random_exponential,
)

from airflow_provider_wfrun import __version__
from airflow_provider_wfrun.exceptions import (
    ConnectionNotFoundError,
    InvalidInputError,
    InvalidResponseError,
    PlatformError,
    RateLimitedError,
    WorkflowRunConnectionError,
    WorkflowRunError,
)
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


_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)


#: Connections of the shared async client: enough for thousands of runs polled over real latencies.
ASYNC_MAX_CONNECTIONS = 100
#: Idle keep-alive connections are closed after this long: under the 5 s of common servers (uvicorn).
ASYNC_KEEPALIVE_SECONDS = 4.0


def shared_async_client() -> httpx.AsyncClient:
    """The one :class:`httpx.AsyncClient` of the running event loop, created on first use."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None or client.is_closed:
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
        _async_clients[loop] = client
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


_Origin = tuple[bytes, bytes, int]


class LeanConnectionPool:
    """
    An HTTP/1.1 keep-alive pool for one event loop, with constant work per request.

    It speaks httpcore's pool interface (``handle_async_request``, ``connections``, ``aclose``), so httpx's
    transport drives it. Connections are asyncio protocols that parse HTTP/1.1 themselves (no stream
    objects, no anyio), and a connection the server closed leaves the pool from its ``connection_lost``
    callback, so reusing one needs no system call. Idle connections are reused last-in first-out; when all
    ``max_connections`` are busy, requests wait in line (first come, first served) for the next one freed.
    """

    def __init__(self, *, ssl_context: ssl.SSLContext, max_connections: int, keepalive_expiry: float) -> None:
        self._ssl_context = ssl_context
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._all: set[_LeanConnection] = set()
        self._idle: dict[_Origin, list[_LeanConnection]] = {}
        self._waiters: deque[tuple[asyncio.Future[_LeanConnection | None], _Origin]] = deque()

    @property
    def connections(self) -> list[_LeanConnection]:
        return list(self._all)

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in (b"http", b"https"):
            raise httpcore.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}")
        origin = (scheme, url.host, url.port or (443 if scheme == b"https" else 80))
        timeouts = request.extensions.get("timeout", {})
        connection = await self._acquire(origin, timeouts.get("pool"), timeouts.get("connect"))
        try:
            event = await connection.send(request, timeouts.get("write"), timeouts.get("read"))
        except BaseException:
            self._discard(connection)
            raise
        return httpcore.Response(
            status=event.status,
            headers=event.headers,
            content=_LeanBody(self, connection, timeouts.get("read")),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": event.reason},
        )

    async def fetch(
        self,
        origin: _Origin,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        timeouts: Mapping[str, float | None],
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """
        One whole exchange without httpx's request and response objects (the hook's path for API calls):
        the status, the headers (names in lower case) and the body as received (not decoded).
        Raises httpcore's exceptions, like :meth:`handle_async_request`.
        """
        read_timeout = timeouts.get("read")
        connection = await self._acquire(origin, timeouts.get("pool"), timeouts.get("connect"))
        try:
            head = await connection.exchange(
                method, target, headers, body, timeouts.get("write"), read_timeout
            )
            chunks = []
            while (piece := await connection.read_body(read_timeout)) is not None:
                chunks.append(piece)
        except BaseException:
            self._discard(connection)
            raise
        self._release(connection)
        return head.status, head.headers, b"".join(chunks)

    async def aclose(self) -> None:
        for connection in list(self._all):
            self._discard(connection)
        for future, _ in self._waiters:
            if not future.done():
                future.set_result(None)

    async def __aenter__(self) -> LeanConnectionPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- connections in and out ------------------------------------------------------------------------
    async def _acquire(
        self, origin: _Origin, pool_timeout: float | None, connect_timeout: float | None
    ) -> _LeanConnection:
        loop = asyncio.get_running_loop()
        deadline = None if pool_timeout is None else loop.time() + pool_timeout
        if not self._waiters:
            connection = self._take_idle(origin, loop.time())
            if connection is not None:
                return connection
            if self._make_room():
                return await self._connect(origin, connect_timeout)
        while True:  # in line behind earlier requests; ends by a hand-over, a new connection or a timeout
            future: asyncio.Future[_LeanConnection | None] = loop.create_future()
            entry = (future, origin)
            self._waiters.append(entry)
            remaining = None if deadline is None else max(deadline - loop.time(), 0.0)
            timer = None if remaining is None else loop.call_later(remaining, _resolve, future, None)
            try:
                handed = await future
            except BaseException:
                if future.done() and not future.cancelled() and future.result() is not None:
                    self._release(future.result())  # handed over just as this request was canceled
                raise
            finally:
                if timer is not None:
                    timer.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(entry)
            if handed is not None:
                return handed
            connection = self._take_idle(origin, loop.time())
            if connection is not None:
                return connection
            if self._make_room():
                return await self._connect(origin, connect_timeout)
            if deadline is not None and loop.time() >= deadline:
                raise httpcore.PoolTimeout(
                    f"no connection became free within {pool_timeout} s ({self._max_connections} in use)"
                )

    def _take_idle(self, origin: _Origin, now: float) -> _LeanConnection | None:
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            if connection.reusable(now, self._keepalive_expiry):
                connection.in_use = True
                return connection
            self._discard(connection)
        return None

    def _make_room(self) -> bool:
        if len(self._all) >= self._max_connections:
            for idle in self._idle.values():  # an idle connection to another origin gives way
                if idle:
                    self._discard(idle.pop(0))
                    break
        return len(self._all) < self._max_connections

    async def _connect(self, origin: _Origin, timeout: float | None) -> _LeanConnection:
        connection = _LeanConnection(self, origin)
        self._all.add(connection)
        try:
            await connection.connect(self._ssl_context, timeout)
        except BaseException:
            self._discard(connection)
            raise
        connection.in_use = True
        return connection

    def _release(self, connection: _LeanConnection) -> None:
        """A finished exchange: hand the connection to the next request in line, or keep it idle."""
        if connection not in self._all or not connection.next_cycle():
            self._discard(connection)
            return
        now = asyncio.get_running_loop().time()
        connection.idle_since = now
        while self._waiters:
            future, origin = self._waiters.popleft()
            if future.done():
                continue
            if origin == connection.origin:
                future.set_result(connection)
                return
            future.set_result(None)  # another origin: it may now close this idle connection for its own
            break
        connection.in_use = False
        idle = self._idle.setdefault(connection.origin, [])
        idle.append(connection)
        if idle[0].idle_since + self._keepalive_expiry < now:  # prune the oldest, a little at a time
            self._discard(idle.pop(0))

    def _discard(self, connection: _LeanConnection) -> None:
        if connection not in self._all:
            return
        self._all.discard(connection)
        idle = self._idle.get(connection.origin)
        if idle and connection in idle:
            idle.remove(connection)
        connection.close()
        while self._waiters:  # room for one more connection
            future, _ = self._waiters.popleft()
            if not future.done():
                future.set_result(None)
                break


def _resolve(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


class _Head(NamedTuple):
    """A response's status line and headers (names in lower case)."""

    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]


#: Longest response head accepted, status line and headers together.
_MAX_HEAD_BYTES = 64 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})


class _LeanConnection(asyncio.Protocol):
    """
    One HTTP/1.1 connection: an asyncio protocol whose bytes are parsed as they are needed.

    The client side of HTTP/1.1 needed here is small: write a request with a known length, read a status
    line and headers, then a body framed by ``Content-Length``, chunked, or by the connection's end. Waits
    are futures woken by the protocol callbacks, with a timer for the timeout.
    """

    def __init__(self, pool: LeanConnectionPool, origin: _Origin) -> None:
        self.pool = pool
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.in_use = False
        self.idle_since = 0.0
        self.closed = False
        self.lost: BaseException | None = None
        self._buffer = bytearray()
        self._eof = False
        self._paused = False
        self._waiter: asyncio.Future[bool] | None = None
        # The exchange in progress: how its body is framed and whether the connection outlives it.
        self._framing = ""  # "length", "chunked", "close" or "" (no body left)
        self._left = 0  # bytes left of a Content-Length body or of the current chunk
        self._keep_alive = False

    def __repr__(self) -> str:
        scheme, host, port = self.origin
        state = "CLOSED" if self.closed else "ACTIVE" if self.in_use else "IDLE"
        return f"<_LeanConnection [{scheme.decode()}://{host.decode()}:{port}, HTTP/1.1, {state}]>"

    # --- asyncio callbacks ----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.in_use:  # nothing may arrive on an idle connection: the server is closing it
            self.pool._discard(self)
            return
        self._buffer += data
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.lost = exc
        self._wake()
        if not self.in_use:
            self.pool._discard(self)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake()

    # --- used by the pool -----------------------------------------------------------------------------
    async def connect(self, ssl_context: ssl.SSLContext, timeout: float | None) -> None:
        scheme, host, port = self.origin
        name = host.decode("ascii")
        extra: dict[str, Any] = {"ssl": ssl_context, "server_hostname": name} if scheme == b"https" else {}
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.create_connection(lambda: self, name, port, **extra), timeout)
        except asyncio.TimeoutError:
            raise httpcore.ConnectTimeout(f"no connection to {name}:{port} within {timeout} s") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc

    def reusable(self, now: float, keepalive_expiry: float) -> bool:
        return not self.closed and not self._eof and now - self.idle_since < keepalive_expiry

    def next_cycle(self) -> bool:
        """Whether the finished exchange leaves the connection fit for another one."""
        return (
            self._keep_alive and not self._framing and not self._buffer and not self.closed and not self._eof
        )

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        self._wake()

    async def send(
        self, request: httpcore.Request, write_timeout: float | None, read_timeout: float | None
    ) -> _Head:
        """Write the request; return the response head (the body is read by :class:`_LeanBody`)."""
        headers = list(request.headers)
        body = b"".join([chunk async for chunk in request.stream])  # type: ignore[union-attr]
        if any(name.lower() == b"transfer-encoding" for name, _ in headers):
            body = (b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)) if body else b"0\r\n\r\n"
        return await self.exchange(
            request.method, request.url.target, headers, body, write_timeout, read_timeout
        )

    async def exchange(
        self,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        write_timeout: float | None,
        read_timeout: float | None,
    ) -> _Head:
        """Write one request; return the response head, leaving its body to :meth:`read_body`."""
        lines = [b"%s %s HTTP/1.1" % (method, target)]
        for name, value in headers:
            if b"\r" in value or b"\n" in value or b"\r" in name or b"\n" in name or b":" in name:
                raise httpcore.LocalProtocolError(f"illegal header {name!r}")
            lines.append(b"%s: %s" % (name, value))
        lines.append(b"\r\n")
        if self.closed or self.transport is None:
            raise httpcore.WriteError(self._lost_text("the connection closed before the request was sent"))
        self.transport.write(b"\r\n".join(lines) + body)
        while self._paused and not self.closed:
            await self._wait(write_timeout, httpcore.WriteTimeout)
        while True:
            head = await self._read_head(read_timeout)
            if not 100 <= head.status < 200 or head.status == 101:
                break
        self._frame(method, head)
        return head

    async def _read_head(self, timeout: float | None) -> _Head:
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(self._buffer) > _MAX_HEAD_BYTES:
                raise httpcore.RemoteProtocolError("the response head is too long")
            self._raise_if_ended("Server disconnected without sending a response.")
            await self._wait(timeout, httpcore.ReadTimeout)
        raw = bytes(self._buffer[:end])
        del self._buffer[: end + 4]
        status_line, *header_lines = raw.split(b"\r\n")
        version, _, rest = status_line.partition(b" ")
        code, _, reason = rest.partition(b" ")
        if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
            raise httpcore.RemoteProtocolError(f"malformed status line {status_line[:80]!r}")
        headers = []
        for line in header_lines:
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip() or line[:1] in (b" ", b"\t"):
                raise httpcore.RemoteProtocolError(f"malformed header line {line[:80]!r}")
            headers.append((name.lower(), value.strip()))
        connection = b",".join(value for name, value in headers if name == b"connection").lower()
        if version == b"HTTP/1.1":
            self._keep_alive = b"close" not in connection
        else:
            self._keep_alive = b"keep-alive" in connection
        return _Head(int(code), reason, headers)

    def _frame(self, method: bytes, head: _Head) -> None:
        """How the body of this response ends (RFC 9112, section 6.3)."""
        codings = b",".join(value for name, value in head.headers if name == b"transfer-encoding").lower()
        lengths = {value for name, value in head.headers if name == b"content-length"}
        if method == b"HEAD" or head.status in _NO_BODY_STATUSES or head.status < 200:
            self._framing = ""
        elif codings:
            if codings.split(b",")[-1].strip() != b"chunked":
                self._framing, self._keep_alive = "close", False
            else:
                self._framing, self._left = "chunked", -1
        elif lengths:
            if len(lengths) > 1 or not next(iter(lengths)).isdigit():
                raise httpcore.RemoteProtocolError("conflicting or invalid Content-Length")
            self._left = int(next(iter(lengths)))
            self._framing = "length" if self._left else ""
        else:
            self._framing, self._keep_alive = "close", False

    async def read_body(self, timeout: float | None) -> bytes | None:
        """The next piece of the body, or None once it is complete."""
        while True:
            framing = self._framing
            if not framing:
                return None
            if framing == "length":
                if self._buffer:
                    piece = bytes(self._buffer[: self._left])
                    del self._buffer[: len(piece)]
                    self._left -= len(piece)
                    if not self._left:
                        self._framing = ""
                    return piece
                self._raise_if_ended("peer closed connection without sending complete message body")
            elif framing == "close":
                if self._buffer:
                    piece = bytes(self._buffer)
                    self._buffer.clear()
                    return piece
                if self.closed or self._eof:
                    if self.lost is not None:
                        raise httpcore.ReadError(self._lost_text("connection lost"))
                    self._framing = ""
                    return None
            else:
                piece = self._read_chunked()
                if piece is not None:
                    return piece
                if self._framing:
                    self._raise_if_ended("peer closed connection without sending complete message body")
            if self._framing:
                await self._wait(timeout, httpcore.ReadTimeout)

    def _read_chunked(self) -> bytes | None:
        """Data of the current chunk already received; None when more bytes are needed (or at the end)."""
        buffer = self._buffer
        while True:
            if self._left > 0:  # inside a chunk's data
                if not buffer:
                    return None
                piece = bytes(buffer[: self._left])
                del buffer[: len(piece)]
                self._left -= len(piece)
                if not self._left:
                    self._left = -2  # its CRLF follows
                return piece
            if self._left == -2:  # the CRLF after a chunk's data
                if len(buffer) < 2:
                    return None
                if buffer[:2] != b"\r\n":
                    raise httpcore.RemoteProtocolError("malformed chunked body")
                del buffer[:2]
                self._left = -1
            if self._left == -3:  # after the last chunk: trailer lines up to an empty one
                end = buffer.find(b"\r\n")
                if end < 0:
                    return None
                del buffer[: end + 2]
                if end == 0:
                    self._framing = ""
                    return None
                continue
            end = buffer.find(b"\r\n")  # a chunk-size line
            if end < 0:
                if len(buffer) > 1024:
                    raise httpcore.RemoteProtocolError("malformed chunk size line")
                return None
            size_text = bytes(buffer[:end]).split(b";", 1)[0].strip()
            del buffer[: end + 2]
            try:
                size = int(size_text, 16)
            except ValueError:
                raise httpcore.RemoteProtocolError(f"malformed chunk size {size_text[:20]!r}") from None
            self._left = size if size else -3

    def _raise_if_ended(self, message: str) -> None:
        if self.lost is not None:
            raise httpcore.ReadError(self._lost_text("connection lost"))
        if self.closed or self._eof:
            raise httpcore.RemoteProtocolError(message)

    def _lost_text(self, fallback: str) -> str:
        return str(self.lost) or type(self.lost).__name__ if self.lost is not None else fallback

    async def _wait(self, timeout: float | None, timeout_error: type[Exception]) -> None:
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = None if timeout is None else loop.call_later(timeout, _resolve, waiter, False)
        try:
            woken = await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()
        if not woken:
            raise timeout_error(f"no answer within {timeout} s")

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)


class _LeanBody:
    """The response body as httpx reads it; the connection goes back to the pool at its end."""

    def __init__(self, pool: LeanConnectionPool, connection: _LeanConnection, timeout: float | None) -> None:
        self._pool = pool
        self._connection = connection
        self._timeout = timeout
        self._done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._done:
            return
        try:
            while True:
                piece = await self._connection.read_body(self._timeout)
                if piece is None:
                    break
                if piece:
                    yield piece
        except BaseException:
            self._finish(reuse=False)
            raise
        self._finish(reuse=True)

    async def aclose(self) -> None:
        self._finish(reuse=False)

    def _finish(self, *, reuse: bool) -> None:
        if self._done:
            return
        self._done = True
        if reuse:
            self._pool._release(self._connection)
        else:
            self._pool._discard(self._connection)


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
        run = await self._aretry("submit", self.adapter.idempotent_submit, self._asend_submit, request)
        self.log.info("Submitted %s run %s", self.adapter.display_name, run.run_id)
        return run

    async def aget_run(self, run_id: str) -> WorkflowRun:
        await self.aget_platform_connection()
        self._check_run_id(run_id)
        payload = await self._acall(self.adapter.get_request(run_id), run_id)
        run = self.adapter.parse_run(payload, run_id=run_id)
        settlement = self.adapter.settlement_request(run)
        if settlement is not None:
            run = self.adapter.apply_settlement(run, await self._acall(settlement, run_id))
        return run

    async def acancel_run(self, run_id: str, *, task_id: str | None = None) -> WorkflowRun:
        await self.aget_platform_connection()
        self._check_run_id(run_id)
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
        """The async twin of :meth:`_retrying`: the same tenacity policy, attempts, waits and logs."""
        retrying = self._retrying(AsyncRetrying, replay_safe=replay_safe, action=action)
        return await retrying(send, *args)

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
        client = shared_async_client()
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
        connection = self.get_platform_connection()
        with (
            self._transport_errors(None),
            connect_sse(
                self.get_conn(),
                request.method,
                connection.base_url + request.path,
                json=request.json,
                headers=connection.headers,
                timeout=self.timeout,
            ) as source,
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
        connection = self._connection
        assert connection is not None
        with self._transport_errors(None):
            async with aconnect_sse(
                shared_async_client(),
                request.method,
                connection.base_url + request.path,
                json=request.json,
                headers=connection.headers,
                timeout=self.timeout,
            ) as source:
                if not _is_event_stream(source.response):
                    await source.response.aread()
                    return self.adapter.parse_submit(self._decode_response(source.response))
                async for event in source.aiter_sse():
                    run = self._read_event(event.data)
                    if run is not None:
                        return run
        raise self._stream_ended()

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

    def _retrying(self, retrying_class: type[Any], *, replay_safe: bool, action: str) -> Any:
        def should_retry(exc: BaseException) -> bool:
            return _is_retryable(exc, replay_safe=replay_safe)

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            self._log_retry(action, exc, state.upcoming_sleep, state.attempt_number + 1)

        return retrying_class(
            stop=stop_after_attempt(self.retry_limit) | stop_after_delay(self.retry_max_seconds),
            wait=self._wait,
            retry=retry_if_exception(should_retry),
            before_sleep=before_sleep,
            reraise=True,
        )

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return self._retry_delay(exc, state.attempt_number)

    def _retry_delay(self, exc: BaseException | None, attempt: int) -> float:
        """Seconds before the attempt after ``attempt`` failed with ``exc``: Retry-After, else backoff."""
        if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
            return exc.retry_after
        backoff: Callable[[Any], float] = wait_random_exponential(
            multiplier=self.retry_delay, max=max(self.retry_delay, self.retry_after_cap)
        )
        return backoff(SimpleNamespace(attempt_number=attempt))

    def _log_retry(self, action: str, exc: BaseException | None, delay: float, next_attempt: int) -> None:
        self.log.warning(
            "%s %s failed (%s); retrying in %.1f s (attempt %d of %d)",
            self.adapter.display_name,
            action,
            exc,
            delay,
            next_attempt,
            self.retry_limit,
        )


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
