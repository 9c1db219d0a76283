"""Write the seed corpus of every fuzz target into tests/fuzz/corpus/<target>/ (idempotent).

Foreign formats are seeded with the requests the real clients sent (tests/proxy/formats/payloads/), each
also in the other encodings its format takes; the native parsers, cookies, addresses and paths with
small hand-written cases. Files are named by the SHA-1 of their content, as libFuzzer names what it
adds, so re-running this only adds files. Run: .venv/bin/python -m tests.fuzz.seed
"""

from __future__ import annotations

import base64
import gzip
import hashlib
from pathlib import Path

import lzstring
import orjson

HERE = Path(__file__).parent
CORPUS = HERE / "corpus"
PAYLOADS = HERE.parent / "proxy" / "formats" / "payloads"
CLIENTS = {
    "plausible": ["plausible-tracker-0.4.6"],
    "umami": ["umami-node-0.4.0"],
    "segment": ["segment-analytics-python-2.4.0", "rudder-sdk-python-2.1.9"],
    "posthog": ["posthog-js-1.449.2", "posthog-python-7.91.1"],
    "snowplow": ["snowplow-tracker-1.1.0"],
}


def http(method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
    head = "\n".join([f"{method} {target}", *(f"{k}: {v}" for k, v in headers.items())])
    return head.encode("latin-1") + b"\n\n" + body


def recorded(client: str) -> list[bytes]:
    out = []
    for r in orjson.loads((PAYLOADS / f"{client}.json").read_bytes())["requests"]:
        body = base64.b64decode(r["body_base64"])
        headers = {k: v for k, v in r["headers"].items() if k.lower() != "user-agent"}
        out.append(http(r["method"], r["path"], headers, body))
        if body and r["method"] == "POST" and "content-encoding" not in {k.lower() for k in headers}:
            out.append(
                http(
                    r["method"],
                    r["path"],
                    {**headers, "content-encoding": "gzip"},
                    gzip.compress(body, mtime=0),
                )
            )
    return out


NATIVE = [
    b'{"site":"demo","url":"https://example.com/p?utm_source=x","title":"T","props":{"plan":"pro"}}',
    b'[{"site":"demo","type":"event","name":"signup","url":"https://e.com/","consent":{"analytics":true}},'
    b'{"site":"demo","url":"https://e.com/a","screen":{"width":1920,"height":1080},"ts":1796139096884,'
    b'"location":{"lat":48.85,"lon":2.35},"client_id":"c-1","engagement_ms":1200,"language":"en-GB"}]',
    b'[{"site":"demo"},{"site":7},3,null]',
]
PIXEL = [
    b"site=demo&url=https%3A%2F%2Fexample.com%2Fp&ref=https%3A%2F%2Fref.example%2F&title=T",
    b"site=demo&name=signup\nhttps://example.com/from-referer",
    b"site=demo&url=&name=%E2%82%AC",
]
COOKIES = [
    b"_ga=GA1.2.3; CookieConsent={stamp:%27x%27%2Cnecessary:true%2Cstatistics:true%2Cmarketing:false}",
    b"cc=%7B%22analytics%22%3Atrue%2C%22marketing%22%3A%22denied%22%7D; cc=analytics:0",
    b"OptanonConsent=isGpcEnabled=0&groups=C0001%3A1%2CC0002%3A0; bp_optout=1; bp_optout=0",
    b"euconsent-v2=CQHdsEAQHdsEAAKA1AENBNFsAP_gAEPgAAiQKQNV_G__bXlr8X736ftkeY1f9_h77sQxBhfJs-4FzLuW_JwX32EzNA36tqYKmRIAu3bBIQNlGJDUTVCgaogVryDMaE2coTNKJ6BkiFMRM2dYCF5vm4tj-QKY5vr991dx2B-t7dr83dzyz4VHn3a5_2a0WJCdA5-tDfv9bROb-9IOd_x8v4v8_F_rE2_eT1l_tevp7D9-cts7_XW-9_fff79Ll9-_____-__8EBQQAkw0KiAMsiQkINAwggQAqCsICKBAAAACQNEBACYMCnYGAS6wkQAgBQADBACAAEGQAIAAAIAEIgAgAKBAABAIFAAGABAMBAAwMAAYALAQCAAEB0DFMCCAQLABIzIoNMCUABIICWyoQSAIEFcIQizwCCBETBQAAAAAA.YAAAAAAAAAAA",
    b'a=1\x00; a=2; b="q"; =x; c',
]
ADDRESSES = [
    b"127.0.0.1\n203.0.113.77, 10.0.0.1",
    b'::1\nfor="[2001:db8::1]:4711";proto=https, for=198.51.100.3',
    b"64:ff9b::10.0.0.5\n2002:cb00:714d::1",
    b"2001:0:4136:e378:8000:63bf:3fff:fdd2\n::ffff:0:203.0.113.7\n" + bytes.fromhex("1880") + bytes(16),
    b"10.0.0.2\n64:ff9b:1:cb00:71:4d00::, 2001:db8:1:2:200:5efe:203.0.113.77\n"
    + bytes([24, 128])
    + bytes.fromhex("0064ff9b0001cb00007100000000000a"),
]
PATHS = [
    b"https://example.com//KIDS/./x/..;a=1/%67ames/?q=1#f",
    b"https://example.com/kids//../games",
    b"https://example.com\\kids%2F..%2Fadults",
    b"/%2e%2E/k%69ds;jsessionid=1/",
    b"HTTPS://user@EXAMPLE.com:8443/%D0%B4%D0%B5%D1%82%D1%8F%D0%BC",
]


LZ_DOC = '[{"event":"$pageview","api_key":"demo","properties":{"$current_url":"https://e.com/","n":1}}]'


def seeds() -> dict[str, list[bytes]]:
    out = {target: [s for client in clients for s in recorded(client)] for target, clients in CLIENTS.items()}
    out["posthog"] += [
        http(
            "GET", "/e/?data=" + base64.b64encode(b'{"event":"$pageview","api_key":"demo"}').decode(), {}, b""
        ),
        http(
            "POST",
            "/e/",
            {"content-type": "application/x-www-form-urlencoded"},
            b"data=eyJldmVudCI6Im4ifQ%3D%3D",
        ),
        http("POST", "/batch/?compression=lz64", {}, lzstring.LZString().compressToBase64(LZ_DOC).encode()),
    ]
    out["snowplow"].append(http("GET", "/i?e=se&se_ac=play&aid=demo&url=https%3A%2F%2Fe.com%2F", {}, b""))
    out.update(events=NATIVE, pixel=PIXEL, cookies=COOKIES, clientip=ADDRESSES, paths=PATHS)
    return out


def write() -> int:
    added = 0
    for target, items in seeds().items():
        directory = CORPUS / target
        directory.mkdir(parents=True, exist_ok=True)
        for item in items:
            path = directory / hashlib.sha1(item).hexdigest()
            if not path.exists():
                path.write_bytes(item)
                added += 1
    return added


if __name__ == "__main__":
    print(f"{write()} seed files added under {CORPUS}")
