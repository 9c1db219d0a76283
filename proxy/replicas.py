"""What replicas sharing a remote store must agree on, and how this one keeps in step (README "Running
several replicas"). Nothing home-made sits between the replicas: the state is in the store
(sinks/shared_state.py) and each replica reads it.

* **Secrets.** The fingerprints of the pseudonym secret, the admin token and each site's current
  pseudonym key are pinned in the store by the first replica to start; a replica whose fingerprints
  differ refuses to start (or, if it learns so later, stops shipping and reports not ready), because its
  pseudonyms would not match the others' and subject requests would miss rows.
* **The day's salt** is drawn in the store, once for all replicas: today's at start-up, tomorrow's from
  noon (UTC) on, so that a store outage around midnight does not stop anyone from hashing visitors. The
  winner is cached in ``<data_dir>/salts`` for this machine's processes; a day's salt is deleted from the
  store and the cache the next day. A replica that starts afresh while the store is out of reach draws
  a provisional salt (logged) and offers it to the store once it answers: if no other replica's came
  first it becomes everybody's; if one did, this replica switches to it (visitors it saw before the
  switch may then be counted twice that day; nothing is lost).
* **Heartbeats**: every replica writes its configuration hash and what its spool holds into each store
  every few seconds; ``/readyz`` and ``/metrics`` show how many replicas are live and whether their
  configurations differ (a rolling deploy in progress, or one replica left behind), and an export says
  which replicas may still hold unshipped events.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import socket
import threading
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

from config.settings import Settings
from proxy.keys import SALT_BYTES, DailySalt, current_site_key, fingerprint, unwrap_salt, wrap_salt
from sinks.base import SinkError
from sinks.clickhouse import ClickHouseSink
from sinks.shared_state import ReplicaState, SharedState

log = logging.getLogger(__name__)

LIVE_HEARTBEATS = 4  # a replica heard from within this many heartbeat intervals is live
# A replica not heard from for a while may still hold events in its spool (it may have crashed); one that
# said goodbye with an empty spool does not. Heartbeats are kept in the store for a week.
KNOWN_WITHIN = timedelta(days=7)
SALT_SYNC_SECONDS = 5.0  # how often the salt job looks; it reaches the store only when something is due
SALT_PREFETCH_HOUR = 12  # from this UTC hour on, tomorrow's salt is drawn too
SALT_PURGE_GRACE = timedelta(minutes=5)  # after midnight: a replica whose clock lags may still ask
SALT_VERIFY_SECONDS = 600.0
SECRETS_CHECK_SECONDS = 60.0  # a running replica compares its secrets with the store's this often

# Settings that may differ between replicas without their answers differing: where each one listens,
# keeps its files and logs, how it reaches the store (a replica may talk to its nearest node), and the
# secrets themselves (compared through their fingerprints instead).
_PER_REPLICA = {
    "host",
    "port",
    "data_dir",
    "log_level",
    "log_format",
    "server.admin_listen",
    "server.admin_token",
    "server.admin_token_file",
    "server.gil_switch_interval_ms",
    "privacy.pseudonym_secret",
    "privacy.pseudonym_secret_file",
    "geoip.databases",
    "clickhouse.dsn",
    "spool.fsync",
    "spool.fsync_interval",
    "spool.max_bytes",
    "spool.min_free_bytes",
}


class SecretMismatch(SinkError):
    """This replica's secrets are not the ones the store was set up with (names only, never values)."""


def config_hash(settings: Settings) -> str:
    """A short hash of the settings every replica must share (sites, privacy, retention, ...)."""
    data: dict[str, Any] = settings.model_dump(mode="json")
    for dotted in _PER_REPLICA:
        section, _, key = dotted.partition(".")
        if key:
            data.get(section, {}).pop(key, None)
        else:
            data.pop(section, None)
    for store in data.get("clickhouse", {}).get("stores", {}).values():
        store.pop("dsn", None)
    for site in data.get("sites", {}).values():
        site.pop("pseudonym_keys", None)  # secrets: compared through fingerprints
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()[:12]


def wanted_fingerprints(settings: Settings, secret: bytes, token: bytes) -> dict[str, str]:
    """name -> fingerprint of each secret replicas must share."""
    out = {
        "pseudonym_secret": fingerprint(secret, "pseudonym_secret", secret),
        "admin_token": fingerprint(secret, "admin_token", token),
    }
    for site, cfg in sorted(settings.sites.items()):  # the current key; older ones only find old rows
        key = current_site_key(secret, site, cfg.pseudonym_keys)
        out[f"site_key:{site}"] = fingerprint(secret, f"site_key:{site}", key)
    return out


def check_secrets(state: SharedState, wanted: dict[str, str]) -> None:
    """Pin what is not pinned yet (the first replica to offer a fingerprint wins), then compare."""
    pinned = state.fingerprints()
    missing = [name for name in wanted if name not in pinned]
    for name in missing:
        state.pin(name, wanted[name], 1)
    if missing:
        pinned = state.fingerprints()
    differ = sorted(name for name, fp in wanted.items() if name in pinned and pinned[name][0] != fp)
    if differ:
        raise SecretMismatch(
            f"{', '.join(differ)} differ from what the store was set up with (the other replicas use "
            "others): this replica's pseudonyms or admin calls would not match theirs. Give it the same "
            "secrets, or after a deliberate change run `beaconproxy migrate --pin-secrets`"
        )


def pin_secrets(state: SharedState, wanted: dict[str, str]) -> list[str]:
    """Pin the given fingerprints as new versions where they differ (a deliberate change)."""
    pinned = state.fingerprints()
    changed = []
    for name, fp in wanted.items():
        current = pinned.get(name)
        if current is None or current[0] != fp:
            state.pin(name, fp, (current[1] if current else 0) + 1)
            changed.append(name)
    return changed


class Replicas:
    """This replica's identity and what it knows of the others (remote stores only; with the embedded
    store there are no others and every method is cheap)."""

    def __init__(self, settings: Settings, secret: bytes, token: bytes) -> None:
        self.settings = settings
        self.shared = settings.shared_store
        self.name = f"{socket.gethostname()}:{settings.port}/{secrets.token_hex(3)}"
        self.config_hash = config_hash(settings)
        self.started = datetime.now(UTC)
        self._secret = secret
        self._wanted = wanted_fingerprints(settings, secret, token)
        self._lock = threading.Lock()
        self._secret_problem = ""
        self._secrets_checked = -float("inf")
        self._seen: dict[str, list[ReplicaState]] = {}  # store -> live replicas at the last heartbeat
        self._salt_verified: dict[date, float] = {}
        self.live_within = timedelta(seconds=LIVE_HEARTBEATS * settings.server.replica_heartbeat_seconds)
        self._salts_purged_before: date | None = None

    # -- secrets

    def secrets_check_due(self) -> bool:
        now = time.monotonic()
        if now < self._secrets_checked + SECRETS_CHECK_SECONDS:
            return False
        self._secrets_checked = now
        return True

    def check_secrets(self, sink: ClickHouseSink) -> None:
        """A start check of the main store's sink: raises SecretMismatch (the sink does not start)."""
        self._secrets_checked = time.monotonic()
        try:
            check_secrets(SharedState(sink), self._wanted)
        except SecretMismatch as exc:
            with self._lock:
                self._secret_problem = str(exc)
            log.error("store %s: %s", sink.name, exc)
            raise
        with self._lock:
            self._secret_problem = ""

    def problems(self) -> list[str]:
        """What makes this replica's answers differ from the others' (it is then not ready)."""
        with self._lock:
            return [f"secrets: {self._secret_problem}"] if self._secret_problem else []

    # -- the day's salt

    def sync_salts(self, salt: DailySalt, state: SharedState, now: datetime | None = None) -> None:
        """Fetch (or draw, if this replica is first) the salts that are due; delete yesterday's."""
        now = (now or datetime.now(UTC)).astimezone(UTC)
        today = now.date()
        days = [today]
        if now.hour >= SALT_PREFETCH_HOUR:
            days.append(today + timedelta(days=1))
        for day in days:
            if salt.has(day) and time.monotonic() < self._salt_verified.get(day, 0.0):
                continue
            self._sync_salt(salt, state, day)
            self._salt_verified[day] = time.monotonic() + SALT_VERIFY_SECONDS
        for day in [d for d in self._salt_verified if d < today]:
            del self._salt_verified[day]
        midnight = datetime(today.year, today.month, today.day, tzinfo=UTC)
        if self._salts_purged_before != today and now - midnight >= SALT_PURGE_GRACE:
            dropped = state.purge_salts(today)
            if dropped:
                log.info("deleted %d old visitor-hash salts from the store", dropped)
            self._salts_purged_before = today
        salt.purge(today)

    def _sync_salt(self, salt: DailySalt, state: SharedState, day: date) -> None:
        cached = salt.read(day)
        # Offer what this machine has, if anything: should the store have lost the day's salt, today's
        # hashes here stay as they were.
        candidate = cached if cached is not None else secrets.token_bytes(SALT_BYTES)
        wrapped = state.salt(day, wrap_salt(self._secret, day, candidate))
        if wrapped is None:
            raise SinkError(f"the salt for {day} is not readable from the store yet")
        winner = unwrap_salt(self._secret, day, wrapped)
        if winner != cached:
            if cached is not None:
                log.warning("the salt for %s cached here differed from the store's; using the store's", day)
            salt.put(day, winner)

    # -- heartbeats

    def heartbeat(self, store: str, state: SharedState, spool: dict[str, Any], stopped: bool = False) -> None:
        segments = int(spool.get("spool_segments", 0))
        me = ReplicaState(
            self.name,
            self.config_hash,
            datetime.now(UTC),
            segments,
            int(spool.get("spool_bytes", 0)),
            float(spool.get("oldest_spooled_seconds", 0.0)),
            stopped,
        )
        state.heartbeat(me, self.started)
        if stopped:
            return
        live = state.replicas(self.live_within)
        with self._lock:
            self._seen[store] = live

    def pending_elsewhere(self, state: SharedState) -> list[str]:
        """Other replicas whose spools may still hold events for this store: their last heartbeat said
        so, or they went quiet without saying goodbye with an empty spool."""
        now = datetime.now(UTC)
        out = []
        for r in state.replicas(KNOWN_WITHIN):
            if r.replica == self.name:
                continue
            quiet = now - r.seen > self.live_within
            if r.spool_segments > 0 or (quiet and not r.stopped):
                out.append(r.replica)
        return out

    def summary(self) -> dict[str, Any]:
        """For /readyz and /admin/stats: who this is, and the live replicas' configurations."""
        out: dict[str, Any] = {"name": self.name, "config_hash": self.config_hash}
        if not self.shared:
            return out
        with self._lock:
            seen = dict(self._seen)
            problem = self._secret_problem
        live = {r.replica: r.config_hash for states in seen.values() for r in states}
        hashes = sorted(set(live.values()))
        out["live_replicas"] = len(live)
        out["config_hashes"] = hashes
        out["config_mixed"] = len(hashes) > 1
        out["secrets_match"] = not problem
        return out

    def live_counts(self) -> tuple[int, int]:
        """(live replicas, distinct configuration hashes among them), for /metrics."""
        with self._lock:
            live = {r.replica: r.config_hash for states in self._seen.values() for r in states}
        return len(live), len(set(live.values()))
