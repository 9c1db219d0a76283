"""A labelled corpus of personal data and secrets planted in beacons, and of ordinary values that must stay.

Each positive ``Case`` is one value (``PLANTS``: its kind, the value, and what must never be stored),
written in one encoding (``ENCODINGS``) and planted in one position of a beacon (``POSITIONS``: URL path,
an allow-listed query value, title, event name, property value, property key, page host, referrer host).
``Case.beacon()`` is the native beacon that carries it. A case is *caught* when nothing in the scrubbed
beacon, decoded and folded every way the oracle knows (``reveal``), holds any of the case's needles.

``KNOWN_LIMITS`` are positives the scrubber is known to miss, each with the reason; they count in the
miss rate. Negative cases (``NEGATIVES``) are ordinary values (order numbers, dates, prices, SKUs,
versions, slugs, property keys) that must come out exactly as they went in; ``KNOWN_FALSE_POSITIVES``
are the ones known to be changed anyway.

Used by ``test_corpus.py`` (the scrubber on every case), ``tests/proxy/test_leak_corpus.py`` (every case
through the real app into every table, the logs, metrics and the spool) and ``benchmarks/scrub_bench.py
--corpus`` (miss and false-positive rates, next to an older revision).
"""

from __future__ import annotations

import base64
import contextlib
import html
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, quote_plus, unquote


class ScrubberLike(Protocol):
    def url(self, raw: str) -> Any: ...
    def referrer(self, raw: str) -> str: ...
    def text(self, s: str) -> str: ...
    def props(self, props: Mapping[str, Any]) -> dict[str, str]: ...


@dataclass(frozen=True)
class Plant:
    kind: str
    value: str
    needles: tuple[str, ...] = ()  # besides the value itself: parts that must not survive either
    host_label: bool = False  # the value can stand as a DNS label (planted in hosts too)


def _digits(s: str) -> str:
    return re.sub(r"[^0-9]", "", s)


# Distinctive local parts and numbers, so that a needle cannot turn up by chance in the context.
PLANTS: tuple[Plant, ...] = (
    # e-mail addresses
    Plant("email", "zorblax.quim@example.com", ("zorblax",)),
    Plant("email", "Vexa_Trundle+news@mail.example.co.uk", ("vexa_trundle",)),
    Plant("email", "o'quillan@example.org", ("o'quillan",)),
    Plant("email", "jörg.brümmelstein@müller.de", ("brümmelstein", "brummelstein")),
    Plant("email", "wobbleton@[203.0.113.45]", ("wobbleton",)),
    Plant("email", "plimsoll@localhost", ("plimsoll",)),
    Plant("email", "grizzard@intranet", ("grizzard",)),
    # IP addresses
    Plant("ipv4", "203.0.113.77", ("113.77",), host_label=False),
    Plant("ipv4", "198.51.100.201", ("100.201",)),
    Plant("ipv4-hex", "0xCB007142", ("cb007142",)),
    Plant("ipv4-based", "0xcb.0.0x71.0x42", ("0x71.0x42",)),
    Plant("ipv4-dashed", "203-0-113-66.nip.io", ("113-66",)),
    Plant("ipv4-dashed", "ip-10-44-13-97", ("13-97",)),
    Plant("ipv6", "2001:db8:4f2a::1d3c", ("4f2a", "1d3c")),
    Plant("ipv6", "fe80::a1b2:c3d4%eth0", ("a1b2", "c3d4")),
    Plant("ipv6", "::ffff:198.51.100.177", ("100.177",)),
    # secrets and tokens
    Plant(
        "jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ6b3JibGF4In0.qW3rTy7uIoP9aSdF2gHjK4lZxC8vBnM1", ("qW3rTy7u",)
    ),
    Plant("uuid", "5f0c2a9e-8b1d-4c3e-9a7f-1e2d3c4b5a69", ("5f0c2a9e",), host_label=True),
    Plant("hex-token", "9f86d081884c7d659a2feaa0c55ad015", ("9f86d081",), host_label=True),
    Plant("hex-token", "a3c9e1f0b2d84e67", ("a3c9e1f0",), host_label=True),
    Plant("digit-run", "83749201938475610293", ("83749201938475610293",), host_label=True),
    Plant("token", "Zq8xLm3vR7tY2wK9pN4bJ6cH1dF5gS0a", ("Zq8xLm3v",)),
    Plant("token", "QkRvTzXwPmYnLsHjGfDcVbNaUeIrOtKy", ("QkRvTzXw",)),
    Plant("aws-key", "AKIAJ7QWERTY5UIOPLKZ", ("AKIAJ7QW",)),
    Plant("google-key", "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q", ("AIzaSyA1",)),
    Plant("github-token", "ghp_R4nd0mT0k3nV4lu3F0rT3st1ngPurp0s3s", ("R4nd0mT0",)),
    Plant("slack-token", "xoxb-2048614729-3957261840-Gh7Jk9Lm2Np4Qr6St8Uv", ("Gh7Jk9Lm",)),
    Plant("stripe-key", "sk_live_51HqLyjWDarjtT1zdp7dcQx9", ("51HqLyjW",)),
    Plant("telegram-bot", "7712345678:AAFv3kLm9QwErTyUiOp2AsDfGhJkL5zXc8B", ("AAFv3kLm",)),
    Plant("password-pair", "password=Tr0ub4dor&3x", ("Tr0ub4dor",)),
    Plant("url-credentials", "https://deploy:S3cr3tPa55@git.example.com/repo", ("S3cr3tPa55",)),
    # payment and identity numbers
    Plant("card", "4539 1488 0343 6467", ("4539148803436467",)),
    Plant("card", "5425-2334-3010-9903", ("5425233430109903",)),
    Plant("card", "378282246310005", ("378282246310005",)),
    Plant("card", "6011000990139424", ("6011000990139424",), host_label=True),
    Plant("iban", "DE89 3704 0044 0532 0130 00", ("370400440532013000",)),
    Plant("iban", "GB82WEST12345698765432", ("12345698765432",)),
    Plant("iban", "FR1420041010050500013M02606", ("20041010050500013",)),
    Plant("iban", "NL91 ABNA 0417 1643 00", ("0417164300",)),
    Plant("ssn", "536-22-1234", ("536221234",)),
    Plant("nino", "JG 10 37 78 A", ("103778",)),
    Plant("steuer-id", "36 574 261 809", ("36574261809",)),
    Plant("nir", "2 95 10 99 126 111 93", ("295109912611193",)),
    Plant("dni", "54362315K", ("54362315",)),
    Plant("nie", "X2482300W", ("2482300",)),
    Plant("codice-fiscale", "RCCMNL83S18D969H", ("RCCMNL83",)),
    Plant("personnummer", "811218-9876", ("8112189876",)),
    Plant("pesel", "44051401359", ("44051401359",)),
    Plant("cpf", "390.533.447-05", ("39053344705",)),
    Plant("aadhaar", "2341 2341 2346", ("234123412346",)),
    Plant("cn-ric", "360426199101010071", ("360426199101010071",)),
    # phone numbers
    Plant("phone", "+44 20 7946 0958", ("2079460958",)),
    Plant("phone", "+49 (30) 901820-17", ("3090182017",)),
    Plant("phone", "+33 6 12 34 56 78", ("612345678",)),
    Plant("phone", "0044 7700 900461", ("7700900461",)),
    Plant("phone", "020 7946 0321", ("79460321",)),
    Plant("phone", "0151 23456789", ("23456789",)),
    Plant("phone", "06 12 34 56 79", ("612345679",)),
    Plant("phone", "(415) 555-2671", ("4155552671",)),
    Plant("phone", "212.555.0187", ("2125550187",)),
    Plant("phone", "612 345 678", ("612345678",)),
)

# Positives the scrubber is known to miss (PII by any reading, found by no detector); they count.
KNOWN_LIMITS: tuple[Plant, ...] = (
    Plant("name", "Quentin Marlowe-Fairweather", ("marlowe",)),
    Plant("street-address", "221B Baker Street", ("baker street",)),
    Plant("phone-bare-digits", "4155552671", ("4155552671",)),
    Plant("ssn-bare-digits", "536221234", ("536221234",)),
    Plant("lowercase-token", "kqzvxwrtypmnbcdfghjl", ("kqzvxwrtypmnbcdfghjl",)),
)


def _fullwidth(v: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in v)


def _arabic_digits(v: str) -> str:
    return "".join(chr(0x0660 + int(c)) if c.isdigit() and c.isascii() else c for c in v)


def _entities(v: str) -> str:
    return "".join(f"&#{ord(c)};" if not c.isalpha() else c for c in v)


def _entities_twice(v: str) -> str:
    return _entities(v).replace("&", "&amp;")


def _js_escape(v: str) -> str:
    return "".join(f"\\u{ord(c):04x}" if not c.isalnum() else c for c in v)


def _zero_width(v: str) -> str:
    return "\u200b".join(v)


def _soft_hyphens(v: str) -> str:
    return "\u00ad".join(v)


def _lookalike_dots(v: str) -> str:
    return v.replace("@", "\uff20").replace(".", "\u3002")


def _percent(v: str) -> str:
    return quote(v, safe="")


def _percent3(v: str) -> str:
    return _percent(_percent(_percent(v)))


def _base64(v: str) -> str:
    return base64.b64encode(v.encode()).decode()


def _base64url(v: str) -> str:
    return base64.urlsafe_b64encode(v.encode()).decode().rstrip("=")


def _spelled(v: str) -> str:
    local, _, domain = v.partition("@")
    return f"{local} [at] {domain.replace('.', ' [dot] ')}"


ENCODINGS: dict[str, Callable[[str], str]] = {
    "plain": lambda v: v,
    "percent": _percent,
    "percent-x3": _percent3,
    "html-entities": _entities,
    "html-entities-x2": _entities_twice,
    "js-escapes": _js_escape,
    "full-width": _fullwidth,
    "arabic-indic-digits": _arabic_digits,
    "zero-width-spaces": _zero_width,
    "soft-hyphens": _soft_hyphens,
    "lookalike-at-dot": _lookalike_dots,
    "base64": _base64,
    "base64url": _base64url,
    "spelled-out": _spelled,
}

_ALL = ("plain", "percent", "percent-x3", "html-entities", "html-entities-x2", "js-escapes", "full-width")
_INVISIBLE = ("zero-width-spaces", "soft-hyphens")
# Which encodings each kind is planted in: what a sender could plausibly produce for it.
KIND_ENCODINGS: dict[str, tuple[str, ...]] = {
    "email": (*_ALL, *_INVISIBLE, "lookalike-at-dot", "base64", "base64url", "spelled-out"),
    "digits": (*_ALL, *_INVISIBLE, "arabic-indic-digits"),
    "other": (*_ALL, *_INVISIBLE),
}
_DIGIT_KINDS = {
    "ipv4",
    "digit-run",
    "card",
    "iban",
    "ssn",
    "nino",
    "steuer-id",
    "nir",
    "dni",
    "nie",
    "personnummer",
    "pesel",
    "cpf",
    "aadhaar",
    "cn-ric",
    "phone",
}


def encodings_for(plant: Plant) -> tuple[str, ...]:
    if plant.kind == "email":
        return KIND_ENCODINGS["email"]
    if plant.kind in _DIGIT_KINDS:
        return KIND_ENCODINGS["digits"]
    return KIND_ENCODINGS["other"]


POSITIONS = ("path", "query", "title", "name", "prop_value", "prop_key", "host", "referrer")
# Property keys are at most 64 characters (proxy.parse): longer plants are not planted there.
_MAX_KEY_LENGTH = 64


def _url_safe(v: str) -> str:
    """``v`` as a browser would put it in a path: what would end the path is escaped, the rest kept."""
    return quote(v, safe="/:@!$&'()*+,;=-._~%[]") if v.isascii() else quote(v, safe="/:@!$&'()*+,;=-._~%")


@dataclass(frozen=True)
class Case:
    kind: str
    value: str
    encoding: str
    where: str
    planted: str  # the value as encoded
    needles: tuple[str, ...]
    limit: bool = False

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.where}:{self.encoding}:{self.value[:24]}"

    def beacon(self) -> dict[str, Any]:
        """A native beacon (without ``site``) carrying the plant in its position, and nothing else odd."""
        p = self.planted
        b: dict[str, Any] = {"type": "pageview", "url": "https://shop.example.com/account/settings"}
        if self.where == "path":
            b["url"] = f"https://shop.example.com/account/{_url_safe(p)}/settings"
        elif self.where == "query":
            b["url"] = f"https://shop.example.com/landing?utm_term={quote_plus(p)}&utm_source=newsletter"
        elif self.where == "title":
            b["title"] = f"Welcome back {p} - Shop"
        elif self.where == "name":
            b["type"], b["name"] = "event", f"signup {p} done"
        elif self.where == "prop_value":
            b["props"] = {"note": f"sent by {p} today"}
        elif self.where == "prop_key":
            b["props"] = {p: "yes"}
        elif self.where == "host":
            b["url"] = f"https://{p}.shop.example.com/account"
        elif self.where == "referrer":
            b["referrer"] = f"https://{p}.news.example.org/story"
        return b


def _planted_in(plant: Plant, encoding: str, where: str) -> bool:
    if where in ("host", "referrer"):
        return encoding == "plain" and (plant.host_label or plant.kind in ("ipv4", "ipv4-dashed", "ipv4-hex"))
    if where == "prop_key":
        return len(ENCODINGS[encoding](plant.value)) <= _MAX_KEY_LENGTH
    return True


def _needles(plant: Plant) -> tuple[str, ...]:
    return (plant.value, *plant.needles)


def cases(limits: bool = True) -> Iterator[Case]:
    """Every positive case: each plant in each of its encodings and positions; known limits last."""
    plants = [(p, False) for p in PLANTS] + ([(p, True) for p in KNOWN_LIMITS] if limits else [])
    for plant, limit in plants:
        encodings = ("plain", "percent") if limit else encodings_for(plant)
        for encoding in encodings:
            for where in POSITIONS:
                if _planted_in(plant, encoding, where):
                    planted = ENCODINGS[encoding](plant.value)
                    yield Case(plant.kind, plant.value, encoding, where, planted, _needles(plant), limit)


# --- what would be stored, and the oracle that looks through it -----------------------------------------


def scrub_beacon(s: ScrubberLike, beacon: Mapping[str, Any]) -> list[str]:
    """What the pipeline's scrub steps would store from ``beacon``: every string, keys included."""
    out: list[str] = []
    scrubbed = s.url(beacon.get("url", ""))
    out.append(scrubbed.url)
    out.extend(scrubbed.params.values())
    if beacon.get("referrer"):
        out.append(s.referrer(beacon["referrer"]))
    out.append(s.text(beacon.get("title", "")))
    out.append(s.text(beacon.get("name", "")))
    for key, value in s.props(beacon.get("props", {})).items():
        out += [key, value]
    return out


_INVISIBLE_RE = re.compile(r"[\u00ad\u034f\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")


def reveal(text: str) -> str:
    """``text`` with every encoding the corpus uses undone, lower-cased: what a reader could get back."""
    for _ in range(8):
        before = text
        text = unquote(text)
        text = html.unescape(text)
        text = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text)
        text = unicodedata.normalize("NFKC", text).replace("\u3002", ".")
        text = _INVISIBLE_RE.sub("", text)
        text = "".join(str(unicodedata.digit(c)) if c.isdigit() else c for c in text)
        text = re.sub(r"\s*\[at\]\s*", "@", text)
        text = re.sub(r"\s*\[dot\]\s*", ".", text)
        if text == before:
            break
    decoded: list[str] = [text]
    runs = re.findall(r"[A-Za-z0-9+/_-]{8,}={0,2}", text)
    for candidate in [*runs, *(piece for run in runs for piece in run.split("/"))]:  # base64 in place
        data = candidate.rstrip("=")
        for alt in (b"+/", b"-_"):
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                decoded.append(base64.b64decode(data + "=" * (-len(data) % 4), altchars=alt).decode())
    return "\n".join(decoded).lower()


def leaked(case: Case, stored: list[str] | str) -> list[str]:
    """The needles of ``case`` that survive in ``stored`` (or its revealed form)."""
    text = reveal(stored if isinstance(stored, str) else "\n".join(stored))
    digits = _digits(text)
    found = []
    for needle in case.needles:
        n = needle.lower()
        if n in text or (len(_digits(n)) >= 6 and _digits(n) == n and n in digits):
            found.append(needle)
    return found


# --- negatives: ordinary values that must stay as they are --------------------------------------------

# (where, value): title/name/prop values are checked as text, paths as URL paths, keys as property keys,
# hosts as page hosts.
NEGATIVES: tuple[tuple[str, str], ...] = (
    ("title", "Order 12345678 confirmed"),
    ("title", "Order #100234567 shipped"),
    ("title", "Invoice INV-2024-000123"),
    ("title", "Tracking 1Z999AA10123456784"),
    ("title", "Your order 4111 1111 1111 1112"),  # fails the Luhn check: not a card
    ("title", "Meeting on 2024-10-01 at 12:30:45"),
    ("title", "Deadline 01.02.2024, 17:00"),
    ("title", "Sale ends 12/31/2024"),
    ("title", "Now $1,299.00 (was $1,499.00)"),
    ("title", "Preis: 1.299,00 EUR"),
    ("title", "1 299 000 RUB"),
    ("title", "SKU-AB12-CD34 in stock"),
    ("title", "ASIN B08N5WRWNW"),
    ("title", "ISBN 978-3-16-148410-0"),
    ("title", "Release v2.3.1 notes"),
    ("title", "macOS 10.15.7 support"),
    ("title", "iPhone 15 Pro Max review"),
    ("title", "Galaxy S24 Ultra vs RTX 4090"),
    ("title", "Top 10 tips for 2024"),
    ("title", "Page 2 of 100"),
    ("title", "24/7 support, 365 days"),
    ("title", "Pi is 3.14159265"),
    ("title", "Population 8336817"),
    ("title", "Berlin 10115 Mitte"),
    ("title", "std::vector and Foo::Bar"),
    ("title", "Save 50% today & tomorrow"),
    ("title", "Terms & Conditions | Example"),
    ("title", "HowToUseJavaScriptEffectively"),
    ("title", "XMLHttpRequest in depth"),
    ("title", "Basic settings - Bearer of news"),
    ("title", "Contact us at our office"),
    ("title", "Look at this, dot the i"),
    ("title", "Color #ff00aa and 0xFF"),
    ("title", "Call of Duty: Modern Warfare"),
    ("title", "Café crème à la carte"),
    ("title", "Привет, мир"),
    ("title", "価格は1,000円です"),
    ("title", "Timestamp 1700000000000"),
    ("name", "signup_click"),
    ("name", "checkout_step_2"),
    ("name", "video_play_30s"),
    ("prop_value", "checkout_v2"),
    ("prop_value", "hero_video"),
    ("prop_value", "spring_sale_2024"),
    ("prop_value", "enterprise"),
    ("prop_value", "12"),
    ("prop_value", "1700000000"),
    ("path", "/blog/2024/10/hello-world"),
    ("path", "/products/42"),
    ("path", "/orders/12345678"),
    ("path", "/windows11-upgrade-guide-for-beginners-2024"),
    ("path", "/docs/v1.2.3/api"),
    ("path", "/events/2024-10-01/12:30"),
    ("path", "/invite/friends"),
    ("path", "/confirm/email"),
    ("path", "/reset-password"),
    ("path", "/share/our-story"),
    ("path", "/team/@alice"),
    ("path", "/cpp/std::vector"),
    ("path", "/static/app.3f2a1b9c.js"),
    ("path", "/shop;lang=de/items"),
    ("path", "/en-gb/iphone-15-pro"),
    ("prop_key", "plan"),
    ("prop_key", "product_name"),
    ("prop_key", "is_mobile"),
    ("prop_key", "hotel_stars"),
    ("prop_key", "className"),
    ("prop_key", "cart_items"),
    ("prop_key", "user_type"),
    ("prop_key", "display_mode"),
    ("prop_key", "event_handler"),
    ("prop_key", "cell_index"),
    ("prop_key", "zipper_color"),
    ("prop_key", "template"),
    ("prop_key", "description"),
    ("prop_key", "customer_tier"),
    ("host", "www.example.com"),
    ("host", "cdn-2.example.net"),
    ("host", "api.v2.example.io"),
    ("host", "shop.example.co.uk"),
    ("host", "a1b2.example.com"),
    ("host", "xn--mller-kva.de"),
)

# Negatives known to be changed anyway (a dotted quad is read as an IP address, "x@y.z" as an address).
KNOWN_FALSE_POSITIVES: tuple[tuple[str, str], ...] = (
    ("title", "Version 1.2.3.4 released"),
    ("path", "/img/logo@2x.png"),
)


def negative_output(s: ScrubberLike, where: str, value: str) -> str:
    """What ``value`` becomes in its position (the whole kept key set for keys)."""
    if where in ("title", "name", "prop_value"):
        return s.props({"v": value}).get("v", "") if where == "prop_value" else s.text(value)
    if where == "path":
        return str(s.url("https://shop.example.com" + value).url).removeprefix("https://shop.example.com")
    if where == "prop_key":
        return next(iter(s.props({value: "x"})), "")
    return str(s.url(f"https://{value}/").url).removeprefix("https://").removesuffix("/")


# --- rates ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rates:
    positives: int
    missed: list[Case]
    negatives: int
    changed: list[tuple[str, str, str]]  # (where, value, output)

    @property
    def miss_rate(self) -> float:
        return len(self.missed) / self.positives

    @property
    def false_positive_rate(self) -> float:
        return len(self.changed) / self.negatives


def measure(s: ScrubberLike) -> Rates:
    """Miss rate over every positive case (known limits included) and false-positive rate over negatives."""
    all_cases = list(cases())
    missed = [c for c in all_cases if leaked(c, scrub_beacon(s, c.beacon()))]
    negatives = [*NEGATIVES, *KNOWN_FALSE_POSITIVES]
    changed = [(w, v, out) for w, v in negatives if (out := negative_output(s, w, v)) != v]
    return Rates(len(all_cases), missed, len(negatives), changed)
