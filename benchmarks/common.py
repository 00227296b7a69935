"""
What every part of the benchmark shares: the emulator process, submitting runs, connections, measurements.

The emulator runs in its own process pinned to the last core; each contender runs in its own process pinned
to the first core, so a contender never competes with the emulator for CPU and "one core" means one core.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_provider_wfrun.platforms import ApiRequest, PlatformAdapter, adapter_classes, get_adapter

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
API_KEY = "bench-key-4d1c"
#: Every platform of the adapter registry.
PLATFORMS = tuple(adapter_classes())
#: Core of the contender processes and of the emulator process.
CONTENDER_CPU = 0
EMULATOR_CPU = max(os.cpu_count() or 1, 1) - 1


# ------------------------------------------------------------------------------------------ measuring
def cpu_seconds() -> float:
    """User + system CPU of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_bytes() -> int:
    """Resident set size now (not the peak), from /proc."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def pin(cpu: int) -> None:
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {cpu})


# ------------------------------------------------------------------------------------------ emulator
@functools.cache
def roots() -> dict[str, str]:
    """
    Where the emulator serves each platform. Its modules are imported only by the processes that need them
    (the harness), not by every contender.
    """
    from airflow_provider_wfrun.emulator.app import discover_platforms

    return {module.NAME: module.DIALECT.root for module in discover_platforms()}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tls_files(directory: Path) -> dict[str, str]:
    """
    A private CA and a server certificate for 127.0.0.1 signed by it, written into ``directory``: the
    emulator serves the certificate, clients trust the CA through ``verify`` (a CA bundle path), as with a
    self-hosted platform behind a private CA.
    """
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wfrun benchmark CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = {"ca": directory / "ca.pem", "cert": directory / "server.pem", "key": directory / "server.key"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return {name: str(path) for name, path in files.items()}


@dataclass(frozen=True)
class Emulator:
    """The running emulator: the same runs over plain HTTP (``url``) and TLS (``tls_url``, CA ``ca``)."""

    url: str
    tls_url: str
    ca: str


@contextlib.contextmanager
def emulator_process() -> Iterator[Emulator]:
    """The emulator (``benchmarks.emulator``) in its own process on its own core, over HTTP and TLS."""
    with tempfile.TemporaryDirectory(prefix="wfrun-bench-tls-") as directory:
        tls = tls_files(Path(directory))
        tls_args = ["--certfile", tls["cert"], "--keyfile", tls["key"]]
        process = subprocess.Popen(
            [PYTHON, "-m", "benchmarks.emulator", "--api-key", API_KEY, *tls_args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            preexec_fn=lambda: pin(EMULATOR_CPU),
            cwd=REPO,
        )
        try:
            assert process.stdout is not None
            line = process.stdout.readline().split()
            if len(line) != 3 or line[0] != "ready":
                raise SystemExit(f"the emulator did not start (code {process.poll()})")
            emulator = Emulator(f"http://127.0.0.1:{line[1]}", f"https://127.0.0.1:{line[2]}", tls["ca"])
            control(emulator.url, "/platforms")
            yield emulator
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def control(url: str, path: str, method: str = "GET", body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{url}/_emulator{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


# ------------------------------------------------------------------------------------------ submitting
async def _submit_one(session: Any, url: str, platform: str, scenario: dict[str, Any], key: str) -> dict:
    """
    One run started as the hook starts it: the adapter's submit request for the emulator's example run of
    ``platform``, its answer read by the adapter (a streamed submit until the event naming the run).
    """
    from airflow_provider_wfrun.emulator.app import example_run
    from airflow_provider_wfrun.emulator.core import SCENARIO_INPUT_KEY

    adapter = get_adapter(platform)
    task = example_run(platform, {"q": "benchmark", SCENARIO_INPUT_KEY: scenario})
    request = adapter.submit_request(
        task["inputs"], workflow_id=task["workflow_id"], idempotency_key=key, workflow=task.get("workflow")
    )
    headers = adapter.auth_headers(API_KEY)
    async with session.request(
        request.method, request.url(url + roots()[platform]), json=request.json, headers=headers
    ) as response:
        if request.stream and response.content_type == "text/event-stream":
            run = await _first_run(adapter, response)
        else:
            payload = await response.json(content_type=None)
            adapter.raise_for_error(response.status, payload)
            run = adapter.submitted(payload, request)
    return {"platform": platform, "run_id": run.run_id, "task_id": run.task_id}


async def _first_run(adapter: PlatformAdapter, response: Any) -> Any:
    """The run the first event naming it describes (Dify: ``workflow_started``)."""
    async for raw in response.content:
        line = raw.decode().strip()
        if line.startswith("data:"):
            run = adapter.read_submit_event(json.loads(line[5:]))
            if run is not None:
                return run
    raise RuntimeError(f"{adapter.display_name}'s submit stream ended before it named the run")


async def submit_runs(
    url: str, specs: Sequence[tuple[str, dict[str, Any]]], concurrency: int = 32
) -> list[dict[str, Any]]:
    """Submit ``(platform, scenario)`` runs straight over HTTP; each result has ``submitted`` (monotonic)."""
    import aiohttp

    results: list[dict[str, Any] | None] = [None] * len(specs)
    queue = list(enumerate(specs))
    stamp = time.time_ns()

    async def worker(session: aiohttp.ClientSession) -> None:
        while queue:
            index, (platform, scenario) = queue.pop()
            started = time.monotonic()
            run = await _submit_one(session, url, platform, scenario, f"bench-{stamp}-{index}")
            run["submitted"] = (started + time.monotonic()) / 2
            results[index] = run

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return [run for run in results if run is not None]


# ------------------------------------------------------------------------------------------ connections
def connection_env(emulator: Emulator) -> dict[str, str]:
    """
    Per platform: ``bench_<platform>`` (ours) and ``bench_http_<platform>`` (an HTTP connection, for the
    peers and the other clients) over plain HTTP; ``bench_tls_<platform>`` and ``bench_http_tls_<platform>``
    the same over TLS, trusting the benchmark's CA (``verify``: a CA bundle path).
    """
    env = {}
    for platform in PLATFORMS:
        headers = http_headers(get_adapter(platform))
        for tag, url, extra in (("", emulator.url, {}), ("TLS_", emulator.tls_url, {"verify": emulator.ca})):
            root = url + roots()[platform]
            ours = {"conn_type": platform, "host": root, "password": API_KEY, "extra": extra}
            env[f"AIRFLOW_CONN_BENCH_{tag}{platform.upper()}"] = json.dumps(ours)
            http = {"conn_type": "http", "host": root, "extra": headers}
            env[f"AIRFLOW_CONN_BENCH_HTTP_{tag}{platform.upper()}"] = json.dumps(http)
    env["WFRUN_BENCH_CA"] = emulator.ca
    return env


def http_headers(adapter: PlatformAdapter) -> dict[str, str]:
    """What a client of the platform sends with every request: its key, as the adapter sends it."""
    return {**adapter.auth_headers(API_KEY), "Content-Type": "application/json"}


def request_options(request: ApiRequest) -> dict[str, Any]:
    """An adapter's request as an HTTP client's ``params=`` and ``json=`` (those it has)."""
    options: dict[str, Any] = {}
    if request.params:
        options["params"] = request.params
    if request.json is not None:
        options["json"] = request.json
    return options


def airflow_env(home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    }


def run_contender(module: str, args: Sequence[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Run ``python -m benchmarks.<module>`` pinned to the contender core; return the JSON it prints last."""
    process = subprocess.run(
        [PYTHON, "-m", f"benchmarks.{module}", *args],
        env={**os.environ, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=lambda: pin(CONTENDER_CPU),
        check=False,
    )
    lines = [line for line in process.stdout.splitlines() if line.startswith("{")]
    if process.returncode != 0 or not lines:
        sys.stderr.write(process.stdout[-4000:] + process.stderr[-8000:])
        raise SystemExit(f"benchmarks.{module} {' '.join(args)} failed with code {process.returncode}")
    return json.loads(lines[-1])


def start_contender(
    module: str, args: Sequence[str], env: dict[str, str], cpu: int | None = CONTENDER_CPU
) -> subprocess.Popen[str]:
    """Start ``python -m benchmarks.<module>`` pinned to ``cpu`` (None: any); returns once it says ready."""
    process = subprocess.Popen(
        [PYTHON, "-m", f"benchmarks.{module}", *args],
        env={**os.environ, **env},
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=None if cpu is None else lambda: pin(cpu),
    )
    assert process.stdout is not None
    seen: list[str] = []
    for _ in range(100_000):  # log lines may come first; bounded
        line = process.stdout.readline()
        if not line or line.strip() == "ready":
            break
        seen.append(line)
    if line.strip() != "ready":
        process.kill()
        _, err = process.communicate(timeout=30)
        raise SystemExit(f"benchmarks.{module} did not start: {''.join(seen[-20:])}{err[-4000:]}")
    return process


def finish_contender(process: subprocess.Popen[str], payload: Any, timeout: float) -> dict[str, Any]:
    """Hand the contender its work (one JSON line on stdin) and return the JSON line it prints last."""
    try:
        out, err = process.communicate(json.dumps(payload) + "\n", timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate(timeout=30)
        raise SystemExit(f"a contender did not finish within {timeout:.0f} s") from None
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if process.returncode != 0 or not lines:
        sys.stderr.write(out[-4000:] + err[-8000:])
        raise SystemExit(f"a contender failed with code {process.returncode}")
    return json.loads(lines[-1])
