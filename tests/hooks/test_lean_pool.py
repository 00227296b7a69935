"""
LeanConnectionPool over real loopback TCP, against small servers that send exact bytes.

The pool under the async hook is hand-written: it parses HTTP/1.1 itself (RFC 9112) and keeps its own
connections and queue, where httpcore's pool would have been battle-tested. These tests pin that behaviour
down: how each kind of body is framed, when a connection is reused or dropped, which httpcore exception
each failure raises, and how requests wait in line. Every server here is an ``asyncio.start_server`` in
this file that writes crafted bytes, so each framing edge case is produced exactly; nothing of the pool is
mocked.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import socket
import ssl
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import httpcore
import httpx
import pytest

from airflow_provider_wfrun.hooks.lean_pool import LeanConnectionPool
from airflow_provider_wfrun.hooks.workflow_run import _use_lean_pool

#: Generous enough never to fire by accident, short enough that a hang fails fast.
TIMEOUTS: Mapping[str, float | None] = {"connect": 2.0, "read": 2.0, "write": 2.0, "pool": 2.0}


# ------------------------------------------------------------------------------------------ the servers
@dataclass
class Received:
    """A request as the server read it."""

    method: bytes
    target: bytes
    headers: dict[bytes, bytes]
    body: bytes
    connection: int  # which accepted connection it came on, from 0
    index: int  # its place in arrival order over all connections, from 0


#: Answers one request; returns whether the server keeps the connection open for another.
Handler = Callable[[Received, asyncio.StreamWriter], Awaitable[bool]]


@dataclass
class CraftedServer:
    """A loopback HTTP/1.1 server whose answers are written by a handler, byte for byte."""

    handler: Handler
    read_bodies: bool = True
    receive_buffer: int | None = None  # SO_RCVBUF of accepted sockets (None: the kernel's autotuning)
    accepted: int = 0
    open_now: int = 0
    max_open: int = 0
    requests: list[Received] = field(default_factory=list)
    #: Connections on which the server read the end of the stream: the client closed them.
    closed_by_client: set[int] = field(default_factory=set)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.receive_buffer is not None:  # inherited by accepted sockets
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)
        sock.bind(("127.0.0.1", 0))
        self._server = await asyncio.start_server(self._serve, sock=sock)

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    @property
    def origin(self) -> tuple[bytes, bytes, int]:
        return (b"http", b"127.0.0.1", self.port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = self.accepted
        self.accepted += 1
        self.open_now += 1
        self.max_open = max(self.max_open, self.open_now)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        self._writers.add(writer)
        try:
            while True:
                try:
                    request = await self._read_request(reader, number)
                except (asyncio.IncompleteReadError, ConnectionError):
                    self.closed_by_client.add(number)
                    return
                self.requests.append(request)
                if not await self.handler(request, writer):
                    return
        except asyncio.CancelledError:  # the test is over (a canceled task here would be logged as an error)
            return
        finally:
            self.open_now -= 1
            self._writers.discard(writer)
            writer.close()

    async def _read_request(self, reader: asyncio.StreamReader, number: int) -> Received:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *lines = head[:-4].split(b"\r\n")
        method, target, _ = request_line.split(b" ", 2)
        headers = {}
        for line in lines:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        body = b""
        if self.read_bodies and b"content-length" in headers:
            body = await reader.readexactly(int(headers[b"content-length"]))
        elif self.read_bodies and headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            pieces = []
            while size := int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16):
                pieces.append(await reader.readexactly(size))
                await reader.readexactly(2)
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                pass
            body = b"".join(pieces)
        return Received(method, target, headers, body, number, len(self.requests))


@dataclass(frozen=True)
class Reply:
    """One scripted answer."""

    data: bytes = b""
    close: bool = False  # close the connection (FIN) once written
    reset: bool = False  # abort the connection with a TCP RST once written
    piece: int = 0  # write this many bytes at a time, yielding to the event loop between (0: all at once)
    stall: bool = False  # never answer (until the test ends)


def replying(*replies: Reply) -> Handler:
    """The n-th request to arrive (over all connections) gets the n-th reply; the last repeats."""

    async def handler(request: Received, writer: asyncio.StreamWriter) -> bool:
        reply = replies[min(request.index, len(replies) - 1)]
        if reply.stall:
            await asyncio.Event().wait()
        await write(writer, reply.data, reply.piece)
        if reply.reset:
            writer.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            writer.transport.abort()
            return False
        return not reply.close

    return handler


def gated(gates: dict[bytes, asyncio.Event]) -> Handler:
    """Answer a request with its own target as the body, once the test sets the target's gate."""

    async def handler(request: Received, writer: asyncio.StreamWriter) -> bool:
        await gates.setdefault(request.target, asyncio.Event()).wait()
        await write(writer, ok(request.target))
        return True

    return handler


async def write(writer: asyncio.StreamWriter, data: bytes, piece: int = 0) -> None:
    if not piece:
        writer.write(data)
        await writer.drain()
        return
    for start in range(0, len(data), piece):
        writer.write(data[start : start + piece])
        await writer.drain()
        await asyncio.sleep(0)  # the client reads each piece on its own


def ok(body: bytes = b"ok", *headers: bytes) -> bytes:
    """A keep-alive 200 framed by Content-Length."""
    head = b"".join(header + b"\r\n" for header in headers)
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), head, body)


def chunked(*chunks: bytes, trailer: bytes = b"") -> bytes:
    """A chunked body: one chunk per piece, then the last chunk and the trailer section."""
    return b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n" + trailer + b"\r\n"


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[CraftedServer]]]:
    servers: list[CraftedServer] = []

    async def start(handler: Handler, **options: object) -> CraftedServer:
        server = CraftedServer(handler, **options)  # type: ignore[arg-type]
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


def new_pool(max_connections: int = 10, keepalive_expiry: float = 30.0) -> LeanConnectionPool:
    return LeanConnectionPool(
        ssl_context=ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT),
        max_connections=max_connections,
        keepalive_expiry=keepalive_expiry,
    )


@pytest.fixture
async def pool() -> AsyncIterator[LeanConnectionPool]:
    async with new_pool() as pool:
        yield pool


async def fetch(
    pool: LeanConnectionPool,
    server: CraftedServer,
    target: bytes = b"/",
    *,
    method: bytes = b"GET",
    body: bytes = b"",
    timeouts: Mapping[str, float | None] = TIMEOUTS,
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    headers = [(b"Host", b"127.0.0.1:%d" % server.port)]
    if body:
        headers.append((b"Content-Length", b"%d" % len(body)))
    return await pool.fetch(server.origin, method, target, headers, body, timeouts)


async def wait_until(condition: Callable[[], bool], timeout: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never came true"
        await asyncio.sleep(0.002)


# ------------------------------------------------------------------------------------ framing and reuse
async def test_content_length_body_is_read_and_the_connection_reused(
    pool: LeanConnectionPool, serve: Callable[..., Awaitable[CraftedServer]]
) -> None:
    server = await serve(
        replying(Reply(ok(b"hello", b"X-Thing:  spaced \t", b"Set-Cookie: a", b"set-cookie: b")))
    )

    status, headers, body = await fetch(pool, server, b"/first")
    assert (status, body) == (200, b"hello")
    assert (b"x-thing", b"spaced") in headers  # names in lower case, values stripped
    assert [value for name, value in headers if name == b"set-cookie"] == [b"a", b"b"]
    assert len(pool.connections) == 1

    assert await fetch(pool, server, b"/second", method=b"POST", body=b"payload") == (
        200,
        headers,
        b"hello",
    )
    assert server.accepted == 1
    assert [(r.method, r.target, r.body, r.connection) for r in server.requests] == [
        (b"GET", b"/first", b"", 0),
        (b"POST", b"/second", b"payload", 0),
    ]
    assert server.requests[1].headers[b"content-length"] == b"7"


async def test_chunked_body_is_decoded_and_the_connection_reused(
    pool: LeanConnectionPool, serve: Callable[..., Awaitable[CraftedServer]]
) -> None:
    response = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n"
        b'1 ; quoted="a;b"\r\n,\r\n'
        b"A\r\n world of \r\n"  # upper-case hex
        b"00000005\r\nbytes\r\n"  # leading zeros
        b"0;last=1\r\nX-Trailer: yes\r\nX-Other: 2\r\n\r\n"
    )
    # Byte by byte, so every parser state is crossed at a read boundary.
    server = await serve(replying(Reply(response, piece=1), Reply(ok(b"again"))))

    status, headers, body = await fetch(pool, server)
    assert (status, body) == (200, b"hello, world of bytes")
    assert (b"transfer-encoding", b"chunked") in headers
    assert await fetch(pool, server) == (200, [(b"content-length", b"5")], b"again")
    assert server.accepted == 1


async def test_chunked_body_with_only_the_last_chunk_is_empty(
    pool: LeanConnectionPool, serve: Callable[..., Awaitable[CraftedServer]]
) -> None:
    server = await serve(replying(Reply(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")))

    assert (await fetch(pool, server))[2] == b""
    assert (await fetch(pool, server))[2] == b""
    assert server.accepted == 1


@pytest.mark.parametrize(
    ("head", "sent"),
    [
        pytest.param(b"HTTP/1.1 200 OK\r\n\r\n", b"until the end", id="no-length"),
        # A transfer coding other than chunked last: the body runs to the end, passed on undecoded.
        pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", b"\x1f\x8b\x08raw", id="gzip"),
    ],
)
async def test_close_delimited_body_is_read_to_the_end_and_the_connection_not_reused(
    pool: LeanConnectionPool, serve: Callable[..., Awaitable[CraftedServer]], head: bytes, sent: bytes
) -> None:
    server = await serve(replying(Reply(head + sent, close=True, piece=3), Reply(ok(b"next"))))

    status, _, body = await fetch(pool, server)
    assert (status, body) == (200, sent)
    assert pool.connections == []
    assert (await fetch(pool, server))[2] == b"next"
    assert server.accepted == 2


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", id="connection-close"
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, Close\r\nContent-Length: 2\r\n\r\nok", id="list"
        ),
        pytest.param(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", id="http-1.0"),
    ],
)
async def test_a_response_that_ends_the_connection_is_not_reused(
    pool: LeanConnectionPool, serve: Callable[..., Awaitable[CraftedServer]], response: bytes
) -> None:
    # The server would keep the connection: the client must close it on its own.
    server = await serve(replying(Reply(response)))

    assert (await fetch(pool, server))[::2] == (200, b"ok")
    assert pool.connections == []
    await wait_until(lambda: 0 in server.closed_by_client)
    assert (await fetch(pool, server))[::2] == (200, b"ok")
    assert server.accepted == 2


async def test_an_http_1_0_response_with_keep_alive_is_reused(
    pool: LeanConnectionPool, serve: Callable[..., Awaitable[CraftedServer]]
) -> None:
    server = await serve(
        replying(Reply(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"))
    )

    await fetch(pool, server)
    await fetch(pool, server)
    assert server.accepted == 1


@pytest.mark.parametrize(
    "interim",
    [
        pytest.param(b"HTTP/1.1 100 Continue\r\n\r\n", id="100"),
        pytest.param(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n", id="103"),
        pytest.param(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n", id="two"),
    ],
)
async def test_interim_1xx_responses_are_skipped(
    pool: LeanConnectionPool, serve: Callable[..., Awaitable[CraftedServer]], interim: bytes
) -> None:
    server = await serve(replying(Reply(interim + ok(b"final", b"X-Final: 1"))))

    status, headers, body = await fetch(pool, server)
    assert (status, body) == (200, b"final")
    assert headers == [(b"content-length", b"5"), (b"x-final", b"1")]  # the final response's only
    await fetch(pool, server)
    assert server.accepted == 1


@pytest.mark.parametrize(
    ("method", "status_line"),
    [
        pytest.param(b"GET", b"HTTP/1.1 204 No Content", id="204"),
        pytest.param(b"GET", b"HTTP/1.1 304 Not Modified", id="304"),
        pytest.param(b"HEAD", b"HTTP/1.1 200 OK", id="HEAD"),
    ],
)
async def test_responses_without_a_body_ignore_content_length(
    pool: LeanConnectionPool,
    serve: Callable[..., Awaitable[CraftedServer]],
    method: bytes,
    status_line: bytes,
) -> None:
    # RFC 9112 section 6.3: no body whatever the headers say. Waiting for one would time out.
    server = await serve(replying(Reply(status_line + b"\r\nContent-Length: 1000\r\n\r\n")))
    timeouts = {**TIMEOUTS, "read": 0.5}

    status, headers, body = await fetch(pool, server, method=method, timeouts=timeouts)
    assert (status, body) == (int(status_line.split()[1]), b"")
    assert (b"content-length", b"1000") in headers
    await fetch(pool, server, method=method, timeouts=timeouts)
    assert server.accepted == 1


# ------------------------------------------------------------------------------------ idle connections
async def test_an_idle_connection_the_server_closes_is_dropped_and_the_next_request_opens_a_new_one(
    pool: LeanConnectionPool, serve: Callable[..., Awaitable[CraftedServer]]
) -> None:
    # Keep-alive by its headers, then closed by the server while the pool holds it idle.
    server = await serve(replying(Reply(ok(b"first"), close=True), Reply(ok(b"second"))))

    assert (await fetch(pool, server))[2] == b"first"
    await wait_until(lambda: pool.connections == [])  # noticed from connection_lost, no request needed
    assert (await fetch(pool, server))[2] == b"second"
    assert server.accepted == 2


async def test_bytes_arriving_on_an_idle_connection_make_the_pool_drop_it(
    pool: LeanConnectionPool, serve: Callable[..., Awaitable[CraftedServer]]
) -> None:
    async def handler(request: Received, writer: asyncio.StreamWriter) -> bool:
        await write(writer, ok())
        if request.index == 0:
            await asyncio.sleep(0.02)
            await write(writer, b"HTTP/1.1 408 Request Timeout\r\n\r\n")  # unsolicited
        return True

    server = await serve(handler)

    await fetch(pool, server)
    await wait_until(lambda: pool.connections == [])
    await wait_until(lambda: 0 in server.closed_by_client)
    assert (await fetch(pool, server))[::2] == (200, b"ok")
    assert server.accepted == 2


async def test_an_idle_connection_past_the_keepalive_expiry_is_not_reused(
    serve: Callable[..., Awaitable[CraftedServer]],
) -> None:
    server = await serve(replying(Reply(ok())))
    async with new_pool(keepalive_expiry=0.1) as pool:
        await fetch(pool, server)
        await fetch(pool, server)  # within the expiry: reused
        assert server.accepted == 1
        await asyncio.sleep(0.15)
        await fetch(pool, server)
        assert server.accepted == 2
        await wait_until(lambda: 0 in server.closed_by_client)  # the expired one was closed, not leaked
        assert len(pool.connections) == 1


async def test_an_idle_connection_to_another_origin_gives_way_when_the_pool_is_full(
    serve: Callable[..., Awaitable[CraftedServer]],
) -> None:
    first = await serve(replying(Reply(ok(b"first"))))
    second = await serve(replying(Reply(ok(b"second"))))
    async with new_pool(max_connections=1) as pool:
        await fetch(pool, first)
        assert (await fetch(pool, second, timeouts={**TIMEOUTS, "pool": 0.5}))[2] == b"second"
        await wait_until(lambda: 0 in first.closed_by_client)
        assert len(pool.connections) == 1


# ------------------------------------------------------------------------------------------- failures
OK_AFTERWARDS = Reply(ok(b"fine"))


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        pytest.param(Reply(b"HTTP/1.1 2OO OK\r\n\r\n"), httpcore.RemoteProtocolError, id="status-code"),
        pytest.param(Reply(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"), httpcore.RemoteProtocolError, id="not-http"),
        pytest.param(
            Reply(b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 0\r\n\r\n"),
            httpcore.RemoteProtocolError,
            id="folded-header",
        ),
        pytest.param(
            Reply(b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70_000),
            httpcore.RemoteProtocolError,
            id="head-too-long",
        ),
        pytest.param(
            Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc"),
            httpcore.RemoteProtocolError,
            id="conflicting-content-length",
        ),
        pytest.param(
            Reply(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
            httpcore.RemoteProtocolError,
            id="negative-content-length",
        ),
        pytest.param(
            Reply(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
            httpcore.RemoteProtocolError,
            id="chunk-size",
        ),
        pytest.param(
            Reply(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"),
            httpcore.RemoteProtocolError,
            id="chunk-without-crlf",
        ),
        pytest.param(Reply(close=True), httpcore.RemoteProtocolError, id="closed-before-response"),
        pytest.param(
            Reply(b"HTTP/1.1 200 OK\r\nContent-Len", close=True),
            httpcore.RemoteProtocolError,
            id="closed-in-head",
        ),
        pytest.param(
            Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabcd", close=True),
            httpcore.RemoteProtocolError,
            id="content-length-truncated",
        ),
        pytest.param(
            Reply(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", close=True),
            httpcore.RemoteProtocolError,
            id="chunked-truncated",
        ),
        pytest.param(
            Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabcd", reset=True),
            httpcore.ReadError,
            id="reset-in-body",
        ),
        pytest.param(
            Reply(b"HTTP/1.1 200 OK\r\n\r\nabcd", reset=True),
            httpcore.ReadError,
            id="reset-in-close-delimited",
        ),
    ],
)
async def test_a_broken_response_raises_and_its_connection_is_discarded(
    pool: LeanConnectionPool,
    serve: Callable[..., Awaitable[CraftedServer]],
    reply: Reply,
    error: type[Exception],
) -> None:
    server = await serve(replying(reply, OK_AFTERWARDS))

    with pytest.raises(error) as raised:
        await fetch(pool, server)
    assert type(raised.value) is error
    assert pool.connections == []
    assert await fetch(pool, server) == (200, [(b"content-length", b"4")], b"fine")
    assert server.accepted == 2


@pytest.mark.parametrize("size", [b"+5", b"0x5", b"0_5", b"-3"])
async def test_a_chunk_size_that_is_not_plain_hex_is_refused(
    pool: LeanConnectionPool, serve: Callable[..., Awaitable[CraftedServer]], size: bytes
) -> None:
    body = size + b"\r\nhello\r\n0\r\n\r\n"
    server = await serve(replying(Reply(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)))

    with pytest.raises(httpcore.RemoteProtocolError):
        await fetch(pool, server)


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(Reply(stall=True), id="no-head"),
        pytest.param(Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabcd"), id="mid-body"),
    ],
)
async def test_a_server_that_stops_answering_raises_read_timeout(
    pool: LeanConnectionPool, serve: Callable[..., Awaitable[CraftedServer]], reply: Reply
) -> None:
    server = await serve(replying(reply, OK_AFTERWARDS))

    started = time.monotonic()
    with pytest.raises(httpcore.ReadTimeout):
        await fetch(pool, server, timeouts={**TIMEOUTS, "read": 0.1})
    assert 0.09 <= time.monotonic() - started < 1.0
    assert pool.connections == []
    assert (await fetch(pool, server))[2] == b"fine"
    assert server.accepted == 2


async def test_connecting_to_a_closed_port_raises_connect_error(pool: LeanConnectionPool) -> None:
    with socket.socket() as probe:  # a port just free, so nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(httpcore.ConnectError):
        await pool.fetch((b"http", b"127.0.0.1", port), b"GET", b"/", [(b"Host", b"x")], b"", TIMEOUTS)
    assert pool.connections == []


async def test_a_header_with_a_line_break_is_refused_before_anything_is_sent(
    pool: LeanConnectionPool, serve: Callable[..., Awaitable[CraftedServer]]
) -> None:
    server = await serve(replying(Reply(ok())))

    with pytest.raises(httpcore.LocalProtocolError):
        await pool.fetch(server.origin, b"GET", b"/", [(b"X-Evil", b"a\r\nX-Injected: 1")], b"", TIMEOUTS)
    assert pool.connections == []
    await wait_until(lambda: 0 in server.closed_by_client)
    assert server.requests == []


async def test_a_server_that_stops_reading_the_request_raises_write_timeout(
    pool: LeanConnectionPool, serve: Callable[..., Awaitable[CraftedServer]]
) -> None:
    async def never_answer(request: Received, writer: asyncio.StreamWriter) -> bool:
        await asyncio.Event().wait()
        return False

    server = await serve(never_answer, read_bodies=False, receive_buffer=32 * 1024)

    with pytest.raises(httpcore.WriteTimeout):
        await fetch(pool, server, method=b"POST", body=b"x" * (16 << 20), timeouts={**TIMEOUTS, "write": 0.2})
    assert pool.connections == []


# ------------------------------------------------------------------------------------------- queueing
async def test_requests_beyond_max_connections_wait_in_line_first_come_first_served(
    serve: Callable[..., Awaitable[CraftedServer]],
) -> None:
    gates: dict[bytes, asyncio.Event] = {b"/%d" % i: asyncio.Event() for i in range(6)}
    server = await serve(gated(gates))
    async with new_pool(max_connections=2) as pool:
        tasks = [asyncio.create_task(fetch(pool, server, b"/%d" % i)) for i in range(6)]
        await wait_until(lambda: len(server.requests) == 2)
        # Answer one request at a time: the connection it frees goes to the oldest request waiting.
        for i in range(4):
            gates[b"/%d" % i].set()
            await wait_until(lambda i=i: len(server.requests) == i + 3)
            assert len(pool.connections) <= 2
        gates[b"/4"].set()
        gates[b"/5"].set()
        results = await asyncio.wait_for(asyncio.gather(*tasks), 2.0)

    assert [body for _, _, body in results] == [b"/%d" % i for i in range(6)]
    targets = [request.target for request in server.requests]
    assert sorted(targets[:2]) == [b"/0", b"/1"]
    assert targets[2:] == [b"/2", b"/3", b"/4", b"/5"]
    on = {request.target: request.connection for request in server.requests}
    assert on[b"/0"] == on[b"/2"] == on[b"/4"] != on[b"/1"] == on[b"/3"] == on[b"/5"]
    assert (server.accepted, server.max_open) == (2, 2)


async def test_waiting_longer_than_the_pool_timeout_raises_pool_timeout(
    serve: Callable[..., Awaitable[CraftedServer]],
) -> None:
    gates = {b"/slow": asyncio.Event()}
    server = await serve(gated(gates))
    async with new_pool(max_connections=1) as pool:
        slow = asyncio.create_task(fetch(pool, server, b"/slow"))
        await wait_until(lambda: len(server.requests) == 1)

        started = time.monotonic()
        with pytest.raises(httpcore.PoolTimeout):
            await fetch(pool, server, b"/impatient", timeouts={**TIMEOUTS, "pool": 0.05})
        assert 0.04 <= time.monotonic() - started < 1.0

        gates[b"/slow"].set()
        assert (await slow)[2] == b"/slow"
        gates[b"/after"] = asyncio.Event()
        gates[b"/after"].set()
        assert (await fetch(pool, server, b"/after"))[2] == b"/after"
    assert [request.target for request in server.requests] == [b"/slow", b"/after"]
    assert server.accepted == 1


# ------------------------------------------------------------------------------------------- aclose
async def test_aclose_closes_idle_and_busy_connections(
    serve: Callable[..., Awaitable[CraftedServer]],
) -> None:
    gates = {b"/idle": asyncio.Event(), b"/busy": asyncio.Event()}
    gates[b"/idle"].set()
    server = await serve(gated(gates))
    pool = new_pool(max_connections=2)
    busy = asyncio.create_task(fetch(pool, server, b"/busy"))
    await wait_until(lambda: len(server.requests) == 1)
    await fetch(pool, server, b"/idle")
    assert len(pool.connections) == 2

    await pool.aclose()

    assert pool.connections == []
    with pytest.raises(httpcore.RemoteProtocolError):
        await asyncio.wait_for(busy, 1.0)
    await wait_until(lambda: 1 in server.closed_by_client)  # the idle one; the busy one's handler is gated
    assert server.accepted == 2


async def test_aclose_wakes_the_requests_waiting_for_a_connection(
    serve: Callable[..., Awaitable[CraftedServer]],
) -> None:
    gates = {b"/busy": asyncio.Event(), b"/waiting": asyncio.Event()}
    gates[b"/waiting"].set()
    server = await serve(gated(gates))
    pool = new_pool(max_connections=1)
    busy = asyncio.create_task(fetch(pool, server, b"/busy"))
    await wait_until(lambda: len(server.requests) == 1)
    waiting = asyncio.create_task(fetch(pool, server, b"/waiting", timeouts={**TIMEOUTS, "pool": None}))
    await asyncio.sleep(0.01)
    assert not waiting.done()

    await pool.aclose()

    done, _ = await asyncio.wait([busy, waiting], timeout=1.0)
    assert done == {busy, waiting}  # neither is left hanging
    assert isinstance(busy.exception(), httpcore.RemoteProtocolError)
    await pool.aclose()


async def test_requests_waiting_when_the_pool_closes_open_no_new_connection(
    serve: Callable[..., Awaitable[CraftedServer]],
) -> None:
    gates = {b"/busy": asyncio.Event(), b"/waiting": asyncio.Event()}
    gates[b"/waiting"].set()
    server = await serve(gated(gates))
    pool = new_pool(max_connections=1)
    busy = asyncio.create_task(fetch(pool, server, b"/busy"))
    await wait_until(lambda: len(server.requests) == 1)
    waiting = asyncio.create_task(fetch(pool, server, b"/waiting", timeouts={**TIMEOUTS, "pool": None}))
    await asyncio.sleep(0.01)

    await pool.aclose()
    await asyncio.wait([busy, waiting], timeout=1.0)
    assert isinstance(busy.exception(), httpcore.RemoteProtocolError)

    try:
        assert server.accepted == 1, "the waiting request opened a new connection after aclose()"
        assert pool.connections == []
        # Nothing was sent for it, so the hook may retry it through a new client.
        assert isinstance(waiting.exception(), httpcore.ConnectError)
    finally:
        await pool.aclose()


# ---------------------------------------------------------------------------------------- large bodies
BIG = random.Random(7).randbytes(1 << 20)


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(ok(BIG), id="content-length"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunked(*(BIG[i : i + 3001] for i in range(0, len(BIG), 3001))),
            id="chunked",
        ),
    ],
)
async def test_a_one_megabyte_body_in_many_segments_arrives_intact(
    pool: LeanConnectionPool, serve: Callable[..., Awaitable[CraftedServer]], response: bytes
) -> None:
    server = await serve(replying(Reply(response, piece=1400)))

    status, _, body = await fetch(pool, server)
    assert status == 200
    assert len(body) == len(BIG)
    assert body == BIG
    assert (await fetch(pool, server))[2] == BIG
    assert server.accepted == 1


async def test_a_large_request_body_is_written_whole_through_flow_control(
    pool: LeanConnectionPool, serve: Callable[..., Awaitable[CraftedServer]]
) -> None:
    async def digest(request: Received, writer: asyncio.StreamWriter) -> bool:
        await write(writer, ok(hashlib.sha256(request.body).hexdigest().encode()))
        return True

    # A small receive buffer at the server, so the client's transport must pause and resume writing.
    server = await serve(digest, receive_buffer=32 * 1024)
    upload = BIG * 16

    status, _, body = await fetch(pool, server, method=b"POST", body=upload)
    assert (status, body) == (200, hashlib.sha256(upload).hexdigest().encode())
    assert server.accepted == 1


# -------------------------------------------------------------------------------------- through httpx
async def echo(request: Received, writer: asyncio.StreamWriter) -> bool:
    payload = {
        "method": request.method.decode(),
        "target": request.target.decode(),
        "content_type": request.headers.get(b"content-type", b"").decode(),
        "framing": "chunked" if b"transfer-encoding" in request.headers else "length",
        "body": request.body.decode(),
    }
    await write(writer, ok(json.dumps(payload).encode(), b"Content-Type: application/json"))
    return True


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:
        _use_lean_pool(client)
        assert isinstance(client._transport._pool, LeanConnectionPool)  # type: ignore[attr-defined]
        yield client


async def test_httpx_with_the_lean_pool_sends_get_and_json_post(
    client: httpx.AsyncClient, serve: Callable[..., Awaitable[CraftedServer]]
) -> None:
    server = await serve(echo)

    response = await client.get(f"{server.url}/runs/1", params={"q": "a b"})
    assert response.status_code == 200
    assert (response.http_version, response.reason_phrase) == ("HTTP/1.1", "OK")
    assert response.json() == {
        "method": "GET",
        "target": "/runs/1?q=a+b",
        "content_type": "",
        "framing": "length",
        "body": "",
    }

    response = await client.post(f"{server.url}/runs", json={"inputs": {"topic": "otters"}})
    assert response.status_code == 200
    sent = response.json()
    assert (sent["method"], sent["target"], sent["content_type"]) == ("POST", "/runs", "application/json")
    assert json.loads(sent["body"]) == {"inputs": {"topic": "otters"}}
    assert server.accepted == 1
    assert server.requests[0].headers[b"host"] == f"127.0.0.1:{server.port}".encode()


async def test_httpx_streamed_upload_is_sent_chunked(
    client: httpx.AsyncClient, serve: Callable[..., Awaitable[CraftedServer]]
) -> None:
    server = await serve(echo)

    async def parts() -> AsyncIterator[bytes]:
        yield b"streamed "
        yield b"upload"

    response = await client.post(f"{server.url}/upload", content=parts())
    assert (response.json()["framing"], response.json()["body"]) == ("chunked", "streamed upload")
    await client.get(server.url)
    assert server.accepted == 1


async def test_httpx_response_closed_before_its_body_is_read_drops_the_connection(
    client: httpx.AsyncClient, serve: Callable[..., Awaitable[CraftedServer]]
) -> None:
    server = await serve(replying(Reply(ok(b"x" * 100_000))))

    async with client.stream("GET", server.url) as response:
        assert response.status_code == 200
    async with client.stream("GET", server.url) as response:
        assert len(await response.aread()) == 100_000
    await client.get(server.url)
    assert server.accepted == 2  # the first was dropped; the second, read through, was reused


async def test_httpx_maps_the_pools_errors(
    client: httpx.AsyncClient, serve: Callable[..., Awaitable[CraftedServer]]
) -> None:
    server = await serve(
        replying(Reply(stall=True), Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", close=True))
    )

    with pytest.raises(httpx.ReadTimeout):
        await client.get(server.url, timeout=httpx.Timeout(2.0, read=0.1))
    with pytest.raises(httpx.RemoteProtocolError):
        await client.get(server.url)
    with pytest.raises(httpcore.UnsupportedProtocol):
        await client._transport._pool.handle_async_request(  # type: ignore[attr-defined]
            httpcore.Request("GET", "ftp://127.0.0.1/")
        )
