"""`make fuzz`: run each fuzz harness under atheris for a bounded time, one process per target.

    .venv/bin/python -m tests.fuzz.run [--seconds 60] [--work DIR] [--merge] [TARGET ...]

Each target starts from its seed corpus (tests/fuzz/corpus/<target>, read only) and keeps what it finds
in DIR/<target> (default ./data/fuzz, outside version control); a crash leaves its input there as
crash-<sha1> and fails the run. ``--merge`` then adds to the repository's corpus only the inputs that
reach new coverage (libFuzzer's -merge=1), so the corpus grows by what matters, not by everything tried.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
REPO = HERE.parent.parent
TARGETS = sorted(p.stem.removeprefix("fuzz_") for p in HERE.glob("fuzz_*.py"))


def fuzz(target: str, seconds: int, work: Path) -> int:
    out = work / target
    out.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        f"tests.fuzz.fuzz_{target}",
        str(out),
        str(HERE / "corpus" / target),
        f"-max_total_time={seconds}",
        "-timeout=20",
        "-rss_limit_mb=4096",
        f"-artifact_prefix={out}/",
        "-print_final_stats=1",
    ]
    print(f"== fuzz {target} for {seconds} s", flush=True)
    return subprocess.run(command, cwd=REPO, check=False).returncode


def merge(target: str, work: Path) -> int:
    command = [
        sys.executable,
        "-m",
        f"tests.fuzz.fuzz_{target}",
        "-merge=1",
        str(HERE / "corpus" / target),
        str(work / target),
    ]
    return subprocess.run(command, cwd=REPO, check=False).returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "targets", nargs="*", metavar="TARGET", help=f"any of {', '.join(TARGETS)} (default: all)"
    )
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--work", type=Path, default=REPO / "data" / "fuzz")
    parser.add_argument("--merge", action="store_true")
    args = parser.parse_args()
    targets = args.targets or TARGETS
    unknown = set(targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown target(s) {', '.join(sorted(unknown))}; choose from {', '.join(TARGETS)}")
    failed = [t for t in targets if fuzz(t, args.seconds, args.work.resolve()) != 0]
    if args.merge and not failed:
        failed = [t for t in targets if merge(t, args.work.resolve()) != 0]
    if failed:
        print(f"fuzzing failed for: {', '.join(failed)} (inputs in {args.work})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
