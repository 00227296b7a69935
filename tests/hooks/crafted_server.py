"""
A loopback TCP server that answers with whatever bytes a test scripts: slow, endless, malformed or hostile.

Each accepted connection runs ``behaviour(conn, request_head)`` in its own thread, after the request head
(up to the blank line) and a Content-Length body have been read. The server counts connections and
requests, and stops every handler when it closes (handlers poll ``server.stopping``).
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable
from contextlib import suppress

#: Called per request with the server, the connection and the request head; True keeps the connection.
Behaviour = Callable[["CraftedServer", socket.socket, bytes], bool]


class CraftedServer:
    def __init__(
        self, behaviour: Behaviour, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
    ) -> None:
        self.behaviour = behaviour
        self.tls = tls
        self.stopping = threading.Event()
        self.requests: list[bytes] = []
        self.bodies: list[bytes] = []
        self.connections = 0
        self._listener = socket.create_server((host, 0))
        self._listener.settimeout(0.2)
        self.host, self.port = self._listener.getsockname()[:2]
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def __enter__(self) -> CraftedServer:
        self._acceptor.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopping.set()
        self._acceptor.join(5)
        for thread in self._threads:
            thread.join(5)
        self._listener.close()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        if self.tls is not None:
            try:
                conn.settimeout(5)
                conn = self.tls.wrap_socket(conn, server_side=True)
            except (OSError, ssl.SSLError):
                conn.close()
                return
        with conn:
            conn.settimeout(0.5)
            while not self.stopping.is_set():
                head = self._read_request(conn)
                if head is None:
                    return
                self.requests.append(head)
                try:
                    keep_open = self.behaviour(self, conn, head)
                except OSError:
                    return
                if not keep_open:
                    return

    def _read_request(self, conn: socket.socket) -> bytes | None:
        data = b""
        while b"\r\n\r\n" not in data:
            if self.stopping.is_set():
                return None
            try:
                chunk = conn.recv(65536)
            except (TimeoutError, ssl.SSLWantReadError):
                continue
            except OSError:
                return None
            if not chunk:
                return None
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(rest) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            rest += chunk
        self.bodies.append(rest)
        return head

    def sleep(self, seconds: float) -> bool:
        """Wait, unless the server is closing; False once it is."""
        return not self.stopping.wait(seconds)


def send(conn: socket.socket, data: bytes) -> None:
    with suppress(OSError):
        conn.sendall(data)


def json_reply(body: bytes, status: str = "200 OK", extra: bytes = b"") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n".encode()
        + extra
        + b"\r\n"
        + body
    )
