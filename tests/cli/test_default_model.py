"""Every subcommand end to end on the embedded default model (SmolLM2-135M-Instruct)."""

from __future__ import annotations

import json

import pytest

from edge_llama.cli.main import main


def test_info_and_devices_on_the_default(capsys):
    assert main(["info", "--checkpoint", "DEFAULT"]) == 0
    out = capsys.readouterr().out
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in out and "30 layers, hidden 576, 9/3 heads, vocab 49152" in out
    assert main(["devices"]) == 0
    assert "Snapdragon 8 Elite" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.timeout(3600)  # saving the quantized folder exports both 30-layer graphs: over 15 min on 2 busy cores
def test_quantize_evaluate_demo_export_on_the_default(tmp_path, capsys):
    quantized, exported = str(tmp_path / "w4-rtn"), str(tmp_path / "onnx")
    assert main(["quantize", "--checkpoint", "DEFAULT", "--recipe", "w4-rtn", "--context-length", "256", "-q", "-o", quantized]) == 0
    assert "DEFAULT → " in capsys.readouterr().out
    assert main(["evaluate", "--checkpoint", quantized, "--task", "wikitext-ppl", "--num-samples", "1", "-q",
                 "--output-json", str(tmp_path / "ppl.json")]) == 0
    perplexity = json.loads((tmp_path / "ppl.json").read_text())["results"][0]["metrics"]["perplexity"]
    assert 1 < perplexity < 1000
    assert main(["demo", "--checkpoint", quantized, "--prompt", "What is the capital of France?", "--max-output-tokens", "8", "-q"]) == 0
    capsys.readouterr()
    assert main(["export", "--checkpoint", quantized, "--target", "onnx", "-q", "-o", exported]) == 0
    assert "(onnx)" in capsys.readouterr().out
    assert main(["info", "--checkpoint", exported]) == 0
    out = capsys.readouterr().out
    assert "export for onnx" in out and "w4-rtn" in out
