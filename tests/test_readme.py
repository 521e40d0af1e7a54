"""The README keeps its promises: the Quick start's two commands, and a configuration table that
names every setting segq reads (a setting added without documentation fails here)."""

from __future__ import annotations

import re
from pathlib import Path

from shared.settings import setting_env_names

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.M | re.S)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def test_quick_start_opens_with_exactly_the_demo_and_the_test_command():
    first_block = re.search(r"```\w*\n(.*?)```", section("Quick start"), re.S)
    assert first_block
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert [c for c in commands if c] == ["make demo", "make test"]
    assert "exec make test" in (REPO / ".ci" / "run").read_text()


def test_the_configuration_table_names_every_setting():
    table = section("Configuration")
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", table, re.M))
    assert documented == set(setting_env_names())
