"""Settings are typed, loaded once, env > TOML file > defaults, and unknown keys fail naming the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from config.schema import ddl_statements
from config.settings import (
    DEFAULT_CONFIG,
    ClickhouseSettings,
    Settings,
    SettingsError,
    SiteSettings,
    load_settings,
)
from proxy.model import EVENT_COLUMNS


@pytest.fixture(autouse=True)
def _in_tmp_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative data_dir resolves against the working directory: pin it to a known place."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    return tmp_path.resolve()


def write_toml(directory: Path, text: str, name: str = "beacon.toml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------------------ defaults


def test_defaults_load_from_shipped_file(cwd: Path) -> None:
    s = load_settings(environ={})

    assert (s.host, s.port, s.data_dir, s.log_level) == ("127.0.0.1", 8080, cwd / "data", "info")
    assert s.server.max_body_bytes == 1_048_576
    assert s.server.max_batch_events == 100
    assert s.server.trusted_proxies == ("127.0.0.0/8", "::1")
    assert s.server.client_ip_header == "x-forwarded-for"
    assert s.server.admin_token == ""
    assert s.server.opt_out_cookie == "bp_optout"
    server = s.server  # hostile connections: per process, every timeout well under a minute
    assert (server.max_connections, server.max_header_bytes, server.body_budget_bytes) == (
        4096,
        32768,
        32 << 20,
    )
    timeouts = (server.idle_timeout_seconds, server.header_timeout_seconds, server.body_timeout_seconds)
    assert (timeouts, server.keep_alive_seconds) == ((10.0, 10.0, 20.0), 5.0)
    assert (s.privacy.ipv4_prefix_bits, s.privacy.ipv6_prefix_bits) == (24, 48)
    assert s.privacy.query_allowlist == ("utm_*",)
    assert s.privacy.pseudonym_secret == ""
    assert s.geoip.databases == ()
    assert s.geoip.city is False
    assert (s.clickhouse.dsn, s.clickhouse.database, s.clickhouse.retention_days) == ("", "beacon", 400)
    assert (s.batch.max_rows, s.batch.max_bytes, s.batch.max_age_seconds) == (10_000, 8_388_608, 1.0)
    assert s.sites == {
        "demo": SiteSettings(allowed_origins=("*",), without_consent="anonymous", tracker_keys=("demo",))
    }


def test_shipped_file_agrees_with_code_defaults_except_demo_site(tmp_path: Path) -> None:
    empty = write_toml(tmp_path, "")

    from_code = load_settings(empty, environ={})
    from_shipped = load_settings(environ={})

    assert from_code.sites == {}
    assert from_shipped.model_copy(update={"sites": {}}) == from_code


def test_default_config_path_is_the_shipped_file() -> None:
    assert DEFAULT_CONFIG.name == "default.toml"
    assert DEFAULT_CONFIG.is_file()


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("", "chdb://{cwd}/data/clickhouse"),
        ("chdb:///var/lib/beacon/ch", "chdb:///var/lib/beacon/ch"),
        ("https://beacon:pw@ch.internal:8443", "https://beacon:pw@ch.internal:8443"),
    ],
)
def test_clickhouse_dsn(cwd: Path, dsn: str, expected: str) -> None:
    s = load_settings(environ={"BEACONPROXY_CLICKHOUSE__DSN": dsn})

    assert s.clickhouse_dsn == expected.format(cwd=cwd)


def test_geoip_dir_is_under_data_dir(cwd: Path) -> None:
    assert load_settings(environ={}).geoip_dir == cwd / "data" / "geoip"


# ------------------------------------------------------------------------------------------------ TOML file

SHOP_TOML = """
port = 9000
data_dir = "/srv/beacon"

[privacy]
ipv4_prefix_bits = 16
ipv6_prefix_bits = 32

[sites.shop]
allowed_origins = ["https://shop.example.com", "https://*.shop.example.com"]
without_consent = "drop"
"""


def assert_is_shop_file(s: Settings) -> None:
    assert s.port == 9000
    assert s.data_dir == Path("/srv/beacon")
    assert (s.privacy.ipv4_prefix_bits, s.privacy.ipv6_prefix_bits) == (16, 32)
    # the file replaces the shipped one (no demo site); what it does not set keeps the code default
    assert s.sites == {
        "shop": SiteSettings(
            allowed_origins=("https://shop.example.com", "https://*.shop.example.com"), without_consent="drop"
        )
    }
    assert s.host == "127.0.0.1"
    assert s.clickhouse.database == "beacon"


def test_toml_file_by_argument(tmp_path: Path) -> None:
    assert_is_shop_file(load_settings(write_toml(tmp_path, SHOP_TOML), environ={}))


def test_toml_file_by_argument_as_str(tmp_path: Path) -> None:
    assert_is_shop_file(load_settings(str(write_toml(tmp_path, SHOP_TOML)), environ={}))


def test_toml_file_by_env_variable(tmp_path: Path) -> None:
    path = write_toml(tmp_path, SHOP_TOML)

    assert_is_shop_file(load_settings(environ={"BEACONPROXY_CONFIG": str(path)}))


def test_argument_beats_env_config_variable(tmp_path: Path) -> None:
    chosen = write_toml(tmp_path, SHOP_TOML, "chosen.toml")
    ignored = write_toml(tmp_path, "port = 1111\n", "ignored.toml")

    assert_is_shop_file(load_settings(chosen, environ={"BEACONPROXY_CONFIG": str(ignored)}))


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"

    with pytest.raises(SettingsError, match=re.escape(f"config file {missing} not found")):
        load_settings(missing, environ={})


def test_invalid_toml_is_named(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "port = \n")

    with pytest.raises(SettingsError, match=re.escape(f"config file {path}: ")):
        load_settings(path, environ={})


# ------------------------------------------------------------------------------------- env overrides

TOP_LEVEL_ENV = [
    ("BEACONPROXY_HOST", "0.0.0.0", "host", "0.0.0.0"),
    ("BEACONPROXY_HOST", "::", "host", "::"),
    ("BEACONPROXY_PORT", "9001", "port", 9001),
    ("BEACONPROXY_PORT", "0", "port", 0),
    ("BEACONPROXY_PORT", "65535", "port", 65535),
    ("BEACONPROXY_DATA_DIR", "/var/lib/beacon", "data_dir", Path("/var/lib/beacon")),
    ("BEACONPROXY_LOG_LEVEL", "debug", "log_level", "debug"),
]


@pytest.mark.parametrize(("key", "raw", "attr", "expected"), TOP_LEVEL_ENV)
def test_top_level_env(key: str, raw: str, attr: str, expected: object) -> None:
    s = load_settings(environ={key: raw})

    assert getattr(s, attr) == expected


SECTION_ENV = [
    ("BEACONPROXY_PRIVACY__IPV4_PREFIX_BITS", "16", "privacy", "ipv4_prefix_bits", 16),
    ("BEACONPROXY_PRIVACY__IPV6_PREFIX_BITS", "56", "privacy", "ipv6_prefix_bits", 56),
    (
        "BEACONPROXY_PRIVACY__QUERY_ALLOWLIST",
        '["utm_*", "ref"]',
        "privacy",
        "query_allowlist",
        ("utm_*", "ref"),
    ),
    ("BEACONPROXY_PRIVACY__PROP_KEY_DENYLIST", "[]", "privacy", "prop_key_denylist", ()),
    (
        "BEACONPROXY_PRIVACY__PSEUDONYM_SECRET",
        "0123456789abcdef",
        "privacy",
        "pseudonym_secret",
        "0123456789abcdef",
    ),
    (
        "BEACONPROXY_SERVER__TRUSTED_PROXIES",
        ' ["10.0.0.0/8", "192.168.0.0/16"] ',
        "server",
        "trusted_proxies",
        ("10.0.0.0/8", "192.168.0.0/16"),
    ),
    ("BEACONPROXY_SERVER__CLIENT_IP_HEADER", "forwarded", "server", "client_ip_header", "forwarded"),
    ("BEACONPROXY_SERVER__MAX_BODY_BYTES", "2048", "server", "max_body_bytes", 2048),
    ("BEACONPROXY_SERVER__COOKIE_DOMAIN", "example.com", "server", "cookie_domain", "example.com"),
    ("BEACONPROXY_CLICKHOUSE__PSEUDONYM_RETENTION_DAYS", "30", "clickhouse", "pseudonym_retention_days", 30),
    ("BEACONPROXY_GEOIP__CITY", "1", "geoip", "city", True),
    ("BEACONPROXY_GEOIP__DATABASES", '["/geo/a.mmdb"]', "geoip", "databases", ("/geo/a.mmdb",)),
    ("BEACONPROXY_CLICKHOUSE__DSN", "http://u:p@ch:8123", "clickhouse", "dsn", "http://u:p@ch:8123"),
    ("BEACONPROXY_CLICKHOUSE__DATABASE", "analytics_eu", "clickhouse", "database", "analytics_eu"),
    ("BEACONPROXY_CLICKHOUSE__RETENTION_DAYS", "30", "clickhouse", "retention_days", 30),
    ("BEACONPROXY_BATCH__MAX_AGE_SECONDS", "2.5", "batch", "max_age_seconds", 2.5),
]


@pytest.mark.parametrize(("key", "raw", "section", "field", "expected"), SECTION_ENV)
def test_section_env(key: str, raw: str, section: str, field: str, expected: object) -> None:
    s = load_settings(environ={key: raw})

    assert getattr(getattr(s, section), field) == expected


def test_section_env_keeps_the_other_keys_of_the_section(tmp_path: Path) -> None:
    path = write_toml(tmp_path, SHOP_TOML)

    s = load_settings(path, environ={"BEACONPROXY_PRIVACY__IPV6_PREFIX_BITS": "40"})

    assert (s.privacy.ipv4_prefix_bits, s.privacy.ipv6_prefix_bits) == (16, 40)
    assert s.privacy.query_allowlist == ("utm_*",)


def test_site_env_overrides_one_key_of_a_file_site() -> None:
    s = load_settings(
        environ={
            "BEACONPROXY_SITES__DEMO__ALLOWED_ORIGINS": '["https://example.com", "https://*.example.com"]'
        }
    )

    assert s.sites == {
        "demo": SiteSettings(
            allowed_origins=("https://example.com", "https://*.example.com"),
            without_consent="anonymous",
            tracker_keys=("demo",),
        )
    }


def test_site_env_adds_a_site() -> None:
    s = load_settings(
        environ={
            "BEACONPROXY_SITES__SHOP__ALLOWED_ORIGINS": '["https://shop.example.com"]',
            "BEACONPROXY_SITES__SHOP__WITHOUT_CONSENT": "drop",
        }
    )

    assert s.sites == {
        "demo": SiteSettings(allowed_origins=("*",), without_consent="anonymous", tracker_keys=("demo",)),
        "shop": SiteSettings(allowed_origins=("https://shop.example.com",), without_consent="drop"),
    }


def test_non_prefixed_environment_is_ignored() -> None:
    s = load_settings(environ={"PORT": "1", "HOST": "10.0.0.1", "BEACON_PORT": "2", "PATH": "/usr/bin"})

    assert (s.host, s.port) == ("127.0.0.1", 8080)


# ------------------------------------------------------------------------------------------------ precedence


def test_precedence_env_over_file_over_defaults(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "port = 9000\nhost = '10.0.0.1'\n[batch]\nmax_rows = 500\n")

    s = load_settings(path, environ={"BEACONPROXY_PORT": "9100", "BEACONPROXY_BATCH__MAX_BYTES": "4096"})

    assert s.port == 9100  # env beats file
    assert s.host == "10.0.0.1"  # file beats default
    assert s.batch.max_rows == 500  # file
    assert s.batch.max_bytes == 4096  # env beats default
    assert s.batch.max_age_seconds == 1.0  # default


def test_explicit_overrides_beat_env(tmp_path: Path) -> None:
    """``--port`` on the command line is passed as an override and beats BEACONPROXY_PORT."""
    path = write_toml(tmp_path, "port = 9000\n")

    s = load_settings(path, environ={"BEACONPROXY_PORT": "9100"}, port=9200)

    assert s.port == 9200


# ------------------------------------------------------------------------------------------- unknown keys

UNKNOWN_IN_TOML = [
    ("bogus = 1\n", "unknown setting 'bogus'"),
    ("[metrics]\nenabled = true\n", "unknown setting 'metrics'"),
    ("[server]\nmax_body = 1\n", "unknown setting 'server.max_body'"),
    ("[privacy]\nipv4_prefix = 16\n", "unknown setting 'privacy.ipv4_prefix'"),
    ("[sites.demo]\nallowed_origin = ['*']\n", "unknown setting 'sites.demo.allowed_origin'"),
]


@pytest.mark.parametrize(("text", "message"), UNKNOWN_IN_TOML)
def test_unknown_key_in_toml_is_named(tmp_path: Path, text: str, message: str) -> None:
    path = write_toml(tmp_path, text)

    with pytest.raises(SettingsError, match=re.escape(message)):
        load_settings(path, environ={})


def test_every_unknown_toml_key_is_named(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "bogus = 1\n[server]\nnope = 2\n[sites.shop]\nextra = 3\n")

    with pytest.raises(SettingsError) as info:
        load_settings(path, environ={})

    for key in ("'bogus'", "'server.nope'", "'sites.shop.extra'"):
        assert key in str(info.value)


UNKNOWN_IN_ENV = [
    ("BEACONPROXY_BOGUS", "unknown setting BEACONPROXY_BOGUS"),
    ("BEACONPROXY_SERVER", "unknown setting BEACONPROXY_SERVER"),
    ("BEACONPROXY_METRICS__ENABLED", "unknown setting BEACONPROXY_METRICS__ENABLED"),
    ("BEACONPROXY_SERVER__BOGUS", "unknown setting BEACONPROXY_SERVER__BOGUS (no key 'bogus' in [server])"),
    ("BEACONPROXY_PRIVACY__IPV4__BITS", "unknown setting BEACONPROXY_PRIVACY__IPV4__BITS"),
    ("BEACONPROXY_SITES__DEMO", "unknown setting BEACONPROXY_SITES__DEMO"),
    (
        "BEACONPROXY_SITES__DEMO__BOGUS",
        "unknown setting BEACONPROXY_SITES__DEMO__BOGUS (no key 'bogus' in a site)",
    ),
]


@pytest.mark.parametrize(("key", "message"), UNKNOWN_IN_ENV)
def test_unknown_key_in_env_is_named(key: str, message: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(environ={key: "1"})

    assert str(info.value) == message


# ----------------------------------------------------------------------------------------- invalid values

INVALID_ENV = [
    ({"BEACONPROXY_PORT": "abc"}, "port: Input should be a valid integer"),
    ({"BEACONPROXY_PORT": "70000"}, "port: Input should be less than or equal to 65535"),
    ({"BEACONPROXY_PORT": "-1"}, "port: Input should be greater than or equal to 0"),
    (
        {"BEACONPROXY_LOG_LEVEL": "verbose"},
        "log_level: Input should be 'debug', 'info', 'warning' or 'error'",
    ),
    (
        {"BEACONPROXY_PRIVACY__IPV4_PREFIX_BITS": "33"},
        "privacy.ipv4_prefix_bits: Input should be less than or equal to 32",
    ),
    (
        {"BEACONPROXY_PRIVACY__IPV6_PREFIX_BITS": "129"},
        "privacy.ipv6_prefix_bits: Input should be less than or equal to 128",
    ),
    (
        {"BEACONPROXY_SERVER__CLIENT_IP_HEADER": "x-real-ip"},
        "server.client_ip_header: Input should be 'x-forwarded-for' or 'forwarded'",
    ),
    ({"BEACONPROXY_SERVER__MAX_BODY_BYTES": "10"}, "server.max_body_bytes: Input should be greater than"),
    (
        {"BEACONPROXY_SERVER__BODY_BUDGET_BYTES": "1048576"},
        "server: Value error, body_budget_bytes (1048576) must be at least 1398102, 4/3 of max_body_bytes",
    ),
    (
        {"BEACONPROXY_SERVER__MAX_BODY_BYTES": "4194304", "BEACONPROXY_SERVER__BODY_BUDGET_BYTES": "5000000"},
        "body_budget_bytes (5000000) must be at least 5592406",
    ),
    ({"BEACONPROXY_SERVER__MAX_CONNECTIONS": "0"}, "server.max_connections: Input should be greater than"),
    (
        {"BEACONPROXY_SERVER__IDLE_TIMEOUT_SECONDS": "0"},
        "server.idle_timeout_seconds: Input should be greater",
    ),
    (
        {"BEACONPROXY_SERVER__HEADER_TIMEOUT_SECONDS": "-1"},
        "server.header_timeout_seconds: Input should be greater than 0",
    ),
    (
        {"BEACONPROXY_SERVER__MAX_HEADER_BYTES": "100"},
        "server.max_header_bytes: Input should be greater than",
    ),
    (
        {"BEACONPROXY_CLICKHOUSE__DATABASE": "beacon; DROP TABLE x"},
        "clickhouse.database: String should match",
    ),
    ({"BEACONPROXY_CLICKHOUSE__RETENTION_DAYS": "0"}, "clickhouse.retention_days: Input should be greater"),
    (
        {"BEACONPROXY_SERVER__GIL_SWITCH_INTERVAL_MS": "0"},
        "server.gil_switch_interval_ms: Input should be greater than 0",
    ),
    (
        {"BEACONPROXY_SITES__DEMO__ALLOWED_ORIGINS": '["https://example.com/"]'},
        "sites.demo.allowed_origins: Value error, allowed origin 'https://example.com/' must be",
    ),
    (
        {"BEACONPROXY_SITES__DEMO__WITHOUT_CONSENT": "keep"},
        "sites.demo.without_consent: Input should be 'anonymous' or 'drop'",
    ),
    (
        {"BEACONPROXY_SERVER__TRUSTED_PROXIES": '["10.0.0.0/8"'},
        "BEACONPROXY_SERVER__TRUSTED_PROXIES: value is not valid JSON",
    ),
]


@pytest.mark.parametrize(("environ", "message"), INVALID_ENV)
def test_invalid_value_names_the_field(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        load_settings(environ=environ)


@pytest.mark.parametrize(
    "origin",
    [
        "https://example.com/",  # trailing slash: an origin has no path
        "https://example.com/shop",
        "example.com",  # no scheme
        "//example.com",
        "ftp://example.com",
        "https://*example.com",  # wildcard must be a whole label
        "https://*.*.example.com",
        "*.example.com",
        "https://example.com:123456",
        "https://exa mple.com",
        "https://Example.com",  # request origins are lower-cased before comparing: upper case never matches
        "",
    ],
)
def test_bad_origin_pattern_names_the_site_field(tmp_path: Path, origin: str) -> None:
    path = write_toml(tmp_path, f"[sites.shop]\nallowed_origins = [{origin!r}]\n")

    with pytest.raises(SettingsError, match=re.escape("sites.shop.allowed_origins: Value error")):
        load_settings(path, environ={})


@pytest.mark.parametrize(
    "origin",
    [
        "*",
        "https://example.com",
        "http://localhost:8080",
        "https://*.example.com",
        "https://*.example.com:8443",
    ],
)
def test_good_origin_pattern_is_kept(tmp_path: Path, origin: str) -> None:
    path = write_toml(tmp_path, f"[sites.shop]\nallowed_origins = [{origin!r}]\n")

    assert load_settings(path, environ={}).sites["shop"].allowed_origins == (origin,)


@pytest.mark.parametrize("site_id", ["-demo", ".demo", "bad site", "a/b", "sh!p", "x" * 65])
def test_bad_site_id_is_named(tmp_path: Path, site_id: str) -> None:
    path = write_toml(tmp_path, f'[sites."{site_id}"]\nallowed_origins = ["*"]\n')

    with pytest.raises(SettingsError, match=re.escape(f"site id {site_id!r} must be 1-64 of [A-Za-z0-9._-]")):
        load_settings(path, environ={})


@pytest.mark.parametrize("site_id", ["demo", "Shop_1", "shop.example.com", "a-b", "x" * 64, "7"])
def test_good_site_id_is_kept(tmp_path: Path, site_id: str) -> None:
    path = write_toml(tmp_path, f'[sites."{site_id}"]\nallowed_origins = ["*"]\n')

    assert list(load_settings(path, environ={}).sites) == [site_id]


def test_invalid_value_in_file_names_file_and_field(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[privacy]\nipv4_prefix_bits = 33\n")

    with pytest.raises(SettingsError) as info:
        load_settings(path, environ={})

    assert str(info.value) == (
        f"{path} with BEACONPROXY_* overrides: "
        "privacy.ipv4_prefix_bits: Input should be less than or equal to 32"
    )


# ------------------------------------------------------------------------------------------------ data_dir


@pytest.mark.parametrize(
    ("raw", "relative"),
    [("data", "data"), ("./data", "data"), ("var/beacon", "var/beacon"), ("x/../y", "y"), (".", "")],
)
def test_relative_data_dir_is_made_absolute(cwd: Path, raw: str, relative: str) -> None:
    s = load_settings(environ={"BEACONPROXY_DATA_DIR": raw})

    assert s.data_dir.is_absolute()
    assert s.data_dir == (cwd / relative if relative else cwd)


def test_home_in_data_dir_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))

    s = load_settings(environ={"BEACONPROXY_DATA_DIR": "~/beacon"})

    assert s.data_dir == (tmp_path / "home" / "beacon").resolve()


def test_data_dir_from_file_is_made_absolute(tmp_path: Path, cwd: Path) -> None:
    path = write_toml(tmp_path, 'data_dir = "state"\n')

    assert load_settings(path, environ={}).data_dir == cwd / "state"


# -------------------------------------------------------------------------------------------------- schema


def test_ddl_statements_use_the_database_and_every_retention_setting() -> None:
    ch = ClickhouseSettings(
        database="analytics_eu",
        retention_days=30,
        pseudonym_retention_days=7,
        aggregate_retention_days=999,
        audit_retention_days=555,
    )
    statements = ddl_statements("analytics_eu", ch)

    assert statements[0] == "CREATE DATABASE IF NOT EXISTS analytics_eu"
    assert statements[1].startswith("CREATE TABLE IF NOT EXISTS analytics_eu.events\n(")
    assert "\nTTL toDateTime(ts) + INTERVAL 30 DAY\n" in statements[1]
    assert statements[1].count("TTL toDateTime(ts) + INTERVAL 7 DAY") == 4
    assert "TTL toDateTime(day) + INTERVAL 999 DAY" in statements[2]
    assert "TTL toDateTime(time) + INTERVAL 555 DAY" in statements[4]
    assert all("analytics_eu" in stmt for stmt in statements)


@pytest.mark.parametrize(("database", "days"), [("beacon", 400), ("b2", 1), ("_x", 36500)])
def test_ddl_statements_have_no_comment_lines_placeholders_or_terminators(database: str, days: int) -> None:
    ch = ClickhouseSettings(database=database, retention_days=days, pseudonym_retention_days=1)
    for stmt in ddl_statements(database, ch):
        assert "\n--" not in stmt and not stmt.startswith("--")
        assert "{" not in stmt and "}" not in stmt
        assert not stmt.endswith(";")
        assert stmt == stmt.strip()
        assert database in stmt


def test_pseudonym_retention_cannot_outlive_the_row() -> None:
    assert ClickhouseSettings(retention_days=30, pseudonym_retention_days=90).pseudonym_retention_days == 30
    assert ClickhouseSettings(retention_days=30, pseudonym_retention_days=7).pseudonym_retention_days == 7


def test_admin_query_limits_have_defaults_and_env_overrides() -> None:
    limits = load_settings(environ={}).clickhouse.admin_query
    assert (limits.dsn, limits.max_seconds, limits.max_memory_bytes) == ("", 30.0, 1024**3)
    assert (limits.max_result_rows, limits.max_result_bytes) == (100_000, 100 * 1024**2)
    s = load_settings(
        environ={
            "BEACONPROXY_CLICKHOUSE__DSN": "https://writer:w@ch.example:8443",
            "BEACONPROXY_CLICKHOUSE__ADMIN_QUERY": (
                '{"dsn": "https://reader:r@ch.example:8443", "max_seconds": 5}'
            ),
        }
    )
    assert s.clickhouse.admin_query.dsn == "https://reader:r@ch.example:8443"
    assert (s.clickhouse.admin_query.max_seconds, s.clickhouse.admin_query.max_result_rows) == (5.0, 100_000)


@pytest.mark.parametrize(
    ("admin_query", "message"),
    [
        ('{"max_seconds": 0}', "clickhouse.admin_query.max_seconds: Input should be greater than 0"),
        ('{"max_seconds": 7200}', "clickhouse.admin_query.max_seconds: Input should be less than or equal"),
        ('{"max_memory_bytes": 1024}', "clickhouse.admin_query.max_memory_bytes: Input should be greater"),
        ('{"max_result_rows": 0}', "clickhouse.admin_query.max_result_rows: Input should be greater"),
        ('{"max_result_bytes": -1}', "clickhouse.admin_query.max_result_bytes: Input should be greater"),
        ('{"max_rows": 5}', "unknown setting 'clickhouse.admin_query.max_rows'"),
        (
            '{"dsn": "chdb:///tmp/x"}',
            "clickhouse.admin_query.dsn: Value error, must be an http:// or https://",
        ),
        # a separate user exists only on a remote store
        ('{"dsn": "https://reader:r@ch.example:8443"}', "admin_query.dsn needs a remote store"),
    ],
)
def test_bad_admin_query_settings_fail_at_start(admin_query: str, message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        load_settings(environ={"BEACONPROXY_CLICKHOUSE__ADMIN_QUERY": admin_query})


def test_events_table_has_exactly_the_event_model_columns() -> None:
    """The sink inserts by column name, so the set must match (order is free)."""
    create_table = ddl_statements("beacon", ClickhouseSettings())[1]
    body = create_table.split("\n(\n", 1)[1].split("\n)\n", 1)[0]

    columns = [line.split()[0] for line in body.splitlines() if line.strip()]

    assert len(columns) == len(set(columns)) == 35
    assert set(columns) == set(EVENT_COLUMNS)


def test_env_site_override_matches_a_file_site_id_case_insensitively(tmp_path: Path) -> None:
    cfg = tmp_path / "sites.toml"
    cfg.write_text('[sites.MyShop]\nallowed_origins = ["https://shop.example.com"]\n')
    s = load_settings(cfg, environ={"BEACONPROXY_SITES__MYSHOP__WITHOUT_CONSENT": "drop"})
    assert set(s.sites) == {"MyShop"}
    assert s.sites["MyShop"].without_consent == "drop"
    assert s.sites["MyShop"].allowed_origins == ("https://shop.example.com",)


def test_a_tracker_key_belongs_to_one_site() -> None:
    with pytest.raises(SettingsError, match="tracker key 'k1' is listed by sites 'a' and 'b'"):
        load_settings(environ={}, sites={"a": {"tracker_keys": ["k1"]}, "b": {"tracker_keys": ["k2", "k1"]}})


@pytest.mark.parametrize("key", ["", " padded ", "x" * 257])
def test_tracker_keys_are_checked(key: str) -> None:
    with pytest.raises(SettingsError, match="tracker key"):
        load_settings(environ={}, sites={"a": {"tracker_keys": [key]}})
