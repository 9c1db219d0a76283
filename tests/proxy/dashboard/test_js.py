"""The dashboard's own logic that needs no page (the URL state, the previous period, number formats),
tested in Node's built-in test runner (``node --test``, no package needed): tests/proxy/dashboard/js/."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def test_the_dashboards_modules_pass_their_node_tests() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed (it comes with npm, which `make dashboard` needs too)", pytrace=False)
    files = sorted(str(p) for p in (HERE / "js").glob("*.test.mjs"))
    assert len(files) >= 2
    run = subprocess.run([node, "--test", *files], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "# fail 0" in run.stdout and "# pass 0" not in run.stdout
