"""Every TOML example in the README is a valid configuration (appended to the shipped default)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from config.settings import DEFAULT_CONFIG, load_settings

README = Path(__file__).resolve().parents[2] / "README.md"
EXAMPLES = re.findall(r"```toml\n(.*?)```", README.read_text(), re.DOTALL)


def test_the_readme_has_toml_examples() -> None:
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("example", EXAMPLES)
def test_readme_toml_example_loads(tmp_path: Path, example: str) -> None:
    config = tmp_path / "example.toml"
    config.write_text(DEFAULT_CONFIG.read_text() + "\n" + example)
    settings = load_settings(config, environ={})
    for site in re.findall(r"^\[sites\.([\w.-]+)\]", example, re.MULTILINE):
        assert site in settings.sites
