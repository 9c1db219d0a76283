"""Speed of ``proxy.scrub.Scrubber`` on realistic beacons, optionally next to an older version in one run.

The scrubber is built the way ``proxy.pipeline.Services`` builds it with default settings (the query
allowlist of ``config.settings.PrivacySettings``, the default property-key denylist and click ids). The
events come from ``benchmarks/throughput.py``'s ``make_event``. Per event it times what the pipeline
calls: ``url`` (page URL), ``referrer`` (when the beacon has one), ``text`` (title) and ``props``.

With ``--compare-git-rev REV`` the scrubber of that git revision (``proxy/scrub.py`` before it became a
package, ``proxy/scrub/`` after) is loaded as a separate module and both versions run interleaved, in
the same rounds, on the same events; the table shows old, new and old/new. Before timing, the two
versions must give identical results on every generated event (ordinary traffic holds nothing to
redact, so a newer detector must not change it); any difference stops the benchmark with exit status 1.
How many results differ on inputs full of personal data and on random near-miss strings is printed: the
versions detect different things there. The new version is run twice over all of that, so results
served from its caches are checked too.

Then, for the working tree, one row per detector (``proxy.scrub.scanner.DETECTORS``): its cost per event
when every string of the event goes through it (the fast path and the caches bypassed: what a detector
costs when it does run), and per string of the labelled corpus (``tests/proxy/scrub/corpus.py``).

``--corpus`` adds the miss rate (positive cases of the corpus in which something that must not be stored
survives) and the false-positive rate (ordinary values that come out changed) of each version.

Figures are the best of ``--rounds`` rounds (the machine is shared and noisy): compare the ratios, not
the numbers.

    .venv/bin/python benchmarks/scrub_bench.py [--events 20000] [--rounds 7] [--compare-git-rev REV]
        [--corpus]
"""

from __future__ import annotations

import argparse
import importlib
import random
import re
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH_DIR))

import throughput  # noqa: E402

from config.settings import PrivacySettings  # noqa: E402
from proxy import scrub  # noqa: E402
from proxy.scrub import scanner  # noqa: E402
from tests.proxy.scrub import corpus  # noqa: E402

SEED = 20240601
FIELDS = ("url", "referrer", "text(title)", "props")


def load_git_version(rev: str) -> types.ModuleType:
    """The scrubber as of git revision ``rev``, as a module (or package) object of its own."""
    name = "scrub_at_" + re.sub(r"[^A-Za-z0-9]", "_", rev)
    single = subprocess.run(["git", "cat-file", "-e", f"{rev}:proxy/scrub.py"], cwd=REPO, capture_output=True)
    if single.returncode == 0:
        source = subprocess.run(
            ["git", "show", f"{rev}:proxy/scrub.py"], cwd=REPO, check=True, capture_output=True, text=True
        ).stdout
        module = types.ModuleType(name)
        module.__file__ = f"{rev}:proxy/scrub.py"
        sys.modules[name] = module  # dataclasses look the module up while building ScrubbedUrl
        exec(compile(source, module.__file__, "exec"), module.__dict__)
        return module
    # A package: its files under another name, with its own imports pointed at that name.
    root = Path(tempfile.mkdtemp(prefix="scrub_bench_"))
    (root / name).mkdir()
    files = subprocess.run(
        ["git", "ls-tree", "--name-only", f"{rev}:proxy/scrub/"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    for file in files:
        if file.endswith(".py"):
            source = subprocess.run(
                ["git", "show", f"{rev}:proxy/scrub/{file}"],
                cwd=REPO,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            (root / name / file).write_text(source.replace("proxy.scrub", name))
    sys.path.insert(0, str(root))
    return importlib.import_module(name)


def make_scrubber(module: types.ModuleType) -> Any:
    """A Scrubber configured like ``proxy.pipeline.Services`` with default settings."""
    allowlist = PrivacySettings.model_fields["query_allowlist"].default
    return module.Scrubber(allowlist, module.DEFAULT_PROP_KEY_DENYLIST, module.DEFAULT_CLICK_ID_PARAMS)


# --- inputs ------------------------------------------------------------------------------------------

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PII = (
    "john.doe@example.com",
    "JOHN.DOE+news@Example.co.uk",
    "jane_o'neil@mail.example.org",
    "j%C3%B6rg@m\u00fcller.de",
    "john%40example.com",
    "john%2540example.com",
    "john%252540example.com",
    "u%2Fjohn%40example.com%2Fedit",
    "logo@2x.png",
    "a@b.c",
    "192.168.1.20",
    "10.0.0.1",
    "256.1.1.1",
    "1.2.3.4.5",
    "203.0.113.77.",
    "2001:db8::1",
    "2001:db8:85a3::8a2e:370:7334",
    "2001%3Adb8%3A%3A1",
    "[2001:db8::7]",
    "[2001:db8::2]:443",
    "::ffff:192.0.2.128",
    "fe80::1%eth0",
    "::1",
    "::",
    "a::b",
    "ip:2001:db8:0:0:0:0:0:1",
    "2001:db8::110.0.0.1::",
    "12:30:45",
    "std::vector",
    JWT,
    "eyJhbGciOi.x.y",
    "550e8400-e29b-41d4-a716-446655440000",
    "00000000-0000-0000-0000-000000000000",
    "550E8400-E29B-41D4-A716-446655440000",
    "a8f5f167f44f4964e6c998dee827110c",
    "Zk3_qL9vXw2RtYp8MnB4cD7eFg1HjK0sTu6VoPxWyQa",
    "sess_a8f5f167f44f4964e6c998dee827110c",
    "how-to-set-up-nginx-in-2024-and-beyond",
    "windows11-upgrade-guide-for-beginners-2024",
    "123456789012345678901234567890",
    "%41%42%43a8f5f167f44f4964e6c998dee827110c",
    "%2F%2F%2F",
    "100%",
    "%zz",
    "%E2%82",
    ";jsessionid=1A2B3C",
    "caf\u00e9 a b",
    "\ud800",
    "",
)


def pii_urls() -> list[str]:
    out: list[str] = []
    for p in PII:
        out += [
            f"https://e.com/u/{p}/x",
            f"https://e.com/{p}",
            f"https://e.com/a?utm_source={p}&q={p}",
            f"https://e.com/a?utm_{p}=1&{p}=2&gclid={p}",
            f"https://e.com/a?utm_term=a+{p}+b#{p}",
            f"https://u:{p}@e.com/p",
            f"https://{p}/p",
            f"https://[{p}]/p",
            f"http://{p}.nip.io:8080/p",
            f"HTTPS://WWW.Example.COM:0443/{p};jsessionid={p}/y?UTM_Source={p}",
            f"  https://e.com/\t{p}\n",
        ]
    return out


# Pieces glued together at random: near misses of every pattern and of every fast-path check.
PIECES = (
    "http:// https:// HTTP:// // : :: ::: [ ] @ % %40 %2F %25 %3A %zz %E2%82 ? & = # / . .. - _ + ; "
    "example.com EXAMPLE.COM :99999 :80 user:pw@ john@x.io 10.0.0.1 256.1.1.1 1.2.3 .4 ::ffff:1.2.3.4 "
    "2001:db8::1 db8: fe80::1%eth0 [::1] eyJ eyJhbGciOi utm_source= UTM_x= gclid= 0x7f deadbeef "
    "deadbeef- cafe- 0000- a1 1a A9 9Z abcdefghij 0123456789 abc123def456 ;jsessionid= %41"
)
FRAGMENTS = (
    *PIECES.split(),
    *(" ", "\t", "\n", "\x00", "\ud800", "\u00e9", "\u0661", "\u212a", "a" * 24, "1" * 24, "a1" * 12),
    "550e8400-e29b-41d4-a716-446655440000",
    "a8f5f167f44f4964e6c998dee827110c",
)


def fuzz_strings(count: int, rng: random.Random) -> list[str]:
    out: list[str] = []
    for _ in range(count):
        if rng.random() < 0.2:
            out.append("".join(chr(rng.randrange(0, 0x300)) for _ in range(rng.randrange(0, 40))))
        else:
            out.append("".join(rng.choice(FRAGMENTS) for _ in range(rng.randrange(0, 12))))
    return out


def outputs(s: Any, events: Sequence[Mapping[str, Any]], extra: Sequence[str]) -> list[object]:
    """Everything the scrubber returns for the events and the extra strings, comparable across modules."""
    out: list[object] = []

    def url(raw: str) -> None:
        r = s.url(raw)
        out.append((r.url, r.params, r.click_ids))

    for e in events:
        url(e["url"])
        out.append(s.referrer(e["referrer"]))
        out.append(s.text(e["title"]))
        out.append(s.text(e.get("name", "")))
        out.append(s.props(e["props"]))
    for raw in extra:
        url(raw)
        url("https://example.com/" + raw)
        url("https://example.com/p?utm_x=" + raw + "&" + raw + "=v&utm_" + raw + "=w")
        out.append(s.referrer(raw))
        out.append(s.text(raw))
        out.append(s.props({raw: raw, "k": raw, "plan": "pro", "n": 1.0, "b": True}))
    return out


def check_equivalent(old: Any, new: Any, events: Sequence[Mapping[str, Any]]) -> int:
    """Old and new must agree on every event (new twice: cold, then warm caches); return how many results."""
    expected = outputs(old, events, [])
    for attempt in ("cold", "warm"):
        got = outputs(new, events, [])
        if len(got) != len(expected):
            raise SystemExit(f"equivalence check ({attempt}): {len(got)} results, expected {len(expected)}")
        diffs = [(i, a, b) for i, (a, b) in enumerate(zip(expected, got, strict=True)) if a != b]
        if diffs:
            for i, a, b in diffs[:10]:
                print(f"  result {i}: old {a!r}\n  {' ' * len(str(i))}         new {b!r}", file=sys.stderr)
            raise SystemExit(f"equivalence check ({attempt}): {len(diffs)} of {len(expected)} results differ")
    return len(expected)


def count_differences(old: Any, new: Any, extra: Sequence[str]) -> tuple[int, int]:
    """How many results differ between old and new on ``extra`` (new twice, warm must equal cold)."""
    expected = outputs(old, [], extra)
    cold = outputs(new, [], extra)
    warm = outputs(new, [], extra)
    if cold != warm:
        raise SystemExit("the working tree gives different results with warm caches")
    return sum(1 for a, b in zip(expected, cold, strict=True) if a != b), len(expected)


# --- timing --------------------------------------------------------------------------------------------


def timers(s: Any, events: Sequence[Mapping[str, Any]]) -> dict[str, Callable[[], float]]:
    """One callable per field: scrubs that field of every event, returns the seconds taken."""
    urls = [e["url"] for e in events]
    referrers = [e["referrer"] for e in events if e["referrer"]]  # the pipeline skips empty ones
    titles = [e["title"] for e in events]
    props = [e["props"] for e in events]

    def run(fn: Callable[[Any], object], inputs: Sequence[Any]) -> Callable[[], float]:
        def timed() -> float:
            start = time.process_time()
            for x in inputs:
                fn(x)
            return time.process_time() - start

        return timed

    return {
        "url": run(s.url, urls),
        "referrer": run(s.referrer, referrers),
        "text(title)": run(s.text, titles),
        "props": run(s.props, props),
    }


def measure(
    versions: Mapping[str, Any], events: Sequence[Mapping[str, Any]], rounds: int
) -> dict[str, dict[str, float]]:
    """Best us/event per version and field; versions alternate within each round to share the noise."""
    runs = {name: timers(s, events) for name, s in versions.items()}
    best = {name: dict.fromkeys(FIELDS, float("inf")) for name in versions}
    order = list(versions)
    for r in range(rounds):
        for name in order if r % 2 == 0 else reversed(order):
            for field in FIELDS:
                us = runs[name][field]() / len(events) * 1e6
                best[name][field] = min(best[name][field], us)
    return best


def event_strings(events: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """Per event, every string the scanner may see: path, query values, title, name, prop keys and values."""
    out: list[list[str]] = []
    for e in events:
        path, _, query = e["url"].partition("://")[2].partition("/")[2].partition("?")
        strings = ["/" + path, *(field.partition("=")[2] for field in query.split("&")), e["title"]]
        strings += [e.get("name", ""), *e["props"], *(str(v) for v in e["props"].values())]
        out.append(strings)
    return out


def detector_rows(events: Sequence[Mapping[str, Any]], rounds: int) -> list[tuple[str, float, float]]:
    """(detector, us per event without the fast path, us per corpus string) for each detector."""
    per_event = event_strings(events)
    planted = [c.planted for c in corpus.cases()]
    rows = []
    for detector in scanner.DETECTORS:

        def run(strings: Sequence[str], d: Any = detector) -> None:
            for x in strings:
                if d.could_match(x):
                    d.redact(x)

        best_events = best_corpus = float("inf")
        for _ in range(rounds):
            start = time.process_time()
            for strings in per_event:
                run(strings)
            best_events = min(best_events, (time.process_time() - start) / len(per_event) * 1e6)
            start = time.process_time()
            run(planted)
            best_corpus = min(best_corpus, (time.process_time() - start) / len(planted) * 1e6)
        rows.append((detector.name, best_events, best_corpus))
    return rows


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20000, help="distinct generated events (default 20000)")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds, best one counts (default 7)")
    parser.add_argument("--fuzz", type=int, default=20000, help="random strings for the difference count")
    parser.add_argument("--compare-git-rev", metavar="REV", help="also run the scrubber of this revision")
    parser.add_argument("--corpus", action="store_true", help="miss and false-positive rates on the corpus")
    args = parser.parse_args(argv)
    if min(args.events, args.rounds) < 1 or args.fuzz < 0:
        parser.error("--events and --rounds must be >= 1, --fuzz >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    rng = random.Random(SEED)
    now_ms = int(time.time() * 1000)
    events = [throughput.make_event(rng, now_ms) for _ in range(args.events)]
    versions: dict[str, Any] = {}
    if args.compare_git_rev:
        versions[args.compare_git_rev] = make_scrubber(load_git_version(args.compare_git_rev))
    versions["working tree"] = make_scrubber(scrub)

    distinct_paths = len({e["url"].partition("?")[0] for e in events})
    distinct_titles = len({e["title"] for e in events})
    print("Scrubber speed: one run on one machine; compare the ratios, not the numbers.")
    referrers = sum(1 for e in events if e["referrer"])
    print(
        f"data:   {len(events):,} events from throughput.make_event (seed {SEED}); "
        f"{distinct_paths:,} distinct paths, {distinct_titles:,} distinct titles, {referrers:,} referrers"
    )
    if args.compare_git_rev:
        old = versions[args.compare_git_rev]
        n = check_equivalent(old, versions["working tree"], events)
        print(
            f"check:  {args.compare_git_rev} and working tree agree on all {n:,} event results (cold, warm)"
        )
        extra = [*PII, *pii_urls(), *fuzz_strings(args.fuzz, random.Random(SEED))]
        differ, total = count_differences(old, versions["working tree"], extra)
        print(f"        on PII-laden and random near-miss inputs {differ:,} of {total:,} results differ")
    print(f"timing: best of {args.rounds} rounds, us per event (referrer: per event, empty ones skipped)")
    print()

    best = measure(versions, events, args.rounds)
    names = list(versions)
    header = f"{'field':<12}" + "".join(f"{name:>16}" for name in names)
    if len(names) == 2:
        header += f"{'old/new':>10}"
    print(header)
    print("-" * len(header))
    for field in (*FIELDS, "total"):
        figures = [sum(best[n].values()) if field == "total" else best[n][field] for n in names]
        line = f"{field:<12}" + "".join(f"{v:>16.2f}" for v in figures)
        if len(names) == 2:
            line += f"{figures[0] / figures[1]:>9.1f}x"
        print(line)

    print()
    print("per detector (working tree), fast path and caches bypassed:")
    header = f"{'detector':<16}{'us/event':>12}{'us/corpus string':>20}"
    print(header)
    print("-" * len(header))
    for name, us_event, us_corpus in detector_rows(
        events[: min(len(events), 5000)], max(1, args.rounds // 2)
    ):
        print(f"{name:<16}{us_event:>12.2f}{us_corpus:>20.2f}")

    if args.corpus:
        print()
        print("corpus (tests/proxy/scrub/corpus.py): positives caught, ordinary values kept")
        header = f"{'version':<16}{'missed':>16}{'miss rate':>12}{'changed':>12}{'false pos.':>12}"
        print(header)
        print("-" * len(header))
        for name, s in versions.items():
            r = corpus.measure(s)
            print(
                f"{name:<16}{len(r.missed):>7,} of {r.positives:<6,}{r.miss_rate:>12.1%}"
                f"{len(r.changed):>5} of {r.negatives:<4}{r.false_positive_rate:>12.1%}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
