"""`optimum-cli export edge-llama`, found by optimum through its command-registration namespace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from edge_llama.cli.main import build_parser, main
from edge_llama.export import TARGETS

ROOT = Path(__file__).resolve().parents[2]
OPTIMUM_CLI = Path(sys.executable).parent / "optimum-cli"
pytestmark = pytest.mark.skipif(not OPTIMUM_CLI.exists(), reason="optimum is not installed (pip install 'edge-llama[optimum]')")


def optimum_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([str(OPTIMUM_CLI), "export", *args], capture_output=True, text=True, timeout=600, env=env)


def test_help_lists_every_export_option_and_the_registered_targets():
    result = optimum_cli("edge-llama", "--help")
    assert result.returncode == 0, result.stderr
    export = build_parser().subcommand_parsers["export"]
    renamed = {"--checkpoint": "--model", "--output-dir": "OUTPUT_DIR"}
    for action in export._actions:
        if action.option_strings != ["-h", "--help"]:  # every edge-llama export option, under its optimum-cli name
            option = action.option_strings[-1]
            assert renamed.get(option, option) in result.stdout, option
    assert "{" + ",".join(sorted(TARGETS)) + "}" in result.stdout


def test_export_makes_the_same_files_as_edge_llama_export(checkpoints, tmp_path, capsys):
    options = ["--recipe", "w4-rtn", "--target", "onnx", "--parts", "2", "--context-length", "256", "-q"]
    result = optimum_cli("edge-llama", "--model", str(checkpoints / "float"), *options, str(tmp_path / "optimum"))
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.strip().splitlines()  # -q: the result only
    assert line.startswith(f"{checkpoints / 'float'} → {tmp_path / 'optimum'} (onnx): ") and line.endswith(" files")
    assert "Quantizing" not in result.stderr and "%|" not in result.stderr  # no log lines, no progress bars
    assert main(["export", "--checkpoint", str(checkpoints / "float"), *options, "-o", str(tmp_path / "edge")]) == 0
    capsys.readouterr()
    files = {folder: {p.name: p.read_bytes() for p in (tmp_path / folder).iterdir()} for folder in ("optimum", "edge")}
    assert "model.data" in files["edge"] and "part_2_of_2.encodings" in files["edge"]
    assert sorted(files["optimum"]) == sorted(files["edge"])
    different = [name for name in files["edge"] if files["optimum"][name] != files["edge"][name]]
    assert different in ([], ["config.json"])
    configs = [json.loads(files[folder]["config.json"]) for folder in ("optimum", "edge")]
    for config in configs:  # the one thing two runs may not share: how long quantizing took
        assert config["edge_llama_export"]["recipe"].pop("quantization_seconds") > 0
    assert configs[0] == configs[1]


def test_errors_keep_edge_llamas_line_and_exit_code(tmp_path):
    result = optimum_cli("edge-llama", "--model", str(tmp_path / "missing"), str(tmp_path / "out"))
    assert result.returncode == 2
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("Loading ")]
    assert lines == [f"edge-llama export: error: checkpoint folder not found: {tmp_path / 'missing'}"]


def test_the_wheel_ships_the_namespace_portion():
    """optimum finds the command only if `optimum/` ships without `__init__.py` files (PEP 420)."""
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    assert "src/optimum" in packages
    assert (ROOT / "src/optimum/commands/register/edge_llama.py").is_file()
    assert not list((ROOT / "src/optimum").rglob("__init__.py"))


def test_registering_the_command_imports_nothing_heavy():
    """optimum-cli imports every register module on each start; ours must not pull in torch or edge_llama."""
    code = ("import sys, optimum.commands.register.edge_llama as m; assert m.REGISTER_COMMANDS; "
            "print(sorted(name for name in ('torch', 'transformers', 'edge_llama') if name in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
