"""
The hook against servers that trickle, never stop, inflate, lie or echo secrets, on both paths.

Each case must end in a typed error within a bounded time and memory (the bounds here are generous
multiples of the hook's own deadline and cap: they catch "never ends" and "inflates whole", not speed).
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import re
import socket
import ssl
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from crafted_server import CraftedServer, json_reply, send

from airflow_provider_wfrun.exceptions import (
    AuthenticationError,
    InvalidInputError,
    InvalidResponseError,
    ResponseTooLargeError,
    RunNotFoundError,
    WorkflowRunConnectionError,
    WorkflowRunError,
)
from airflow_provider_wfrun.hooks.workflow_run import WorkflowRunHook
from airflow_provider_wfrun.models import RunStatus
from airflow_provider_wfrun.platforms.base import ApiRequest
from airflow_provider_wfrun.triggers.workflow_run import WorkflowRunTrigger

RUN = "fb47b2e6-5e43-4f90-be01-d5c5a088d156"
OTHER_RUN = "0f6c2c1e-1111-4000-8000-000000000000"
KEY = "sk-hostile-3c9d1f0a77"
TIMEOUT = 1.0
#: "Ends in bounded time" is the hook's own deadline plus this much room for a loaded machine: what the
#: bound catches is "never ends" (each case ran forever before the deadline was total), not speed.
SLACK = 30.0


def detail(run_id: str = RUN, status: str = "running") -> bytes:
    return json.dumps({"id": run_id, "status": status}).encode()


# ------------------------------------------------------------------------------------------ behaviours
def slowloris(server: CraftedServer, conn: socket.socket, head: bytes) -> bool:
    send(conn, b"HTTP/1.1 200 OK\r\nX-Slow: ")
    while server.sleep(0.05):
        send(conn, b"a")
    return False


def endless_1xx(server: CraftedServer, conn: socket.socket, head: bytes) -> bool:
    while server.sleep(0.05):
        send(conn, b"HTTP/1.1 102 Processing\r\n\r\n")
    return False


def trickle_body(server: CraftedServer, conn: socket.socket, head: bytes) -> bool:
    send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n")
    while server.sleep(0.05):
        send(conn, b" ")
    return False


def endless_chunked(server: CraftedServer, conn: socket.socket, head: bytes) -> bool:
    send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
    while not server.stopping.is_set():
        try:
            conn.sendall(chunk)
        except OSError:
            break
    return False


def ten_gigabytes(server: CraftedServer, conn: socket.socket, head: bytes) -> bool:
    send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 10737418240\r\n\r\n")
    block = b" " * 65536
    while not server.stopping.is_set():
        try:
            conn.sendall(block)
        except OSError:
            break
    return False


@cache
def gzip_bomb() -> bytes:
    """About 1 MB of gzip that inflates to 1 GiB of spaces."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b" " * (1 << 20)
    parts = [compressor.compress(block) for _ in range(1024)]
    return b"".join(parts) + compressor.flush()


def gzip_bomb_reply(server: CraftedServer, conn: socket.socket, head: bytes) -> bool:
    body = gzip_bomb()
    send(
        conn,
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body,
    )
    return False


def answering(body: bytes, status: str = "200 OK") -> Callable[[CraftedServer, socket.socket, bytes], bool]:
    def behaviour(server: CraftedServer, conn: socket.socket, head: bytes) -> bool:
        send(conn, json_reply(body, status))
        return True

    return behaviour


def bare_lf(server: CraftedServer, conn: socket.socket, head: bytes) -> bool:
    body = detail()
    send(
        conn, b"HTTP/1.1 200 OK\nContent-Type: application/json\nContent-Length: %d\n\n%s" % (len(body), body)
    )
    return True


def never_answers(server: CraftedServer, conn: socket.socket, head: bytes) -> bool:
    while server.sleep(0.05):
        pass
    return False


# ------------------------------------------------------------------------------------------- helpers
@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def connect(monkeypatch: pytest.MonkeyPatch) -> Callable[..., WorkflowRunHook]:
    """A Dify hook on a crafted server: one attempt, a 10 s deadline (room for a loaded machine)."""
    hooks: list[WorkflowRunHook] = []

    def make(url: str, conn_id: str = "hostile", password: str = KEY, **options: Any) -> WorkflowRunHook:
        extra = options.pop("extra", {})
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{conn_id.upper()}",
            json.dumps({"conn_type": "dify", "host": f"{url}/v1", "password": password, "extra": extra}),
        )
        hook = WorkflowRunHook(conn_id, **{"timeout": 10.0, "retry_limit": 1, **options})
        hooks.append(hook)
        return hook

    yield make
    for hook in hooks:
        hook.close()


def get_run(mode: str, hook: WorkflowRunHook, run_id: str = RUN) -> Any:
    if mode == "sync":
        return hook.get_run(run_id)
    return asyncio.run(hook.aget_run(run_id))


def fails_within_bound(
    mode: str, hook: WorkflowRunHook, expected: type[WorkflowRunError]
) -> WorkflowRunError:
    started = time.monotonic()
    with pytest.raises(expected) as caught:
        get_run(mode, hook)
    assert time.monotonic() - started < hook.timeout * hook.retry_limit + SLACK
    return caught.value


# ------------------------------------------------------------------------------ slow and endless servers
@pytest.mark.parametrize("behaviour", [slowloris, endless_1xx, trickle_body], ids=lambda b: b.__name__)
def test_a_trickling_server_cannot_hold_a_call_past_its_deadline(
    mode: str, connect: Callable[..., WorkflowRunHook], behaviour: Any
) -> None:
    with CraftedServer(behaviour) as server:
        error = fails_within_bound(mode, connect(server.url, timeout=TIMEOUT), WorkflowRunConnectionError)
    assert f"within the {TIMEOUT:g} s deadline" in str(error)


@pytest.mark.parametrize("behaviour", [endless_chunked, ten_gigabytes], ids=lambda b: b.__name__)
def test_an_endless_or_huge_body_stops_at_the_cap(
    mode: str, connect: Callable[..., WorkflowRunHook], behaviour: Any
) -> None:
    with CraftedServer(behaviour) as server:
        hook = connect(server.url, timeout=30.0, max_response_bytes=1 << 20, retry_limit=3, retry_delay=0)
        fails_within_bound(mode, hook, ResponseTooLargeError)
        # A cap violation is not retried: the next answer would be as large.
        assert len(server.requests) == 1


def test_a_gzip_bomb_is_never_inflated_whole(mode: str, connect: Callable[..., WorkflowRunHook]) -> None:
    gzip_bomb()
    with CraftedServer(gzip_bomb_reply) as server:
        hook = connect(server.url, timeout=30.0, max_response_bytes=1 << 20)
        tracemalloc.start()
        try:
            error = fails_within_bound(mode, hook, ResponseTooLargeError)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert "max_response_bytes=1048576" in str(error)
    # 1 GiB inflated whole would be 1,024 MiB; the cap stops reading after at most one inflated chunk.
    assert peak < 256 * 1024 * 1024, f"peak {peak / 2**20:.0f} MiB"


def test_a_slow_host_does_not_starve_the_others(connect: Callable[..., WorkflowRunHook]) -> None:
    async def scenario(slow: WorkflowRunHook, healthy: WorkflowRunHook) -> tuple[bool, list[Any]]:
        stuck = [asyncio.create_task(slow.aget_run(RUN)) for _ in range(100)]
        await asyncio.sleep(0.2)
        run = await healthy.aget_run(RUN)
        assert run.run_id == RUN
        all_still_stuck = not any(task.done() for task in stuck)
        return all_still_stuck, await asyncio.gather(*stuck, return_exceptions=True)

    with CraftedServer(never_answers) as slow_server, CraftedServer(answering(detail())) as healthy_server:
        slow = connect(slow_server.url, conn_id="slow", timeout=5.0)
        healthy = connect(healthy_server.url, conn_id="healthy", timeout=5.0)
        all_still_stuck, outcomes = asyncio.run(scenario(slow, healthy))
    # The healthy host was answered while every poll of the slow one was still waiting.
    assert all_still_stuck
    assert all(isinstance(outcome, WorkflowRunConnectionError) for outcome in outcomes)


# ------------------------------------------------------------------------------- answers that lie or echo
def test_an_answer_about_another_run_is_never_taken_for_this_one(
    mode: str, connect: Callable[..., WorkflowRunHook]
) -> None:
    with CraftedServer(answering(detail(OTHER_RUN, "succeeded"))) as server:
        error = fails_within_bound(mode, connect(server.url), InvalidResponseError)
    assert error.field == "run_id"
    assert OTHER_RUN in str(error)


def test_deeply_nested_json_is_a_typed_error(mode: str, connect: Callable[..., WorkflowRunHook]) -> None:
    body = b"[" * 200_000 + b"]" * 200_000
    with CraftedServer(answering(body)) as server:
        error = fails_within_bound(mode, connect(server.url), InvalidResponseError)
    assert "nested too deeply" in str(error)


def test_a_401_that_echoes_the_key_does_not_leak_it(
    mode: str, connect: Callable[..., WorkflowRunHook], caplog: pytest.LogCaptureFixture
) -> None:
    body = json.dumps({"code": "unauthorized", "message": f"Invalid key {KEY} for this app", "status": 401})
    with CraftedServer(answering(body.encode(), "401 Unauthorized")) as server:
        error = fails_within_bound(mode, connect(server.url), AuthenticationError)
    assert "Invalid key *** for this app" in str(error)
    for text in (str(error), repr(error.args), *(record.getMessage() for record in caplog.records)):
        assert KEY not in text


def test_a_key_echoed_to_a_trigger_stays_out_of_its_event(connect: Callable[..., WorkflowRunHook]) -> None:
    body = json.dumps({"code": "unauthorized", "message": f"bad key {KEY}", "status": 401}).encode()
    with CraftedServer(answering(body, "401 Unauthorized")) as server:
        connect(server.url, conn_id="echo")
        trigger = WorkflowRunTrigger(conn_id="echo", run_id=RUN, end_time=time.time() + 30, poll_interval=1)
        event = asyncio.run(_first_event(trigger))
    assert event["error_type"] == "authentication"
    assert KEY not in json.dumps(event)
    assert "bad key ***" in event["message"]


@pytest.mark.parametrize(
    "password",
    ["sk-abc\r\nX-Injected: yes", "sk-abc\nsecond-line", "sk-clé-non-ascii", "sk abc zzblank"],
    ids=["crlf", "lf", "non-ascii", "spaces"],
)
def test_a_key_no_header_can_carry_is_refused_before_any_request(
    mode: str, connect: Callable[..., WorkflowRunHook], password: str
) -> None:
    with CraftedServer(answering(detail())) as server:
        error = fails_within_bound(mode, connect(server.url, password=password), InvalidInputError)
        assert server.connections == 0
    assert "copy the key again" in str(error)
    for part in ("sk-abc", "Injected", "second-line", "clé", "zzblank"):
        assert part not in str(error)


def test_both_paths_read_a_bare_lf_server_alike(connect: Callable[..., WorkflowRunHook]) -> None:
    with CraftedServer(bare_lf) as server:
        outcomes = []
        for mode in ("sync", "async"):
            try:
                outcomes.append(get_run(mode, connect(server.url, conn_id=f"lf_{mode}")).status)
            except WorkflowRunError as exc:
                outcomes.append(type(exc))
    assert outcomes[0] == outcomes[1], outcomes


# ------------------------------------------------------------------------------- the trigger's own bounds
async def _first_event(trigger: WorkflowRunTrigger) -> dict[str, Any]:
    async for event in trigger.run():
        return dict(event.payload)
    raise AssertionError("the trigger fired no event")


def test_the_trigger_keeps_the_run_deadline_while_a_poll_hangs(
    connect: Callable[..., WorkflowRunHook],
) -> None:
    with CraftedServer(slowloris) as server:
        connect(server.url, conn_id="hangs")
        trigger = WorkflowRunTrigger(
            conn_id="hangs",
            run_id=RUN,
            end_time=time.time() + 1.5,
            poll_interval=1,
            hook_params={"timeout": 600.0, "retry_limit": 1},
        )
        started = time.monotonic()
        event = asyncio.run(_first_event(trigger))
    assert event["status"] == "timeout"
    assert time.monotonic() - started < 1.5 + SLACK


def test_the_trigger_reports_nan_and_huge_numbers_without_crashing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    polls = iter(["running", "running", "succeeded"])

    def chenyu(server: CraftedServer, conn: socket.socket, head: bytes) -> bool:
        status = next(polls, "succeeded")
        data = {
            "status": status,
            "progress_percent": float("nan"),
            "queue_info": {"position": 0, "estimated_wait_sec": 1e308},
            "actual_execution_duration_sec": float("inf"),
        }
        body = json.dumps({"code": 0, "msg": "ok", "data": data}).encode()
        if "/workflow/run/info" in head.split(b"\r\n")[0].decode():
            body = json.dumps({"code": 0, "msg": "ok", "data": {"run_order_id": "wfrun_abc"}}).encode()
        send(conn, json_reply(body))
        return True

    with CraftedServer(chenyu) as server:
        monkeypatch.setenv(
            "AIRFLOW_CONN_ODD", json.dumps({"conn_type": "chenyu", "host": server.url, "password": KEY})
        )
        trigger = WorkflowRunTrigger(
            conn_id="odd", run_id="wfrun_abc", end_time=time.time() + 60, poll_interval=0.1
        )
        event = asyncio.run(_first_event(trigger))
    assert event["status"] == RunStatus.SUCCEEDED.value


# --------------------------------------------------------------------------------------- TLS and proxies
@cache
def _certificate(directory: str) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (cert path, key path)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wfrun test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = Path(directory) / "cert.pem", Path(directory) / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(cert_path), str(key_path)


@pytest.fixture
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CraftedServer, str]]:
    cert, key = _certificate(str(tmp_path_factory.getbasetemp()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with CraftedServer(answering(detail()), tls=context) as server:
        yield server, cert


def test_a_private_ca_is_trusted_through_the_verify_extra(
    mode: str, connect: Callable[..., WorkflowRunHook], tls_server: tuple[CraftedServer, str]
) -> None:
    server, ca_bundle = tls_server
    assert get_run(mode, connect(server.url, extra={"verify": ca_bundle})).run_id == RUN


def test_an_untrusted_certificate_fails_before_the_request_is_sent(
    mode: str, connect: Callable[..., WorkflowRunHook], tls_server: tuple[CraftedServer, str]
) -> None:
    server, _ = tls_server
    error = fails_within_bound(mode, connect(server.url), WorkflowRunConnectionError)
    assert error.request_sent is False
    assert server.requests == []


def test_a_missing_ca_bundle_is_bad_input(mode: str, connect: Callable[..., WorkflowRunHook]) -> None:
    hook = connect("https://127.0.0.1:9", extra={"verify": "/nonexistent/ca.pem"})
    error = fails_within_bound(mode, hook, InvalidInputError)
    assert "verify" in str(error)
    assert "/nonexistent/ca.pem" in str(error)


def proxy(server: CraftedServer, conn: socket.socket, head: bytes) -> bool:
    """A forward proxy that answers itself; the request line it saw is kept in ``requests``."""
    send(conn, json_reply(detail()))
    return True


@pytest.mark.parametrize("how", ["extra", "environment"])
def test_a_proxy_is_used_on_both_paths_even_when_set_after_the_first_call(
    mode: str, connect: Callable[..., WorkflowRunHook], monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with CraftedServer(answering(detail())) as target, CraftedServer(proxy) as forward:
        assert get_run(mode, connect(target.url, conn_id="before")).run_id == RUN
        assert len(target.requests) == 1
        if how == "environment":
            monkeypatch.setenv("HTTP_PROXY", forward.url)
            hook = connect(target.url, conn_id="after")
        else:
            hook = connect(target.url, conn_id="after", extra={"proxy": forward.url})
        assert get_run(mode, hook).run_id == RUN
        assert len(target.requests) == 1, "the request bypassed the proxy"
        request_line = forward.requests[-1].split(b"\r\n")[0].decode()
    assert request_line == f"GET {target.url}/v1/workflows/run/{RUN} HTTP/1.1"


def test_no_proxy_is_honoured_on_both_paths(
    mode: str, connect: Callable[..., WorkflowRunHook], monkeypatch: pytest.MonkeyPatch
) -> None:
    with CraftedServer(answering(detail())) as target, CraftedServer(proxy) as forward:
        monkeypatch.setenv("HTTP_PROXY", forward.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert get_run(mode, connect(target.url)).run_id == RUN
        assert len(target.requests) == 1
        assert forward.requests == []


def test_trust_env_false_ignores_the_environment_proxy(
    mode: str, connect: Callable[..., WorkflowRunHook], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with CraftedServer(answering(detail())) as target, CraftedServer(proxy) as forward:
        monkeypatch.setenv("HTTP_PROXY", forward.url)
        assert get_run(mode, connect(target.url, extra={"trust_env": "false"})).run_id == RUN
        assert forward.requests == []


# ------------------------------------------------------------------------------------ request bodies
def test_a_multipart_upload_is_sent_alike_on_both_paths(
    mode: str, connect: Callable[..., WorkflowRunHook]
) -> None:
    """The adapter seam for uploads: a form with a file, encoded once, sent as is by either transport."""
    upload = ApiRequest(
        "POST",
        "/files/upload",
        form={"user": "airflow"},
        files={"file": ("a.txt", b"hello\x00bytes", "text/plain")},
    )
    with CraftedServer(answering(b'{"id": "file-1"}')) as server:
        hook = connect(server.url)
        if mode == "sync":
            hook.get_platform_connection()
            answer = hook._call(upload, None)
        else:

            async def call() -> Any:
                await hook.aget_platform_connection()
                return await hook._acall(upload, None)

            answer = asyncio.run(call())
        head, body = server.requests[-1].decode(), server.bodies[-1]
    assert answer == {"id": "file-1"}
    assert head.startswith("POST /v1/files/upload HTTP/1.1")
    boundary = re.search(r"(?i)content-type: multipart/form-data; boundary=(\S+)", head)
    assert boundary is not None
    assert f"Authorization: Bearer {KEY}".lower() in head.lower()
    assert b'name="user"\r\n\r\nairflow' in body
    assert b'name="file"; filename="a.txt"\r\nContent-Type: text/plain\r\n\r\nhello\x00bytes' in body
    assert body.rstrip().endswith(f"--{boundary.group(1)}--".encode())


def test_a_settlement_about_another_run_is_not_used(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def chenyu(server: CraftedServer, conn: socket.socket, head: bytes) -> bool:
        if b"/workflow/run/info" in head.split(b"\r\n")[0]:
            data = {
                "run_order_id": "wfrun_someoneelse",
                "final_amount": "9.00000000",
                "quote_currency": "CNY",
            }
        else:
            data = {"status": "succeeded", "total_cost": 0.5, "outputs": {"text": "done"}}
        send(conn, json_reply(json.dumps({"code": 0, "msg": "ok", "data": data}).encode()))
        return True

    with CraftedServer(chenyu) as server:
        monkeypatch.setenv(
            "AIRFLOW_CONN_STALE_BILL",
            json.dumps({"conn_type": "chenyu", "host": server.url, "password": KEY}),
        )
        run = get_run(mode, WorkflowRunHook("stale_bill", timeout=10.0, retry_limit=1), "wfrun_mine")
    assert run.status is RunStatus.SUCCEEDED
    assert run.settlement is None
    assert run.outputs == {"text": "done"}


def accepts_cancels_then_forgets(server: CraftedServer, conn: socket.socket, head: bytes) -> bool:
    """Dify's stop answers success, then the run is unknown (404 ``not_found``)."""
    if head.startswith(b"POST"):
        send(conn, json_reply(b'{"result": "success"}'))
    else:
        body = b'{"code": "not_found", "message": "Workflow run not found", "status": 404}'
        send(conn, json_reply(body, "404 Not Found"))
    return True


def test_a_run_gone_after_its_cancel_is_not_found_where_the_platform_never_removes_runs(
    mode: str, connect: Callable[..., WorkflowRunHook]
) -> None:
    """Only an adapter that says a cancel removes runs (ComfyUI) makes a vanished run a canceled one."""

    def cancel(hook: WorkflowRunHook) -> Any:
        if mode == "sync":
            return hook.cancel_run(RUN, task_id="t-1")
        return asyncio.run(hook.acancel_run(RUN, task_id="t-1"))

    with CraftedServer(accepts_cancels_then_forgets) as server:
        hook = connect(server.url)
        with pytest.raises(RunNotFoundError):
            cancel(hook)
        assert [head.split(b" ")[0] for head in server.requests] == [b"POST", b"GET"]
