"""
The async path's HTTP/1.1 connection pool: constant work per request, for a triggerer polling thousands of
runs from one event loop.

Why it exists (measured in docs/benchmarks.md): httpx's own async pool (httpcore) rescans every connection
and every queued request on each request and response and checks idle sockets with a system call each time;
at 250 polls/s it spent about 3 ms of CPU per poll and fell behind. aiohttp, tried in its place, cost
about twice this pool's CPU per poll under the same load. This pool keeps httpx in charge of everything
but the wire: httpx builds requests, maps errors and applies proxies; the pool keeps connections and
speaks HTTP/1.1 (RFC 9112) for small request/response exchanges.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Any, NamedTuple

import httpcore

_HEX_DIGITS = b"0123456789abcdefABCDEF"

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
        self._closed = False

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
        self._closed = True
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
        self._raise_if_closed()
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
                late = future.result() if future.done() and not future.cancelled() else None
                if late is not None:
                    self._release(late)  # handed over just as this request was canceled
                raise
            finally:
                if timer is not None:
                    timer.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(entry)
            if handed is not None:
                return handed
            self._raise_if_closed()
            connection = self._take_idle(origin, loop.time())
            if connection is not None:
                return connection
            if self._make_room():
                return await self._connect(origin, connect_timeout)
            if deadline is not None and loop.time() >= deadline:
                raise httpcore.PoolTimeout(
                    f"no connection became free within {pool_timeout} s ({self._max_connections} in use)"
                )

    def _raise_if_closed(self) -> None:
        if self._closed:  # nothing was sent: a retry through a new client is safe
            raise httpcore.ConnectError("the connection pool was closed")

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
                chunk = self._read_chunked()
                if chunk is not None:
                    return chunk
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
            if not size_text or size_text.strip(_HEX_DIGITS):  # int() would take "+5", "0x5", "-3"
                raise httpcore.RemoteProtocolError(f"malformed chunk size {size_text[:20]!r}")
            size = int(size_text, 16)
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
