"""What the connection limits cost a beacon: a bare ASGI app under uvicorn, stock against limited.

``stock`` is ``raw_asgi.py`` as ``throughput.py``'s ``limit`` target runs it (httptools, uvloop, no access
log); ``limited`` is the same app behind :class:`proxy.bodybudget.BodyBudget` with the protocol and
options of :func:`proxy.connlimits.uvicorn_options` at their defaults. The app does nothing, so any
difference is the limits' own per-request cost at its most visible (Beacon Proxy spends ~175 us on a
single-event request). Rounds alternate the two, each server started fresh and pinned to one core and
wrk (one thread, 32 keep-alive connections, or a new connection per request with ``--close``) to
another; read the ratio of the medians. On a busy machine wrk's figures swing more than the difference,
so ``--in-process`` instead feeds the same request to each protocol over a fake transport, the app's
answer included, and compares CPU time per request (``time.process_time``, the lowest of the rounds).

    .venv/bin/python benchmarks/connlimits_bench.py --rounds 5 --duration 5 [--close]
    .venv/bin/python benchmarks/connlimits_bench.py --in-process [--requests 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TARGETS = ("stock", "limited")
BODY = (
    '{"site":"demo","type":"pageview","url":"https://www.example.com/pricing?utm_source=news&utm_medium='
    'email&ref=abc","referrer":"https://news.example.org/story/123","title":"Pricing - Example",'
    '"props":{"plan":"pro","seats":5,"trial":true},"screen":{"width":1920,"height":1080},"language":'
    '"en-GB","client_id":"6f1c2a9e-3b7d-4c1e-9a8f-2d5e6b7c8d9e","session_id":"s-42","consent":'
    '{"analytics":true,"marketing":false}}'
)
WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = [[{body}]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Origin"] = "https://www.example.com"
wrk.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"
{close}
"""


def serve(target: str, port: int) -> None:
    import uvicorn

    sys.path.insert(0, str(REPO))
    from benchmarks.raw_asgi import app
    from config.settings import ServerSettings
    from proxy.bodybudget import BodyBudget
    from proxy.connlimits import uvicorn_options

    common = {"host": "127.0.0.1", "port": port, "loop": "uvloop", "access_log": False}
    common |= {"server_header": False, "log_level": "warning"}
    if target == "stock":
        uvicorn.run(app, http="httptools", **common)
        return
    server = ServerSettings()
    guarded = BodyBudget(app, budget=server.body_budget_bytes, max_body=server.max_body_bytes)
    uvicorn.run(guarded, **common, **uvicorn_options(server))


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes += 1

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 8080) if name in ("sockname", "peername") else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def cpu_per_request(target: str, requests: int) -> float:
    """CPU seconds per request through one keep-alive connection: parse, app, answer."""
    import uvicorn
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    from benchmarks.raw_asgi import app
    from config.settings import ServerSettings
    from proxy.bodybudget import BodyBudget
    from proxy.connlimits import ConnectionGuard, ConnectionLimits, LimitedHttpToolsProtocol

    loop = asyncio.get_running_loop()
    state = ServerState()
    server = ServerSettings()
    if target == "stock":
        config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False)  # type: ignore[arg-type]
        proto: HttpToolsProtocol = HttpToolsProtocol(config, state, {}, loop)
    else:
        guarded = BodyBudget(app, budget=server.body_budget_bytes, max_body=server.max_body_bytes)
        config = uvicorn.Config(guarded, lifespan="off", log_config=None, access_log=False)  # type: ignore[arg-type]
        limits = ConnectionLimits(
            server.max_connections,
            server.idle_timeout_seconds,
            server.header_timeout_seconds,
            server.body_timeout_seconds,
            server.max_header_bytes,
        )
        proto = LimitedHttpToolsProtocol(config, state, {}, loop, guard=ConnectionGuard(limits))
    transport = FakeTransport()
    proto.connection_made(transport)
    request = (
        b"POST /v1/events HTTP/1.1\r\nHost: stats.example.com\r\nContent-Type: application/json\r\n"
        b"Origin: https://www.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0\r\n"
        b"Accept: */*\r\nAccept-Language: en-GB,en;q=0.9\r\nContent-Length: %d\r\n\r\n%s"
        % (len(BODY), BODY.encode())
    )
    start = time.process_time()
    for _ in range(requests):
        answered = transport.writes + 2  # status line and headers, then the (empty) body
        proto.data_received(request)
        while transport.writes < answered:
            await asyncio.sleep(0)
    spent = time.process_time() - start
    proto.connection_lost(None)
    return spent / requests


def in_process(rounds: int, requests: int) -> None:
    import uvloop

    sys.path.insert(0, str(REPO))
    best: dict[str, float] = {t: float("inf") for t in TARGETS}
    for r in range(rounds):
        for target in TARGETS if r % 2 == 0 else tuple(reversed(TARGETS)):
            seconds = uvloop.run(cpu_per_request(target, requests))
            best[target] = min(best[target], seconds)
            print(f"round {r + 1} {target:8} {seconds * 1e6:7.2f} us CPU per request", flush=True)
    stock, limited = best["stock"], best["limited"]
    print(f"lowest: stock {stock * 1e6:.2f} us, limited {limited * 1e6:.2f} us per request")
    print(f"limited - stock = {(limited - stock) * 1e6:+.2f} us per request ({limited / stock:.3f}x)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pinned(cpu: int | None, cmd: list[str]) -> list[str]:
    return ["taskset", "-c", str(cpu), *cmd] if cpu is not None and shutil.which("taskset") else cmd


@contextlib.contextmanager
def started(target: str, cpu: int | None) -> Iterator[int]:
    port = free_port()
    cmd = pinned(cpu, [sys.executable, __file__, "--serve", target, "--port", str(port)])
    proc = subprocess.Popen(cmd, cwd=REPO)
    try:
        deadline = time.monotonic() + 30
        while True:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1),
            ):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{target} did not start")
            time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wrk(port: int, script: Path, seconds: int, cpu: int | None) -> float:
    cmd = ["wrk", "-t1", "-c32", f"-d{seconds}s", "-s", str(script), f"http://127.0.0.1:{port}/v1/events"]
    out = subprocess.run(pinned(cpu, cmd), capture_output=True, text=True, check=True).stdout
    if re.search(r"Non-2xx or 3xx responses", out):
        raise RuntimeError(f"wrk saw errors:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None:
        raise RuntimeError(f"no Requests/sec in wrk's output:\n{out}")
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5, help="seconds per measurement")
    parser.add_argument("--close", action="store_true", help="a new connection per request")
    parser.add_argument("--in-process", action="store_true", help="CPU per request over a fake transport")
    parser.add_argument("--requests", type=int, default=50_000, help="per round, with --in-process")
    parser.add_argument("--serve", choices=TARGETS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    if args.in_process:
        in_process(args.rounds, args.requests)
        return
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk (make bench installs it)")
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, wrk_cpu = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    print(f"server on CPU {server_cpu}, wrk on CPU {wrk_cpu}; {'close' if args.close else 'keep-alive'}")
    results: dict[str, list[float]] = {t: [] for t in TARGETS}
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        close = 'wrk.headers["Connection"] = "close"' if args.close else ""
        script.write_text(WRK_SCRIPT.format(body=BODY, close=close))
        for r in range(args.rounds):
            for target in TARGETS if r % 2 == 0 else reversed(TARGETS):
                with started(target, server_cpu) as port:
                    wrk(port, script, 1, wrk_cpu)  # warm-up
                    rate = wrk(port, script, args.duration, wrk_cpu)
                results[target].append(rate)
                print(f"round {r + 1} {target:8} {rate:10,.0f} req/s", flush=True)
    stock, limited = (statistics.median(results[t]) for t in TARGETS)
    per_request_us = (1 / limited - 1 / stock) * 1e6
    print(f"median: stock {stock:,.0f} req/s, limited {limited:,.0f} req/s")
    print(f"limited / stock = {limited / stock:.3f}; {per_request_us:+.2f} us per request")


if __name__ == "__main__":
    main()
