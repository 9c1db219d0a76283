"""PRIVACY.md rows 3, 4 and 9 through the app into chDB: consent sources and their precedence, GPC, DNT,
the opt-out cookie and children's audiences. Each test reads the stored rows back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from clickhouse_connect.driver.client import Client
from starlette.testclient import TestClient

from config.settings import Settings
from proxy.app import create_app
from tests.conftest import CHROME_UA, admin, stored_rows, stored_text
from tests.proxy.test_consent import Core

UA = {"User-Agent": CHROME_UA, "Content-Type": "application/json"}
EVENT: dict[str, Any] = {
    "site": "demo",
    "url": "https://example.com/kids/games?gclid=G123",
    "client_id": "cid-raw-1",
    "props": {"plan": "pro"},
    "location": {"lat": 48.85, "lon": 2.35},
}


def post(c: TestClient, event: dict[str, Any], **headers: str) -> dict[str, Any]:
    r = c.post("/v1/events", content=orjson.dumps(event), headers={**UA, **headers})
    assert r.status_code == 202, r.text
    body: dict[str, Any] = r.json()
    return body


def run(
    make_settings: Callable[..., Settings],
    ch: Client,
    database: str,
    demo: dict[str, Any],
    event: dict[str, Any],
    **headers: str,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    settings = make_settings(sites={"demo": {"allowed_origins": ["*"], **demo}})
    with TestClient(create_app(settings), client=("203.0.113.9", 5000)) as c:
        answer = post(c, event, **headers)
        return answer, stored_rows(ch, database, c)


JSON_COOKIE = {"consent_cookie": {"name": "cc", "format": "json", "keys": {"analytics": "statistics"}}}
KV_COOKIE = {"consent_cookie": {"name": "cc", "format": "kv"}}
TCF_COOKIE = {"consent_cookie": {"name": "euconsent-v2", "format": "tcf"}}
ALL_ANALYTICS = Core(purposes=frozenset({1, 8, 9, 10})).encode()
NO_PURPOSES = Core(purposes=frozenset()).encode()


@pytest.mark.parametrize(
    ("demo", "beacon_consent", "cookie", "expected"),
    [
        # beacon alone
        ({}, {"analytics": True}, None, ["analytics"]),
        ({}, None, None, []),
        # cookie alone, each format (and a CMP's own key name)
        (JSON_COOKIE, None, "cc=" + quote('{"statistics":true,"marketing":false}'), ["analytics"]),
        (KV_COOKIE, None, "cc=analytics:1,marketing:0", ["analytics"]),
        (TCF_COOKIE, None, f"euconsent-v2={ALL_ANALYTICS}", ["analytics"]),
        # the most restrictive answer wins
        (JSON_COOKIE, {"analytics": True}, "cc=" + quote('{"statistics":false}'), []),
        (TCF_COOKIE, {"analytics": True, "marketing": True}, f"euconsent-v2={NO_PURPOSES}", []),
        (KV_COOKIE, {"analytics": False}, "cc=analytics:1", []),
        # site defaults apply only where no source speaks
        ({"consent_defaults": {"analytics": True}}, None, None, ["analytics"]),
        ({"consent_defaults": {"analytics": True}}, {"analytics": False}, None, []),
        ({**KV_COOKIE, "consent_defaults": {"analytics": True}}, None, "cc=marketing:0", ["analytics"]),
        # a consent cookie that is there but unreadable refuses, even over a granting default
        ({**TCF_COOKIE, "consent_defaults": {"analytics": True}}, None, "euconsent-v2=garbage!!", []),
        ({**JSON_COOKIE, "consent_defaults": {"analytics": True}}, None, "cc=%7Bnot-json", []),
        # a repeated consent cookie (other paths or domains): a lenient copy never outvotes a refusing one
        (KV_COOKIE, None, "cc=analytics:1; x=1; cc=analytics:0", []),
        (KV_COOKIE, None, "cc=analytics:0; cc=analytics:1", []),
        (KV_COOKIE, None, "cc=analytics:1; cc=analytics:1,marketing:1", ["analytics", "marketing"]),
        (KV_COOKIE, None, "cc=analytics:1; cc=marketing:0", ["analytics"]),
        ({**KV_COOKIE, "consent_defaults": {"analytics": True}}, None, "cc=analytics:1; cc=nonsense", []),
        ({**KV_COOKIE, "consent_defaults": {"analytics": True}}, None, "cc=analytics:1; cc=a\x01", []),
        (TCF_COOKIE, None, f"euconsent-v2={ALL_ANALYTICS}; euconsent-v2={NO_PURPOSES}", []),
        (JSON_COOKIE, {"analytics": True}, "cc=" + quote('{"statistics":true}') + "; cc=%7B", []),
    ],
)
def test_consent_sources_and_precedence(
    make_settings: Callable[..., Settings],
    ch: Client,
    database: str,
    demo: dict[str, Any],
    beacon_consent: dict[str, bool] | None,
    cookie: str | None,
    expected: list[str],
) -> None:
    event = {k: v for k, v in EVENT.items() if k != "location"}
    if beacon_consent is not None:
        event["consent"] = beacon_consent
    headers = {"Cookie": cookie} if cookie else {}
    _, [row] = run(make_settings, ch, database, demo, event, **headers)
    assert row["consent"] == expected
    if "analytics" in expected:
        assert isinstance(row["client_id"], str) and len(row["client_id"]) == 32
    else:
        assert row["client_id"] is None
    assert "cid-raw-1" not in stored_text(ch, database)


def test_gpc_withdraws_marketing_from_every_source(
    make_settings: Callable[..., Settings], ch: Client, database: str
) -> None:
    event = dict(EVENT, consent={"analytics": True, "marketing": True})
    _, [row] = run(make_settings, ch, database, {}, event, **{"Sec-GPC": "1"})
    assert row["consent"] == ["analytics"]
    assert row["click_ids"] == {}


@pytest.mark.parametrize(("honour", "dropped"), [(True, 1), (False, 0)])
def test_dnt_is_an_analytics_opt_out_where_the_site_says_so(
    make_settings: Callable[..., Settings], ch: Client, database: str, honour: bool, dropped: int
) -> None:
    answer, rows = run(make_settings, ch, database, {"honour_dnt": honour}, EVENT, DNT="1")
    assert answer == {"accepted": 1 - dropped, "dropped": dropped}
    assert len(rows) == 1 - dropped


@pytest.mark.parametrize(
    ("cookie", "dropped"),
    [
        ("bp_optout=1", 1),
        ("bp_optout=0; bp_optout=1", 1),  # any copy opts out, whichever comes first
        ("bp_optout=1; bp_optout=0", 1),
        ("bp_optout=; other=1; bp_optout=1", 1),
        ("bp_optout=\x7f", 1),  # present but unreadable: the most restrictive reading
        ("bp_optout=0; bp_optout=", 0),
        ("bp_optout_x=1; xbp_optout=1", 0),
    ],
)
def test_a_repeated_opt_out_cookie_opts_out_if_any_copy_does(
    client: TestClient, ch: Client, database: str, cookie: str, dropped: int
) -> None:
    answer = post(client, dict(EVENT, consent={"analytics": True}), Cookie=cookie)
    assert answer == {"accepted": 1 - dropped, "dropped": dropped}
    assert len(stored_rows(ch, database, client)) == 1 - dropped


def test_opt_out_cookie_drops_everything_and_is_counted(
    client: TestClient, ch: Client, database: str, settings: Settings
) -> None:
    answer = post(client, dict(EVENT, consent={"analytics": True}), Cookie="other=1; bp_optout=1")
    assert answer == {"accepted": 0, "dropped": 1}
    assert stored_rows(ch, database, client) == []
    token = (settings.data_dir / "admin_token").read_text().strip()
    stats = admin(client).get("/admin/stats", headers={"Authorization": f"Bearer {token}"}).json()
    assert stats["dropped"]["opted_out"] == 1


@pytest.mark.parametrize(
    ("demo", "url", "children"),
    [
        ({"children_audience": True}, "https://example.com/anything", True),
        ({"children_paths": ["/kids"]}, "https://example.com/kids/games?gclid=G123", True),
        ({"children_paths": ["/kids"]}, "https://example.com/kids", True),
        ({"children_paths": ["/kids/"]}, "https://example.com/kidsstore/x", False),
        ({"children_paths": ["/kids"]}, "https://example.com/grown-ups", False),
        # spellings of the same page (issue 14): see tests/proxy/test_paths.py for generated ones
        ({"children_paths": ["/kids"]}, "https://example.com//KIDS/./x/..;a=1/%67ames", True),
        ({"children_paths": ["/Kids/"]}, "https://example.com/k%69ds%2Fgames;jsessionid=1", True),
        ({"children_paths": ["/kids"]}, "https://example.com/kidsfoo", False),
    ],
)
def test_children_audience_is_stored_aggregate_only(
    make_settings: Callable[..., Settings],
    ch: Client,
    database: str,
    demo: dict[str, Any],
    url: str,
    children: bool,
) -> None:
    event = dict(EVENT, url=url, consent={"analytics": True, "marketing": True, "precise_location": True})
    _, [row] = run(make_settings, ch, database, demo, event)
    if children:
        assert row["consent"] == []
        assert (row["client_id"], row["latitude"], row["props"], row["click_ids"]) == (None, None, {}, {})
    else:
        assert row["consent"] == ["analytics", "marketing", "precise_location"]
        assert row["client_id"] is not None and row["latitude"] == 48.85 and row["props"] == {"plan": "pro"}
    assert row["country"] == "NZ"  # the aggregate facts are still there


def test_children_audience_can_be_dropped(
    make_settings: Callable[..., Settings], ch: Client, database: str
) -> None:
    demo = {"children_paths": ["/kids"], "children_policy": "drop"}
    settings = make_settings(sites={"demo": {"allowed_origins": ["*"], **demo}})
    with TestClient(create_app(settings), client=("203.0.113.9", 5000)) as c:
        assert post(c, EVENT) == {"accepted": 0, "dropped": 1}
        assert post(c, dict(EVENT, url="https://example.com/")) == {"accepted": 1, "dropped": 0}
        token = (settings.data_dir / "admin_token").read_text().strip()
        stats = admin(c).get("/admin/stats", headers={"Authorization": f"Bearer {token}"}).json()
        assert stats["dropped"]["children"] == 1
        assert len(stored_rows(ch, database, c)) == 1


def test_children_audience_is_kept_even_where_anonymous_events_are_dropped(
    make_settings: Callable[..., Settings], ch: Client, database: str
) -> None:
    """without_consent = drop is about identifiers; a children's aggregate row has none and is kept."""
    demo = {"children_audience": True, "without_consent": "drop"}
    _, rows = run(make_settings, ch, database, demo, dict(EVENT, consent={"analytics": True}))
    assert len(rows) == 1 and rows[0]["client_id"] is None


def test_rotated_key_makes_new_pseudonyms(
    make_settings: Callable[..., Settings], ch: Client, database: str
) -> None:
    k1, k2 = "k1-" + "a" * 20, "k2-" + "b" * 20
    event = dict(EVENT, consent={"analytics": True})
    pseudonyms = []
    for keys in ([k1], [k2, k1]):
        settings = make_settings(sites={"demo": {"allowed_origins": ["*"], "pseudonym_keys": keys}})
        with TestClient(create_app(settings), client=("203.0.113.9", 5000)) as c:
            post(c, event)
            pseudonyms.append(stored_rows(ch, database, c)[-1]["client_id"])
    assert pseudonyms[0] != pseudonyms[1]
    assert all(isinstance(p, str) and len(p) == 32 for p in pseudonyms)
