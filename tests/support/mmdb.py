"""Tiny deterministic MaxMind DB files for tests.

Every database built here answers the same table (:data:`NETWORKS`), using only
documentation address ranges (RFC 5737 / RFC 3849)::

    network           sample IP        country  region          city
    203.0.113.0/24    203.0.113.10     NZ       Wellington      Wellington
    198.51.100.0/24   198.51.100.20    DE       Hesse           Frankfurt am Main
    192.0.2.0/24      192.0.2.30       US       California      Mountain View
    2001:db8:1::/48   2001:db8:1::10   FR       Île-de-France   Paris
    2001:db8:2::/48   2001:db8:2::20   JP       Tokyo           Tokyo

Records also carry latitude/longitude (see :data:`NETWORKS`) and other fields, so
tests can prove that those never come out of the lookup.  Addresses outside the
table (e.g. :data:`UNKNOWN_IPS`) have no record.

``write_geoip2_city`` writes the MaxMind GeoIP2 City schema in one IPv6 tree that
also holds IPv4 (mapped into ``::/96`` as in MaxMind's own databases).
``write_dbip_flat`` writes the flat ``ip-location-db`` DB-IP schema as two files,
like the real package: an IPv4 database (ip_version 4) and an IPv6 database
(ip_version 6) without IPv4 data.

The build time in the metadata is fixed (:data:`BUILD_EPOCH`), so the same
input gives the same file bytes on every run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from mmdb_writer import MMDBWriter
from netaddr import IPSet

__all__ = [
    "BUILD_DATE",
    "BUILD_EPOCH",
    "GEO_TABLE",
    "NETWORKS",
    "ODD_TABLE",
    "UNKNOWN_IPS",
    "GeoRow",
    "write_dbip_flat",
    "write_geoip2_city",
    "write_odd_records",
]

BUILD_EPOCH = 1767225600  # 2026-01-01T00:00:00Z
BUILD_DATE = "2026-01-01"


class GeoRow(NamedTuple):
    network: str
    sample_ip: str
    country: str
    region: str
    city: str
    latitude: float
    longitude: float
    country_name: str
    region_code: str
    continent: str
    time_zone: str
    postcode: str


NETWORKS: tuple[GeoRow, ...] = (
    GeoRow(
        "203.0.113.0/24",
        "203.0.113.10",
        "NZ",
        "Wellington",
        "Wellington",
        -41.2866,
        174.7756,
        "New Zealand",
        "WGN",
        "OC",
        "Pacific/Auckland",
        "6011",
    ),
    GeoRow(
        "198.51.100.0/24",
        "198.51.100.20",
        "DE",
        "Hesse",
        "Frankfurt am Main",
        50.1109,
        8.6821,
        "Germany",
        "HE",
        "EU",
        "Europe/Berlin",
        "60311",
    ),
    GeoRow(
        "192.0.2.0/24",
        "192.0.2.30",
        "US",
        "California",
        "Mountain View",
        37.3861,
        -122.0839,
        "United States",
        "CA",
        "NA",
        "America/Los_Angeles",
        "94043",
    ),
    GeoRow(
        "2001:db8:1::/48",
        "2001:db8:1::10",
        "FR",
        "Île-de-France",
        "Paris",
        48.8566,
        2.3522,
        "France",
        "IDF",
        "EU",
        "Europe/Paris",
        "75001",
    ),
    GeoRow(
        "2001:db8:2::/48",
        "2001:db8:2::20",
        "JP",
        "Tokyo",
        "Tokyo",
        35.6762,
        139.6503,
        "Japan",
        "13",
        "AS",
        "Asia/Tokyo",
        "100-0001",
    ),
)

#: Sample IP -> (country, region, city), for any database written by this module.
GEO_TABLE: dict[str, tuple[str, str, str]] = {
    row.sample_ip: (row.country, row.region, row.city) for row in NETWORKS
}

#: Addresses no database written here knows.
UNKNOWN_IPS: tuple[str, ...] = ("10.0.0.1", "203.0.114.1", "::1", "2001:db8:3::1")


class _FixedEpochWriter(MMDBWriter):
    """MMDBWriter stamps time.time() into the metadata; pin it for reproducible bytes."""

    def _build_meta(self) -> dict[str, Any]:
        meta = dict(super()._build_meta())
        meta["build_epoch"] = BUILD_EPOCH
        return meta


def _geoip2_record(row: GeoRow) -> dict[str, Any]:
    country = {"geoname_id": 1000, "iso_code": row.country, "names": {"en": row.country_name}}
    return {
        "city": {"geoname_id": 2000, "names": {"en": row.city, "de": row.city}},
        "continent": {"code": row.continent, "geoname_id": 3000, "names": {"en": row.continent}},
        "country": country,
        "location": {
            "accuracy_radius": 20,
            "latitude": row.latitude,
            "longitude": row.longitude,
            "time_zone": row.time_zone,
        },
        "postal": {"code": row.postcode},
        "registered_country": country,
        "subdivisions": [{"geoname_id": 4000, "iso_code": row.region_code, "names": {"en": row.region}}],
    }


def _dbip_record(row: GeoRow) -> dict[str, Any]:
    # Same keys, in the same order, as the real ip-location-db DB-IP City files.
    return {
        "city": row.city,
        "country_code": row.country,
        "latitude": row.latitude,
        "longitude": row.longitude,
        "postcode": row.postcode,
        "state1": row.region,
        "state2": "",
        "timezone": row.time_zone,
    }


def write_geoip2_city(path: Path) -> Path:
    """GeoIP2-City-schema database, one IPv6 tree holding IPv4 and IPv6 networks."""
    writer = _FixedEpochWriter(
        ip_version=6,
        database_type="GeoIP2-City",
        languages=["en"],
        description={"en": "Beacon Proxy test fixture (GeoIP2 City schema)"},
        ipv4_compatible=True,
    )
    for row in NETWORKS:
        writer.insert_network(IPSet([row.network]), _geoip2_record(row))
    writer.to_db_file(str(path))
    return path


def write_dbip_flat(path_v4: Path, path_v6: Path) -> tuple[Path, Path]:
    """DB-IP-flat-schema databases: an IPv4-only file and an IPv6 file, like the real package.

    The metadata mirrors the real files too: database_type "city ipv4" / "city ipv6".
    """
    v4 = _FixedEpochWriter(ip_version=4, database_type="city ipv4", description="Beacon Proxy test fixture")
    v6 = _FixedEpochWriter(ip_version=6, database_type="city ipv6", description="Beacon Proxy test fixture")
    for row in NETWORKS:
        writer = v6 if ":" in row.network else v4
        writer.insert_network(IPSet([row.network]), _dbip_record(row))
    v4.to_db_file(str(path_v4))
    v6.to_db_file(str(path_v6))
    return path_v4, path_v6


# Malformed or unusual records, all in 2001:db8:f0::/44: sample IP -> (record, expected
# (country, region, city) with the city enabled).
_ODD: tuple[tuple[str, Any, tuple[str, str, str]], ...] = (
    # DB-IP schema
    (
        "2001:db8:f1::1",
        {"country_code": "gb", "state1": " England ", "city": "London"},
        ("GB", "England", "London"),
    ),
    ("2001:db8:f2::1", {"country_code": "GBR", "state1": "England", "city": ""}, ("", "England", "")),
    ("2001:db8:f3::1", {"country_code": "ZZ", "state1": "", "city": ""}, ("", "", "")),
    ("2001:db8:f4::1", {"country_code": "--", "state1": "", "city": ""}, ("", "", "")),
    ("2001:db8:f5::1", {"country_code": 42, "state1": 7, "city": ["x"]}, ("", "", "")),
    ("2001:db8:f6::1", {"country_code": "ÄÖ", "state1": "A\nB\x00C", "city": "x" * 500}, ("", "A B C", "")),
    ("2001:db8:f7::1", {"country_code": "ß"}, ("", "", "")),
    # GeoIP2 schema
    ("2001:db8:f8::1", {"country": {"iso_code": "nz"}, "subdivisions": []}, ("NZ", "", "")),
    ("2001:db8:f9::1", {"country": "NZ", "subdivisions": "Wellington", "city": {"names": "x"}}, ("", "", "")),
    ("2001:db8:fa::1", {"registered_country": {"iso_code": "NZ"}}, ("", "", "")),
    (
        "2001:db8:fb::1",
        {"country": {"iso_code": "FR"}, "subdivisions": [{"names": {"fr": "Bretagne"}}]},
        ("FR", "", ""),
    ),
    ("2001:db8:fc::1", {"city": {"names": {"en": "Lyon"}}}, ("", "", "Lyon")),
    # not a map at all
    ("2001:db8:fd::1", "just a string", ("", "", "")),
    ("2001:db8:fe::1", [1, 2, 3], ("", "", "")),
)

#: Sample IP (in the database from :func:`write_odd_records`) -> expected answer with city on.
ODD_TABLE: dict[str, tuple[str, str, str]] = {ip: expected for ip, _, expected in _ODD}


def write_odd_records(path: Path) -> Path:
    """IPv6 database of malformed records (both schemas), for robustness tests."""
    writer = _FixedEpochWriter(ip_version=6, database_type="odd", description="Beacon Proxy odd records")
    for ip, record, _ in _ODD:
        writer.insert_network(IPSet([ip.replace("::1", "::/48")]), record)
    writer.to_db_file(str(path))
    return path


#: Networks finer than the default truncation (/24, /48): sample IP -> country. Two halves of one /24
#: and two /56s of one /48 answer differently, so a cache keyed by the truncated address must not
#: merge them.
SPLIT_TABLE: dict[str, str] = {
    "198.51.100.20": "DE",  # 198.51.100.0/25
    "198.51.100.200": "AT",  # 198.51.100.128/25
    "2001:db8:5:100::1": "FR",  # 2001:db8:5:100::/56
    "2001:db8:5:200::1": "BE",  # 2001:db8:5:200::/56
}


def write_split_networks(path: Path) -> Path:
    """DB-IP-schema IPv6 database (answers IPv4 too, via ::/96) whose records are finer than /24, /48."""
    writer = _FixedEpochWriter(
        ip_version=6, database_type="split", description="Beacon Proxy split networks", ipv4_compatible=True
    )
    for network, country in (
        ("198.51.100.0/25", "DE"),
        ("198.51.100.128/25", "AT"),
        ("2001:db8:5:100::/56", "FR"),
        ("2001:db8:5:200::/56", "BE"),
    ):
        writer.insert_network(IPSet([network]), {"country_code": country, "state1": "", "city": ""})
    writer.to_db_file(str(path))
    return path
