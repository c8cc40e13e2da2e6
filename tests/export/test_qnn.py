"""`export(target="qnn")`: context binaries compiled here that run on the HTP simulator like the simulation."""

from __future__ import annotations

import json

import pytest
import torch

from edge_llama import EdgeLlamaConfigError, EdgeLlamaForCausalLM
from edge_llama.cli.main import main
from edge_llama.export.qnn import QnnExportError

from ..conftest import edge_from, tiny_llama


@pytest.fixture(scope="module")
def float_model():
    reference = tiny_llama(vocab_size=49152, hidden_size=128, intermediate_size=256)
    return edge_from(reference, context_length=64, ar_lengths=[16, 1])


@pytest.fixture(scope="module")
def w4a16(float_model, default_tokenizer):
    return float_model.quantize("w4a16", tokenizer=default_tokenizer, num_samples=2, sequence_length=32, progress=False)


@pytest.fixture(scope="module")
def bundle(w4a16, tmp_path_factory):
    folder = tmp_path_factory.mktemp("qnn") / "bundle"
    w4a16.export("qnn", folder, device="Snapdragon 8 Elite", parts=2)
    return folder


def test_one_context_binary_per_part_and_ar(bundle):
    metadata = json.loads((bundle / "metadata.json").read_text())
    assert metadata["device"] == {"name": "Snapdragon 8 Elite", "chipset": "SM8750", "soc_model": 69, "htp_arch": "v79"}
    names = [graph["genie_name"] for graph in metadata["graphs"]]
    assert names == ["prompt_ar16_cl64_1_of_2", "prompt_ar16_cl64_2_of_2", "token_ar1_cl64_1_of_2", "token_ar1_cl64_2_of_2"]
    for graph in metadata["graphs"]:
        assert (bundle / graph["context_file"]).is_file() and (bundle / graph["binary_file"]).stat().st_size > 0
    kv = next(i for i in metadata["graphs"][1]["inputs"] if i["name"] == "past_key_0_in")
    assert kv["quantization"]["bw"] == 8 and kv["quantization"]["is_sym"]
    assert json.loads((bundle / "config.json").read_text())["edge_llama_export"]["device"] == "Snapdragon 8 Elite"


def test_bundle_runs_on_the_htp_simulator_like_the_simulation(bundle, w4a16):
    exported = EdgeLlamaForCausalLM.from_pretrained(bundle)
    torch.manual_seed(0)
    ids = torch.randint(3, 49152, (1, 21))  # a padded prompt chunk and AR-16 + AR-1 calls
    with torch.no_grad():
        on_npu, simulated = exported(ids).logits, w4a16(ids).logits
    assert ((on_npu - simulated).abs().max() / simulated.abs().max()).item() < 0.05
    assert (on_npu.argmax(-1) == simulated.argmax(-1)).float().mean().item() >= 0.9
    greedy = exported.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=0)
    assert greedy.shape == (1, 25)


def test_float_models_are_refused(float_model, tmp_path):
    with pytest.raises(QnnExportError, match="QNN recipe .* got a float model"):
        float_model.export("qnn", tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()


def test_unknown_device_lists_the_known_ones(w4a16, tmp_path):
    with pytest.raises(EdgeLlamaConfigError, match="unknown device 'Tensor G4'; known devices: .*Snapdragon 8 Elite"):
        w4a16.export("qnn", tmp_path / "bundle", device="Tensor G4")


def test_geometry_of_an_export_cannot_change_on_load(bundle):
    with pytest.raises(EdgeLlamaConfigError, match="exported model"):
        EdgeLlamaForCausalLM.from_pretrained(bundle, context_length=128)


def test_evaluate_command_runs_the_bundle(bundle, default_tokenizer, tmp_path, capsys):
    default_tokenizer.save_pretrained(bundle)
    text = tmp_path / "text.txt"
    text.write_text("The mill by the river grinds wheat every morning. " * 20)
    code = main(["evaluate", "--checkpoint", str(bundle), "--task", "wikitext-ppl", "--dataset-path", str(text), "--num-samples", "1", "-q"])
    assert code == 0, capsys.readouterr().err
    assert "perplexity" in capsys.readouterr().out


def test_demo_header_names_the_simulator(bundle, default_tokenizer, capsys):
    default_tokenizer.save_pretrained(bundle)
    code = main(["demo", "--checkpoint", str(bundle), "--prompt", "Hi", "--max-output-tokens", "2"])
    assert code == 0, capsys.readouterr().err
    assert "QNN context binaries for Snapdragon 8 Elite (SM8750) · x86 HTP simulator" in capsys.readouterr().out
