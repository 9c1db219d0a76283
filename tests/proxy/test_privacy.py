"""PRIVACY.md, end to end: beacons go through the ASGI app into chDB, then every stored column of every
row, the logs, the responses and the data directory are searched for what must never be kept.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from clickhouse_connect.driver.client import Client
from starlette.testclient import TestClient

from config.settings import Settings
from tests.conftest import CHROME_UA, admin, stored_rows, stored_text

FULL_V4 = "203.0.113.77"  # NZ in the test GeoIP database
FULL_V6 = "2001:db8:1::beef:cafe"  # FR
MAPPED = "::ffff:198.51.100.99"  # DE once normalised
EMAIL = "jo.doe@example.com"
SECRETS = ("cid-SECRET-1", "uid-SECRET-2", "sid-SECRET-3", "GCLIDVALUE123", "TOPSECRETTOKEN", "searchterm42")

# Every field that can carry text carries the client's own IP, an e-mail and a token.
LEAKY_EVENT: dict[str, Any] = {
    "site": "demo",
    "url": (
        f"https://example.com/u/{FULL_V4}/{EMAIL}/orders?token=TOPSECRETTOKEN&q=searchterm42"
        f"&utm_source={EMAIL}&gclid=GCLIDVALUE123#{EMAIL}"
    ),
    "referrer": f"https://search.example.net/q/{EMAIL}?ip={FULL_V4}",
    "title": f"Hello {EMAIL} from {FULL_V4} and {FULL_V6}",
    "name": "pageview",
    "props": {
        "email": EMAIL,
        "note": f"reach me at {EMAIL} / {FULL_V4}",
        "password": "hunter2",
        "plan": "pro",
    },
    "client_id": "cid-SECRET-1",
    "user_id": "uid-SECRET-2",
    "session_id": "sid-SECRET-3",
    "location": {"lat": 51.501234, "lon": -0.141234},
    "language": "en-GB",
    "unknown_field": FULL_V4,
}


def needles(*ips: str) -> list[str]:
    out = [EMAIL, EMAIL.replace("@", "%40"), "hunter2", "Mozilla", "AppleWebKit", "Win64", *SECRETS]
    for ip in ips:
        out.append(ip)
        # the part truncation removes, with its separator so random hex or digits cannot match it
        out.append(".".join(ip.rsplit(".", 2)[-2:]) if "." in ip else ":".join(ip.rsplit(":", 2)[-2:]))
    return out


def assert_absent(text: str, needles_: list[str], where: str) -> None:
    found = [n for n in needles_ if n.lower() in text.lower()]
    assert not found, f"{where} leaks {found}"


def data_dir_text(settings: Settings) -> str:
    parts = []
    for p in Path(settings.data_dir).rglob("*"):
        if p.is_file():
            parts.append(p.read_bytes().decode("latin-1"))
    return "\n".join(parts)


@pytest.mark.parametrize(
    ("peer", "xff", "client_ip", "stored_ip", "country"),
    [
        ("127.0.0.1", FULL_V4, FULL_V4, "203.0.113.0", "NZ"),  # through the trusted loopback proxy
        (FULL_V4, None, FULL_V4, "203.0.113.0", "NZ"),  # direct
        ("::1", FULL_V6, FULL_V6, "2001:db8:1::", "FR"),
        ("127.0.0.1", MAPPED, "198.51.100.99", "198.51.100.0", "DE"),
        (MAPPED, None, "198.51.100.99", "198.51.100.0", "DE"),
    ],
)
def test_nothing_identifying_is_stored_logged_or_spooled(
    client_factory: Callable[..., TestClient],
    ch: Client,
    database: str,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
    peer: str,
    xff: str | None,
    client_ip: str,
    stored_ip: str,
    country: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    c = client_factory(peer)
    headers = {"User-Agent": CHROME_UA, "Content-Type": "application/json"}
    if xff:
        headers["X-Forwarded-For"] = xff
    without = dict(LEAKY_EVENT)
    with_consent = dict(LEAKY_EVENT, consent={"analytics": True})
    bad = dict(LEAKY_EVENT, title=12345, name=FULL_V4 * 200)  # invalid: errors must not quote values
    r = c.post("/v1/events", content=orjson.dumps([without, with_consent, bad]), headers=headers)
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == 2
    assert_absent(r.text, needles(client_ip, FULL_V4), "the response")

    rows = stored_rows(ch, database, c)
    assert len(rows) == 2
    for row in rows:
        assert row["ip"] == stored_ip
        assert row["country"] == country
        assert row["latitude"] is None and row["longitude"] is None  # no precise_location consent
        assert row["click_ids"] == {}  # no marketing consent
        assert set(row["props"]) == {"note", "plan"}
        assert row["url"].startswith("https://example.com/u/")
        assert "utm_source=" in row["url"]
        assert row["referrer"] == "https://search.example.net"
        assert row["language"] == "en"
    anonymous, consented = rows if rows[0]["client_id"] is None else rows[::-1]
    assert (anonymous["client_id"], anonymous["user_id"], anonymous["session_id"]) == (None, None, None)
    assert anonymous["consent"] == []
    assert consented["consent"] == ["analytics"]
    for col in ("client_id", "user_id", "session_id"):  # pseudonyms, not raw
        assert isinstance(consented[col], str) and len(consented[col]) == 32

    everything = stored_text(ch, database)
    assert_absent(everything, needles(client_ip, FULL_V4, FULL_V6), "a stored column")
    assert_absent(caplog.text, needles(client_ip, FULL_V4, FULL_V6), "the logs")
    assert_absent(data_dir_text(settings), needles(client_ip, FULL_V4, FULL_V6), "the data directory")
    token = (settings.data_dir / "admin_token").read_text().strip()
    stats = admin(c).get("/admin/stats", headers={"Authorization": f"Bearer {token}"}).text
    assert_absent(stats, needles(client_ip, FULL_V4, FULL_V6), "the metrics")


def test_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(
    client_factory: Callable[..., TestClient], ch: Client, database: str
) -> None:
    c = client_factory("198.51.100.20")  # not a trusted proxy
    headers = {"User-Agent": CHROME_UA, "Content-Type": "application/json", "X-Forwarded-For": "192.0.2.30"}
    assert (
        c.post("/v1/events", json={"site": "demo", "url": "https://e.com/"}, headers=headers).status_code
        == 202
    )
    [row] = stored_rows(ch, database, c)
    assert (row["ip"], row["country"]) == ("198.51.100.0", "DE")  # the peer, not the spoofed US address


def test_right_most_untrusted_hop_wins_behind_trusted_proxies(
    make_settings: Callable[..., Settings], ch: Client, database: str
) -> None:
    from proxy.app import create_app

    app = create_app(make_settings(server={"trusted_proxies": ["127.0.0.1", "10.0.0.0/8"]}))
    with TestClient(app, client=("127.0.0.1", 5000)) as c:
        headers = {
            "User-Agent": CHROME_UA,
            "Content-Type": "application/json",
            # spoofed left-most entry, then the real client, then an internal proxy
            "X-Forwarded-For": "192.0.2.30, 198.51.100.20, 10.1.2.3",
        }
        assert (
            c.post("/v1/events", json={"site": "demo", "url": "https://e.com/"}, headers=headers).status_code
            == 202
        )
        [row] = stored_rows(ch, database, c)
    assert (row["ip"], row["country"]) == ("198.51.100.0", "DE")


@pytest.mark.parametrize(
    ("bits", "expected"), [({"ipv4_prefix_bits": 16}, "203.0.0.0"), ({"ipv4_prefix_bits": 8}, "203.0.0.0")]
)
def test_truncation_is_configurable(
    make_settings: Callable[..., Settings], ch: Client, database: str, bits: dict[str, int], expected: str
) -> None:
    from proxy.app import create_app

    app = create_app(make_settings(privacy=bits))
    with TestClient(app, client=(FULL_V4, 5000)) as c:
        c.post(
            "/v1/events", json={"site": "demo", "url": "https://e.com/"}, headers={"User-Agent": CHROME_UA}
        )
        [row] = stored_rows(ch, database, c)
    assert row["ip"] == expected
    assert row["country"] == "NZ"  # geo used the full address before truncation


def test_consent_categories_control_what_is_kept(client: TestClient, ch: Client, database: str) -> None:
    full = dict(LEAKY_EVENT, consent={"analytics": True, "marketing": True, "precise_location": True})
    headers = {"User-Agent": CHROME_UA, "Content-Type": "application/json"}
    assert client.post("/v1/events", content=orjson.dumps(full), headers=headers).status_code == 202
    gpc = client.post("/v1/events", content=orjson.dumps(full), headers={**headers, "Sec-GPC": "1"})
    assert gpc.status_code == 202
    rows = stored_rows(ch, database, client)
    consented, withdrawn = sorted(rows, key=lambda r: len(r["consent"]), reverse=True)
    assert consented["consent"] == ["analytics", "marketing", "precise_location"]
    assert set(consented["click_ids"]) == {"gclid"}
    assert consented["click_ids"]["gclid"] != "GCLIDVALUE123"
    assert (consented["latitude"], consented["longitude"]) == (51.501234, -0.141234)
    # Sec-GPC: 1 withdraws marketing: no click id, and the row says so
    assert withdrawn["consent"] == ["analytics", "precise_location"]
    assert withdrawn["click_ids"] == {}
    assert_absent(stored_text(ch, database), ["GCLIDVALUE123", "cid-SECRET-1"], "a stored column")


def test_visitor_hash_is_daily_and_cookieless(
    client_factory: Callable[..., TestClient], ch: Client, database: str
) -> None:
    a, b = client_factory("203.0.113.10"), client_factory("203.0.113.11")
    h = {"User-Agent": CHROME_UA}
    for c in (a, a, b):
        c.post("/v1/events", json={"site": "demo", "url": "https://e.com/"}, headers=h)
    rows = stored_rows(ch, database, a)
    hashes = [r["visitor_hash"] for r in rows]
    assert len(hashes) == 3
    assert all(x > 0 for x in hashes)
    assert len(set(hashes)) == 2  # same IP+UA -> same visitor; same /24 but other IP -> another visitor


def test_the_spool_holds_only_anonymised_events(make_settings: Callable[..., Settings]) -> None:
    """What waits in the spool is what would be stored: no full IP, raw UA, identifier, e-mail or token."""
    from proxy.app import create_app

    settings = make_settings(batch={"max_age_seconds": 3600})  # nothing is sealed or shipped meanwhile
    app = create_app(settings)
    with TestClient(app, client=(FULL_V4, 5000)) as c:
        headers = {"User-Agent": CHROME_UA, "Content-Type": "application/json"}
        body = [LEAKY_EVENT, dict(LEAKY_EVENT, consent={"analytics": True})]
        assert c.post("/v1/events", content=orjson.dumps(body), headers=headers).status_code == 202
        spooled = b"".join(p.read_bytes() for p in (settings.data_dir / "spool").glob("*.open"))
        assert spooled.count(b"https://example.com/u/") == 2  # both events are really in there
        assert_absent(spooled.decode("latin-1"), needles(FULL_V4, FULL_V6), "the spool")


@pytest.mark.parametrize(
    ("client", "tail"),
    [
        ("2002:cb00:714d:1::1", "cb00:714d"),  # 6to4
        ("2001:0:4136:e378:8000:63bf:34ff:8eb2", "34ff:8eb2"),  # Teredo, the client's address inverted
        ("64:ff9b::203.0.113.77", "cb00:714d"),  # NAT64
        ("64:ff9b:1::cb00:714d", "cb00:714d"),  # local-use NAT64, /96
        ("::ffff:0:203.0.113.77", "cb00:714d"),  # IPv4-translated
        ("::203.0.113.77", "cb00:714d"),  # IPv4-compatible
    ],
)
@pytest.mark.parametrize("v6_bits", [48, 128])
def test_an_ipv4_inside_ipv6_is_stored_truncated_like_ipv4(
    make_settings: Callable[..., Settings],
    ch: Client,
    database: str,
    caplog: pytest.LogCaptureFixture,
    client: str,
    tail: str,
    v6_bits: int,
) -> None:
    """The IPv4 address 203.0.113.77 in each IPv6 transition form: stored as 203.0.113.0 with its geo,
    whatever the IPv6 prefix setting; neither the address nor its IPv6 spelling is kept anywhere."""
    from proxy.app import create_app

    caplog.set_level(logging.DEBUG)
    settings = make_settings(privacy={"ipv6_prefix_bits": v6_bits})
    with TestClient(create_app(settings), client=("127.0.0.1", 5000)) as c:
        headers = {"User-Agent": CHROME_UA, "Content-Type": "application/json", "X-Forwarded-For": client}
        r = c.post("/v1/events", json={"site": "demo", "url": "https://e.com/"}, headers=headers)
        assert r.status_code == 202, r.text
        [row] = stored_rows(ch, database, c)
    assert (row["ip"], row["country"]) == ("203.0.113.0", "NZ")
    leaks = [client, tail, FULL_V4, ".113.77", ipaddress.ip_address(client).exploded]
    assert_absent(stored_text(ch, database), leaks, "a stored column")
    assert_absent(caplog.text, leaks, "the logs")
    assert_absent(data_dir_text(settings), leaks, "the data directory")
