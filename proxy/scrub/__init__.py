"""Remove personal data from what websites send, before anything is stored (PRIVACY.md rows 1, 3 and 5).

Read in this order:

* ``scrubber``: the ``Scrubber`` the pipeline calls (page URL, referrer, titles, event names, props) and
  what it guarantees; its caches;
* ``normalise``: URL splitting, and the layers of encoding and look-alikes undone before detection;
* ``scanner``: the fixed order in which the detectors run, the decoded layers, the fast path;
* one module per kind of detector: ``network`` (IP addresses, IP-bearing host names), ``contact``
  (e-mail addresses, also base64-encoded, and phone numbers), ``secrets`` (credentials, key formats,
  session ids, opaque tokens, one-time links), ``idnumbers`` (card numbers, IBANs, national ids);
* ``propkeys``: property keys that name a person, contact data, an identity number or a secret.

Known limits: detection is by shape (plus check digits where a number has them). Names and street
addresses in free text are not recognised (property keys such as ``name`` or ``street`` are dropped,
though); a phone number written as bare digits without a ``+``, a leading 0 or grouping is not told from
an order number, nor a 9-digit SSN or a 12-digit Aadhaar number without their usual grouping; base64 of
an address is found only when the run starts where the encoding starts; random tokens made of lower-case
letters only are not told from words. Version strings that look like dotted quads (``1.2.3.4``) and file
names such as ``logo@2x.png`` are redacted too.
"""

from proxy.scrub.detector import (
    CARD_PLACEHOLDER,
    EMAIL_PLACEHOLDER,
    IBAN_PLACEHOLDER,
    ID_PLACEHOLDER,
    IP_PLACEHOLDER,
    NATIONAL_ID_PLACEHOLDER,
    PHONE_PLACEHOLDER,
    REDACTED_IP_HOST,
    REDACTED_LABEL,
    TOKEN_PLACEHOLDER,
)
from proxy.scrub.propkeys import DEFAULT_PROP_KEY_DENYLIST
from proxy.scrub.scrubber import DEFAULT_CLICK_ID_PARAMS, DEFAULT_QUERY_ALLOWLIST, ScrubbedUrl, Scrubber

__all__ = [
    "CARD_PLACEHOLDER",
    "DEFAULT_CLICK_ID_PARAMS",
    "DEFAULT_PROP_KEY_DENYLIST",
    "DEFAULT_QUERY_ALLOWLIST",
    "EMAIL_PLACEHOLDER",
    "IBAN_PLACEHOLDER",
    "ID_PLACEHOLDER",
    "IP_PLACEHOLDER",
    "NATIONAL_ID_PLACEHOLDER",
    "PHONE_PLACEHOLDER",
    "REDACTED_IP_HOST",
    "REDACTED_LABEL",
    "TOKEN_PLACEHOLDER",
    "ScrubbedUrl",
    "Scrubber",
]
