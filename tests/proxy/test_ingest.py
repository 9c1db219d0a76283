"""The ingestion endpoints as plain ASGI: headers from the scope, bounded bodies, errors, disconnects."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import pytest
from clickhouse_connect.driver.client import Client
from starlette.testclient import TestClient
from starlette.types import Message

from proxy.ingest import GIF, Ingest, read_headers
from tests.conftest import CHROME_UA, stored_rows

H = {"User-Agent": CHROME_UA, "Content-Type": "application/json"}
EVENT = orjson.dumps({"site": "demo", "url": "https://example.com/"})


def scope_with(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"type": "http", "headers": headers}


def test_read_headers_takes_the_first_value_of_a_repeated_header() -> None:
    got = read_headers(
        scope_with(
            [(b"user-agent", b"first"), (b"user-agent", b"second"), (b"origin", b"https://a.example")]
        ),
        "x-forwarded-for",
    )
    assert got == {"user-agent": "first", "origin": "https://a.example"}


def test_read_headers_joins_repeated_client_ip_headers_in_order() -> None:
    got = read_headers(
        scope_with(
            [(b"x-forwarded-for", b"1.2.3.4"), (b"accept", b"*/*"), (b"x-forwarded-for", b"81.2.69.142")]
        ),
        "x-forwarded-for",
    )
    assert got == {"x-forwarded-for": "1.2.3.4, 81.2.69.142"}  # "accept" is not read at all


def test_a_second_forwarded_header_line_is_not_hidden_by_a_spoofed_first(
    client: TestClient, ch: Client, database: str
) -> None:
    # The client sent X-Forwarded-For: 1.2.3.4; the (trusted, loopback) proxy added its own line with the
    # address it saw. The right-most untrusted hop of both lines is the client.
    r = client.post(
        "/v1/events",
        content=EVENT,
        headers=[
            ("User-Agent", CHROME_UA),
            ("Content-Type", "application/json"),
            ("X-Forwarded-For", "1.2.3.4"),
            ("X-Forwarded-For", "81.2.69.142"),
        ],
    )
    assert r.status_code == 202
    [row] = stored_rows(ch, database, client)
    assert row["ip"] == "81.2.69.0"


def test_pixel_answers_head_and_refuses_other_methods(client: TestClient) -> None:
    params = {"site": "demo", "url": "https://example.com/"}
    head = client.head("/v1/pixel.gif", params=params, headers={"User-Agent": CHROME_UA})
    assert head.status_code == 200
    assert head.headers["content-type"] == "image/gif"
    assert head.headers["cache-control"] == "no-store, max-age=0"
    r = client.post("/v1/pixel.gif", params=params, headers={"User-Agent": CHROME_UA})
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, HEAD"
    get = client.get("/v1/pixel.gif", params=params, headers={"User-Agent": CHROME_UA})
    assert get.content == GIF


def test_other_methods_on_events_fall_through_to_the_router(client: TestClient) -> None:
    assert client.get("/v1/events").status_code == 405
    assert client.options("/v1/events", headers={"Origin": "https://www.example.com"}).status_code == 204


def test_an_unexpected_error_is_a_500_that_quotes_nothing(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "jo@example.com 81.2.69.142"

    def boom(*args: Any) -> Any:
        raise ValueError(secret)

    monkeypatch.setattr(client.app.state.rt.pipeline, "process", boom)  # type: ignore[attr-defined]
    with caplog.at_level(logging.ERROR, logger="beaconproxy"):
        r = client.post("/v1/events", content=EVENT, headers={**H, "X-Forwarded-For": "81.2.69.142"})
    assert r.status_code == 500
    assert r.json() == {"error": "internal error"}
    assert client.app.state.rt.metrics.rejected_requests[500] == 1  # type: ignore[attr-defined]
    assert "ValueError" in caplog.text and "/v1/events" in caplog.text
    assert "jo@example.com" not in caplog.text and "81.2.69" not in caplog.text


def test_a_client_that_disconnects_before_its_body_gets_no_answer(client: TestClient) -> None:
    sent: list[Message] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("ingestion requests never reach the router")

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    ingest = Ingest(app, client.app.state.rt)  # type: ignore[attr-defined]
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/events",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
    }
    rt = client.app.state.rt  # type: ignore[attr-defined]
    before = rt.metrics.accepted
    asyncio.run(ingest(scope, receive, send))
    assert sent == []
    assert rt.metrics.accepted == before


def test_a_parser_failing_on_a_request_is_a_400_that_quotes_nothing(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A parser raises only its documented errors (tests/fuzz/ checks that); should a bug make it raise
    anything else, what it failed on is input it cannot read: 400, logged by type and line."""
    from proxy import ingest

    def boom(*args: Any) -> Any:
        raise KeyError("jo@example.com")

    monkeypatch.setattr(ingest, "parse_body", boom)
    with caplog.at_level(logging.ERROR, logger="beaconproxy"):
        r = client.post("/v1/events", content=EVENT, headers=H)
    assert r.status_code == 400
    assert r.json() == {"error": "request could not be parsed"}
    assert "KeyError" in caplog.text and "jo@example.com" not in caplog.text


def test_a_parser_failing_on_one_event_keeps_the_rest_of_the_batch(
    client: TestClient,
    ch: Client,
    database: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from proxy import parse

    real = parse.parse_event

    def flaky(doc: Any, limits: Any) -> Any:
        if doc.get("title") == "boom":
            raise TypeError("jo@example.com")
        return real(doc, limits)

    monkeypatch.setattr(parse, "parse_event", flaky)
    body = orjson.dumps(
        [
            {"site": "demo", "url": "https://e.com/a"},
            {"site": "demo", "url": "https://e.com/b", "title": "boom"},
        ]
    )
    with caplog.at_level(logging.ERROR, logger="beaconproxy"):
        r = client.post("/v1/events", content=body, headers=H)
    assert r.status_code == 202
    assert r.json() == {
        "accepted": 1,
        "dropped": 1,
        "errors": [{"index": 1, "error": "event could not be read"}],
    }
    assert "TypeError" in caplog.text and "jo@example.com" not in caplog.text
    assert [row["url"] for row in stored_rows(ch, database, client)] == ["https://e.com/a"]
