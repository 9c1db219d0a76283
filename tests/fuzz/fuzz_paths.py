"""Fuzz the children's-path key (proxy/paths.py): on any URL it gives a clean key (starts with "/", no
empty, "." or ".." segment, no trailing slash) that is its own key, and never raises.
Run: make fuzz FUZZ_TARGETS=paths."""

from __future__ import annotations

from proxy.paths import matches_prefix, normalise_path, url_path
from tests.fuzz.harness import main


def check(data: bytes) -> None:
    url = data.decode("utf-8", "replace")
    key = normalise_path(url_path(url))
    assert key.startswith("/")
    if key != "/":
        segments = key.split("/")[1:]
        assert all(s not in ("", ".", "..") for s in segments), "an unclean key"
    if "%" not in key:  # decoded once: "%2541" is the key "/%41", whose own key is "/a"
        assert normalise_path(key) == key, "a key is not its own key"
    assert matches_prefix(key, "/") and matches_prefix(key, key)
    if key != "/":
        assert not matches_prefix(key, key + "x") and not matches_prefix(key + "x", key)


if __name__ == "__main__":
    main(check)
