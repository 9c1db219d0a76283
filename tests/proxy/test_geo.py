from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import random
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import maxminddb
import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from proxy import geo
from proxy.geo import UNKNOWN, GeoLookup, GeoResult, find_databases
from tests.support.mmdb import (
    BUILD_DATE,
    GEO_TABLE,
    NETWORKS,
    ODD_TABLE,
    SPLIT_TABLE,
    UNKNOWN_IPS,
    write_dbip_flat,
    write_geoip2_city,
    write_odd_records,
    write_split_networks,
)

REAL_GEOIP_ENV = "BEACONPROXY_TEST_REAL_GEOIP_DIR"


def packed(ip: str) -> bytes:
    return ipaddress.ip_address(ip).packed


@dataclasses.dataclass(frozen=True)
class Dbs:
    geoip2: Path
    dbip_v4: Path
    dbip_v6: Path
    odd: Path
    split: Path


@pytest.fixture(scope="module")
def dbs(tmp_path_factory: pytest.TempPathFactory) -> Dbs:
    d = tmp_path_factory.mktemp("mmdb")
    v4, v6 = write_dbip_flat(d / "dbip-city-ipv4.mmdb", d / "dbip-city-ipv6.mmdb")
    split = d / "split"  # its own folder: the find_databases tests list d
    split.mkdir()
    return Dbs(
        write_geoip2_city(d / "geoip2-city.mmdb"),
        v4,
        v6,
        write_odd_records(d / "odd.mmdb"),
        write_split_networks(split / "split.mmdb"),
    )


SCHEMAS = ("geoip2", "dbip")


def paths_for(dbs: Dbs, schema: str) -> list[Path]:
    return [dbs.geoip2] if schema == "geoip2" else [dbs.dbip_v4, dbs.dbip_v6]


@pytest.fixture
def open_lookup(dbs: Dbs) -> Iterator[list[GeoLookup]]:
    """Collects lookups a test creates and closes them afterwards."""
    opened: list[GeoLookup] = []
    yield opened
    for lookup in opened:
        lookup.close()


def make(opened: list[GeoLookup], paths: list[Path], **kwargs: object) -> GeoLookup:
    lookup = GeoLookup(paths, **kwargs)  # type: ignore[arg-type]
    opened.append(lookup)
    return lookup


# --- answers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("with_city", [False, True], ids=["no-city", "city"])
@pytest.mark.parametrize("schema", SCHEMAS)
@pytest.mark.parametrize("ip", list(GEO_TABLE))
def test_sample_ips(dbs: Dbs, open_lookup: list[GeoLookup], schema: str, ip: str, with_city: bool) -> None:
    lookup = make(open_lookup, paths_for(dbs, schema), with_city=with_city)
    country, region, city = GEO_TABLE[ip]
    assert lookup.lookup(packed(ip)) == GeoResult(country, region, city if with_city else "")


@pytest.mark.parametrize("ip", [ip for ip in GEO_TABLE if ":" not in ip])
def test_ipv4_through_geoip2_ipv6_tree(dbs: Dbs, open_lookup: list[GeoLookup], ip: str) -> None:
    with maxminddb.open_database(dbs.geoip2) as reader:
        assert reader.metadata().ip_version == 6
    lookup = make(open_lookup, [dbs.geoip2], with_city=True)
    assert lookup.lookup(packed(ip)) == GeoResult(*GEO_TABLE[ip])


@pytest.mark.parametrize("schema", SCHEMAS)
@pytest.mark.parametrize("ip", UNKNOWN_IPS)
def test_unknown_ips(dbs: Dbs, open_lookup: list[GeoLookup], schema: str, ip: str) -> None:
    lookup = make(open_lookup, paths_for(dbs, schema), with_city=True)
    assert lookup.lookup(packed(ip)) is UNKNOWN


def test_unknown_is_empty() -> None:
    assert UNKNOWN == GeoResult() == GeoResult("", "", "")


def test_dbip_split_files_each_answer_only_their_family(dbs: Dbs, open_lookup: list[GeoLookup]) -> None:
    only_v4 = make(open_lookup, [dbs.dbip_v4])
    only_v6 = make(open_lookup, [dbs.dbip_v6])
    assert only_v4.lookup(packed("203.0.113.10")).country == "NZ"
    assert only_v4.lookup(packed("2001:db8:1::10")) is UNKNOWN  # IPv4 file is never asked about IPv6
    assert only_v6.lookup(packed("203.0.113.10")) is UNKNOWN  # DB-IP's IPv6 file has no IPv4 data
    assert only_v6.lookup(packed("2001:db8:1::10")).country == "FR"


def test_first_non_empty_answer_wins(dbs: Dbs, open_lookup: list[GeoLookup]) -> None:
    # The odd database knows 2001:db8:f1::/48 (GB) but not the sample networks, so
    # the sample networks fall through to the second database.
    lookup = make(open_lookup, [dbs.odd, dbs.geoip2])
    assert lookup.lookup(packed("2001:db8:f1::1")).country == "GB"
    assert lookup.lookup(packed("2001:db8:2::20")).country == "JP"
    assert lookup.lookup(packed("192.0.2.30")).country == "US"


@pytest.mark.parametrize("ip", list(ODD_TABLE))
def test_odd_values_are_normalised(dbs: Dbs, open_lookup: list[GeoLookup], ip: str) -> None:
    with_city = make(open_lookup, [dbs.odd], with_city=True)
    without_city = make(open_lookup, [dbs.odd])
    country, region, city = ODD_TABLE[ip]
    assert with_city.lookup(packed(ip)) == GeoResult(country, region, city)
    expected = GeoResult(country, region, "")
    assert without_city.lookup(packed(ip)) == expected
    if expected == UNKNOWN:
        assert without_city.lookup(packed(ip)) is UNKNOWN


@pytest.mark.parametrize("schema", SCHEMAS)
def test_coordinates_and_other_fields_never_returned(
    dbs: Dbs, open_lookup: list[GeoLookup], schema: str
) -> None:
    assert [f.name for f in dataclasses.fields(GeoResult)] == ["country", "region", "city"]
    lookup = make(open_lookup, paths_for(dbs, schema), with_city=True)
    for row in NETWORKS:
        result = lookup.lookup(packed(row.sample_ip))
        assert result.country == row.country
        text = repr(result)
        for secret in (row.latitude, row.longitude, row.postcode, row.time_zone):
            assert str(secret) not in text
        assert not hasattr(result, "__dict__")  # slots: no room for extra fields


def test_result_is_frozen() -> None:
    result = GeoResult("NZ", "Wellington")
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.country = "DE"  # type: ignore[misc]


# --- robustness --------------------------------------------------------------------------------


def test_never_raises_for_any_4_or_16_bytes(dbs: Dbs, open_lookup: list[GeoLookup]) -> None:
    rng = random.Random(20260101)
    lookup = make(open_lookup, [dbs.geoip2, dbs.dbip_v4, dbs.dbip_v6, dbs.odd], with_city=True)
    specials = [b"\x00" * 4, b"\xff" * 4, b"\x00" * 16, b"\xff" * 16, packed("::ffff:192.0.2.30")]
    for value in specials + [rng.randbytes(rng.choice((4, 16))) for _ in range(3000)]:
        assert isinstance(lookup.lookup(value), GeoResult)


@pytest.mark.parametrize("value", [b"", b"\x01", b"\x01\x02\x03", b"\x01" * 5, b"\x01" * 15, b"\x01" * 17])
def test_wrong_length_is_unknown(dbs: Dbs, open_lookup: list[GeoLookup], value: bytes) -> None:
    lookup = make(open_lookup, [dbs.geoip2])
    assert lookup.lookup(value) is UNKNOWN


def test_bytes_like_input(dbs: Dbs, open_lookup: list[GeoLookup]) -> None:
    lookup = make(open_lookup, [dbs.geoip2])
    raw = packed("203.0.113.10")
    assert lookup.lookup(bytearray(raw)).country == "NZ"  # type: ignore[arg-type]
    assert lookup.lookup(memoryview(raw)).country == "NZ"  # type: ignore[arg-type]
    assert lookup.lookup("203.0.113.10") is UNKNOWN  # type: ignore[arg-type]


def _corrupt_data_section(src: Path, dst: Path) -> Path:
    with maxminddb.open_database(src) as reader:
        meta = reader.metadata()
    start = meta.node_count * meta.record_size // 4 + 16  # search tree, then 16 zero bytes
    data = bytearray(src.read_bytes())
    data[start : start + 8] = b"\xff" * 8
    dst.write_bytes(bytes(data))
    return dst


def test_corrupt_record_is_skipped_and_ip_never_logged(
    dbs: Dbs, open_lookup: list[GeoLookup], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = _corrupt_data_section(dbs.dbip_v4, tmp_path / "broken.mmdb")
    lookup = make(open_lookup, [bad, dbs.geoip2])
    ips = [ip for ip in GEO_TABLE if ":" not in ip]
    with caplog.at_level(logging.DEBUG, logger="proxy.geo"):
        for ip in ips:
            assert lookup.lookup(packed(ip)).country == GEO_TABLE[ip][0]  # answered by geoip2
        alone = make(open_lookup, [bad])
        assert alone.lookup(packed(ips[0])) is UNKNOWN
    warnings = [r for r in caplog.records if "broken.mmdb" in r.getMessage()]
    assert len(warnings) == 2  # once per database instance, not once per request
    for record in caplog.records:
        message = record.getMessage()
        for ip in ips:
            assert ip not in message
            assert ip not in str(record.args)


# --- cache -------------------------------------------------------------------------------------


def test_cache_hit_returns_equal_result(dbs: Dbs, open_lookup: list[GeoLookup]) -> None:
    lookup = make(open_lookup, [dbs.geoip2], with_city=True)
    first = lookup.lookup(packed("198.51.100.20"))
    assert lookup.cache_info().misses == 1
    again = lookup.lookup(packed("198.51.100.20"))
    assert again == first == GeoResult(*GEO_TABLE["198.51.100.20"])
    info = lookup.cache_info()
    assert (info.hits, info.misses, info.currsize) == (1, 1, 1)


def test_cache_is_bounded(dbs: Dbs, open_lookup: list[GeoLookup]) -> None:
    lookup = make(open_lookup, [dbs.dbip_v4, dbs.dbip_v6], cache_size=2)
    ips = list(GEO_TABLE)
    assert len(ips) == 5
    for ip in ips:
        lookup.lookup(packed(ip))
        assert lookup.cache_info().currsize <= 2
    info = lookup.cache_info()
    assert (info.maxsize, info.currsize, info.misses) == (2, 2, 5)
    # The least recently used entry was evicted: looking it up again is a miss.
    lookup.lookup(packed(ips[0]))
    assert lookup.cache_info().misses == 6
    assert lookup.cache_info().currsize == 2


def test_cache_is_keyed_by_the_truncated_address_never_the_full_one(
    dbs: Dbs, open_lookup: list[GeoLookup]
) -> None:
    lookup = make(open_lookup, [dbs.dbip_v4, dbs.dbip_v6])
    first = lookup.lookup(packed("203.0.113.10"))
    neighbour = lookup.lookup(packed("203.0.113.77"))  # same /24: one cache entry answers both
    v6 = lookup.lookup(packed("2001:db8:1::10"))
    assert first == neighbour == GeoResult(*GEO_TABLE["203.0.113.10"][:2], "")
    assert v6.country == "FR"
    info = lookup.cache_info()
    assert (info.hits, info.misses, info.currsize, info.uncacheable) == (1, 2, 2, 0)
    keys = set(lookup._cache)
    assert keys == {packed("203.0.113.0"), packed("2001:db8:1::")}


@pytest.mark.parametrize("bits", [(16, 32), (24, 48), (32, 128)])
def test_cache_prefix_follows_the_truncation_setting(
    dbs: Dbs, open_lookup: list[GeoLookup], bits: tuple[int, int]
) -> None:
    lookup = make(open_lookup, [dbs.dbip_v4, dbs.dbip_v6], cache_prefix_bits=bits)
    for ip in GEO_TABLE:
        assert lookup.lookup(packed(ip)) == GeoResult(*GEO_TABLE[ip][:2], "")
    for key in lookup._cache:
        width = 32 if len(key) == 4 else 128
        kept = bits[0] if len(key) == 4 else bits[1]
        assert int.from_bytes(key, "big") & ((1 << (width - kept)) - 1) == 0  # host bits are zero


def test_answers_from_networks_finer_than_the_prefix_are_exact_and_not_cached(
    dbs: Dbs, open_lookup: list[GeoLookup]
) -> None:
    lookup = make(open_lookup, [dbs.split])
    for _ in range(2):
        for ip, country in SPLIT_TABLE.items():
            assert lookup.lookup(packed(ip)).country == country  # as a full-address lookup answers
    info = lookup.cache_info()
    assert (info.hits, info.currsize, info.uncacheable) == (0, 0, 8)
    # With the cache prefix as fine as the networks, the same answers are cached.
    fine = make(open_lookup, [dbs.split], cache_prefix_bits=(25, 56))
    for _ in range(2):
        for ip, country in SPLIT_TABLE.items():
            assert fine.lookup(packed(ip)).country == country
    assert fine.cache_info().hits == 4


def test_cached_answers_agree_with_uncached_ones(dbs: Dbs, open_lookup: list[GeoLookup]) -> None:
    cached = make(open_lookup, [dbs.split, dbs.dbip_v4, dbs.dbip_v6])
    plain = make(open_lookup, [dbs.split, dbs.dbip_v4, dbs.dbip_v6], cache_size=0)
    rng = random.Random(7)
    bases = [*GEO_TABLE, *SPLIT_TABLE, *UNKNOWN_IPS]
    sample = []
    for base in bases:
        address = ipaddress.ip_address(base)
        span = 256 if address.version == 4 else 1 << 80
        for _ in range(20):
            sample.append((int(address) & ~(span - 1)) + rng.randrange(span))
    for value in sample * 2:
        ip = ipaddress.ip_address(value) if value > 0xFFFFFFFF else ipaddress.IPv4Address(value)
        assert cached.lookup(ip.packed) == plain.lookup(ip.packed)
    assert cached.cache_info().hits > 0


@pytest.mark.parametrize("bits", [(-1, 48), (33, 48), (24, 129)])
def test_bad_cache_prefix_bits(dbs: Dbs, bits: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="cache_prefix_bits"):
        GeoLookup([dbs.geoip2], cache_prefix_bits=bits)


def test_cache_size_zero_disables_cache(dbs: Dbs, open_lookup: list[GeoLookup]) -> None:
    lookup = make(open_lookup, [dbs.geoip2], cache_size=0)
    for _ in range(3):
        assert lookup.lookup(packed("192.0.2.30")).country == "US"
    assert lookup.cache_info().currsize == 0


def test_default_cache_size(dbs: Dbs, open_lookup: list[GeoLookup]) -> None:
    assert make(open_lookup, [dbs.geoip2]).cache_info().maxsize == 65536


@pytest.mark.parametrize("size", [-1, 1.5, True, None])
def test_bad_cache_size(dbs: Dbs, size: object) -> None:
    with pytest.raises(ValueError, match="cache_size"):
        GeoLookup([dbs.geoip2], cache_size=size)  # type: ignore[arg-type]


def test_close_clears_cache_and_disables(dbs: Dbs) -> None:
    lookup = GeoLookup([dbs.geoip2])
    lookup.lookup(packed("192.0.2.30"))
    assert lookup.cache_info().currsize == 1
    lookup.close()
    assert lookup.cache_info().currsize == 0
    assert not lookup.enabled
    assert lookup.describe() == []
    assert lookup.lookup(packed("192.0.2.30")) is UNKNOWN
    lookup.close()  # idempotent


# --- construction ------------------------------------------------------------------------------


def test_empty_paths_is_disabled() -> None:
    lookup = GeoLookup([])
    assert not lookup.enabled
    assert lookup.describe() == []
    assert lookup.lookup(packed("192.0.2.30")) is UNKNOWN
    assert lookup.lookup(packed("2001:db8:1::10")) is UNKNOWN
    lookup.close()


def test_enabled(dbs: Dbs, open_lookup: list[GeoLookup]) -> None:
    assert make(open_lookup, [dbs.geoip2]).enabled


def test_missing_path_names_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "GeoLite2-City.mmdb"
    with pytest.raises(ValueError, match=re.escape("GeoLite2-City.mmdb")) as exc_info:
        GeoLookup([missing])
    assert str(missing) in str(exc_info.value)


@pytest.mark.parametrize(
    "content", [b"", b"this is not a database\n" * 50, bytes(random.Random(1).randbytes(4096))]
)
def test_garbage_file_names_path(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "garbage.mmdb"
    bad.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape("garbage.mmdb")) as exc_info:
        GeoLookup([bad])
    assert str(bad) in str(exc_info.value)


def test_directory_as_path(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=re.escape(str(tmp_path))):
        GeoLookup([tmp_path])


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can read mode-000 files")
def test_unreadable_file_names_path(dbs: Dbs, tmp_path: Path) -> None:
    locked = tmp_path / "locked.mmdb"
    locked.write_bytes(dbs.geoip2.read_bytes())
    locked.chmod(0)
    try:
        with pytest.raises(ValueError, match=re.escape("locked.mmdb")):
            GeoLookup([locked])
    finally:
        locked.chmod(0o600)


def test_one_bad_path_fails_the_whole_lookup(dbs: Dbs, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=re.escape("missing.mmdb")):
        GeoLookup([dbs.geoip2, tmp_path / "missing.mmdb"])


def test_single_string_path_is_rejected(dbs: Dbs) -> None:
    with pytest.raises(TypeError):
        GeoLookup(str(dbs.geoip2))


def test_accepts_str_paths(dbs: Dbs, open_lookup: list[GeoLookup]) -> None:
    lookup = make(open_lookup, [str(dbs.geoip2)])  # type: ignore[list-item]
    assert lookup.lookup(packed("192.0.2.30")).country == "US"


def test_describe(dbs: Dbs, open_lookup: list[GeoLookup]) -> None:
    lookup = make(open_lookup, [dbs.geoip2, dbs.dbip_v4, dbs.dbip_v6])
    assert lookup.describe() == [
        f"geoip2-city.mmdb (GeoIP2-City, IPv6, built {BUILD_DATE})",
        f"dbip-city-ipv4.mmdb (city ipv4, IPv4, built {BUILD_DATE})",
        f"dbip-city-ipv6.mmdb (city ipv6, IPv6, built {BUILD_DATE})",
    ]


def test_describe_is_one_safe_line(tmp_path: Path, open_lookup: list[GeoLookup]) -> None:
    writer = MMDBWriter(ip_version=4, database_type="evil\nINFO fake log line\x1b[31m")
    writer.insert_network(IPSet(["192.0.2.0/24"]), {"country_code": "US"})
    path = tmp_path / "evil.mmdb"
    writer.to_db_file(str(path))
    (line,) = make(open_lookup, [path]).describe()
    assert line.isprintable()
    assert line.startswith("evil.mmdb (evilINFO fake log line[31m, IPv4, built ")


def test_same_answer_is_shared(dbs: Dbs, open_lookup: list[GeoLookup]) -> None:
    lookup = make(open_lookup, [dbs.dbip_v4])
    first = lookup.lookup(packed("203.0.113.1"))
    assert first.country == "NZ"
    assert lookup.lookup(packed("203.0.113.2")) is first  # one object per distinct answer


def test_interned_answers_are_bounded(
    dbs: Dbs, open_lookup: list[GeoLookup], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(geo, "_MAX_INTERNED", 2)
    lookup = make(open_lookup, [dbs.geoip2], cache_size=0, with_city=True)
    for _ in range(2):
        for ip, expected in GEO_TABLE.items():
            assert lookup.lookup(packed(ip)) == GeoResult(*expected)


def test_uses_c_extension_without_warning(
    dbs: Dbs, open_lookup: list[GeoLookup], caplog: pytest.LogCaptureFixture
) -> None:
    if not geo._HAS_C_EXTENSION:
        pytest.skip("maxminddb C extension not installed")
    with caplog.at_level(logging.WARNING, logger="proxy.geo"):
        make(open_lookup, [dbs.geoip2])
    assert caplog.records == []


def test_falls_back_without_c_extension(
    dbs: Dbs, open_lookup: list[GeoLookup], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(geo, "_HAS_C_EXTENSION", False)
    opened: list[int] = []
    real_open = maxminddb.open_database

    def spy(database: str | os.PathLike[str], mode: int = maxminddb.MODE_AUTO) -> maxminddb.Reader:
        opened.append(mode)
        return real_open(database, mode)

    monkeypatch.setattr(maxminddb, "open_database", spy)
    with caplog.at_level(logging.WARNING, logger="proxy.geo"):
        lookup = make(open_lookup, [dbs.dbip_v4, dbs.dbip_v6], with_city=True)
    assert opened == [maxminddb.MODE_AUTO, maxminddb.MODE_AUTO]
    assert any("C extension" in r.getMessage() for r in caplog.records)
    assert lookup.lookup(packed("2001:db8:2::20")) == GeoResult("JP", "Tokyo", "Tokyo")


def test_no_warning_for_disabled_lookup(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(geo, "_HAS_C_EXTENSION", False)
    with caplog.at_level(logging.WARNING, logger="proxy.geo"):
        GeoLookup([]).close()
    assert caplog.records == []


# --- find_databases ----------------------------------------------------------------------------


def test_find_databases(tmp_path: Path) -> None:
    for name in ("b.mmdb", "a.mmdb", "notes.txt", ".partial.mmdb", "c.mmdb.tmp"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "dir.mmdb").mkdir()
    assert find_databases(tmp_path) == [tmp_path / "a.mmdb", tmp_path / "b.mmdb"]


def test_find_databases_missing_directory(tmp_path: Path) -> None:
    assert find_databases(tmp_path / "nope") == []
    (tmp_path / "file").write_bytes(b"x")
    assert find_databases(tmp_path / "file") == []


def test_find_databases_feeds_lookup(dbs: Dbs, open_lookup: list[GeoLookup]) -> None:
    found = find_databases(dbs.geoip2.parent)
    assert [p.name for p in found] == [
        "dbip-city-ipv4.mmdb",
        "dbip-city-ipv6.mmdb",
        "geoip2-city.mmdb",
        "odd.mmdb",
    ]
    lookup = make(open_lookup, found, with_city=True)
    for ip, expected in GEO_TABLE.items():
        assert lookup.lookup(packed(ip)) == GeoResult(*expected)


# --- fixtures ----------------------------------------------------------------------------------


def test_fixture_databases_are_reproducible(tmp_path: Path) -> None:
    a = write_geoip2_city(tmp_path / "a.mmdb").read_bytes()
    b = write_geoip2_city(tmp_path / "b.mmdb").read_bytes()
    assert a == b
    v4a, v6a = write_dbip_flat(tmp_path / "a4.mmdb", tmp_path / "a6.mmdb")
    v4b, v6b = write_dbip_flat(tmp_path / "b4.mmdb", tmp_path / "b6.mmdb")
    assert v4a.read_bytes() == v4b.read_bytes()
    assert v6a.read_bytes() == v6b.read_bytes()


def test_fixture_records_carry_coordinates(dbs: Dbs) -> None:
    # Guards the privacy tests above: the raw records really do contain coordinates.
    with maxminddb.open_database(dbs.dbip_v4) as reader:
        raw = reader.get("203.0.113.10")
    assert isinstance(raw, dict)
    assert raw["latitude"] == pytest.approx(-41.2866)
    with maxminddb.open_database(dbs.geoip2) as reader:
        raw = reader.get("2001:db8:1::10")
    assert isinstance(raw, dict)
    location = raw["location"]
    assert isinstance(location, dict)
    assert location["longitude"] == pytest.approx(2.3522)


# --- real DB-IP database (opt-in) --------------------------------------------------------------


@pytest.fixture(scope="module")
def real_lookup() -> Iterator[GeoLookup]:
    directory = os.environ.get(REAL_GEOIP_ENV, "")
    if not directory:
        pytest.skip(f"set {REAL_GEOIP_ENV} to a directory of real DB-IP .mmdb files to run")
    paths = find_databases(Path(directory))
    if not paths:
        pytest.skip(f"{REAL_GEOIP_ENV}={directory} holds no .mmdb files")
    lookup = GeoLookup(paths, with_city=True)
    yield lookup
    lookup.close()


@pytest.mark.parametrize(("ip", "country"), [("8.8.8.8", "US"), ("81.2.69.142", "GB")])
def test_real_database(real_lookup: GeoLookup, ip: str, country: str) -> None:
    result = real_lookup.lookup(socket.inet_pton(socket.AF_INET, ip))
    assert result.country == country
    assert result.region  # DB-IP City Lite has state1 for these
    assert real_lookup.lookup(packed("10.0.0.1")) is UNKNOWN


def test_real_database_ipv6(real_lookup: GeoLookup) -> None:
    if not any("IPv6" in line for line in real_lookup.describe()):
        pytest.skip("no IPv6 database in the real directory")
    result = real_lookup.lookup(packed("2001:4860:4860::8888"))  # Google Public DNS
    assert len(result.country) == 2
    assert real_lookup.lookup(packed("::1")) is UNKNOWN
