"""`edge-llama demo` as users run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_llama.cli.main import main

from ..conftest import tiny_llama
from . import error_lines


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for option in ("--checkpoint", "--prompt", "--raw", "--max-output-tokens", "--context-length", "--do-sample", "--verbose", "--quiet"):
        assert option in help_text


def test_top_level_help_names_demo(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "demo" in capsys.readouterr().out


def test_bad_checkpoint_is_one_clear_line(tmp_path, capsys):
    code = main(["demo", "--checkpoint", str(tmp_path / "missing" / "model")])
    assert code == 2
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "checkpoint folder not found" in err[0] and "Traceback" not in err[0]


def test_missing_tokenizer_is_one_clear_line(tmp_path, capsys):
    tiny_llama().save_pretrained(tmp_path / "llama")
    code = main(["demo", "--checkpoint", str(tmp_path / "llama"), "--context-length", "256"])
    assert code == 2
    assert "no tokenizer in" in capsys.readouterr().err


def test_bad_max_output_tokens(capsys):
    assert main(["demo", "--max-output-tokens", "0"]) == 2
    assert "--max-output-tokens must be at least 1" in capsys.readouterr().err


def run_cli(*args: str) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "edge-llama"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "edge_llama.cli.main"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.slow
def test_demo_answers_paris():
    result = run_cli("demo", "--checkpoint", "DEFAULT", "--prompt", "What is the capital of France?", "--max-output-tokens", "32")
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout
    assert "Prompt:   What is the capital of France?" in result.stdout
    assert "tokens/s" in result.stdout


@pytest.mark.slow
def test_demo_raw_and_quiet():
    result = run_cli("demo", "--raw", "--quiet", "--prompt", "The capital of France is", "--max-output-tokens", "8", "--context-length", "512")
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout
    assert "Model:" not in result.stdout and "tokens/s" not in result.stdout  # --quiet prints the answer only


def test_quantize_command_writes_a_loadable_folder(tmp_path, capsys):
    from edge_llama import EdgeLlamaForCausalLM

    tiny_llama().save_pretrained(tmp_path / "llama")
    code = main(["quantize", "--checkpoint", str(tmp_path / "llama"), "--recipe", "w4-rtn", "--context-length", "256", "-o", str(tmp_path / "q")])
    assert code == 0, capsys.readouterr().err
    assert "w4-rtn" in capsys.readouterr().out
    assert EdgeLlamaForCausalLM.from_pretrained(tmp_path / "q").quantization.recipe.name == "w4-rtn"


def test_quantize_unknown_recipe_is_one_clear_line(tmp_path, capsys):
    tiny_llama().save_pretrained(tmp_path / "llama")
    code = main(["quantize", "--checkpoint", str(tmp_path / "llama"), "--recipe", "w3a7", "--context-length", "256", "-o", str(tmp_path / "q")])
    assert code == 2
    assert "unknown recipe 'w3a7'" in capsys.readouterr().err
    assert not (tmp_path / "q").exists()
