"""Authenticated admin endpoints: read-only SQL, stats, data-subject actions, the data inventory."""

from __future__ import annotations

from typing import Any, Literal

import anyio
import orjson
from starlette.requests import Request
from starlette.responses import Response

from proxy import admin_listener
from proxy.http import HTTPError, error_response, json_response, read_body, read_json_object, require_admin
from proxy.inventory import InventoryError, build_inventory
from proxy.runtime import Runtime
from proxy.subjects import SUBJECT_KINDS, SubjectError, SubjectResult, SubjectUnavailable
from sinks.base import SinkError
from sinks.clickhouse import ClickHouseSink

MAX_QUERY_BYTES = 64 * 1024


def _clickhouse(rt: Runtime, store: str | None = None) -> ClickHouseSink:
    """The main store's sink, or the named store's (``?store=<name>``)."""
    sink = rt.sink
    if store:
        named = rt.stores.get(store)
        if named is None:
            raise HTTPError(404, f"no store named {store!r}; stores: {', '.join(rt.stores.names())}")
        sink = named.sink
    if not isinstance(sink, ClickHouseSink):
        raise HTTPError(501, "this process has no queryable sink")
    return sink


async def admin_query(request: Request) -> Response:
    rt: Runtime = request.app.state.rt
    try:
        require_admin(request, rt.admin_token)
        sink = _clickhouse(rt, request.query_params.get("store"))
        sql = (await read_body(request, MAX_QUERY_BYTES)).decode("utf-8", "replace").strip()
        if not sql:
            raise HTTPError(400, "body must be the SQL to run")
        try:
            data = await anyio.to_thread.run_sync(sink.query_json, sql)
        except SinkError as exc:
            raise HTTPError(400, str(exc)) from None
    except HTTPError as exc:
        return error_response(exc.status, exc.message, exc.headers)
    return Response(data, media_type="application/x-ndjson")


async def admin_stats(request: Request) -> Response:
    rt: Runtime = request.app.state.rt
    try:
        require_admin(request, rt.admin_token)
    except HTTPError as exc:
        return error_response(exc.status, exc.message, exc.headers)
    stats = rt.counters().snapshot()
    stats.update(rt.stats())
    stats["blocked_subjects"] = len(rt.suppressions)
    return json_response(200, stats)


def result_body(result: SubjectResult) -> dict[str, Any]:
    body: dict[str, Any] = {
        "action": result.action,
        "site": result.site,
        "kind": result.kind,
        "pseudonym": result.pseudonym,
        "rows": result.rows,
    }
    if result.note:
        body["note"] = result.note
    if result.pending:
        body["pending_replicas"] = list(result.pending)
    return body


def subject_of(doc: dict[str, Any]) -> tuple[str, str, str]:
    """``{"site": …, "client_id": …}`` or ``{"site": …, "user_id": …}`` -> (site, kind, identifier)."""
    site = doc.get("site")
    if not isinstance(site, str) or not site:
        raise HTTPError(400, "field 'site' is required")
    given = [k for k in SUBJECT_KINDS if doc.get(k) is not None]
    if len(given) != 1:
        raise HTTPError(400, "give exactly one of 'client_id' or 'user_id'")
    value = doc[given[0]]
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # beacons accept numeric ids and store them as their decimal string
    if not isinstance(value, str) or not value or len(value) > 256:
        raise HTTPError(400, f"field '{given[0]}' must be a non-empty string of at most 256 characters")
    return site, given[0], value


async def admin_subject(request: Request) -> Response:
    rt: Runtime = request.app.state.rt
    action = request.path_params["action"]
    try:
        require_admin(request, rt.admin_token)
        if rt.subjects is None:
            raise HTTPError(501, "this process keeps no subject data")
        service = rt.subjects
        doc = await read_json_object(request, 4096)
        site, kind, value = subject_of(doc)
        # How the request arrived, never what it says: the listener's kind and, on the unix socket,
        # the connecting user's id from the kernel.
        actor = admin_listener.actor(request.scope.get("client"), rt.admin_address.kind)
        requested = doc.get("format", "json")
        if requested not in ("json", "csv"):
            raise HTTPError(400, "field 'format' must be 'json' or 'csv'")
        fmt: Literal["json", "csv"] = "csv" if requested == "csv" else "json"
        try:
            if action == "export":
                result = await anyio.to_thread.run_sync(service.export, site, kind, value, fmt, actor)
            elif action == "delete":
                result = await anyio.to_thread.run_sync(service.delete, site, kind, value, actor)
            elif action in ("block", "unblock"):
                blocked = action == "block"
                result = await anyio.to_thread.run_sync(
                    service.set_blocked, site, kind, value, blocked, actor
                )
            else:
                raise HTTPError(404, "action must be export, delete, block or unblock")
        except SubjectError as exc:
            raise HTTPError(400, str(exc)) from None
        except (SubjectUnavailable, SinkError) as exc:
            raise HTTPError(503, str(exc), {"Retry-After": "5"}) from None
    except HTTPError as exc:
        return error_response(exc.status, exc.message, exc.headers)
    if action == "export" and fmt == "csv":
        headers = {"X-Beacon-Rows": str(result.rows), "X-Beacon-Pseudonym": result.pseudonym}
        if result.note:
            headers["X-Beacon-Note"] = result.note
        return Response(result.data, media_type="text/csv", headers=headers)
    body = result_body(result)
    if action == "export":
        body["events"] = [orjson.loads(line) for line in result.data.splitlines() if line]
    return json_response(200, body)


async def admin_inventory(request: Request) -> Response:
    rt: Runtime = request.app.state.rt
    try:
        require_admin(request, rt.admin_token)
        sink = _clickhouse(rt)
        try:
            columns = await anyio.to_thread.run_sync(sink.columns)
            inventory = build_inventory(columns, rt.settings.clickhouse)
        except (SinkError, InventoryError) as exc:
            raise HTTPError(500, str(exc)) from None
    except HTTPError as exc:
        return error_response(exc.status, exc.message, exc.headers)
    return json_response(200, inventory)
