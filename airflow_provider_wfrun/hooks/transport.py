"""
How the hook talks HTTP: maintained clients only, and every exchange bounded.

* **Sync** (workers): one :class:`httpx.Client` per hook.
* **Async** (the triggerer): one :class:`aiohttp.ClientSession` per event loop, shared by every hook and
  trigger on the loop while any of them is working (:class:`shared_async_client`), because a triggerer
  polls thousands of runs and a client per poll or per trigger costs sockets, CPU and memory. Measured
  against httpx's own async pool and ``httpx-aiohttp`` in docs/benchmarks.md.
* **Event streams** (Dify's streamed submit), on either path: httpx with ``httpx-sse``.

Every exchange has a **total deadline** (a server that trickles bytes, or answers ``102 Processing``
forever, cannot hold a call past it), a **body cap** checked while the body streams in, after
decompression, and the shared async pool is limited **per host**, so one slow host cannot take the
connections every other run needs. Failures come out as
:class:`~airflow_provider_wfrun.exceptions.WorkflowRunConnectionError` (saying whether the request may have
reached the server) or :class:`~airflow_provider_wfrun.exceptions.ResponseTooLargeError`.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from httpx_sse import EventSource

from airflow_provider_wfrun.exceptions import (
    InvalidResponseError,
    ResponseTooLargeError,
    WorkflowRunConnectionError,
)

if TYPE_CHECKING:
    import ssl

    import aiohttp
    import yarl

    from airflow_provider_wfrun.hooks.connection import HttpSettings

#: Connections of the shared async session: enough for thousands of runs polled over real latencies.
ASYNC_MAX_CONNECTIONS = 200
#: Connections one host may take of them, so a slow host leaves room for the rest.
ASYNC_MAX_PER_HOST = 50
#: Idle keep-alive connections are closed after this long: under the 5 s of common servers (uvicorn).
ASYNC_KEEPALIVE_SECONDS = 4.0
#: Default cap on one answer's body, decompressed. Run details are kilobytes; outputs can be larger.
DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024
_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class Bounds:
    """The limits of one attempt: total seconds, and bytes of body after decompression."""

    timeout: float
    max_bytes: int


@dataclass(frozen=True, slots=True)
class Where:
    """What a transport error names: the platform and, once there is one, the run."""

    platform: str
    run_id: str | None = None


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A request as sent: the hook prepares it (URL parsed once, headers), the transport sends it."""

    method: str
    url: str | yarl.URL
    headers: Mapping[str, str]
    body: bytes | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """A complete answer. ``headers`` is case-insensitive (httpx's or aiohttp's own mapping)."""

    status: int
    headers: Mapping[str, str]
    body: bytes


# ------------------------------------------------------------------------------------------ errors
def connection_error(where: Where, what: str, *, sent: bool) -> WorkflowRunConnectionError:
    error = WorkflowRunConnectionError(
        f"could not complete the request ({what})", platform=where.platform, run_id=where.run_id
    )
    error.request_sent = sent
    return error


def too_large(where: Where, limit: int) -> ResponseTooLargeError:
    return ResponseTooLargeError(
        f"the answer is larger than max_response_bytes={limit} (after decompression); reading stopped. "
        "Raise max_response_bytes in hook_params if the platform really sends this much",
        platform=where.platform,
        run_id=where.run_id,
        field="<body>",
    )


def deadline_error(where: Where, bounds: Bounds) -> WorkflowRunConnectionError:
    return connection_error(where, f"no complete answer within the {bounds.timeout:g} s deadline", sent=True)


#: httpx errors raised before the request left: nothing can have run, so even a submit may be retried.
_HTTPX_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@contextmanager
def _httpx_errors(where: Where, bounds: Bounds, watchdog: _Watchdog | None = None) -> Iterator[None]:
    try:
        yield
    except httpx.DecodingError:
        raise InvalidResponseError(
            "the answer's content encoding could not be decoded (corrupt or truncated)",
            platform=where.platform,
            run_id=where.run_id,
            field="<body>",
        ) from None
    except httpx.HTTPError as exc:
        if isinstance(exc, (httpx.ReadTimeout, httpx.WriteTimeout)) or (watchdog and watchdog.expired):
            raise deadline_error(where, bounds) from exc
        what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise connection_error(where, what, sent=not isinstance(exc, _HTTPX_NOT_SENT)) from exc


def _read_capped(chunks: Iterable[bytes], where: Where, limit: int) -> bytes:
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise too_large(where, limit)
    return bytes(body)


def _capped_chunks(chunks: Iterable[bytes], where: Where, limit: int) -> Iterator[bytes]:
    seen = 0
    for chunk in chunks:
        seen += len(chunk)
        if seen > limit:
            raise too_large(where, limit)
        yield chunk


# ----------------------------------------------------------------------------------- sync (httpx)
class _Watchdog:
    """
    Ends a sync exchange at its total deadline, whatever the server does: httpx only bounds each read,
    so a timer thread shuts the connection's socket down, which wakes the blocked read. The socket is
    learnt from httpx's ``trace`` extension when the connection opens (the pool holds one connection).
    """

    def __init__(self, transport: SyncTransport, seconds: float) -> None:
        self.transport = transport
        self.expired = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()

    def trace(self, event: str, info: Mapping[str, Any]) -> None:
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            stream = info.get("return_value")
            if stream is not None:
                self.transport.socket = stream.get_extra_info("socket")

    def _expire(self) -> None:
        self.expired = True
        sock = self.transport.socket
        if sock is not None:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _CappedStream(httpx.SyncByteStream):
    """The raw body, ended at the cap: bounds what an event stream's line reader may buffer."""

    def __init__(self, inner: httpx.SyncByteStream, where: Where, limit: int) -> None:
        self._inner, self._where, self._limit = inner, where, limit

    def __iter__(self) -> Iterator[bytes]:
        seen = 0
        for chunk in self._inner:
            seen += len(chunk)
            if seen > self._limit:
                raise too_large(self._where, self._limit)
            yield chunk

    def close(self) -> None:
        self._inner.close()


class SyncTransport:
    """One hook's httpx client (one connection, kept alive between calls) and its bounded exchanges."""

    def __init__(self, settings: HttpSettings, base_url: str) -> None:
        self._settings = settings
        self._base_url = base_url
        self._client: httpx.Client | None = None
        #: The pooled connection's socket, for the deadline watchdog.
        self.socket: socket.socket | None = None

    @property
    def client(self) -> httpx.Client:
        if self._client is None or self._client.is_closed:
            transport = httpx.HTTPTransport(
                verify=self._settings.ssl_context(),
                proxy=self._settings.proxy_for(self._base_url),
                trust_env=False,
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            )
            self._client = httpx.Client(transport=transport, follow_redirects=False, trust_env=False)
            self.socket = None
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def send(self, request: Outgoing, bounds: Bounds, where: Where) -> Reply:
        with self._exchange(request, bounds, where) as response:
            content = _read_capped(response.iter_bytes(), where, bounds.max_bytes)
        return Reply(response.status_code, response.headers, content)

    @contextmanager
    def events(self, request: Outgoing, bounds: Bounds, where: Where) -> Iterator[EventStream]:
        """An event stream, held open (and bounded) for the ``with`` block."""
        streamed = Outgoing(
            request.method, request.url, {**request.headers, **_EVENT_STREAM_HEADERS}, request.body
        )
        with self._watched_exchange(streamed, bounds, where) as (response, watchdog):
            response.stream = _CappedStream(response.stream, where, bounds.max_bytes)  # type: ignore[arg-type]
            stream = EventStream(response, where, bounds)
            stream.cut = lambda: watchdog.expired
            yield stream

    @contextmanager
    def download(
        self, request: Outgoing, bounds: Bounds, where: Where
    ) -> Iterator[tuple[int, Iterator[bytes]]]:
        """
        A file, streamed: its status and its body in chunks, ended at ``bounds.max_bytes`` (decoded) and
        at the total deadline, both for the whole ``with`` block.
        """
        with self._exchange(request, bounds, where) as response:
            yield response.status_code, _capped_chunks(response.iter_bytes(_CHUNK), where, bounds.max_bytes)

    @contextmanager
    def _exchange(self, request: Outgoing, bounds: Bounds, where: Where) -> Iterator[httpx.Response]:
        """The response, open for the block, the whole block under the deadline watchdog."""
        with self._watched_exchange(request, bounds, where) as (response, _):
            yield response

    @contextmanager
    def _watched_exchange(
        self, request: Outgoing, bounds: Bounds, where: Where
    ) -> Iterator[tuple[httpx.Response, _Watchdog]]:
        with (
            _Watchdog(self, bounds.timeout) as watchdog,
            _httpx_errors(where, bounds, watchdog),
            self.client.stream(
                request.method,
                str(request.url),
                headers=request.headers,
                content=request.body,
                timeout=bounds.timeout,
                extensions={"trace": watchdog.trace},
            ) as response,
        ):
            yield response, watchdog


#: An event stream is asked for uncompressed, so the raw cap is the decoded one.
_EVENT_STREAM_HEADERS = {
    "Accept": "text/event-stream",
    "Cache-Control": "no-store",
    "Accept-Encoding": "identity",
}


class EventStream:
    """An answer that may be an event stream (its events) or an ordinary body (an error, usually)."""

    def __init__(self, response: httpx.Response, where: Where, bounds: Bounds) -> None:
        self.response = response
        self._where, self._bounds = where, bounds
        #: Whether the deadline cut the stream: it shuts the socket, which ends the body as a close would.
        self.cut: Callable[[], bool] = lambda: False

    @property
    def is_event_stream(self) -> bool:
        return str(self.response.headers.get("content-type", "")).startswith("text/event-stream")

    def events(self) -> Iterator[str]:
        """Each event's data."""
        for event in EventSource(self.response).iter_sse():
            yield event.data

    async def aevents(self) -> AsyncIterator[str]:
        async for event in EventSource(self.response).aiter_sse():
            yield event.data

    def reply(self) -> Reply:
        body = _read_capped(self.response.iter_bytes(), self._where, self._bounds.max_bytes)
        return Reply(self.response.status_code, self.response.headers, body)

    async def areply(self) -> Reply:
        body = bytearray()
        async for chunk in self.response.aiter_bytes():
            body += chunk
            if len(body) > self._bounds.max_bytes:
                raise too_large(self._where, self._bounds.max_bytes)
        return Reply(self.response.status_code, self.response.headers, bytes(body))


# --------------------------------------------------------------------------------- async (aiohttp)
class _LoopSession:
    __slots__ = ("holders", "session")

    def __init__(self) -> None:
        self.session: aiohttp.ClientSession | None = None
        self.holders = 0


_loop_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopSession] = (
    weakref.WeakKeyDictionary()
)


class shared_async_client:  # lower case: used like a function, ``async with shared_async_client()``
    """
    The running event loop's one :class:`aiohttp.ClientSession`, held open for the ``async with`` block.

    Every async hook call and every waiting trigger holds it, and it closes when the last holder leaves:
    a triggerer with any run waiting keeps its pooled connections, and a loop that ends (``dag.test()``,
    a test) leaves no socket open behind it. A class rather than ``@asynccontextmanager``: a waiting
    trigger keeps one for hours, and a generator frame per wait costs memory. TLS and proxy settings are
    per request, so one session serves every connection; it keeps no cookies, so none cross connections.
    """

    __slots__ = ("_session", "_shared")

    async def __aenter__(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        shared = _loop_sessions.get(loop)
        if shared is None:
            shared = _loop_sessions[loop] = _LoopSession()
        if shared.session is None or shared.session.closed:
            shared.session = _new_session()
        shared.holders += 1
        self._shared, self._session = shared, shared.session
        return shared.session

    async def __aexit__(self, *exc_info: object) -> None:
        shared, session = self._shared, self._session
        shared.holders -= 1
        if shared.holders == 0 and shared.session is session:
            shared.session = None
            await session.close()


def _new_session() -> aiohttp.ClientSession:
    # aiohttp is imported here, by the first async call, not with the hook: a worker's task process (sync
    # path only) then never pays for importing it.
    import aiohttp

    connector = aiohttp.TCPConnector(
        limit=ASYNC_MAX_CONNECTIONS,
        limit_per_host=ASYNC_MAX_PER_HOST,
        keepalive_timeout=ASYNC_KEEPALIVE_SECONDS,
    )
    return aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False, auto_decompress=True
    )


async def asend(
    session: aiohttp.ClientSession,
    request: Outgoing,
    *,
    ssl_context: ssl.SSLContext,
    proxy: str | None,
    bounds: Bounds,
    where: Where,
) -> Reply:
    """One exchange on the shared session: a total deadline over connect, headers and body; a capped body."""
    import aiohttp  # already loaded by ``_new_session``: a lookup, not an import

    try:
        async with session.request(
            request.method,
            request.url,
            headers=request.headers,
            data=request.body,
            ssl=ssl_context,
            proxy=proxy,
            timeout=_client_timeout(bounds.timeout),
            allow_redirects=False,
        ) as response:
            return Reply(response.status, response.headers, await _aread_capped(response, bounds, where))
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
        # Raised before the request left: refused, DNS, TLS handshake, connect timeout.
        not_sent = isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError))
        if isinstance(exc, asyncio.TimeoutError) and not not_sent:
            raise deadline_error(where, bounds) from exc
        what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise connection_error(where, what, sent=not not_sent) from exc


@functools.lru_cache(maxsize=16)
def _client_timeout(total: float) -> aiohttp.ClientTimeout:
    """aiohttp's deadline for ``total`` seconds, made once: it is immutable, and every poll needs one."""
    import aiohttp

    return aiohttp.ClientTimeout(total=total)


async def _aread_capped(response: aiohttp.ClientResponse, bounds: Bounds, where: Where) -> bytes:
    length = response.content_length
    if length is not None and "content-encoding" not in response.headers:
        if length > bounds.max_bytes:
            raise too_large(where, bounds.max_bytes)
        return await response.read()
    # Unknown or encoded length: aiohttp inflates in bounded pieces; stop at the cap.
    body = bytearray()
    async for chunk in response.content.iter_chunked(_CHUNK):
        body += chunk
        if len(body) > bounds.max_bytes:
            raise too_large(where, bounds.max_bytes)
    return bytes(body)


@asynccontextmanager
async def aevents(
    settings: HttpSettings, request: Outgoing, bounds: Bounds, where: Where
) -> AsyncIterator[EventStream]:
    """
    An event stream on the async path, through httpx and httpx-sse (aiohttp has no maintained SSE
    reader). Streamed calls are rare (one per submit), so the client lives for the call. The caller
    bounds the whole read with its own deadline (``asyncio.wait_for``).
    """
    transport = httpx.AsyncHTTPTransport(
        verify=settings.ssl_context(), proxy=settings.proxy_for(str(request.url)), trust_env=False
    )
    with _httpx_errors(where, bounds):
        async with (
            httpx.AsyncClient(transport=transport, follow_redirects=False, trust_env=False) as client,
            client.stream(
                request.method,
                str(request.url),
                headers={**request.headers, **_EVENT_STREAM_HEADERS},
                content=request.body,
                timeout=bounds.timeout,
            ) as response,
        ):
            response.stream = _AsyncCappedStream(response.stream, where, bounds.max_bytes)  # type: ignore[arg-type]
            yield EventStream(response, where, bounds)


class _AsyncCappedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, where: Where, limit: int) -> None:
        self._inner, self._where, self._limit = inner, where, limit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self._inner:
            seen += len(chunk)
            if seen > self._limit:
                raise too_large(self._where, self._limit)
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()
