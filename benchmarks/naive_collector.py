"""The "naive" target: the collector a user would write in an afternoon.

A Starlette route that parses the body with ``json``, parses the User-Agent with ``user_agents.parse`` on
every request (no cache of ours; ua-parser keeps its own small one), and inserts the request's events
into an embedded chDB store through clickhouse-connect: one synchronous ``INSERT`` per request, run in
Starlette's threadpool (``run_in_threadpool``) so the event loop keeps accepting connections. No
batching, no privacy steps (the full IP and raw URLs are stored), no validation beyond "is it JSON".

    python benchmarks/naive_collector.py --port 8102 --data-dir /tmp/naive
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import clickhouse_connect
import user_agents
import uvicorn
from clickhouse_connect.driver.client import Client
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

DDL = """
CREATE TABLE IF NOT EXISTS events
(
    ts            DateTime64(3, 'UTC'),
    site          String,
    type          String,
    name          String,
    url           String,
    referrer      String,
    title         String,
    props         Map(String, String),
    ip            String,
    browser       String,
    os            String,
    device        String,
    language      String,
    screen_width  UInt32,
    screen_height UInt32
)
ENGINE = MergeTree
ORDER BY (site, ts)
"""
COLUMNS = [
    "ts",
    "site",
    "type",
    "name",
    "url",
    "referrer",
    "title",
    "props",
    "ip",
    "browser",
    "os",
    "device",
    "language",
    "screen_width",
    "screen_height",
]


def create_app(client: Client) -> Starlette:
    async def collect(request: Request) -> Response:
        try:
            doc = json.loads(await request.body())
        except ValueError:
            return JSONResponse({"error": "bad json"}, status_code=400)
        events: list[dict[str, Any]] = doc if isinstance(doc, list) else [doc]
        ua = user_agents.parse(request.headers.get("user-agent", ""))
        device = "mobile" if ua.is_mobile else "tablet" if ua.is_tablet else "desktop"
        forwarded = request.headers.get("x-forwarded-for")
        ip = forwarded.split(",")[0].strip() if forwarded else (request.client.host if request.client else "")
        now = datetime.now(UTC)
        rows = []
        for e in events:
            screen = e.get("screen") or {}
            rows.append(
                [
                    now,
                    e.get("site", ""),
                    e.get("type", "pageview"),
                    e.get("name", ""),
                    e.get("url", ""),
                    e.get("referrer", ""),
                    e.get("title", ""),
                    {k: str(v) for k, v in (e.get("props") or {}).items()},
                    ip,
                    ua.browser.family,
                    ua.os.family,
                    device,
                    e.get("language", ""),
                    screen.get("width", 0),
                    screen.get("height", 0),
                ]
            )
        await run_in_threadpool(client.insert, "events", rows, column_names=COLUMNS)
        return JSONResponse({"accepted": len(rows)}, status_code=202)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def count(request: Request) -> Response:
        n = await run_in_threadpool(client.command, "SELECT count() FROM events")
        return JSONResponse({"n": n})

    return Starlette(
        routes=[
            Route("/v1/events", collect, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/count", count, methods=["GET"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    client = clickhouse_connect.get_client(dsn=f"chdb://{args.data_dir.resolve()}")
    client.command(DDL)
    uvicorn.run(
        create_app(client),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        server_header=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
