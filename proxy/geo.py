"""Coarse geolocation of client addresses from local MaxMind DB (``.mmdb``) files.

Privacy contract
----------------
* Lookups use the full client address, in process memory only; the address is
  never logged, never put in an exception message and never returned.
* The answer is deliberately coarse: ISO country code and first-level region
  (state / province).  The city is only returned when the operator enables it
  (``with_city=True``).  Latitude, longitude, postcode, time zone and every
  other field of the database record are dropped here and never leave this module.
* Results are memoised in a bounded LRU cache keyed by the *truncated* address (the
  prefix that is stored anyway, ``privacy.ipv4_prefix_bits`` / ``ipv6_prefix_bits``),
  never by the full one: the full client address lives only for the request. A result
  is cached only when the database record that answered covers the whole truncated
  prefix (its network is no more specific than the prefix), so a cache hit is exactly
  what a full-address lookup would answer; addresses in finer-grained networks are
  looked up every time, and so are IPv6 addresses that may hold an IPv4 address (6to4,
  Teredo, NAT64...: ``clientip.carries_ipv4``), whose IPv6 prefix could keep more of it than
  the IPv4 prefix. :meth:`GeoLookup.close` empties the cache.

Supported schemas (detected per record, so one reader handles either)
---------------------------------------------------------------------
* MaxMind GeoIP2 / GeoLite2 City and Country: ``country.iso_code``,
  ``subdivisions[0].names.en`` and ``city.names.en``.
* The flat DB-IP Lite schema of the ``ip-location-db`` packages (our default):
  ``country_code``, ``state1`` and ``city``.

DB-IP ships IPv4 and IPv6 as separate files.  A lookup therefore holds several
readers: a 4-byte address is tried against every database (IPv4 databases and
IPv6 databases, which map IPv4 into ``::/96``), a 16-byte address only against
IPv6 databases.  Databases are tried in the order given and the first non-empty
answer wins.

Databases are memory-mapped; replace a file by renaming a new one over it (never
rewrite it in place) and restart the proxy to pick it up.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv6Address
from pathlib import Path
from typing import Final, NamedTuple

import maxminddb
from maxminddb.types import Record

from proxy.clientip import carries_ipv4, truncate

__all__ = ["UNKNOWN", "CacheStats", "GeoLookup", "GeoResult", "find_databases"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GeoResult:
    """Coarse location of a client. Empty strings mean unknown."""

    country: str = ""  # ISO 3166-1 alpha-2, upper-case
    region: str = ""  # first-level subdivision name (English)
    city: str = ""  # only when the lookup was created with with_city=True


UNKNOWN: Final[GeoResult] = GeoResult()


class CacheStats(NamedTuple):
    """Statistics of the lookup cache (``functools.lru_cache``'s fields, and ``uncacheable``: misses
    whose answer came from a network finer than the cache's prefix, so it was not cached)."""

    hits: int
    misses: int
    maxsize: int
    currsize: int
    uncacheable: int = 0


def _c_extension_available() -> bool:
    try:
        from maxminddb import extension
    except ImportError:
        return False
    return hasattr(extension, "Reader")


# Module-level so tests can simulate a missing C extension.
_HAS_C_EXTENSION: bool = _c_extension_available()

_AF_INET: Final = socket.AF_INET
# Measured (maxminddb 3.2 C reader, real DB-IP files): for IPv4 a dotted-quad str
# from inet_ntop is ~200 ns cheaper per lookup than an IPv4Address, whose .packed
# the extension has to call back into; for IPv6 IPv6Address(packed) is on par with
# or slightly cheaper than inet_ntop.  So: str for IPv4, IPv6Address for IPv6.
_ntop: Final = socket.inet_ntop

# Values that are not a country: DB-IP's / common "unknown" placeholders.
_NOT_A_COUNTRY: Final = frozenset({"ZZ", "XX"})
# A name longer than this is not a region or city; a broken database must not be
# able to inflate every stored event.
_MAX_NAME_LENGTH: Final = 128
# Distinct answers are few (countries x regions [x cities]); sharing one GeoResult per
# answer saves memory in the cache and the cost of building a frozen dataclass
# (~280 ns) on every miss.  Bounded all the same: emptied when it reaches this size.
_MAX_INTERNED: Final = 1 << 16


def _country_code(value: object) -> str:
    if not isinstance(value, str):
        return ""
    code = value.strip()
    # isascii() before upper(): "ß".upper() == "SS".
    if len(code) != 2 or not code.isascii() or not code.isalpha():
        return ""
    code = code.upper()
    return "" if code in _NOT_A_COUNTRY else code


def _name(value: object) -> str:
    if not isinstance(value, str):
        return ""
    if not value.isprintable():
        # Control characters (newlines, NUL, ...) and odd spaces become a plain space.
        value = " ".join("".join(ch if ch.isprintable() else " " for ch in value).split())
    name = value.strip()
    return name if len(name) <= _MAX_NAME_LENGTH else ""


def _english_name(value: Record | None) -> str:
    """``{"names": {"en": ...}}`` (GeoIP2) -> the English name."""
    if not isinstance(value, dict):
        return ""
    names = value.get("names")
    if not isinstance(names, dict):
        return ""
    return _name(names.get("en"))


def _from_record(record: Record | None, with_city: bool) -> tuple[str, str, str] | None:
    """Keep only (country, region, city) of a database record; None if all are unknown."""
    if not isinstance(record, dict):
        return None
    if "country_code" in record:  # DB-IP flat schema
        country = _country_code(record.get("country_code"))
        region = _name(record.get("state1"))
        city = _name(record.get("city")) if with_city else ""
    else:  # GeoIP2 schema
        country_rec = record.get("country")
        country = _country_code(country_rec.get("iso_code")) if isinstance(country_rec, dict) else ""
        subdivisions = record.get("subdivisions")
        region = _english_name(subdivisions[0]) if isinstance(subdivisions, list) and subdivisions else ""
        city = _english_name(record.get("city")) if with_city else ""
    if not (country or region or city):
        return None
    return country, region, city


def _printable(text: object, limit: int = 64) -> str:
    """Database metadata made safe for a single log line."""
    out = "".join(ch for ch in str(text) if ch.isprintable())
    return out[:limit] or "?"


class _Source:
    """One opened database."""

    __slots__ = ("build_epoch", "database_type", "ip_version", "name", "reader", "warned")

    def __init__(self, path: Path, mode: int) -> None:
        label = os.fspath(path)
        try:
            reader = maxminddb.open_database(path, mode)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise ValueError(f"GeoIP database {label}: cannot open ({reason})") from exc
        except (maxminddb.InvalidDatabaseError, ValueError) as exc:
            raise ValueError(f"GeoIP database {label}: not a valid MaxMind DB file") from exc
        try:
            meta = reader.metadata()
            ip_version = meta.ip_version
            if ip_version not in (4, 6):
                raise ValueError(f"GeoIP database {label}: unsupported ip_version {ip_version!r}")
            self.ip_version: int = ip_version
            self.database_type: str = _printable(meta.database_type)
            self.build_epoch: int = meta.build_epoch
        except BaseException:
            reader.close()
            raise
        self.reader: maxminddb.Reader = reader
        self.name: str = path.name
        self.warned: bool = False

    def describe(self) -> str:
        try:
            built = dt.datetime.fromtimestamp(self.build_epoch, tz=dt.UTC).date().isoformat()
        except (OverflowError, OSError, ValueError, TypeError):
            built = "unknown"
        return f"{_printable(self.name, 200)} ({self.database_type}, IPv{self.ip_version}, built {built})"

    def failed(self, exc: Exception) -> None:
        # Only the exception type: maxminddb messages can contain the address.
        if not self.warned:
            self.warned = True
            _log.warning(
                "GeoIP lookup failed in %s (%s); further failures of this database are not logged",
                _printable(self.name, 200),
                type(exc).__name__,
            )


class _Resolver:
    """The uncached lookup. Separate from GeoLookup so the cache holds no cycle."""

    __slots__ = ("interned", "v4", "v6", "with_city")

    def __init__(self, sources: Sequence[_Source], with_city: bool) -> None:
        # Every database answers IPv4 (an IPv6 tree maps it via ::/96); only IPv6
        # databases answer IPv6 (an IPv4 database would raise ValueError).
        self.v4: tuple[_Source, ...] = tuple(sources)
        self.v6: tuple[_Source, ...] = tuple(s for s in sources if s.ip_version == 6)
        self.with_city = with_city
        self.interned: dict[tuple[str, str, str], GeoResult] = {}

    def resolve(self, packed: bytes) -> tuple[GeoResult, int]:
        """The answer, and the longest network prefix behind it: every database consulted answers the
        same for all addresses sharing that many leading bits (129 when that is unknown: a failure)."""
        address: str | IPv6Address
        if len(packed) == 4:
            address, sources = _ntop(_AF_INET, packed), self.v4
        else:
            address, sources = IPv6Address(packed), self.v6
        prefix = 0
        for source in sources:
            try:
                record, source_prefix = source.reader.get_with_prefix_len(address)
            except Exception as exc:
                source.failed(exc)
                prefix = 129  # never cached: the next lookup tries this database again
                continue
            prefix = max(prefix, source_prefix)
            if record is None:
                continue
            fields = _from_record(record, self.with_city)
            if fields is None:
                continue
            result = self.interned.get(fields)
            if result is None:
                if len(self.interned) >= _MAX_INTERNED:
                    self.interned.clear()
                result = self.interned[fields] = GeoResult(*fields)
            return result, prefix
        return UNKNOWN, prefix


class GeoLookup:
    """Country / region (/ city) of packed client addresses from ``.mmdb`` files.

    ``paths`` are tried in order, first non-empty answer wins.  A missing,
    unreadable or invalid file raises ``ValueError`` naming the path; no paths
    gives a disabled lookup that answers :data:`UNKNOWN`.

    The LRU cache (``cache_size`` entries, ``0`` disables it) is keyed by the address
    truncated to ``cache_prefix_bits`` (IPv4, IPv6) and holds only answers that hold for
    that whole prefix; :meth:`close` clears it.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        *,
        with_city: bool = False,
        cache_size: int = 65536,
        cache_prefix_bits: tuple[int, int] = (24, 48),
    ) -> None:
        if isinstance(paths, str | bytes | os.PathLike):
            raise TypeError("paths must be a sequence of paths, not a single path")
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise ValueError(f"cache_size must be an integer >= 0, got {cache_size!r}")
        v4_bits, v6_bits = cache_prefix_bits
        if not (0 <= v4_bits <= 32 and 0 <= v6_bits <= 128):
            raise ValueError(f"cache_prefix_bits must be within (0..32, 0..128), got {cache_prefix_bits!r}")
        self._with_city = with_city
        self._cache_size = cache_size
        self._v4_bits, self._v6_bits = v4_bits, v6_bits
        self._hits = self._misses = self._uncacheable = 0
        sources: list[_Source] = []
        if paths:
            mode = maxminddb.MODE_MMAP_EXT
            if not _HAS_C_EXTENSION:
                _log.warning(
                    "maxminddb C extension is not available; GeoIP lookups fall back to "
                    "the much slower pure-Python reader"
                )
                mode = maxminddb.MODE_AUTO
            try:
                for path in paths:
                    sources.append(_Source(Path(path), mode))
            except BaseException:
                for source in sources:
                    source.reader.close()
                raise
        self._sources: tuple[_Source, ...] = tuple(sources)
        self._resolver = _Resolver(sources, with_city) if sources else None
        self._cache: OrderedDict[bytes, GeoResult] = OrderedDict()

    def lookup(self, packed: bytes) -> GeoResult:
        """Location of a 4-byte (IPv4) or 16-byte (IPv6) packed address.

        Never raises: anything that cannot be looked up answers ``UNKNOWN``.
        """
        resolver = self._resolver
        if resolver is None:
            return UNKNOWN
        try:
            if type(packed) is not bytes:  # bytearray / memoryview: make it hashable
                packed = bytes(packed)
            n = len(packed)
            if n != 4 and n != 16:
                return UNKNOWN
            bits = self._v4_bits if n == 4 else self._v6_bits
            if n == 16 and carries_ipv4(packed):
                # Its prefix could keep IPv4 bits beyond the IPv4 prefix: not a cache key. (The pipeline
                # looks up the IPv4 inside such an address; only ambiguous forms get here.)
                self._misses += 1
                self._uncacheable += 1
                return resolver.resolve(packed)[0]
            key = truncate(packed, self._v4_bits, self._v6_bits)
            cache = self._cache
            cached = cache.get(key)
            if cached is not None:
                cache.move_to_end(key)
                self._hits += 1
                return cached
            self._misses += 1
            result, prefix = resolver.resolve(packed)
            if prefix > bits:  # a finer network than the prefix: other addresses in it may differ
                self._uncacheable += 1
            elif self._cache_size:
                if len(cache) >= self._cache_size:
                    cache.popitem(last=False)
                cache[key] = result
            return result
        except Exception:
            return UNKNOWN

    @property
    def enabled(self) -> bool:
        """True when at least one database is open."""
        return self._resolver is not None

    @property
    def with_city(self) -> bool:
        return self._with_city

    def describe(self) -> list[str]:
        """One line per database, e.g. ``"x.mmdb (city, IPv4, built 2026-06-05)"``."""
        return [source.describe() for source in self._sources]

    def cache_info(self) -> CacheStats:
        return CacheStats(self._hits, self._misses, self._cache_size, len(self._cache), self._uncacheable)

    def close(self) -> None:
        """Forget every cached prefix and close the databases. Idempotent."""
        self._resolver = None
        self._cache.clear()
        sources, self._sources = self._sources, ()
        for source in sources:
            source.reader.close()


def find_databases(directory: Path) -> list[Path]:
    """``*.mmdb`` files directly in ``directory``, sorted by name; ``[]`` if it is missing.

    Hidden files (leading dot, e.g. a download in progress) are skipped.
    """
    try:
        found = [
            entry
            for entry in Path(directory).iterdir()
            if entry.suffix.lower() == ".mmdb" and not entry.name.startswith(".") and entry.is_file()
        ]
    except OSError:
        return []
    return sorted(found, key=lambda p: p.name)
