"""``<data_dir>/run/proxy.json``: tells ``beaconproxy query`` that a proxy owns the embedded store.

chDB lets one process open a data directory, so while the proxy runs, queries go through its
authenticated admin endpoint; the file says where it listens. It holds no secret.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import orjson

from config.settings import Settings


def path(settings: Settings) -> Path:
    return settings.data_dir / "run" / "proxy.json"


def local_url(host: str, port: int) -> str:
    if host in ("0.0.0.0", ""):  # noqa: S104 - we connect to it, we don't bind it
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def write(settings: Settings, pid: int) -> None:
    p = path(settings)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(f".{pid}.tmp")
    tmp.write_bytes(orjson.dumps({"pid": pid, "url": local_url(settings.host, settings.port)}))
    os.replace(tmp, p)


def read(settings: Settings) -> dict[str, object] | None:
    try:
        data = orjson.loads(path(settings).read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def remove(settings: Settings, pid: int) -> None:
    info = read(settings)
    if info is not None and info.get("pid") == pid:
        with contextlib.suppress(FileNotFoundError):
            path(settings).unlink()


def pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
