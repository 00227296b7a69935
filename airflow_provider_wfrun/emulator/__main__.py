"""
``python -m airflow_provider_wfrun.emulator``: run the emulator in the foreground for demos.

Prints each platform's base URL so a user can paste it into an Airflow connection.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import uvicorn

from airflow_provider_wfrun.emulator.app import build_app
from airflow_provider_wfrun.emulator.core import CONTROL_ROOT, EmulatorState
from airflow_provider_wfrun.emulator.server import bind_socket


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m airflow_provider_wfrun.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port (default 8765)")
    parser.add_argument("--api-key", default="emulator-key")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault-injection RNG")
    parser.add_argument("--scenarios", type=Path, help="JSON file {workflow_id: scenario}")
    parser.add_argument("--log-level", default="info")
    return parser.parse_args(argv)


def load_scenarios(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise SystemExit(f"{path}: expected a JSON object {{workflow_id: scenario}}")
    return data


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    state = EmulatorState(api_key=args.api_key, seed=args.seed, scenarios=load_scenarios(args.scenarios))
    app = build_app(state)
    sock = bind_socket(args.host, args.port)
    host, port = sock.getsockname()[:2]
    url = f"http://{host}:{port}"
    print(f"wfrun emulator listening on {url} (api key {args.api_key!r}, seed {args.seed})")
    for name, dialect in state.dialects.items():
        print(f"  {name:<8} {url}{dialect.root}")
    print(f"  control  {url}{CONTROL_ROOT}/")
    sys.stdout.flush()
    config = uvicorn.Config(app, log_level=args.log_level, access_log=False, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
