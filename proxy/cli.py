"""``beaconproxy``: serve the proxy, or query the store it writes to.

beaconproxy serve [--config FILE] [--host H] [--port P]
beaconproxy query "SELECT ..." [--config FILE]
beaconproxy config [--config FILE]        # the effective settings, secrets hidden
"""

from __future__ import annotations

import argparse
import logging
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

import orjson

from config.settings import Settings, SettingsError, load_settings
from proxy import runfile
from proxy.keys import load_or_create_secret
from sinks.base import SinkError
from sinks.clickhouse import ClickHouseSink

log = logging.getLogger("beaconproxy")


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    return load_settings(args.config, **{k: v for k, v in overrides.items() if v is not None})


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args, host=args.host, port=args.port)
    _configure_logging(settings.log_level)
    if args.workers != 1:
        print(
            "serve: --workers > 1 needs the durable spool (one shipper owns the store); run 1 worker",
            file=sys.stderr,
        )
        return 2
    import uvicorn

    from proxy.app import create_app

    app = create_app(settings)
    log.info(
        "Beacon Proxy on %s (store %s)", runfile.local_url(settings.host, settings.port), _store(settings)
    )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        # The socket peer must stay the peer: our own trusted-proxy logic reads forwarding headers.
        proxy_headers=False,
        # uvicorn's access log prints the client address and full URL: never on.
        access_log=False,
        server_header=False,
        log_level=settings.log_level,
        timeout_graceful_shutdown=30,
    )
    return 0


def _store(settings: Settings) -> str:
    dsn = settings.clickhouse_dsn
    return dsn if dsn.startswith("chdb://") else "remote ClickHouse"


def _query_via_proxy(settings: Settings, sql: str) -> bytes | None:
    """Route through a running proxy that owns the embedded store; None if no proxy answers."""
    info = runfile.read(settings)
    if info is None or not runfile.pid_alive(info.get("pid")):
        return None
    token = load_or_create_secret(settings.server.admin_token, settings.data_dir / "admin_token")
    req = urllib.request.Request(  # noqa: S310 - the URL is our own loopback address from the run file
        f"{info['url']}/admin/query",
        data=sql.encode(),
        headers={"Authorization": f"Bearer {token.decode()}", "Content-Type": "text/plain"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310
            data: bytes = resp.read()
            return data
    except urllib.error.HTTPError as exc:
        detail = exc.read()
        try:
            message = orjson.loads(detail).get("error", detail.decode())
        except orjson.JSONDecodeError:
            message = detail.decode("utf-8", "replace")
        raise SinkError(str(message)) from None
    except (urllib.error.URLError, OSError):
        return None


def cmd_query(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _configure_logging("warning")
    try:
        data = _query_via_proxy(settings, args.sql) if settings.clickhouse_dsn.startswith("chdb://") else None
        if data is None:
            sink = ClickHouseSink(settings.clickhouse_dsn, settings.clickhouse)
            sink.start()
            try:
                data = sink.query_json(args.sql)
            finally:
                sink.close()
    except SinkError as exc:
        print(f"query failed: {exc}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(data)
    sys.stdout.flush()
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    settings = _settings(args)
    data = settings.model_dump(mode="json")
    for section, key in (("server", "admin_token"), ("privacy", "pseudonym_secret")):
        if data[section][key]:
            data[section][key] = "***"
    data["clickhouse"]["dsn"] = settings.clickhouse_dsn
    sys.stdout.buffer.write(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="beaconproxy", description="Privacy-aware analytics ingestion proxy"
    )
    parser.add_argument(
        "--config", help="TOML settings file (default: $BEACONPROXY_CONFIG or the shipped default)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the ingestion API")
    serve.add_argument("--host", help="bind address (default 127.0.0.1, or $BEACONPROXY_HOST)")
    serve.add_argument("--port", type=int, help="port (default 8080, or $BEACONPROXY_PORT)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (1 until the spool lands)")
    serve.set_defaults(func=cmd_serve)
    query = sub.add_parser("query", help="run read-only SQL, print one JSON object per row")
    query.add_argument("sql")
    query.set_defaults(func=cmd_query)
    cfg = sub.add_parser("config", help="print the effective settings (secrets hidden)")
    cfg.set_defaults(func=cmd_config)
    for p in (serve, query, cfg):
        p.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    raise SystemExit(main())
