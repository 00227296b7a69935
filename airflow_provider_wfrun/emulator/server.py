"""
:class:`EmulatorServer`: the emulator on a real loopback socket, in a background thread.

Clients under test must go through real HTTP (connection pools, timeouts, resets), so the server
binds a socket itself (port 0 = any free port, known before start) and runs uvicorn in a daemon
thread; ``start()`` returns only once connections are accepted.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import TYPE_CHECKING, Any

import uvicorn

from airflow_provider_wfrun.emulator.app import build_app
from airflow_provider_wfrun.emulator.core import EmulatorState

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow_provider_wfrun.emulator.core import Scenario


class EmulatorServer:
    """Serve the emulator on ``host:port``; usable as a context manager."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = "emulator-key",
        seed: int = 0,
        *,
        scenarios: Mapping[str, Scenario | Mapping[str, Any]] | None = None,
        log_level: str = "warning",
        start_timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.state = EmulatorState(api_key=api_key, seed=seed, scenarios=scenarios)
        self.app = build_app(self.state)
        self._log_level = log_level
        self._start_timeout = start_timeout
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def api_key(self) -> str:
        return self.state.api_key

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def base_url(self, platform: str) -> str:
        """``http://127.0.0.1:<port>/dify/v1`` and the like: what a client would configure."""
        try:
            return self.url + self.state.dialects[platform].root
        except KeyError:
            raise ValueError(f"unknown platform {platform!r}; known: {sorted(self.state.dialects)}") from None

    def start(self) -> EmulatorServer:
        if self._thread is not None:
            return self
        sock = bind_socket(self.host, self.port)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level=self._log_level, access_log=False, lifespan="on", timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name=f"wfrun-emulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        self._wait_started()
        return self

    def _wait_started(self) -> None:
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            if self._server is not None and self._server.started and _accepts(self.host, self.port):
                return
            if self._thread is not None and not self._thread.is_alive():
                break
            time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"emulator did not start on {self.url}")

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmulatorServer({self.url!r})"


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket (port 0: the OS picks a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
