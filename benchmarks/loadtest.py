"""``make loadtest`` and ``make capacity``: Locust, headless, against a running proxy, with its HTML
report, CSV stats and the reconciliation written under ``benchmarks/results/``.

    python benchmarks/loadtest.py --host http://127.0.0.1:8080 --users 50 --rate 200 --duration 1m
    python benchmarks/loadtest.py --workers 2 ...          # one master and two worker processes
    python benchmarks/loadtest.py --capacity ...           # the capacity finder (capacity.py)
    python benchmarks/loadtest.py ... -- --mix pageview=1 --bot-share 0   # more Locust options

``--workers N`` runs Locust distributed: one master (it only coordinates and adds up) and N worker
processes on this machine, talking over a free loopback port. Each worker is one process with one core's
worth of load; to load a multi-replica deployment further, start more workers on other machines
(``locust -f benchmarks/locustfile.py --worker --master-host THIS_HOST``) and pass ``--expect-workers``
after ``--``. The admin token, for counting stored rows, is ``--admin-token``, ``BEACON_ADMIN_TOKEN``, or
for a proxy on this machine ``<data dir>/admin_token`` (what ``make run`` generated).
The exit status is Locust's: 0 when no request failed and the reconciliation did not disagree,
1 with failures, 3 when the proxy's counters disagree with what the run saw acknowledged.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def is_local(host: str) -> bool:
    name = urlsplit(host).hostname or ""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def admin_token(args: argparse.Namespace) -> tuple[str, str]:
    """The token and where it came from ("" if none)."""
    if args.admin_token:
        return args.admin_token, "--admin-token"
    for var in ("BEACON_ADMIN_TOKEN", "BEACONPROXY_SERVER__ADMIN_TOKEN"):
        if os.environ.get(var):
            return os.environ[var], var
    path = args.data_dir / "admin_token"
    if is_local(args.host) and path.is_file():
        return path.read_text().strip(), str(path)
    return "", ""


def check_proxy(host: str) -> str | None:
    try:
        with urllib.request.urlopen(f"{host.rstrip('/')}/healthz", timeout=10) as r:
            return None if r.status == 200 else f"/healthz answered {r.status}"
    except urllib.error.HTTPError as exc:
        return f"/healthz answered {exc.code}"
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="http://127.0.0.1:8080", help="the proxy (or its load balancer)")
    parser.add_argument("--users", type=int, default=50, help="simulated users")
    parser.add_argument("--rate", type=float, default=200, help="requests/s of all users together; 0: think")
    parser.add_argument("--duration", default="1m", help="Locust's --run-time: 30s, 5m, 1h30m")
    parser.add_argument(
        "--spawn-rate", type=float, default=0, help="users started per second (0: all at once)"
    )
    parser.add_argument("--workers", type=int, default=0, help="Locust worker processes (0: one process)")
    parser.add_argument("--capacity", action="store_true", help="run the capacity finder instead")
    parser.add_argument("--results-dir", type=Path, default=BENCH / "results")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("BEACONPROXY_DATA_DIR", "data")))
    parser.add_argument("--admin-token", default="", help="to count stored rows (see above)")
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("BEACON_ADMIN_URL", ""),
        help="the proxy's admin listener (default for a local proxy: unix:<data dir>/run/admin.sock)",
    )
    parser.add_argument(
        "--stop-timeout", type=float, default=10, help="seconds for requests in flight at the end"
    )
    parser.add_argument("locust_args", nargs="*", help="after --: more Locust options")
    args = parser.parse_args(argv)

    if not args.host.startswith(("http://", "https://")):
        parser.error(f"HOST must be a URL such as http://127.0.0.1:8080 (got {args.host!r})")
    problem = check_proxy(args.host)
    if problem:
        print(f"no proxy answering at {args.host} ({problem}): start one with `make run`, or set HOST=URL")
        return 2
    token, token_source = admin_token(args)
    kind = "capacity" if args.capacity else "loadtest"
    prefix = args.results_dir / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
    locustfile = BENCH / ("capacity.py" if args.capacity else "locustfile.py")
    common = [sys.executable, "-m", "locust", "-f", str(locustfile)]
    run = [
        "--headless",
        "--host",
        args.host,
        "--stop-timeout",
        f"{args.stop_timeout:g}",
        "--html",
        f"{prefix}.html",
        "--csv",
        str(prefix),
        "--results-prefix",
        str(prefix),
        "--only-summary",
    ]
    if not args.capacity:
        spawn = args.spawn_rate or args.users
        run += [
            "-u",
            str(args.users),
            "-r",
            f"{spawn:g}",
            "-t",
            args.duration,
            "--request-rate",
            f"{args.rate:g}",
        ]
    env = {**os.environ}
    if token:
        env["BEACON_ADMIN_TOKEN"] = token  # by environment, not on a command line others can read
    admin_url: str = args.admin_url
    if not admin_url and is_local(args.host) and (args.data_dir / "run" / "admin.sock").exists():
        admin_url = f"unix:{(args.data_dir / 'run' / 'admin.sock').resolve()}"
    if admin_url:
        env["BEACON_ADMIN_URL"] = admin_url
    print(
        f"{kind} against {args.host}"
        + ("" if args.capacity else f": {args.users} users, {args.rate:g} requests/s, {args.duration}")
        + (f", {args.workers} Locust workers" if args.workers else "")
        + "\nstored rows: "
        + (
            f"counted with the admin token from {token_source}, via {admin_url}"
            if token and admin_url
            else "not counted (no admin token, or no admin listener given)"
        ),
        flush=True,
    )
    args.results_dir.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        if args.workers:
            port = free_port()
            worker = [*common, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)]
            for _ in range(args.workers):
                procs.append(subprocess.Popen(worker, cwd=REPO, env=env, stdout=subprocess.DEVNULL))
            master = [
                "--master",
                "--master-bind-host",
                "127.0.0.1",
                "--master-bind-port",
                str(port),
                "--expect-workers",
                str(args.workers),
            ]
            if "--expect-workers-max-wait" not in args.locust_args:
                master += ["--expect-workers-max-wait", "60"]
            cmd = [*common, *master, *run, *args.locust_args]
        else:
            cmd = [*common, *run, *args.locust_args]
        main_proc = subprocess.Popen(cmd, cwd=REPO, env=env)
        procs.insert(0, main_proc)
        code = main_proc.wait()
        deadline = time.monotonic() + 30  # workers leave when the master quits
        for p in procs[1:]:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(max(0.1, deadline - time.monotonic()))
    except KeyboardInterrupt:
        code = 130
    finally:
        stop(procs)
    print(f"report: {prefix}.html; stats: {prefix}_stats.csv; reconciliation: {prefix}_reconcile.txt")
    if args.capacity:
        print(f"capacity table: {prefix}_capacity.txt")
    return code


if __name__ == "__main__":
    sys.exit(main())
