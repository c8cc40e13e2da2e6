"""`edge-llama quantize --measure-ppl`: the measured change is recorded and shown on the model card."""

from __future__ import annotations

import json

from edge_llama import EdgeLlamaForCausalLM
from edge_llama.cli.main import main


def test_measured_perplexity_lands_in_config_and_card(checkpoints, tmp_path, capsys):
    code = main(["quantize", "--checkpoint", str(checkpoints / "float"), "--recipe", "w4-rtn", "--context-length", "256",
                 "--measure-ppl", "2", "-q", "-o", str(tmp_path / "q")])
    assert code == 0, capsys.readouterr().err
    assert "perplexity" in capsys.readouterr().out
    recorded = json.loads((tmp_path / "q" / "config.json").read_text())["quantization_config"]["perplexity"]
    assert recorded["tokens"] == 2 * 255 and recorded["context_length"] == 256
    assert recorded["float"] != recorded["quantized"]
    card = (tmp_path / "q" / "README.md").read_text()
    assert "perplexity (float → quantized)" in card and "edge-llama export" in card
    # Loading and saving again keeps it.
    again = EdgeLlamaForCausalLM.from_pretrained(tmp_path / "q")
    assert again.quantization.perplexity == recorded
