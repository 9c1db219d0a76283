"""What a detector is, and the placeholders detectors put where they found something.

A detector is one kind of personal data or secret (``contact``, ``network``, ``secrets``, ``idnumbers``).
``could_match(s)`` is a cheap test: False means ``redact(s)`` is sure to return ``s`` unchanged, so the
scanner skips the detector. ``redact(s)`` replaces what it finds with its placeholder and never raises.
Every placeholder is plain ASCII that no detector matches, so scrubbing twice gives the same result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

EMAIL_PLACEHOLDER = "[email]"
IP_PLACEHOLDER = "[ip]"
ID_PLACEHOLDER = "[id]"
TOKEN_PLACEHOLDER = "[token]"  # noqa: S105 - a placeholder text, not a credential
PHONE_PLACEHOLDER = "[phone]"
CARD_PLACEHOLDER = "[card]"
IBAN_PLACEHOLDER = "[iban]"
NATIONAL_ID_PLACEHOLDER = "[national-id]"
# Hosts: an IP-literal host becomes this reserved, never-resolving name (RFC 6761), and a host label in
# which a detector found something becomes REDACTED_LABEL, so the URL stays parseable.
REDACTED_IP_HOST = "ip.invalid"
REDACTED_LABEL = "redacted"

PLACEHOLDERS = (
    EMAIL_PLACEHOLDER,
    IP_PLACEHOLDER,
    ID_PLACEHOLDER,
    TOKEN_PLACEHOLDER,
    PHONE_PLACEHOLDER,
    CARD_PLACEHOLDER,
    IBAN_PLACEHOLDER,
    NATIONAL_ID_PLACEHOLDER,
)


@dataclass(frozen=True, slots=True)
class Detector:
    name: str
    could_match: Callable[[str], bool]
    redact: Callable[[str], str]
