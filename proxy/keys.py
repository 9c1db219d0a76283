"""Server-side secrets: the pseudonym key, the admin token, and the daily visitor-hash salt.

* The pseudonym key and admin token come from settings (config/env); if empty, one random value is
  generated once into the data directory (mode 0600) so every worker and every restart agree.
* The visitor-hash salt is random, one per UTC day, shared by every worker process through a file in
  ``<data_dir>/salts`` created atomically, and destroyed on the next day: a salt never lives 48 hours.
  It is never derived from a long-lived secret, so yesterday's hashes cannot be recomputed.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path

SALT_BYTES = 32


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


class DailySalt:
    """The current UTC day's random salt, shared across processes via ``directory``."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._day: date | None = None
        self._salt = b""

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

    def _load_file(self, day: date) -> bytes:
        path = self._dir / f"salt-{day.isoformat()}"
        if not path.exists():
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
            derived = hmac.new(self._secret, b"site-key\x00" + site.encode(), hashlib.sha256).digest()
            keys = self._sites[site] = [Pseudonymizer(derived)]
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
