"""Every ingestion endpoint, fed generated requests through the real ASGI app into chDB.

For each format, hypothesis builds batches that mix valid events (each with a marker in its URL) with
bad ones (random JSON in an event's place, or a valid event with one field replaced or removed), in
the encodings that format's clients use, and plants generated identifiers, e-mail addresses and IP
addresses in the fields that carry them. Whatever it builds:

* the answer is never a 5xx;
* every valid event of every batch is stored (the markers are looked up in the store afterwards);
* no planted identifier, e-mail or IP address is in any stored column (the identifiers come without
  consent, so not even as pseudonyms).

The examples of one test share one app and database; the store is read once at the end.
"""

from __future__ import annotations

import base64
import gzip
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import lzstring
import orjson
import pytest
from clickhouse_connect.driver.client import Client
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from config.settings import Settings
from proxy.app import create_app
from tests.conftest import CHROME_UA, stored_rows, stored_text
from tests.proxy.test_privacy import assert_absent

ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
TP2 = "/com.snowplowanalytics.snowplow/tp2"
SP_SCHEMA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
MARKER = re.compile(r"/gen/(\d+x\d+)")

# --- generated values ---------------------------------------------------------------------------------

text = st.text(st.characters(exclude_categories=["Cs"]), max_size=24)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=10,
)
names = st.from_regex(r"[a-z][a-z_]{0,15}", fullmatch=True)
prop_keys = st.sampled_from(["plan", "tier", "variant", "step", "colour", "k1", "size"])
prop_values = st.one_of(st.text(ALNUM + " -", max_size=20), st.integers(-1000, 1000), st.booleans())
props = st.dictionaries(prop_keys, prop_values, max_size=4)


@dataclass
class Planted:
    """What one request carries that must never be stored."""

    ids: tuple[str, str, str]  # client, user, session
    ip: str
    email: str

    def needles(self) -> list[str]:
        return [*self.ids, self.email, self.email.replace("@", "%40")]


planted = st.builds(
    Planted,
    ids=st.tuples(*[st.text(ALNUM, min_size=14, max_size=14).map(lambda s, p=p: f"{p}{s}") for p in "cus"]),
    ip=st.tuples(st.integers(11, 126), st.integers(0, 255), st.integers(0, 255), st.integers(11, 254)).map(
        lambda o: ".".join(map(str, o))
    ),
    email=st.tuples(
        st.text("abcdefghij", min_size=3, max_size=8), st.sampled_from(["ex.org", "mail.test"])
    ).map("@".join),
)


@dataclass
class Page:
    """A valid event's page: its marker URL (with the e-mail somewhere in it, or in the title)."""

    marker: str
    url: str
    title: str
    referrer: str


@st.composite
def pages(draw: st.DrawFn, marker: str, pii: Planted) -> Page:
    where = draw(st.sampled_from(["query", "path", "title", "referrer"]))
    url = f"https://example.com/gen/{marker}"
    title, referrer = "Generated page", "https://ref.example.net/"
    if where == "query":
        url += "?" + urlencode(
            {draw(st.sampled_from(["email", "contact", "q"])): pii.email, "utm_source": "g"}
        )
    elif where == "path":
        url += "/" + pii.email
    elif where == "title":
        title = f"Hello {pii.email} from {pii.ip}"
    else:
        referrer = f"https://ref.example.net/u/{pii.email}?ip={pii.ip}"
    return Page(marker, url, title, referrer)


@st.composite
def mutated(draw: st.DrawFn, event: Any, keys: list[str]) -> Any:
    """A valid event with one field replaced by a random value, or removed; or random JSON altogether."""
    if not isinstance(event, dict) or draw(st.integers(0, 3)) == 0:
        return draw(json_values)
    out = dict(event)
    key = draw(st.sampled_from([*keys, *out]))
    if draw(st.booleans()) and key in out:
        del out[key]
    else:
        out[key] = draw(json_values)
    return out


def junk_url(event: Any) -> Any:
    """A mutated event keeps no marker: whether it is stored or dropped, nothing is expected of it."""
    if isinstance(event, dict):
        return {k: (v.replace("/gen/", "/junk/") if isinstance(v, str) else v) for k, v in event.items()}
    return event


# --- the app ------------------------------------------------------------------------------------------


@dataclass
class Run:
    client: TestClient
    expected: set[str] = field(default_factory=set)
    needles: list[str] = field(default_factory=list)
    ips: list[str] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # the current request's valid markers
    count: int = 0

    def next_marker(self) -> int:
        self.count += 1
        return self.count

    def check(self, response: Any) -> None:
        assert response.status_code < 500, response.text
        self.statuses.append(response.status_code)


@pytest.fixture
def run(make_settings: Callable[..., Settings]) -> Iterator[Run]:
    sites = {"demo": {"allowed_origins": ["*"], "tracker_keys": ["demo"]}}
    settings = make_settings(sites=sites, server={"max_batch_events": 1000})
    with TestClient(create_app(settings), client=("127.0.0.1", 5000)) as c:
        yield Run(c)


def verify(run: Run, ch: Client, database: str) -> None:
    """Every valid event is stored; no planted value is; the generator produced both kinds of answer."""
    rows = stored_rows(ch, database, run.client)
    found = {m.group(1) for row in rows if (m := MARKER.search(row["url"]))}
    missing = run.expected - found
    assert not missing, f"{len(missing)} of {len(run.expected)} valid events were not stored"
    everything = stored_text(ch, database)
    assert_absent(everything, run.needles, "a stored column")
    for ip in run.ips:
        assert not re.search(rf"(?<![\d.]){re.escape(ip)}(?![\d.])", everything), "a planted IP is stored"
    assert run.expected, "the generator made no valid event"
    assert any(s >= 400 for s in run.statuses) or len(run.statuses) < 10, "the generator made no bad request"


HEADERS = {"User-Agent": CHROME_UA}


@st.composite
def batch(
    draw: st.DrawFn,
    run: Run,
    valid: Callable[[st.DrawFn, Page, Planted], Any],
    keys: list[str],
    max_size: int = 6,
) -> list[Any]:
    """Valid events and bad ones, shuffled; the valid ones' markers become expected."""
    example = run.next_marker()
    pii = draw(planted)
    run.needles += pii.needles()
    run.ips.append(pii.ip)
    items: list[Any] = []
    markers: list[str] = []
    for i in range(draw(st.integers(1, max_size))):
        page = draw(pages(f"{example}x{i}", pii))
        event = valid(draw, page, pii)
        if draw(st.integers(0, 2)) == 0:
            items.append(junk_url(draw(mutated(event, keys))))
        else:
            items.append(event)
            markers.append(page.marker)
    run.pending = markers
    return draw(st.permutations(items))


def accept_markers(run: Run) -> None:
    run.expected.update(run.pending)


# --- native: POST /v1/events and GET /v1/pixel.gif --------------------------------------------------


def native_event(draw: st.DrawFn, page: Page, pii: Planted) -> dict[str, Any]:
    event: dict[str, Any] = {
        "site": "demo",
        "url": page.url,
        "title": page.title,
        "referrer": page.referrer,
        "props": draw(props),
        "client_id": pii.ids[0],
        "user_id": pii.ids[1],
        "session_id": pii.ids[2],
    }
    if draw(st.booleans()):
        event.update(type="event", name=draw(names))
    return event


NATIVE_KEYS = ["site", "type", "name", "url", "props", "consent", "screen", "location", "ts", "client_id"]


def test_native_events(run: Run, ch: Client, database: str) -> None:
    @given(st.data())
    def one(data: st.DataObject) -> None:
        items = data.draw(batch(run, native_event, NATIVE_KEYS, max_size=8))
        body = orjson.dumps(items if len(items) > 1 or data.draw(st.booleans()) else items[0])
        ctype = data.draw(st.sampled_from(["application/json", "text/plain", "text/plain;charset=UTF-8"]))
        r = run.client.post("/v1/events", content=body, headers={**HEADERS, "Content-Type": ctype})
        run.check(r)
        if r.status_code == 202:
            assert r.json()["accepted"] >= len(run.pending)
        accept_markers(run)

    one()
    verify(run, ch, database)


def test_native_pixel(run: Run, ch: Client, database: str) -> None:
    @given(st.data())
    def one(data: st.DataObject) -> None:
        [item] = data.draw(batch(run, native_event, NATIVE_KEYS, max_size=1))
        params: dict[str, Any] = {}
        if isinstance(item, dict):
            mapping = {"site": "site", "url": "url", "referrer": "ref", "title": "title", "name": "name"}
            params = {mapping[k]: v for k, v in item.items() if k in mapping}
        params.update(
            data.draw(st.dictionaries(st.sampled_from(["x", "site", "ref", "name", "é"]), text, max_size=2))
        )
        if (
            params.get("site") != "demo"
            or not isinstance(params.get("url"), str)
            or "/gen/" not in params["url"]
        ):
            run.pending = []
        query = urlencode(
            {k: v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in params.items()}
        )
        r = run.client.get(f"/v1/pixel.gif?{query}", headers=HEADERS)
        run.check(r)
        accept_markers(run)

    one()
    verify(run, ch, database)


# --- the wire-compatible formats -----------------------------------------------------------------------


def plausible_event(draw: st.DrawFn, page: Page, pii: Planted) -> dict[str, Any]:
    p = draw(props) | {"email": pii.email, "note": pii.email}
    return {
        "n": draw(st.sampled_from(["pageview", "signup", "engagement"])),
        "u": page.url,
        "d": draw(st.sampled_from(["demo", "demo,unknown.example", "unknown.example,demo"])),
        "r": page.referrer,
        "p": orjson.dumps(p).decode() if draw(st.booleans()) else p,
        "e": draw(st.integers(0, 10_000)),
        "w": draw(st.integers(0, 5000)),
    }


def umami_event(draw: st.DrawFn, page: Page, pii: Planted) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "website": "demo",
        "hostname": "example.com",
        "url": page.url if draw(st.booleans()) else page.url.removeprefix("https://example.com"),
        "title": page.title,
        "referrer": page.referrer,
        "language": "en-GB",
        "screen": "1920x1080",
        "id": pii.ids[1],
    }
    if draw(st.booleans()):
        payload.update(name=draw(names), data=draw(props) | {"email": pii.email})
    return {"type": "event", "payload": payload}


def segment_message(draw: st.DrawFn, page: Page, pii: Planted) -> dict[str, Any]:
    context = {
        "ip": pii.ip,
        "page": {"url": page.url, "title": page.title, "referrer": page.referrer},
        "sessionId": pii.ids[2],
        "traits": {"email": pii.email},
        "locale": "en-GB",
    }
    common = {"anonymousId": pii.ids[0], "userId": pii.ids[1], "context": context}
    if draw(st.booleans()):
        return {"type": "page", "properties": {"url": page.url, **draw(props)}, **common}
    return {"type": "track", "event": draw(names), "properties": draw(props), **common}


def posthog_event(draw: st.DrawFn, page: Page, pii: Planted) -> dict[str, Any]:
    properties = {
        "token": "demo",
        "distinct_id": pii.ids[1],
        "$device_id": pii.ids[0],
        "$session_id": pii.ids[2],
        "$current_url": page.url,
        "$referrer": page.referrer,
        "title": page.title,
        "$ip": pii.ip,
        "$set": {"email": pii.email},
        **draw(props),
    }
    return {
        "event": draw(st.sampled_from(["$pageview", "$pageleave", "signup", "clicked_buy"])),
        "properties": properties,
    }


def snowplow_event(draw: st.DrawFn, page: Page, pii: Planted) -> dict[str, Any]:
    common = {
        "aid": "demo",
        "url": page.url,
        "page": page.title,
        "refr": page.referrer,
        "duid": pii.ids[0],
        "uid": pii.ids[1],
        "sid": pii.ids[2],
        "ip": pii.ip,
        "p": "web",
        "tv": "js-3.0.0",
        "res": "1920x1080",
        "dtm": str(draw(st.integers(0, 2**40))),
    }
    kind = draw(st.sampled_from(["pv", "se", "ue", "pp"]))
    if kind == "se":
        common.update(se_ac=draw(names), se_ca="cat", se_la=pii.email)
    elif kind == "ue":
        inner = {
            "schema": "iglu:com.acme/signup/jsonschema/1-0-0",
            "data": draw(props) | {"email": pii.email},
        }
        envelope = orjson.dumps(
            {"schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0", "data": inner}
        )
        if draw(st.booleans()):
            common["ue_pr"] = envelope.decode()
        else:
            common["ue_px"] = base64.urlsafe_b64encode(envelope).decode().rstrip("=")
    return {"e": kind, **common}


def _post(run: Run, path: str, body: bytes, headers: dict[str, str], query: str = "") -> None:
    r = run.client.post(path + (f"?{query}" if query else ""), content=body, headers={**HEADERS, **headers})
    run.check(r)
    accept_markers(run)


def test_plausible(run: Run, ch: Client, database: str) -> None:
    @given(st.data())
    def one(data: st.DataObject) -> None:
        [item] = data.draw(batch(run, plausible_event, ["n", "u", "d", "p", "r", "e"], max_size=1))
        body = orjson.dumps(item)
        headers = {"Content-Type": data.draw(st.sampled_from(["text/plain", "application/json"]))}
        if data.draw(st.booleans()):
            body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
        _post(run, "/api/event", body, headers)

    one()
    verify(run, ch, database)


def test_umami(run: Run, ch: Client, database: str) -> None:
    @given(st.data())
    def one(data: st.DataObject) -> None:
        [item] = data.draw(batch(run, umami_event, ["type", "payload"], max_size=1))
        if isinstance(item, dict) and isinstance(item.get("payload"), dict) and data.draw(st.booleans()):
            item["payload"] = junk_url(
                data.draw(mutated(item["payload"], ["website", "url", "name", "data"]))
            )
            run.pending = []
        _post(run, "/api/send", orjson.dumps(item), {"Content-Type": "application/json"})

    one()
    verify(run, ch, database)


def test_segment(run: Run, ch: Client, database: str) -> None:
    @given(st.data())
    def one(data: st.DataObject) -> None:
        items = data.draw(batch(run, segment_message, ["type", "event", "properties", "context", "userId"]))
        identify = {"type": "identify", "userId": "x", "traits": {"email": "t@ex.org"}}
        items = [*items, identify] if data.draw(st.booleans()) else items
        how = data.draw(st.sampled_from(["body", "basic", "header"]))
        doc: dict[str, Any] = {"batch": items}
        headers = {"Content-Type": "application/json"}
        if how == "body":
            doc["writeKey"] = "demo"
        elif how == "basic":
            headers["Authorization"] = "Basic " + base64.b64encode(b"demo:").decode()
        else:
            headers["X-Write-Key"] = "demo"
        body = orjson.dumps(doc)
        if data.draw(st.booleans()):
            body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
        _post(run, data.draw(st.sampled_from(["/v1/batch", "/v1/import"])), body, headers)

    one()
    verify(run, ch, database)


def test_posthog(run: Run, ch: Client, database: str) -> None:
    lz = lzstring.LZString()

    @given(st.data())
    def one(data: st.DataObject) -> None:
        items = data.draw(batch(run, posthog_event, ["event", "properties", "distinct_id", "timestamp"]))
        shape = data.draw(st.sampled_from(["array", "batch", "single"]))
        doc: Any = items if shape == "array" or (len(items) > 1 and shape == "single") else items[0]
        if shape == "batch":
            doc = {"api_key": "demo", "batch": items}
        text_doc = orjson.dumps(doc).decode()
        if data.draw(st.booleans()):  # non-Latin-1 characters in the payload
            text_doc = text_doc.replace("Generated page", "Страница €")
        path = data.draw(st.sampled_from(["/e/", "/i/v0/e/", "/capture/", "/batch/"]))
        encoding = data.draw(st.sampled_from(["json", "gzip", "gzip-js", "base64", "lz64", "form", "get"]))
        raw = text_doc.encode()
        if encoding == "get":
            r = run.client.get(f"{path}?data={quote(text_doc)}", headers=HEADERS)
            run.check(r)
            accept_markers(run)
        elif encoding == "json":
            _post(run, path, raw, {"Content-Type": "application/json"})
        elif encoding == "gzip":
            _post(run, path, gzip.compress(raw), {"Content-Encoding": "gzip"})
        elif encoding == "gzip-js":
            _post(run, path, gzip.compress(raw), {"Content-Type": "text/plain"}, "compression=gzip-js")
        elif encoding == "base64":
            _post(run, path, base64.b64encode(raw), {"Content-Type": "text/plain"}, "compression=base64")
        elif encoding == "lz64":
            _post(run, path, lz.compressToBase64(text_doc).encode(), {}, "compression=lz64")
        else:
            form = urlencode({"data": base64.b64encode(raw).decode(), "compression": "base64"})
            _post(run, path, form.encode(), {"Content-Type": "application/x-www-form-urlencoded"})

    one()
    verify(run, ch, database)


def test_snowplow(run: Run, ch: Client, database: str) -> None:
    @given(st.data())
    def one(data: st.DataObject) -> None:
        if data.draw(st.integers(0, 3)) == 0:  # the pixel: one event in the query string
            [item] = data.draw(batch(run, snowplow_event, ["e", "aid", "url", "se_ac", "ue_pr", "ue_px"], 1))
            fields = item if isinstance(item, dict) else {"e": item}
            query = urlencode(
                {k: v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in fields.items()}
            )
            if any(not isinstance(v, str) for v in fields.values()):
                run.pending = []  # a value made JSON text may still be valid
            r = run.client.get(f"/i?{query}", headers=HEADERS)
            run.check(r)
            accept_markers(run)
            return
        items = data.draw(batch(run, snowplow_event, ["e", "aid", "url", "se_ac", "ue_pr", "ue_px"]))
        body = orjson.dumps({"schema": SP_SCHEMA, "data": items})
        headers = {"Content-Type": "application/json; charset=UTF-8"}
        if data.draw(st.booleans()):
            body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
        _post(run, TP2, body, headers)

    one()
    verify(run, ch, database)


# --- any bytes at all ----------------------------------------------------------------------------------

ENDPOINTS = ["/v1/events", "/api/event", "/api/send", "/v1/batch", "/v1/t", "/e/", "/batch/", TP2]


@given(
    path=st.sampled_from(ENDPOINTS),
    body=st.one_of(st.binary(max_size=300), json_values.map(orjson.dumps)),
    ctype=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded", "x/y", ""]),
    encoding=st.sampled_from(["", "gzip", "deflate", "br", "identity"]),
    query=st.dictionaries(st.sampled_from(["compression", "data", "ver", "x"]), text, max_size=2),
)
def test_any_body_gets_an_answer_below_500(
    client: TestClient, path: str, body: bytes, ctype: str, encoding: str, query: dict[str, str]
) -> None:
    headers = {**HEADERS, "Content-Type": ctype}
    if encoding:
        headers["Content-Encoding"] = encoding
    r = client.post(f"{path}?{urlencode(query)}", content=body, headers=headers)
    assert r.status_code < 500, (path, r.status_code, r.text)
    g = client.get(f"/i?{urlencode(query)}", headers=HEADERS)
    assert g.status_code < 500
    g = client.get(f"/e/?{urlencode(query)}", headers=HEADERS)
    assert g.status_code < 500
