"""What the connection limits cost a beacon: a bare ASGI app under uvicorn, stock against limited.

``stock`` is ``raw_asgi.py`` as ``throughput.py``'s ``limit`` target runs it (httptools, uvloop, no access
log); ``limited`` is the same app with the protocol and options of
:func:`proxy.connlimits.uvicorn_options` at their defaults. The app does nothing, so any difference is
the limits' own per-request cost at its most visible (Beacon Proxy spends ~175 us on a single-event
request). The body budget is not in it: the ingestion endpoints reserve with the headers they read
anyway (a comparison and two additions), and its ASGI guard serves only the other routes.

By default rounds alternate the two, each server started fresh and pinned to one core and wrk (one
thread, 32 keep-alive connections, or a new connection per request with ``--close``) to another; read the
ratio of the medians. On a busy machine wrk's figures swing more than the difference, so
``--instructions`` counts instead: the same ~600-byte beacon fed to each protocol over a fake transport,
the app's answer included, run under ``valgrind --tool=callgrind`` for two numbers of requests; the
difference divided by the difference in requests is the instructions per request, which other processes
do not change.

    .venv/bin/python benchmarks/connlimits_bench.py --rounds 5 --duration 5 [--close]
    .venv/bin/python benchmarks/connlimits_bench.py --instructions
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
    from proxy.connlimits import uvicorn_options

    common = {"host": "127.0.0.1", "port": port, "loop": "uvloop", "access_log": False}
    common |= {"server_header": False, "log_level": "warning"}
    if target == "stock":
        uvicorn.run(app, http="httptools", **common)
        return
    server = ServerSettings()
    uvicorn.run(app, **common, **uvicorn_options(server))


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes += 1

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 8080) if name in ("sockname", "peername") else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


REQUEST = (
    b"POST /v1/events HTTP/1.1\r\nHost: stats.example.com\r\nContent-Type: application/json\r\n"
    b"Origin: https://www.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0\r\n"
    b"Accept: */*\r\nAccept-Language: en-GB,en;q=0.9\r\n%sContent-Length: %d\r\n\r\n%s"
)


async def feed(target: str, close: bool, requests: int) -> None:
    """``requests`` beacons through ``target``'s protocol: on one connection, or one connection each."""
    import uvicorn
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    from benchmarks.raw_asgi import app
    from config.settings import ServerSettings
    from proxy.connlimits import uvicorn_options

    loop = asyncio.get_running_loop()
    state = ServerState()
    server = ServerSettings()
    factory: Any = uvicorn_options(server)["http"] if target == "limited" else HttpToolsProtocol
    config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False)  # type: ignore[arg-type]
    request = REQUEST % (b"Connection: close\r\n" if close else b"", len(BODY), BODY.encode())
    connections = requests if close else 1
    for _ in range(connections):
        proto = factory(config=config, server_state=state, app_state={}, _loop=loop)
        transport = FakeTransport()
        proto.connection_made(transport)
        for _ in range(requests // connections):
            answered = transport.writes + 2  # status line and headers, then the (empty) body
            proto.data_received(request)
            while transport.writes < answered:
                await asyncio.sleep(0)
        proto.connection_lost(None)


def count(target: str, close: bool, requests: int) -> int:
    """Instructions (callgrind's Ir) of a whole run of ``feed``."""
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__]
    cmd += ["--feed", target, "--requests", str(requests)] + (["--close"] if close else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO).stderr
    match = re.search(r"Collected : (\d+)", out)
    if match is None:
        raise RuntimeError(f"no instruction count from valgrind:\n{out[-2000:]}")
    return int(match.group(1))


def instructions(few: int, many: int) -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is needed: apt-get install valgrind")
    for close in (False, True):
        per = {t: (count(t, close, many) - count(t, close, few)) / (many - few) for t in TARGETS}
        shape = "a new connection per request" if close else "keep-alive"
        print(
            f"{shape}: stock {per['stock']:,.0f}, limited {per['limited']:,.0f} instructions per request"
            f" ({per['limited'] - per['stock']:+,.0f}, {per['limited'] / per['stock']:.3f}x)",
            flush=True,
        )


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
    parser.add_argument("--instructions", action="store_true", help="count instructions with valgrind")
    parser.add_argument("--feed", choices=TARGETS, help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--serve", choices=TARGETS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    if args.feed:
        import uvloop

        sys.path.insert(0, str(REPO))
        uvloop.run(feed(args.feed, args.close, args.requests))
        return
    if args.instructions:
        instructions(1000, 4000)
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
