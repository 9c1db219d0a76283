"""Step profile: time per pipeline step per event, in-process, so a regression points at a step.

Runs the proxy's real pipeline (``build_runtime`` with default settings, no server, no store) over the
same beacons ``throughput.py`` sends, timing every step of every run (the server samples one request
in 16), and prints microseconds per run for each step, the per-event total, and what the work around
the pipeline costs (parsing the body, encoding spool records).

    python benchmarks/step_profile.py [--events-per-request 100] [--requests 300] [--geoip-dir data/geoip]

With ``./data/geoip`` present (``make geoip``) geo lookups are real. Numbers are from a hot loop: inside
a server the same work costs more (scheduling, cache misses); compare runs with each other.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH_DIR))

import throughput  # noqa: E402

from config.settings import load_settings  # noqa: E402
from proxy import pipeline  # noqa: E402
from proxy.parse import parse_body  # noqa: E402
from proxy.pipeline import RequestInfo  # noqa: E402
from proxy.runtime import build_runtime  # noqa: E402
from sinks.codec import encode_event  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events-per-request", type=int, default=100)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3, help="timed passes over the requests (best kept)")
    parser.add_argument("--geoip-dir", type=Path, default=REPO / "data" / "geoip")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="beacon-steps-") as tmp:
        env = {"BEACONPROXY_DATA_DIR": tmp}
        geoip = sorted(args.geoip_dir.glob("*.mmdb")) if args.geoip_dir.is_dir() else []
        if geoip:
            env["BEACONPROXY_GEOIP__DATABASES"] = json.dumps([str(p) for p in geoip])
        rt = build_runtime(load_settings(environ=env), role="worker")  # no sink: the pipeline only
        uas = throughput.make_user_agents(200)
        ips = throughput.make_client_ips(300, random.Random(throughput.SEED))
        requests_file = Path(tmp) / "requests.tsv"
        throughput.write_requests_file(requests_file, args.events_per_request, args.requests, uas, ips)
        requests = []
        for line in requests_file.read_text().splitlines():
            ua, ip, body = line.split("\t", 2)
            requests.append((ua, ip, body.encode()))
        n_events = len(requests) * args.events_per_request

        def run_all() -> tuple[float, float, float]:
            t_parse = t_pipe = t_encode = 0.0
            for ua, ip, body in requests:
                t0 = time.perf_counter()
                beacons = parse_body(body, rt.limits)
                t1 = time.perf_counter()
                info = RequestInfo(
                    peer="127.0.0.1",
                    forwarded=ip,
                    user_agent=ua,
                    origin="https://www.example.com",
                    accept_language="en-GB,en;q=0.9",
                )
                out = rt.pipeline.process(info, beacons)
                t2 = time.perf_counter()
                [encode_event(e) for e in out.events]
                t3 = time.perf_counter()
                t_parse, t_pipe, t_encode = t_parse + t1 - t0, t_pipe + t2 - t1, t_encode + t3 - t2
            return t_parse, t_pipe, t_encode

        run_all()  # warm the caches, as a running server's are
        best = min((run_all() for _ in range(args.rounds)), key=sum)
        pipeline._run = pipeline._run_timed  # type: ignore[assignment]  # time every run of every step
        rt.metrics.step_ns.clear()
        rt.metrics.step_runs.clear()
        run_all()

    print("Pipeline step profile (hot loop, one process; compare runs, not absolute numbers)")
    print(
        f"data: {len(requests)} requests x {args.events_per_request} events, {len(uas)} User-Agents, "
        f"geo: {', '.join(p.name for p in geoip) if geoip else 'none'}"
    )
    print(f"{'step':<24} {'us/run':>8} {'runs':>8} {'us/event':>9}")
    total_ns = 0
    for name, runs in sorted(rt.metrics.step_runs.items(), key=lambda kv: -rt.metrics.step_ns[kv[0]]):
        ns = rt.metrics.step_ns[name]
        total_ns += ns
        print(f"{name:<24} {ns / runs / 1000:>8.2f} {runs:>8} {ns / n_events / 1000:>9.2f}")
    print(f"{'all steps (timed run)':<24} {'':>8} {'':>8} {total_ns / n_events / 1000:>9.2f}")
    parse_s, pipe_s, encode_s = best
    print(
        f"untimed, best of {args.rounds}: parse {parse_s / n_events * 1e6:.2f} + pipeline "
        f"{pipe_s / n_events * 1e6:.2f} + encode {encode_s / n_events * 1e6:.2f} = "
        f"{sum(best) / n_events * 1e6:.2f} us per event"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
