"""``beaconproxy``: serve the proxy, or query the store it writes to.

beaconproxy serve [--config FILE] [--host H] [--port P]
beaconproxy query "SELECT ..." [--config FILE] [--store NAME]
beaconproxy config [--config FILE]        # the effective settings, secrets hidden
beaconproxy analyst-key create --site SITE [--site SITE2] [--label TEXT]   # prints the key once
beaconproxy analyst-key list | revoke KEY_ID
beaconproxy migrate [--print] [--pin-secrets]   # the schema, once, for every store
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, NamedTuple

import orjson
from clickhouse_connect.driver.exceptions import ClickHouseError

from config.settings import MAIN_STORE, Settings, SettingsError, load_settings
from proxy.admin import result_body
from proxy.admin_listener import AdminListenError, parse_admin_listen
from proxy.datalock import DataDirLock, DataDirLocked
from proxy.inventory import InventoryError, build_inventory
from proxy.keys import SiteKeys, admin_token, pseudonym_secret
from proxy.logs import configure_logging
from proxy.stores import store_sink
from proxy.subjects import SubjectError, SubjectRoute, SubjectService, SubjectUnavailable, Suppressions
from sinks.base import SinkError
from sinks.clickhouse import ClickHouseSink, redact_dsn, safe_error
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

    from proxy.admin_listener import bind_private_unix_socket
    from proxy.app import create_app
    from proxy.connlimits import DrainingServer
    from proxy.runtime import freeze_startup_objects
    from proxy.supervisor import exit_with_parent

    if args.primary_socket:  # started by `serve --workers N`: the one process that owns the store
        from proxy.worker import create_primary_app

        exit_with_parent(os.getppid())  # it also inherited the data directory's lock from it
        app = create_primary_app(settings, parent=os.getppid())
        freeze_startup_objects()
        sock = bind_private_unix_socket(Path(args.primary_socket))
        uvicorn.Server(uvicorn.Config(app, **_uvicorn_options(settings))).run(sockets=[sock])
        return 0
    if args.workers < 1:
        print("serve: --workers must be at least 1", file=sys.stderr)
        return 2
    lock = DataDirLock(settings.data_dir)
    try:
        lock.acquire()
    except DataDirLocked as exc:
        print(f"serve: {exc}", file=sys.stderr)
        return 1
    lock.write_pid(os.getpid())
    _make_private(settings.data_dir)
    url = local_url(settings.host, settings.port)
    if args.workers == 1:
        log.info("Beacon Proxy on %s (store %s)", url, _store(settings))
        app = create_app(settings, admin=True)
        freeze_startup_objects()
        config = uvicorn.Config(app, host=settings.host, port=settings.port, **_uvicorn_options(settings))
        DrainingServer(config).run()
        return 0
    return _serve_workers(args, settings, url, lock)


def local_url(host: str, port: int) -> str:
    """A URL that reaches ``host:port`` from this machine (for the start-up log line)."""
    if host in ("0.0.0.0", ""):  # noqa: S104 - we connect to it, we don't bind it
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _make_private(data_dir: Path) -> None:
    """The data directory holds the store, the spool and the secrets: this user's only. (Files the
    proxy creates are private anyway: ``main`` sets the umask to 077.)"""
    try:
        if data_dir.stat().st_mode & 0o077:
            data_dir.chmod(0o700)
            log.info("data directory %s made private to its user (was readable by others)", data_dir)
    except OSError as exc:
        log.warning("cannot make the data directory private: %s", exc.strerror or type(exc).__name__)


def _serve_workers(args: argparse.Namespace, settings: Settings, url: str, lock: DataDirLock) -> int:
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
    assert lock.fd is not None
    primary = PrimaryProcess(
        [sys.executable, "-m", "proxy.cli", "serve", "--primary-socket", str(socket_path)],
        socket_path,
        stop_seconds=settings.batch.shutdown_grace_seconds + 60,
        pass_fds=(lock.fd,),
    )
    try:
        if not primary.start():
            return 1
        log.info("Beacon Proxy on %s: %d workers, store %s", url, args.workers, _store(settings))
        options = _uvicorn_options(settings)
        grace = float(options["timeout_graceful_shutdown"]) + 5
        status = Supervisor(args.workers, settings.host, settings.port, options, grace, lock=lock).run(
            primary.keep_alive
        )
    finally:
        primary.stop()  # after the workers sealed their segments: it ships what it can in its grace period
    return status


def _store(settings: Settings) -> str:
    dsn = settings.clickhouse_dsn
    return dsn if dsn.startswith("chdb://") else f"remote ClickHouse {redact_dsn(dsn)}"


class ProxyAnswer(NamedTuple):
    data: bytes
    headers: dict[str, str]


class AdminClient:
    """Calls the running proxy's admin listener (``server.admin_listen``; by default the unix socket in
    the data directory, which only this user can reach)."""

    def __init__(self, settings: Settings) -> None:
        self.address = parse_admin_listen(settings.server.admin_listen, settings.data_dir)
        self.token = admin_token(settings)

    def call(self, method: str, path: str, body: bytes | None) -> ProxyAnswer:
        import httpx

        if self.address.path is not None:
            transport = httpx.HTTPTransport(uds=str(self.address.path))
            base = "http://admin"
        else:
            transport, base = httpx.HTTPTransport(), str(self.address)
        headers = {"Authorization": f"Bearer {self.token.decode()}", "Content-Type": "application/json"}
        try:
            with httpx.Client(transport=transport, base_url=base, timeout=300) as client:
                resp = client.request(method, path, content=body, headers=headers)
        except httpx.TransportError:
            raise SinkError(
                f"a proxy is running on this data directory, but its admin listener ({self.address}) "
                "does not answer"
            ) from None
        if resp.status_code >= 400:
            try:
                message = orjson.loads(resp.content).get("error", resp.text)
            except (orjson.JSONDecodeError, AttributeError):
                message = resp.text
            raise SinkError(str(message))
        return ProxyAnswer(resp.content, dict(resp.headers.items()))


@contextlib.contextmanager
def _proxy_or_store(settings: Settings) -> Iterator[AdminClient | None]:
    """An admin client while a proxy serves this data directory with the embedded store (chDB lets one
    process open it); otherwise None, and the caller opens the store itself: for the embedded store
    with the data directory locked meanwhile, so no proxy starts under it. A remote store is open to
    every process."""
    if not settings.clickhouse_dsn.startswith("chdb://"):
        yield None
        return
    lock = DataDirLock(settings.data_dir)
    try:
        lock.acquire()
    except DataDirLocked:
        yield AdminClient(settings)
        return
    try:
        yield None
    finally:
        lock.release()


def _open_sink(settings: Settings, store: str = MAIN_STORE) -> ClickHouseSink:
    if store != MAIN_STORE and store not in settings.clickhouse.stores:
        raise SinkError(f"no store {store!r} in [clickhouse.stores]")
    sink = store_sink(settings, store)
    sink.start()
    return sink


def cmd_query(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _configure_logging("warning")
    try:
        with _proxy_or_store(settings) as admin:
            if admin is not None:
                path = "/admin/query" + (f"?store={args.store}" if args.store != MAIN_STORE else "")
                data = admin.call("POST", path, args.sql.encode()).data
            else:
                sink = _open_sink(settings, args.store)
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
    sink = _open_sink(settings, settings.store_of(args.site))
    try:
        secret = pseudonym_secret(settings)
        keys = SiteKeys(secret, {site: s.pseudonym_keys for site, s in settings.sites.items()})
        store = SubjectStore(sink)
        service = SubjectService(
            keys,
            lambda site: SubjectRoute(store),
            Suppressions(),
            settings.sites,
            future_margin=timedelta(seconds=settings.privacy.max_future_seconds),
        )
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
        with _proxy_or_store(settings) as admin:
            if admin is None:
                data = _subject_direct(settings, args, kind, value)
            else:
                answer = admin.call("POST", f"/admin/subjects/{args.action}", body)
                if args.action == "export" and args.format == "csv":
                    note = answer.headers.get("x-beacon-note")
                    if note:
                        print(note, file=sys.stderr)
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
        with _proxy_or_store(settings) as admin:
            if admin is not None:
                inventory = orjson.loads(admin.call("GET", "/admin/inventory", None).data)
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


def _analyst_keys_direct(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    """Serve an analyst-key command with the store opened here (no proxy running, or a remote store)."""
    from proxy.stats.keys import AnalystKeys, KeyStore

    sink = _open_sink(settings)
    try:
        keys = AnalystKeys(KeyStore(sink), list(settings.sites), 0)
        if args.action == "create":
            text, key = keys.create(args.site, args.label)
            return {**key.public(), "key": text}
        if args.action == "list":
            return {"keys": [k.public() for k in keys.list()]}
        return keys.revoke(args.key_id).public()
    finally:
        sink.close()


def cmd_analyst_key(args: argparse.Namespace) -> int:
    """Create, list or revoke analyst keys. ``create`` prints the key on stdout once (and nothing else
    there); only its hash is stored."""
    from proxy.stats.keys import AnalystKeyError

    settings = _settings(args)
    _configure_logging("warning")
    if args.action == "create" and not args.site:
        print("analyst-key create: name at least one --site", file=sys.stderr)
        return 2
    if args.action == "revoke" and not args.key_id:
        print("analyst-key revoke: name the key id", file=sys.stderr)
        return 2
    try:
        with _proxy_or_store(settings) as admin:
            if admin is None:
                doc = _analyst_keys_direct(settings, args)
            elif args.action == "create":
                body = orjson.dumps({"sites": args.site, "label": args.label})
                doc = orjson.loads(admin.call("POST", "/admin/analyst-keys", body).data)
            elif args.action == "list":
                doc = orjson.loads(admin.call("GET", "/admin/analyst-keys", None).data)
            else:
                doc = orjson.loads(
                    admin.call("POST", f"/admin/analyst-keys/{args.key_id}/revoke", b"{}").data
                )
    except (SinkError, AnalystKeyError) as exc:
        print(f"analyst-key {args.action} failed: {exc}", file=sys.stderr)
        return 1
    if args.action == "create":
        print(f"key id {doc['id']} reads {', '.join(doc['sites'])}; it is shown only now", file=sys.stderr)
        sys.stdout.write(doc["key"] + "\n")
    elif args.action == "list":
        for k in doc["keys"]:
            state = "revoked" if k["revoked"] else "live"
            sys.stdout.write(f"{k['id']}\t{state}\t{','.join(k['sites'])}\t{k['created']}\t{k['label']}\n")
    else:
        sys.stdout.write(f"{doc['id']}\trevoked\n")
    sys.stdout.flush()
    return 0


def redacted_settings(settings: Settings) -> dict[str, Any]:
    """The effective settings with every secret replaced by "***": the admin token, the pseudonym
    secret, each site's pseudonym keys, and the password in every store's DSN."""
    data: dict[str, Any] = settings.model_dump(mode="json")
    for section, key in (("server", "admin_token"), ("privacy", "pseudonym_secret")):
        if data[section][key]:
            data[section][key] = "***"
    for site in data["sites"].values():
        site["pseudonym_keys"] = ["***" for _ in site["pseudonym_keys"]]
    data["clickhouse"]["dsn"] = redact_dsn(settings.clickhouse_dsn)
    data["clickhouse"]["admin_query"]["dsn"] = redact_dsn(settings.clickhouse.admin_query.dsn)
    for store in data["clickhouse"]["stores"].values():
        store["dsn"] = redact_dsn(store["dsn"])
    return data


def cmd_config(args: argparse.Namespace) -> int:
    settings = _settings(args)
    sys.stdout.buffer.write(orjson.dumps(redacted_settings(settings), option=orjson.OPT_INDENT_2) + b"\n")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    """Apply the schema to every store, once, from one place: ``ON CLUSTER`` with Replicated engines
    when a store has a cluster; then align retention and deduplication settings. Replicas can then run
    with ``clickhouse.manage_schema = false`` and a database user without DDL rights."""
    from config.schema import ddl_statements

    settings = _settings(args)
    _configure_logging("warning")
    names = [MAIN_STORE, *settings.clickhouse.stores]
    if args.print:
        for name in names:
            sink = store_sink(settings, name)
            print(
                f"-- store {name}: database {sink.database}"
                + (f", cluster {sink.cluster}" if sink.cluster else "")
            )
            for stmt in ddl_statements(sink.database, settings.clickhouse, sink.cluster):
                print(stmt + ";\n")
        return 0
    try:
        with _proxy_or_store(settings) as admin:
            if admin is not None:
                print(
                    "migrate: a proxy serves this data directory's embedded store and applies the schema "
                    "itself; stop it first",
                    file=sys.stderr,
                )
                return 1
            for name in names:
                sink = store_sink(settings, name)
                try:
                    sink.start_client()
                    done = sink.apply_schema(sink.cluster)
                    missing = sink.missing_objects()
                    if missing:
                        raise SinkError(f"after the DDL the store still lacks {', '.join(missing)}")
                    print(f"store {name}: schema in place ({len(done)} statements run)")
                    if args.pin_secrets and name == MAIN_STORE:
                        from proxy.replicas import pin_secrets, wanted_fingerprints
                        from sinks.shared_state import SharedState

                        wanted = wanted_fingerprints(
                            settings, pseudonym_secret(settings), admin_token(settings)
                        )
                        changed = pin_secrets(SharedState(sink), wanted)
                        print(f"store {name}: pinned {', '.join(changed) or 'nothing new'}")
                finally:
                    sink.close()
    except (SinkError, ClickHouseError) as exc:
        message = safe_error(exc) if isinstance(exc, ClickHouseError) else str(exc)
        print(f"migrate failed: {message}", file=sys.stderr)
        return 1
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
    query.add_argument("--store", default=MAIN_STORE, help="a store from [clickhouse.stores] (default: main)")
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
    akey = sub.add_parser("analyst-key", help="analyst keys for the stats API: create, list, revoke")
    akey.add_argument("action", choices=["create", "list", "revoke"])
    akey.add_argument("key_id", nargs="?", help="revoke: the key id (from list)")
    akey.add_argument("--site", action="append", default=[], help="create: a site the key reads (repeatable)")
    akey.add_argument("--label", default="", help="create: who the key is for")
    akey.set_defaults(func=cmd_analyst_key)
    migrate = sub.add_parser("migrate", help="apply the schema to every store (see README, several replicas)")
    migrate.add_argument("--print", action="store_true", help="print the statements, run nothing")
    migrate.add_argument(
        "--pin-secrets",
        action="store_true",
        help="pin this configuration's secrets after a deliberate change",
    )
    migrate.set_defaults(func=cmd_migrate)
    for p in (serve, query, cfg, subject, inventory, akey, migrate):
        p.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    umask = os.umask(0o077)  # every file and directory the proxy (and its store) creates: this user's only
    try:
        result: int = args.func(args)
    except (SettingsError, AdminListenError) as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    finally:
        os.umask(umask)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
