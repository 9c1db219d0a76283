"""The pipeline's order and drops: one test per drop reason, and the phase boundary for the full IP."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.settings import Settings
from proxy import pipeline as pl
from proxy.clientip import anonymise, format_ip
from proxy.consent import parse_cookie_header
from proxy.geo import GeoLookup
from proxy.keys import DailySalt, SiteKeys
from proxy.metrics import Metrics
from proxy.model import Beacon, Consent, DropReason
from proxy.parse import EventError
from proxy.subjects import Suppressions
from tests.conftest import CHROME_UA
from tests.proxy.test_clientip import (
    enc_6to4,
    enc_compatible,
    enc_local_nat64,
    enc_nat64,
    enc_teredo,
    enc_translated,
)

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.fixture
def services(settings: Settings, geoip_files: tuple[str, str]) -> pl.Services:
    return pl.Services(
        settings,
        GeoLookup(list(geoip_files)),
        DailySalt(settings.data_dir / "salts"),
        SiteKeys(b"k" * 32, {}),
        Metrics(),
    )


@pytest.fixture
def run(services: pl.Services) -> Callable[..., pl.Outcome]:
    pipeline = pl.Pipeline(services)

    def go(
        *beacons: Beacon | EventError, ua: str = CHROME_UA, origin: str | None = None, **info: object
    ) -> pl.Outcome:
        request = pl.RequestInfo(peer="203.0.113.77", forwarded=None, user_agent=ua, origin=origin, now=NOW)
        for k, v in info.items():
            setattr(request, k, v)
        return pipeline.process(request, list(beacons))

    return go


def test_accepts_a_plain_pageview(run: Callable[..., pl.Outcome]) -> None:
    out = run(Beacon(site="demo", url="https://e.com/"))
    assert len(out.events) == 1
    assert not out.dropped


def test_drop_invalid(run: Callable[..., pl.Outcome], services: pl.Services) -> None:
    out = run(EventError("field 'site' is required"), Beacon(site="demo", url="https://e.com/"))
    assert out.dropped == {DropReason.INVALID: 1}
    assert out.errors == [(0, "field 'site' is required")]
    assert services.metrics.dropped[DropReason.INVALID] == 1


def test_drop_unknown_site(run: Callable[..., pl.Outcome]) -> None:
    assert run(Beacon(site="nope", url="https://e.com/")).dropped == {DropReason.UNKNOWN_SITE: 1}


def test_drop_disallowed_origin(run: Callable[..., pl.Outcome]) -> None:
    b = Beacon(site="shop", url="https://shop.example.com/", consent=Consent(analytics=True))
    assert run(b, origin="https://evil.example").dropped == {DropReason.ORIGIN_NOT_ALLOWED: 1}
    assert len(run(b, origin="https://shop.example.com").events) == 1


@pytest.mark.parametrize(
    "ua",
    [
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "curl/8.5.0",
        "python-requests/2.31",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "HeadlessChrome/120.0 Safari/537.36",
        "",
    ],
)
def test_drop_bot(run: Callable[..., pl.Outcome], ua: str) -> None:
    out = run(Beacon(site="demo", url="https://e.com/"), Beacon(site="demo", url="https://e.com/2"), ua=ua)
    assert out.dropped == {DropReason.BOT: 2}
    assert not out.events


def test_drop_no_consent_when_the_site_keeps_nothing_anonymous(run: Callable[..., pl.Outcome]) -> None:
    assert run(Beacon(site="shop", url="https://shop.example.com/")).dropped == {DropReason.NO_CONSENT: 1}
    kept = run(Beacon(site="shop", url="https://shop.example.com/", consent=Consent(analytics=True)))
    assert len(kept.events) == 1


def test_drop_opted_out(run: Callable[..., pl.Outcome]) -> None:
    out = run(Beacon(site="demo", url="https://e.com/"), cookies={"bp_optout": ["1"]})
    assert out.dropped == {DropReason.OPTED_OUT: 1}
    assert len(run(Beacon(site="demo", url="https://e.com/"), cookies={"bp_optout": ["0"]}).events) == 1


def test_drop_do_not_track(make_settings: Callable[..., Settings], geoip_files: tuple[str, str]) -> None:
    settings = make_settings(sites={"demo": {"allowed_origins": ["*"], "honour_dnt": True}})
    services = pl.Services(
        settings,
        GeoLookup(list(geoip_files)),
        DailySalt(settings.data_dir / "s"),
        SiteKeys(b"k" * 32, {}),
        Metrics(),
    )
    info = pl.RequestInfo(peer="203.0.113.77", forwarded=None, user_agent=CHROME_UA, dnt=True, now=NOW)
    out = pl.Pipeline(services).process(info, [Beacon(site="demo", url="https://e.com/")])
    assert out.dropped == {DropReason.DO_NOT_TRACK: 1}


def test_drop_children(make_settings: Callable[..., Settings], geoip_files: tuple[str, str]) -> None:
    demo = {"allowed_origins": ["*"], "children_paths": ["/kids"], "children_policy": "drop"}
    settings = make_settings(sites={"demo": demo})
    services = pl.Services(
        settings,
        GeoLookup(list(geoip_files)),
        DailySalt(settings.data_dir / "s"),
        SiteKeys(b"k" * 32, {}),
        Metrics(),
    )
    info = pl.RequestInfo(peer="203.0.113.77", forwarded=None, user_agent=CHROME_UA, now=NOW)
    out = pl.Pipeline(services).process(info, [Beacon(site="demo", url="https://e.com/kids/x")])
    assert out.dropped == {DropReason.CHILDREN: 1}


def test_drop_blocked(make_settings: Callable[..., Settings], geoip_files: tuple[str, str]) -> None:
    settings = make_settings(sites={"demo": {"allowed_origins": ["*"], "blocked_subjects": "drop"}})
    keys = SiteKeys(b"k" * 32, {})
    suppressions = Suppressions([("demo", "client_id", keys.subject("demo", "client_id", "c-9"))])
    services = pl.Services(
        settings,
        GeoLookup(list(geoip_files)),
        DailySalt(settings.data_dir / "s"),
        keys,
        Metrics(),
        suppressions,
    )
    info = pl.RequestInfo(peer="203.0.113.77", forwarded=None, user_agent=CHROME_UA, now=NOW)
    consent = Consent(analytics=True)
    out = pl.Pipeline(services).process(
        info,
        [
            Beacon(site="demo", url="https://e.com/", client_id="c-9", consent=consent),
            Beacon(site="demo", url="https://e.com/", client_id="c-8", consent=consent),
        ],
    )
    assert out.dropped == {DropReason.BLOCKED: 1}
    assert [e.client_id is not None for e in out.events] == [True]


def test_drop_reasons_are_a_closed_set_each_tested_here() -> None:
    tested = {
        "invalid",
        "unknown_site",
        "origin_not_allowed",
        "bot",
        "no_consent",
        "opted_out",
        "do_not_track",
        "children",
        "blocked",
    }
    assert {r.value for r in DropReason} == tested


def test_the_first_drop_stops_the_run(run: Callable[..., pl.Outcome], services: pl.Services) -> None:
    """An unknown site from a disallowed origin is counted once, as unknown_site (the first step)."""
    out = run(Beacon(site="nope", url="https://e.com/"), origin="https://evil.example")
    assert out.dropped == {DropReason.UNKNOWN_SITE: 1}


def test_request_phase_forgets_the_full_ip_and_user_agent(services: pl.Services) -> None:
    info = pl.RequestInfo(peer="203.0.113.77", forwarded=None, user_agent=CHROME_UA, now=NOW)
    start = pl.Visit(info=info, sites=frozenset({"demo"}), now_ms=info.now.timestamp() * 1000)
    visit = pl._run(pl.REQUEST_STEPS, start, services)
    assert isinstance(visit, pl.Visit)
    assert visit.full_ip is None
    assert visit.info.peer is None and visit.info.forwarded is None
    assert visit.info.user_agent == ""
    assert visit.ip == "203.0.113.0"
    assert visit.geo.country == "NZ"
    assert visit.visitor_hashes["demo"] > 0
    assert "113.77" not in repr(visit)  # the hash digits may contain 77; the address may not


def test_step_order_keeps_full_ip_work_before_truncation() -> None:
    names = [s.__name__ for s in pl.REQUEST_STEPS]
    assert names.index("put_geo") < names.index("truncate_ip")
    assert names.index("put_visitor_hash") < names.index("truncate_ip")
    assert names[-2:] == ["truncate_ip", "forget_user_agent"]
    event_names = [s.__name__ for s in pl.EVENT_STEPS]
    assert event_names.index("put_consent") < event_names.index("put_identifiers")
    assert event_names.index("put_consent") < event_names.index("scrub_url")  # click ids need consent


@pytest.mark.parametrize(
    ("offset", "client_time_used"),
    [
        (timedelta(hours=-1), True),
        (timedelta(hours=-23), True),
        (timedelta(hours=-25), False),
        (timedelta(minutes=4), True),
        (timedelta(minutes=6), False),
    ],
)
def test_client_clock_is_trusted_within_bounds(
    run: Callable[..., pl.Outcome], offset: timedelta, client_time_used: bool
) -> None:
    client_ts = NOW + offset
    out = run(Beacon(site="demo", url="https://e.com/", ts_ms=int(client_ts.timestamp() * 1000)))
    assert out.events[0].ts == (client_ts if client_time_used else NOW)


def test_replaced_client_clocks_are_counted_by_reason(services: pl.Services) -> None:
    info = pl.RequestInfo(peer="81.2.69.142", forwarded=None, user_agent=CHROME_UA, now=NOW)
    now_ms = int(NOW.timestamp() * 1000)
    beacons = [
        Beacon(site="demo", url="https://e.com/", ts_ms=now_ms - 1000),  # used
        Beacon(site="demo", url="https://e.com/", ts_ms=now_ms - 48 * 3600 * 1000),
        Beacon(site="demo", url="https://e.com/", ts_ms=now_ms + 3600 * 1000),
        Beacon(site="demo", url="https://e.com/", ts_unusable=True),
        Beacon(site="demo", url="https://e.com/"),  # no ts at all: nothing replaced
    ]
    out = pl.Pipeline(services).process(info, list(beacons))
    assert [e.ts for e in out.events] == [NOW - timedelta(seconds=1), NOW, NOW, NOW, NOW]
    assert dict(services.metrics.clock_replaced) == {"too_old": 1, "in_future": 1, "unusable": 1}


@pytest.mark.parametrize(
    ("beacon_lang", "header", "expected"),
    [
        ("en-GB", "", "en"),
        ("", "de-DE,de;q=0.9,en;q=0.8", "de"),
        ("pt_BR", "", "pt"),
        ("x", "", ""),
        ("", "*", ""),
        ("1234", "", ""),
    ],
)
def test_language_is_the_primary_subtag(
    run: Callable[..., pl.Outcome], beacon_lang: str, header: str, expected: str
) -> None:
    out = run(Beacon(site="demo", url="https://e.com/", language=beacon_lang), accept_language=header)
    assert out.events[0].language == expected


def test_steps_are_timed_on_a_sample(run: Callable[..., pl.Outcome], services: pl.Services) -> None:
    for _ in range(pl.TIMING_SAMPLE * 2):
        run(Beacon(site="demo", url="https://e.com/"))
    runs = services.metrics.step_runs
    assert runs["put_geo"] == 2
    assert runs["scrub_url"] == 2
    assert services.metrics.step_ns["put_geo"] > 0


def test_a_batch_derives_each_pseudonym_once_and_the_next_request_again(
    run: Callable[..., pl.Outcome], services: pl.Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, str, str]] = []
    real = services.keys.pseudonym

    def counting(site: str, kind: str, value: str) -> str:
        calls.append((site, kind, value))
        return real(site, kind, value)

    monkeypatch.setattr(services.keys, "pseudonym", counting)
    granted = Consent(analytics=True)
    same = [
        Beacon(site="demo", url=f"https://e.com/{i}", client_id="c-1", session_id="s-1", consent=granted)
        for i in range(5)
    ]
    other = Beacon(site="demo", url="https://e.com/x", client_id="c-2", session_id="s-1", consent=granted)
    out = run(*same, other)
    assert [e.client_id for e in out.events] == [real("demo", "client_id", "c-1")] * 5 + [
        real("demo", "client_id", "c-2")
    ]
    assert {e.session_id for e in out.events} == {real("demo", "session_id", "s-1")}
    assert sorted(calls) == [
        ("demo", "client_id", "c-1"),
        ("demo", "client_id", "c-2"),
        ("demo", "session_id", "s-1"),
    ]
    run(same[0])  # a new request derives again: nothing raw is kept between requests
    assert len(calls) == 5


def test_every_event_gets_its_own_random_version_4_id(run: Callable[..., pl.Outcome]) -> None:
    batches = [run(*[Beacon(site="demo", url=f"https://e.com/{i}") for i in range(50)]) for _ in range(3)]
    ids = [e.event_id for out in batches for e in out.events]
    assert len(ids) == len(set(ids)) == 150
    assert {i.version for i in ids} == {4}


# --- IPv4 addresses inside IPv6 (see tests/proxy/test_clientip.py for every form and bit) ----------


@given(
    host=st.integers(1, 254),
    form=st.sampled_from(["plain", "6to4", "teredo", "nat64", "local96", "compatible", "translated"]),
    bits=st.tuples(st.integers(0, 32), st.integers(0, 128)),
)
def test_a_client_ipv4_inside_ipv6_is_that_ipv4_for_geo_hash_and_truncation(
    services: pl.Services, host: int, form: str, bits: tuple[int, int]
) -> None:
    v4 = bytes([203, 0, 113, host])  # NZ in the test GeoIP database, whichever host
    address = {
        "plain": v4,
        "6to4": enc_6to4(v4, b"\x00\x01" + b"\x00" * 7 + b"\x01"),
        "teredo": enc_teredo(v4),
        "nat64": enc_nat64(v4),
        "local96": enc_local_nat64(v4, 96),
        "compatible": enc_compatible(v4),
        "translated": enc_translated(v4),
    }[form]
    services.v4_bits, services.v6_bits = bits
    pipeline = pl.Pipeline(services)

    def visit(peer: bytes) -> pl.Visit:
        info = pl.RequestInfo(peer=format_ip(peer), forwarded=None, user_agent=CHROME_UA, now=NOW)
        start = pl.Visit(info=info, sites=frozenset({"demo"}), now_ms=info.now.timestamp() * 1000)
        result = pl._run(pl.REQUEST_STEPS, start, services)
        assert isinstance(result, pl.Visit)
        return result

    via = visit(address)
    assert via.geo.country == "NZ"
    assert via.visitor_hashes == visit(v4).visitor_hashes  # the same visitor as the plain address
    stored = ipaddress.ip_address(via.ip)
    assert stored.version == 4
    assert int(stored) == int.from_bytes(v4, "big") & (((1 << bits[0]) - 1) << (32 - bits[0]))
    info = pl.RequestInfo(peer=format_ip(address), forwarded=None, user_agent=CHROME_UA, now=NOW)
    [event] = pipeline.process(info, [Beacon(site="demo", url="https://e.com/")]).events
    assert event.ip == format_ip(anonymise(v4, *bits))


# --- repeated cookies: the most restrictive copy wins ---------------------------------------------------

CATEGORY_KEYS = ("analytics", "preferences", "marketing", "precise_location")
copy_intents = st.one_of(
    st.dictionaries(st.sampled_from(CATEGORY_KEYS), st.booleans(), min_size=1),  # readable
    st.sampled_from(["nonsense", "", "analytics:maybe", "\x01analytics:1"]),  # present, unreadable
)
other_cookies = st.lists(
    st.tuples(st.sampled_from(["_ga", "sid", "cc2", "xcc", "CC"]), st.text("abc:1,", max_size=10)), max_size=4
)


def _kv(intent: dict[str, bool] | str) -> str:
    if isinstance(intent, str):
        return intent
    return ",".join(f"{k}:{int(v)}" for k, v in intent.items())


@given(copies=st.lists(copy_intents, min_size=1, max_size=4), others=other_cookies, data=st.data())
def test_a_repeated_consent_cookie_never_lets_a_lenient_copy_win(
    make_settings: Callable[..., Settings],
    copies: list[dict[str, bool] | str],
    others: list[tuple[str, str]],
    data: st.DataObject,
) -> None:
    settings = make_settings(
        sites={
            "demo": {
                "consent_cookie": {"name": "cc", "format": "kv"},
                "consent_defaults": {"analytics": True},
            }
        }
    )
    site = pl.SiteRegistry(settings.sites).get("demo")
    assert site is not None
    pairs = [("cc", _kv(c)) for c in copies] + others
    pairs = data.draw(st.permutations(pairs))
    sep = data.draw(st.sampled_from(["; ", ";", " ; "]))
    cookies = parse_cookie_header(sep.join(f"{n}={v}" for n, v in pairs))
    got = pl._cookie_signal(site, cookies)
    # The oracle, from the intents: an unreadable copy refuses everything; otherwise a category is
    # refused if any copy refuses it, granted if some copy grants it, else unsaid.
    readable = [c for c in copies if isinstance(c, dict)]
    for category in CATEGORY_KEYS:
        said = [c[category] for c in readable if category in c]
        if len(readable) < len(copies) or False in said:
            expected: bool | None = False
        else:
            expected = True if said else None
        assert getattr(got, category) is expected, (category, pairs)
