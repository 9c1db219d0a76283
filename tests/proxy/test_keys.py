"""Secrets: configured or generated once (0600); a daily salt shared by workers and destroyed the next day;
a cookieless visitor hash; keyed pseudonyms that never reveal the identifier."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
import stat
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from config.settings import SettingsError
from proxy.keys import (
    SALT_BYTES,
    DailySalt,
    Pseudonymizer,
    fingerprint,
    load_or_create_secret,
    resolve_secret,
    unwrap_salt,
    visitor_hash,
    wrap_salt,
)

DAY1 = datetime(2024, 3, 1, 0, 0, 0, tzinfo=UTC)
DAY1_LATE = datetime(2024, 3, 1, 23, 59, 59, 999_999, tzinfo=UTC)
DAY2 = datetime(2024, 3, 2, 0, 0, 0, tzinfo=UTC)
DAY3 = datetime(2024, 3, 3, 12, 0, 0, tzinfo=UTC)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# ---------------------------------------------------------------------------------- load_or_create_secret


@pytest.mark.parametrize(
    ("configured", "expected"),
    [("s3cret-from-config", b"s3cret-from-config"), ("пароль-0123456789", "пароль-0123456789".encode())],
)
def test_configured_secret_wins_and_nothing_is_written(
    tmp_path: Path, configured: str, expected: bytes
) -> None:
    path = tmp_path / "secrets" / "pseudonym_secret"

    assert load_or_create_secret(configured, path) == expected
    assert not path.exists()


def test_configured_secret_wins_over_a_stored_one(tmp_path: Path) -> None:
    path = tmp_path / "pseudonym_secret"
    path.write_bytes(b"stored-secret-stored-secret")

    assert load_or_create_secret("configured-secret", path) == b"configured-secret"
    assert path.read_bytes() == b"stored-secret-stored-secret"


def test_generated_secret_is_random_hex_stored_0600(tmp_path: Path) -> None:
    path = tmp_path / "data" / "pseudonym_secret"

    secret = load_or_create_secret("", path)

    assert re.fullmatch(rb"[0-9a-f]{64}", secret)
    assert path.read_bytes() == secret
    assert mode(path) == 0o600
    assert listing(path.parent) == ["pseudonym_secret"]  # no temporary file left behind


def test_generated_secret_is_created_once_and_stays(tmp_path: Path) -> None:
    path = tmp_path / "admin_token"

    first = load_or_create_secret("", path)
    second = load_or_create_secret("", path)

    assert first == second
    assert path.read_bytes() == first


def test_generated_secrets_differ_per_file(tmp_path: Path) -> None:
    assert load_or_create_secret("", tmp_path / "a") != load_or_create_secret("", tmp_path / "b")


def test_stored_secret_is_read_without_surrounding_whitespace(tmp_path: Path) -> None:
    path = tmp_path / "admin_token"
    path.write_bytes(b"  operator-written-token\n")

    assert load_or_create_secret("", path) == b"operator-written-token"


# -------------------------------------------------------------------------------------------- DailySalt


def test_salt_is_the_same_all_day(tmp_path: Path) -> None:
    salts = DailySalt(tmp_path / "salts")

    first = salts.current(DAY1)

    assert len(first) == SALT_BYTES == 32
    assert salts.current(DAY1 + timedelta(hours=13)) == first
    assert salts.current(DAY1_LATE) == first
    assert listing(tmp_path / "salts") == ["salt-2024-03-01"]
    assert (tmp_path / "salts" / "salt-2024-03-01").read_bytes() == first
    assert mode(tmp_path / "salts" / "salt-2024-03-01") == 0o600


def test_two_instances_on_one_directory_agree_like_two_workers(tmp_path: Path) -> None:
    worker_a, worker_b = DailySalt(tmp_path), DailySalt(tmp_path)

    assert worker_a.current(DAY1) == worker_b.current(DAY1 + timedelta(hours=5))
    # a worker started later (or restarted) the same day still agrees
    assert DailySalt(tmp_path).current(DAY1_LATE) == worker_a.current(DAY1)


def test_next_day_brings_a_new_salt_shared_by_every_worker(tmp_path: Path) -> None:
    worker_a, worker_b = DailySalt(tmp_path), DailySalt(tmp_path)
    day1 = worker_a.current(DAY1)
    assert worker_b.current(DAY1) == day1

    day2 = worker_a.current(DAY2)

    assert day2 != day1
    assert len(day2) == SALT_BYTES
    assert worker_b.current(DAY2) == day2  # b had day 1 in memory and switches to the shared day-2 salt
    assert worker_a.current(DAY3) not in (day1, day2)


def test_yesterdays_salt_is_destroyed_when_the_day_changes(tmp_path: Path) -> None:
    salts = DailySalt(tmp_path)
    day1 = salts.current(DAY1)

    salts.current(DAY2)

    assert listing(tmp_path) == ["salt-2024-03-02"]
    assert all(p.read_bytes() != day1 for p in tmp_path.iterdir())


def test_purge_deletes_every_salt_older_than_today(tmp_path: Path) -> None:
    for day in ("2023-12-31", "2024-02-28", "2024-02-29", "2024-03-01", "2024-03-02"):
        (tmp_path / f"salt-{day}").write_bytes(os.urandom(SALT_BYTES))
    (tmp_path / "README").write_text("not a salt")
    salts = DailySalt(tmp_path)

    assert salts.purge(date(2024, 3, 1)) == 3
    # tomorrow's may already exist: another worker is past midnight while this one purges
    assert listing(tmp_path) == ["README", "salt-2024-03-01", "salt-2024-03-02"]
    assert salts.purge(date(2024, 3, 1)) == 0
    assert salts.purge(date(2024, 3, 2)) == 1
    assert listing(tmp_path) == ["README", "salt-2024-03-02"]


def test_purge_with_no_salt_left_for_today(tmp_path: Path) -> None:
    """A periodic purge on a day with no traffic yet removes yesterday's salt anyway."""
    (tmp_path / "salt-2024-03-01").write_bytes(os.urandom(SALT_BYTES))

    assert DailySalt(tmp_path).purge(date(2024, 3, 2)) == 1
    assert listing(tmp_path) == []


def test_purge_without_a_date_uses_the_utc_day(tmp_path: Path) -> None:
    before = datetime.now(UTC).date()
    (tmp_path / "salt-2000-01-01").write_bytes(os.urandom(SALT_BYTES))
    (tmp_path / f"salt-{before.isoformat()}").write_bytes(os.urandom(SALT_BYTES))

    removed = DailySalt(tmp_path).purge()

    if datetime.now(UTC).date() == before:  # always, unless the UTC day changed during the test
        assert removed == 1
        assert listing(tmp_path) == [f"salt-{before.isoformat()}"]
    else:
        assert listing(tmp_path) == []


def test_purge_of_a_missing_directory_is_a_no_op(tmp_path: Path) -> None:
    assert DailySalt(tmp_path / "never-created").purge(date(2024, 3, 1)) == 0


def test_current_without_now_uses_the_utc_day(tmp_path: Path) -> None:
    before = datetime.now(UTC).date()
    salt = DailySalt(tmp_path).current()
    after = datetime.now(UTC).date()

    [name] = listing(tmp_path)
    assert name in {f"salt-{before.isoformat()}", f"salt-{after.isoformat()}"}
    assert (tmp_path / name).read_bytes() == salt


@pytest.mark.parametrize("torn", [b"", b"\x00", os.urandom(SALT_BYTES - 1), os.urandom(SALT_BYTES + 1)])
def test_a_salt_file_of_the_wrong_size_is_replaced(tmp_path: Path, torn: bytes) -> None:
    path = tmp_path / "salt-2024-03-01"
    path.write_bytes(torn)

    salt = DailySalt(tmp_path).current(DAY1)

    assert len(salt) == SALT_BYTES
    assert path.read_bytes() == salt
    assert DailySalt(tmp_path).current(DAY1) == salt  # the replacement is what every worker now reads


def test_a_late_request_from_yesterday_does_not_destroy_todays_salt(tmp_path: Path) -> None:
    """Requests are stamped when they arrive: one from 23:59:59.999 may be handled after midnight."""
    worker = DailySalt(tmp_path)
    today = worker.current(DAY2 + timedelta(milliseconds=1))

    worker.current(DAY1_LATE)  # an async request whose `now` was taken at 23:59:59.999

    assert DailySalt(tmp_path).current(DAY2 + timedelta(milliseconds=2)) == today  # another worker
    assert worker.current(DAY2 + timedelta(milliseconds=3)) == today


# ---------------------------------------------------------------------------------------------- visitor_hash

SALT = bytes(range(32))
V4 = ipaddress.ip_address("203.0.113.77").packed
V6 = ipaddress.ip_address("2001:db8::77").packed
UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0"
BASE = (SALT, "demo", V4, UA)


def test_visitor_hash_is_deterministic_and_unsigned_64_bit() -> None:
    h = visitor_hash(*BASE)

    assert isinstance(h, int)
    assert 0 <= h < 2**64
    assert visitor_hash(*BASE) == h
    assert visitor_hash(bytes(SALT), "de" + "mo", bytes(V4), UA[:10] + UA[10:]) == h


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param((bytes(32), "demo", V4, UA), id="other salt"),
        pytest.param((SALT[:-1] + b"\xff", "demo", V4, UA), id="salt one byte off"),
        pytest.param((SALT, "shop", V4, UA), id="other site"),
        pytest.param((SALT, "Demo", V4, UA), id="site case"),
        pytest.param((SALT, "demo", ipaddress.ip_address("203.0.113.78").packed, UA), id="ip last bit"),
        pytest.param((SALT, "demo", ipaddress.ip_address("203.0.113.0").packed, UA), id="truncated ip"),
        pytest.param((SALT, "demo", V6, UA), id="ipv6"),
        pytest.param((SALT, "demo", b"", UA), id="no ip"),
        pytest.param((SALT, "demo", V4, UA + " Edg/124"), id="other ua"),
        pytest.param((SALT, "demo", V4, ""), id="empty ua"),
    ],
)
def test_visitor_hash_differs_when_any_input_differs(changed: tuple[bytes, str, bytes, str]) -> None:
    assert visitor_hash(*changed) != visitor_hash(*BASE)


def test_visitor_hash_field_boundaries_are_not_ambiguous() -> None:
    assert visitor_hash(SALT, "ab", V4, "c") != visitor_hash(SALT, "a", V4, "bc")
    assert visitor_hash(SALT, "demo", b"\x01\x02", "\x03") != visitor_hash(SALT, "demo", b"\x01", "\x02\x03")


def test_visitor_hash_spans_the_full_64_bit_range() -> None:
    hashes = [visitor_hash(SALT, "demo", i.to_bytes(4, "big"), UA) for i in range(512)]

    assert len(set(hashes)) == 512
    assert all(0 <= h < 2**64 for h in hashes)
    assert max(hashes) >= 2**63  # uses the top bit: UInt64, not a signed or truncated value


def test_visitor_hash_accepts_any_user_agent_text() -> None:
    """Header bytes decoded as latin-1 or with surrogateescape must not crash the hash."""
    assert 0 <= visitor_hash(SALT, "demo", V4, "Mozilla/5.0 \udcff\x00 ü") < 2**64


# ---------------------------------------------------------------------------------------------- Pseudonymizer

KEY = b"k" * 32
IDENTIFIERS = [
    "jo@example.com",
    "203.0.113.77",
    "user-12345",
    "GA1.2.1234567890.1700000000",
    "3f2b8c1e-9a4d-4e5f-8b6a-1c2d3e4f5a6b",
    "Cj0KCQjw-gclid-value",
    "Иван Петров",
]


@pytest.mark.parametrize("value", IDENTIFIERS)
def test_pseudonym_is_32_hex_and_never_contains_the_input(value: str) -> None:
    pseudonym = Pseudonymizer(KEY)("demo", "user_id", value)

    assert re.fullmatch(r"[0-9a-f]{32}", pseudonym)
    assert value not in pseudonym
    assert value.lower() not in pseudonym


def test_pseudonym_is_stable_across_instances_and_restarts() -> None:
    assert Pseudonymizer(KEY)("demo", "client_id", "c-1") == Pseudonymizer(bytes(KEY))(
        "demo", "client_id", "c-1"
    )


def test_pseudonym_is_keyed_hmac_sha256_truncated_to_128_bits() -> None:
    """Pinned format: stored pseudonyms are looked up again for export and deletion, so it must not drift."""
    expected = hmac.new(KEY, b"demo\x00user_id\x00jo@example.com", hashlib.sha256).hexdigest()[:32]

    assert Pseudonymizer(KEY)("demo", "user_id", "jo@example.com") == expected


@pytest.mark.parametrize(
    ("args", "other"),
    [
        pytest.param(("demo", "user_id", "u-1"), ("shop", "user_id", "u-1"), id="site"),
        pytest.param(("demo", "user_id", "u-1"), ("demo", "client_id", "u-1"), id="kind"),
        pytest.param(("demo", "user_id", "u-1"), ("demo", "user_id", "u-2"), id="value"),
        pytest.param(("demo", "click_id", "x"), ("demo", "click_id", "X"), id="value case"),
    ],
)
def test_pseudonym_differs_by_site_kind_and_value(
    args: tuple[str, str, str], other: tuple[str, str, str]
) -> None:
    pseudonymize = Pseudonymizer(KEY)

    assert pseudonymize(*args) != pseudonymize(*other)


def test_pseudonym_differs_by_key() -> None:
    assert Pseudonymizer(b"a" * 16)("demo", "user_id", "u-1") != Pseudonymizer(b"b" * 16)(
        "demo", "user_id", "u-1"
    )


@pytest.mark.parametrize("key", [b"", b"k", b"k" * 15])
def test_short_key_is_rejected(key: bytes) -> None:
    with pytest.raises(ValueError) as info:
        Pseudonymizer(key)

    assert str(info.value) == "pseudonym_secret must be at least 16 bytes"


@pytest.mark.parametrize("key", [b"k" * 16, b"k" * 64, os.urandom(32)])
def test_key_of_16_bytes_or_more_is_accepted(key: bytes) -> None:
    assert re.fullmatch(r"[0-9a-f]{32}", Pseudonymizer(key)("demo", "user_id", "u-1"))


# --- secrets shared by replicas of a remote store ----------------------------------------------------------


def test_an_embedded_store_generates_what_is_not_configured(tmp_path: Path) -> None:
    value = resolve_secret("privacy.pseudonym_secret", "", "", tmp_path / "s", shared=False)
    assert len(value) == 64 and (tmp_path / "s").read_bytes().strip() == value


def test_a_remote_store_requires_the_secret_and_names_where_to_give_it(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        resolve_secret("privacy.pseudonym_secret", "", "", tmp_path / "s", shared=True)
    message = str(caught.value)
    assert "BEACONPROXY_PRIVACY__PSEUDONYM_SECRET" in message and "pseudonym_secret_file" in message
    assert not (tmp_path / "s").exists(), "nothing generated: another replica would not have it"


def test_a_remote_store_refuses_a_short_secret(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="at least 16"):
        resolve_secret("server.admin_token", "short-token", "", tmp_path / "t", shared=True)


def test_a_secret_from_a_file_as_systemd_credentials_or_container_secrets_give_it(tmp_path: Path) -> None:
    path = tmp_path / "cred"
    path.write_bytes(b"a-secret-from-a-file-0123456789\n")
    assert resolve_secret("server.admin_token", "", str(path), tmp_path / "t", shared=True) == (
        b"a-secret-from-a-file-0123456789"
    )
    assert resolve_secret(
        "server.admin_token", "configured-wins-0123456789", str(path), tmp_path / "t", shared=True
    ) == (b"configured-wins-0123456789")
    path.write_bytes(b"")
    with pytest.raises(SettingsError, match="empty"):
        resolve_secret("server.admin_token", "", str(path), tmp_path / "t", shared=True)
    with pytest.raises(SettingsError) as caught:
        resolve_secret("server.admin_token", "", str(tmp_path / "missing"), tmp_path / "t", shared=True)
    assert "missing" not in str(caught.value).split(":", 1)[1], "the reason, not the path's content"


def test_a_wrapped_salt_is_not_the_salt_and_needs_the_secret_and_the_day() -> None:
    salt, day = os.urandom(SALT_BYTES), date(2026, 5, 1)
    wrapped = wrap_salt(b"k" * 32, day, salt)
    assert bytes.fromhex(wrapped) != salt and salt.hex() not in wrapped
    assert unwrap_salt(b"k" * 32, day, wrapped) == salt
    assert unwrap_salt(b"x" * 32, day, wrapped) != salt
    assert unwrap_salt(b"k" * 32, day + timedelta(days=1), wrapped) != salt
    assert wrap_salt(b"k" * 32, day + timedelta(days=1), salt) != wrapped  # a new pad every day


def test_fingerprints_tell_secrets_apart_without_showing_them() -> None:
    a = fingerprint(b"s" * 32, "admin_token", b"token-one-0123456789")
    assert a == fingerprint(b"s" * 32, "admin_token", b"token-one-0123456789")
    assert a != fingerprint(b"s" * 32, "admin_token", b"token-two-0123456789")
    assert a != fingerprint(b"t" * 32, "admin_token", b"token-one-0123456789")
    assert "token" not in a and len(a) == 32


def test_a_provisional_salt_is_replaced_by_the_stores(tmp_path: Path) -> None:
    """A replica that drew a salt while the store was out of reach takes the store's when it comes:
    other processes on the machine (workers) after they forget theirs."""
    now = datetime(2026, 5, 1, 9, tzinfo=UTC)
    primary = DailySalt(tmp_path, provisional=True)
    worker = DailySalt(tmp_path, provisional=True)
    drawn = primary.current(now)
    assert worker.current(now) == drawn and primary.read(now.date()) == drawn
    stores = os.urandom(SALT_BYTES)
    primary.put(now.date(), stores)
    assert primary.current(now) == stores
    assert worker.current(now) == drawn  # until it reads the directory again
    worker.forget()
    assert worker.current(now) == stores
    with pytest.raises(ValueError):
        primary.put(now.date(), b"short")
