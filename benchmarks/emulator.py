"""
The emulator as the benchmarks serve it: one process, one event loop, one emulator state, on two sockets,
plain HTTP and TLS (uvicorn's own ``ssl_certfile``/``ssl_keyfile``). The same runs answer on both, so the
plain and the TLS rounds of part 1 poll the same runs on the same server.

Prints ``ready <http port> <https port>`` once both accept connections.
"""

from __future__ import annotations

import argparse
import asyncio

import uvicorn

from airflow_provider_wfrun.emulator.app import build_app
from airflow_provider_wfrun.emulator.core import EmulatorState
from airflow_provider_wfrun.emulator.server import bind_socket


async def serve(args: argparse.Namespace) -> None:
    app = build_app(EmulatorState(api_key=args.api_key))
    plain_socket, tls_socket = bind_socket("127.0.0.1", 0), bind_socket("127.0.0.1", 0)
    common = {"log_level": "warning", "access_log": False, "lifespan": "on"}
    plain = uvicorn.Server(uvicorn.Config(app, **common))
    tls = uvicorn.Server(
        uvicorn.Config(app, ssl_certfile=args.certfile, ssl_keyfile=args.keyfile, **common)  # type: ignore[arg-type]
    )
    servers = asyncio.gather(plain.serve(sockets=[plain_socket]), tls.serve(sockets=[tls_socket]))
    for _ in range(500):  # bounded: 10 s
        if plain.started and tls.started:
            break
        await asyncio.sleep(0.02)
    print("ready", plain_socket.getsockname()[1], tls_socket.getsockname()[1], flush=True)
    await servers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--certfile", required=True)
    parser.add_argument("--keyfile", required=True)
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
