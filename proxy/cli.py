"""``beaconproxy``: serve the proxy, or query the store it writes to.

beaconproxy serve [--config FILE] [--host H] [--port P]
beaconproxy query "SELECT ..." [--config FILE]
beaconproxy config [--config FILE]        # the effective settings, secrets hidden
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import orjson

from config.settings import Settings, SettingsError, load_settings
from proxy import runfile
from proxy.admin import result_body
from proxy.inventory import InventoryError, build_inventory
from proxy.keys import SiteKeys, load_or_create_secret
from proxy.logs import configure_logging
from proxy.subjects import SubjectError, SubjectService, SubjectUnavailable, Suppressions
from sinks.base import SinkError
from sinks.clickhouse import ClickHouseSink
from sinks.subject_store import SubjectStore

log = logging.getLogger("beaconproxy")


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    return load_settings(args.config, **{k: v for k, v in overrides.items() if v is not None})


def _configure_logging(level: str, fmt: Literal["json", "text"] = "text") -> None:
    configure_logging(level, fmt)


def _uvicorn_options(settings: Settings) -> dict[str, Any]:
    from proxy.connlimits import uvicorn_options as connection_limits

    return {
        **connection_limits(settings.server),  # cap, timeouts, header size: see proxy/connlimits.py
        # The socket peer must stay the peer: our own trusted-proxy logic reads forwarding headers.
        "proxy_headers": False,
        # uvicorn's access log prints the client address and full URL: never on.
        "access_log": False,
        "server_header": False,
        "log_level": settings.log_level,
        "log_config": None,  # keep our JSON logging (configured here) for uvicorn's loggers too
        "timeout_graceful_shutdown": 30,
    }


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args, host=args.host, port=args.port)
    _configure_logging(settings.log_level, settings.log_format)
    sys.setswitchinterval(settings.server.gil_switch_interval_ms / 1000)  # workers: create_from_environment
    import uvicorn

    from proxy.app import create_app
    from proxy.runtime import freeze_startup_objects

    if args.primary_socket:  # started by `serve --workers N`: the one process that owns the store
        from proxy.worker import create_primary_app

        app = create_primary_app(settings, parent=os.getppid())
        freeze_startup_objects()
        uvicorn.run(app, uds=args.primary_socket, **_uvicorn_options(settings))
        return 0
    if args.workers < 1:
        print("serve: --workers must be at least 1", file=sys.stderr)
        return 2
    url = runfile.local_url(settings.host, settings.port)
    if args.workers == 1:
        log.info("Beacon Proxy on %s (store %s)", url, _store(settings))
        app = create_app(settings)
        freeze_startup_objects()
        uvicorn.run(app, host=settings.host, port=settings.port, **_uvicorn_options(settings))
        return 0
    return _serve_workers(args, settings, url)


def _serve_workers(args: argparse.Namespace, settings: Settings, url: str) -> int:
    """A primary process (store, shipper, admin API on a unix socket) and N ingesting workers."""
    from proxy.runtime import metrics_dir
    from proxy.supervisor import PrimaryProcess, Supervisor
    from proxy.worker import primary_socket

    socket_path = primary_socket(settings)
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    for old in metrics_dir(settings).glob("*.json"):  # counters start again with this run
        old.unlink()
    # Workers are spawned fresh and read their settings from the environment and the same file.
    os.environ["BEACONPROXY_HOST"] = settings.host
    os.environ["BEACONPROXY_PORT"] = str(settings.port)
    if args.config:
        os.environ["BEACONPROXY_CONFIG"] = str(Path(args.config).resolve())
    primary = PrimaryProcess(
        [sys.executable, "-m", "proxy.cli", "serve", "--primary-socket", str(socket_path)],
        socket_path,
        stop_seconds=settings.batch.shutdown_grace_seconds + 60,
    )
    try:
        if not primary.start():
            return 1
        log.info("Beacon Proxy on %s: %d workers, store %s", url, args.workers, _store(settings))
        options = _uvicorn_options(settings)
        grace = float(options["timeout_graceful_shutdown"]) + 5
        status = Supervisor(args.workers, settings.host, settings.port, options, grace).run(
            primary.keep_alive
        )
    finally:
        primary.stop()  # after the workers sealed their segments: it ships what it can in its grace period
    return status


def _store(settings: Settings) -> str:
    dsn = settings.clickhouse_dsn
    return dsn if dsn.startswith("chdb://") else "remote ClickHouse"


class ProxyAnswer(NamedTuple):
    data: bytes
    headers: dict[str, str]


def _via_proxy(settings: Settings, method: str, path: str, body: bytes | None) -> ProxyAnswer | None:
    """Call a running proxy's admin endpoint when it owns the embedded store; None if none answers.

    chDB lets one process open a data directory, so while the proxy runs it serves these requests.
    A remote store needs no routing: every process can reach it.
    """
    if not settings.clickhouse_dsn.startswith("chdb://"):
        return None
    info = runfile.read(settings)
    if info is None or not runfile.pid_alive(info.get("pid")):
        return None
    token = load_or_create_secret(settings.server.admin_token, settings.data_dir / "admin_token")
    req = urllib.request.Request(  # noqa: S310 - the URL is our own loopback address from the run file
        f"{info['url']}{path}",
        data=body,
        headers={
            "Authorization": f"Bearer {token.decode()}",
            "Content-Type": "application/json",
            "X-Beacon-Actor": "admin-cli",
        },
        method=method,
    )
    try:
        with urllib.request.urlopen(req, timeout=300) as resp:  # noqa: S310
            return ProxyAnswer(resp.read(), dict(resp.headers.items()))
    except urllib.error.HTTPError as exc:
        detail = exc.read()
        try:
            message = orjson.loads(detail).get("error", detail.decode())
        except orjson.JSONDecodeError:
            message = detail.decode("utf-8", "replace")
        raise SinkError(str(message)) from None
    except (urllib.error.URLError, OSError):
        return None


def _open_sink(settings: Settings) -> ClickHouseSink:
    sink = ClickHouseSink(settings.clickhouse_dsn, settings.clickhouse)
    sink.start()
    return sink


def cmd_query(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _configure_logging("warning")
    try:
        answer = _via_proxy(settings, "POST", "/admin/query", args.sql.encode())
        if answer is not None:
            data = answer.data
        else:
            sink = _open_sink(settings)
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


def _subject_direct(settings: Settings, args: argparse.Namespace, kind: str, value: str) -> bytes:
    """Serve a subject request with the store opened here (no proxy running, or a remote store)."""
    sink = _open_sink(settings)
    try:
        secret = load_or_create_secret(
            settings.privacy.pseudonym_secret, settings.data_dir / "pseudonym_secret"
        )
        keys = SiteKeys(secret, {site: s.pseudonym_keys for site, s in settings.sites.items()})
        service = SubjectService(keys, SubjectStore(sink), Suppressions(), settings.sites, lambda: True)
        action = args.action
        if action == "export":
            result = service.export(args.site, kind, value, args.format, "admin-cli")
            if args.format == "csv":
                if result.note:
                    print(result.note, file=sys.stderr)
                return result.data
            body = result_body(result)
            body["events"] = [orjson.loads(line) for line in result.data.splitlines() if line]
            return orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n"
        if action == "delete":
            result = service.delete(args.site, kind, value, "admin-cli")
        else:
            result = service.set_blocked(args.site, kind, value, action == "block", "admin-cli")
        return orjson.dumps(result_body(result), option=orjson.OPT_INDENT_2) + b"\n"
    finally:
        sink.close()


def cmd_subject(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _configure_logging("warning")
    kind, value = ("client_id", args.client_id) if args.client_id is not None else ("user_id", args.user_id)
    body = orjson.dumps({"site": args.site, kind: value, "format": args.format})
    try:
        answer = _via_proxy(settings, "POST", f"/admin/subjects/{args.action}", body)
        if answer is None:
            data = _subject_direct(settings, args, kind, value)
        elif args.action == "export" and args.format == "csv":
            if "X-Beacon-Note" in answer.headers:
                print(answer.headers["X-Beacon-Note"], file=sys.stderr)
            data = answer.data
        else:
            data = orjson.dumps(orjson.loads(answer.data), option=orjson.OPT_INDENT_2) + b"\n"
    except (SinkError, SubjectError, SubjectUnavailable) as exc:
        print(f"subject {args.action} failed: {exc}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(data)
    sys.stdout.flush()
    return 0


def cmd_inventory(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _configure_logging("warning")
    try:
        answer = _via_proxy(settings, "GET", "/admin/inventory", None)
        if answer is not None:
            inventory = orjson.loads(answer.data)
        else:
            sink = _open_sink(settings)
            try:
                inventory = build_inventory(sink.columns(), settings.clickhouse)
            finally:
                sink.close()
    except (SinkError, InventoryError) as exc:
        print(f"inventory failed: {exc}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(orjson.dumps(inventory, option=orjson.OPT_INDENT_2) + b"\n")
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
    serve.add_argument("--workers", type=int, default=1, help="ingesting worker processes (default 1)")
    serve.add_argument("--primary-socket", help=argparse.SUPPRESS)  # internal: the primary of --workers N
    serve.set_defaults(func=cmd_serve)
    query = sub.add_parser("query", help="run read-only SQL, print one JSON object per row")
    query.add_argument("sql")
    query.set_defaults(func=cmd_query)
    cfg = sub.add_parser("config", help="print the effective settings (secrets hidden)")
    cfg.set_defaults(func=cmd_config)
    subject = sub.add_parser("subject", help="data-subject requests: export, delete, block, unblock")
    subject.add_argument("action", choices=["export", "delete", "block", "unblock"])
    subject.add_argument("--site", required=True, help="site id")
    who = subject.add_mutually_exclusive_group(required=True)
    who.add_argument("--client-id", help="the client id as the site knows it")
    who.add_argument("--user-id", help="the user id as the site knows it")
    subject.add_argument("--format", choices=["json", "csv"], default="json", help="export format")
    subject.set_defaults(func=cmd_subject)
    inventory = sub.add_parser("inventory", help="print the data inventory (JSON) of every stored column")
    inventory.set_defaults(func=cmd_inventory)
    for p in (serve, query, cfg, subject, inventory):
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
