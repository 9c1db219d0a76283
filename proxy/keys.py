"""Server-side secrets: the pseudonym key, the admin token, and the daily visitor-hash salt.

* The pseudonym key and admin token come from settings (config, env, or a file the settings name). With
  the embedded store, if empty, one random value is generated once into the data directory (mode 0600)
  so every worker and every restart agree. With a remote store other replicas must agree too, so they
  are required from configuration, and their fingerprints in the store stop a replica with other ones.
* The visitor-hash salt is random, one per UTC day, and destroyed on the next day. With the embedded store
  it is drawn here and shared by every worker process through a file in ``<data_dir>/salts`` created
  atomically. With a remote store it is drawn once for all replicas in the store (proxy/replicas.py) and
  the file caches the winner for this machine's processes; only a replica that starts afresh while the
  store is out of reach draws one here, provisionally (and says so): it offers it to the store later,
  and takes the store's instead if another replica's came first. Either way it is never derived from a
  long-lived secret, so yesterday's hashes cannot be recomputed.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path

from config.settings import Settings, SettingsError

log = logging.getLogger(__name__)

SALT_BYTES = 32
MIN_SHARED_SECRET = 16


class SaltUnavailable(RuntimeError):
    """Today's salt could not be created or read (e.g. the disk is full): no visitor hash can be made
    that every process agrees on, so the request is answered 503 and retried later."""


def _write_new(path: Path, data: bytes) -> None:
    """Create ``path`` with ``data`` atomically; if another process won the race, keep theirs."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if it exists: first writer wins
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


def load_or_create_secret(configured: str, path: Path) -> bytes:
    """The configured secret, else the one stored at ``path``, else a new random one stored there."""
    if configured:
        return configured.encode()
    if not path.exists():
        _write_new(path, secrets.token_hex(32).encode())
    return path.read_bytes().strip()


def resolve_secret(name: str, configured: str, file: str, generated: Path, *, shared: bool) -> bytes:
    """A secret from its setting, else from the file its ``*_file`` setting names; else, only for the
    embedded store (``shared`` false), the one generated into the data directory. Errors name the
    setting, never a value."""
    value = configured.encode()
    if not value and file:
        try:
            value = Path(file).read_bytes().strip()
        except OSError as exc:
            raise SettingsError(
                f"{name}_file: cannot read it ({exc.strerror or type(exc).__name__})"
            ) from None
        if not value:
            raise SettingsError(f"{name}_file: the file is empty")
    if not shared:
        return value or load_or_create_secret("", generated)
    if not value:
        env = "BEACONPROXY_" + name.upper().replace(".", "__")
        raise SettingsError(
            f"{name} must be set when the store is remote (every replica needs the same one): in the "
            f"config file, as {env}, or in a file named by {name}_file"
        )
    if len(value) < MIN_SHARED_SECRET:
        raise SettingsError(f"{name} must be at least {MIN_SHARED_SECRET} characters")
    return value


def pseudonym_secret(settings: Settings) -> bytes:
    p = settings.privacy
    return resolve_secret(
        "privacy.pseudonym_secret",
        p.pseudonym_secret,
        p.pseudonym_secret_file,
        settings.data_dir / "pseudonym_secret",
        shared=settings.shared_store,
    )


def admin_token(settings: Settings) -> bytes:
    s = settings.server
    return resolve_secret(
        "server.admin_token",
        s.admin_token,
        s.admin_token_file,
        settings.data_dir / "admin_token",
        shared=settings.shared_store,
    )


def fingerprint(secret: bytes, name: str, value: bytes) -> str:
    """A keyed hash that tells whether two replicas hold the same secret without revealing it (keyed
    with the pseudonym secret, so a short admin token cannot be guessed from it offline)."""
    return hmac.new(secret, b"fingerprint\x00" + name.encode() + b"\x00" + value, hashlib.sha256).hexdigest()[
        :32
    ]


def _salt_pad(secret: bytes, day: date) -> bytes:
    return hmac.new(secret, b"salt-wrap\x00" + day.isoformat().encode(), hashlib.sha256).digest()


def wrap_salt(secret: bytes, day: date, salt: bytes) -> str:
    """The salt as the store keeps it: XOR a pad that only the pseudonym secret and the day give (a new
    pad each day, a random salt each day), so the table alone never yields a salt."""
    return bytes(a ^ b for a, b in zip(salt, _salt_pad(secret, day), strict=True)).hex()


def unwrap_salt(secret: bytes, day: date, wrapped: str) -> bytes:
    data = bytes.fromhex(wrapped)
    if len(data) != SALT_BYTES:
        raise ValueError("a stored salt has the wrong length")
    return bytes(a ^ b for a, b in zip(data, _salt_pad(secret, day), strict=True))


class DailySalt:
    """The current UTC day's random salt, shared across processes via ``directory``.

    ``provisional``: a salt drawn here is only provisional (a remote store, whose salt was out of reach):
    it is logged as such, and replaced when the store's winner is put here (:meth:`put`)."""

    def __init__(self, directory: Path, *, provisional: bool = False) -> None:
        self._dir = directory
        self._provisional = provisional
        self._day: date | None = None
        self._salt = b""

    def forget(self) -> None:
        """Read the day's salt from the directory again at the next use (another process may have put
        the store's winner there)."""
        self._day = None

    def current(self, now: datetime | None = None) -> bytes:
        day = (now or datetime.now(UTC)).astimezone(UTC).date()
        if day != self._day:
            self._salt = self._load(day)
            self._day = day
            self.purge(day)
        return self._salt

    def _load(self, day: date) -> bytes:
        try:
            return self._load_file(day)
        except OSError as exc:
            raise SaltUnavailable(
                f"the day's salt is unavailable: {exc.strerror or type(exc).__name__}"
            ) from None

    def has(self, day: date) -> bool:
        return self.read(day) is not None

    def read(self, day: date) -> bytes | None:
        """The day's salt as this machine has it, or None."""
        try:
            data = (self._dir / f"salt-{day.isoformat()}").read_bytes()
        except OSError:
            return None
        return data if len(data) == SALT_BYTES else None

    def put(self, day: date, salt: bytes) -> None:
        """Keep ``salt`` as the day's (the store's winner), replacing what this machine had."""
        if len(salt) != SALT_BYTES:
            raise ValueError("a salt has the wrong length")
        path = self._dir / f"salt-{day.isoformat()}"
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, salt)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        if self._day == day:
            self._salt = salt

    def _load_file(self, day: date) -> bytes:
        path = self._dir / f"salt-{day.isoformat()}"
        if not path.exists():
            if self._provisional:
                log.warning(
                    "no shared salt for %s in reach: drew a provisional one until the store answers", day
                )
            _write_new(path, secrets.token_bytes(SALT_BYTES))
        data = path.read_bytes()
        if len(data) != SALT_BYTES:  # torn by a crash between create and write: never use a short salt
            path.unlink(missing_ok=True)
            _write_new(path, secrets.token_bytes(SALT_BYTES))
            data = path.read_bytes()
        return data

    def purge(self, today: date | None = None) -> int:
        """Delete every salt older than ``today`` (a newer one may belong to a request after midnight)."""
        keep_from = f"salt-{(today or datetime.now(UTC).date()).isoformat()}"
        removed = 0
        if self._dir.is_dir():
            for path in self._dir.glob("salt-*"):
                if path.name < keep_from:  # ISO dates sort as strings
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                        removed += 1
        return removed


def visitor_hash(salt: bytes, site: str, packed_ip: bytes, user_agent: str) -> int:
    """Cookieless daily visitor id: keyed BLAKE2b over site, full IP and User-Agent, as a UInt64."""
    h = hashlib.blake2b(key=salt, digest_size=8)
    h.update(site.encode())
    h.update(b"\x00")
    h.update(packed_ip)
    h.update(b"\x00")
    h.update(user_agent.encode("utf-8", "surrogatepass"))
    return int.from_bytes(h.digest(), "big")


class Pseudonymizer:
    """Keyed pseudonyms for identifiers stored with consent: HMAC-SHA256, 128 bits, hex."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("pseudonym_secret must be at least 16 bytes")
        self._key = key

    def __call__(self, site: str, kind: str, value: str) -> str:
        msg = f"{site}\x00{kind}\x00{value}".encode("utf-8", "surrogatepass")
        return hmac.digest(self._key, msg, "sha256").hex()[:32]  # one-shot: no HMAC object per call


def derived_site_key(secret: bytes, site: str) -> bytes:
    """The key of a site without configured pseudonym keys."""
    return hmac.new(secret, b"site-key\x00" + site.encode(), hashlib.sha256).digest()


def current_site_key(secret: bytes, site: str, configured: Sequence[str]) -> bytes:
    """The key new pseudonyms of ``site`` are made with: its first configured key, else the derived one."""
    return configured[0].encode() if configured else derived_site_key(secret, site)


class SiteKeys:
    """Per-site pseudonym keys, and the key-independent subject id used by the suppression list.

    A site's configured keys are tried in order: the first makes new pseudonyms, the others only find
    rows written before a rotation. A site without configured keys gets one derived from the server
    secret and its id, so sites never share pseudonyms.
    """

    def __init__(self, secret: bytes, configured: Mapping[str, Sequence[str]]) -> None:
        if len(secret) < 16:
            raise ValueError("pseudonym_secret must be at least 16 bytes")
        self._secret = secret
        self._sites: dict[str, list[Pseudonymizer]] = {
            site: [Pseudonymizer(k.encode()) for k in keys] for site, keys in configured.items() if keys
        }

    def _keys(self, site: str) -> list[Pseudonymizer]:
        keys = self._sites.get(site)
        if keys is None:
            keys = self._sites[site] = [Pseudonymizer(derived_site_key(self._secret, site))]
        return keys

    def pseudonym(self, site: str, kind: str, value: str) -> str:
        """The pseudonym stored for new rows."""
        return self._keys(site)[0](site, kind, value)

    def pseudonyms(self, site: str, kind: str, value: str) -> list[str]:
        """Every pseudonym the subject may have been stored under (current and rotated-out keys)."""
        return [key(site, kind, value) for key in self._keys(site)]

    def subject(self, site: str, kind: str, value: str) -> str:
        """Stable across key rotation: identifies a blocked subject without storing the identifier."""
        msg = f"subject\x00{site}\x00{kind}\x00{value}".encode("utf-8", "surrogatepass")
        return hmac.digest(self._secret, msg, "sha256").hex()[:32]
