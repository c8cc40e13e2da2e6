"""The docs point at files that exist, and the commands they show parse with the real command line."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from edge_llama.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    for target in LINK.findall(page.read_text()):
        if "://" not in target:
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to missing {target}"


def documented_commands() -> list[tuple[str, str]]:
    commands = []
    for page in PAGES:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S):
            for line in block.splitlines():
                line = line.split(" #")[0].strip()
                if line.startswith("edge-llama ") and "[" not in line and "COMMAND" not in line:
                    commands.append((str(page.relative_to(ROOT)), line))
    return commands


@pytest.mark.parametrize("page, line", documented_commands())
def test_documented_commands_parse(page, line):
    parser = build_parser()
    args, unknown = parser.parse_known_args(shlex.split(line)[1:])
    assert not unknown, f"{page}: {line!r} has options edge-llama does not know: {unknown}"
    assert args.command
