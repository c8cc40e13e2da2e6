"""The model card of a quantized checkpoint: Hub metadata carried from the base, recipe, how to load and export."""

from __future__ import annotations

import shlex

import pytest
import yaml
from huggingface_hub import hf_hub_download

from edge_llama import EdgeLlamaForCausalLM
from edge_llama.cli.main import main
from edge_llama.model_card import card_metadata, write_model_card

from .conftest import tiny_llama
from .loopback_hub import LoopbackHub, point_hf_client_at


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A float Llama folder whose own card says `license: mit`."""
    folder = tmp_path_factory.mktemp("base") / "tiny-llama"
    tiny_llama().save_pretrained(folder)
    (folder / "README.md").write_text("---\nlicense: mit\ntags: [text-generation]\n---\n\n# A tiny Llama\n")
    return folder


@pytest.fixture(scope="module")
def quantized(base):
    model = EdgeLlamaForCausalLM.from_pretrained(base, context_length=64, ar_lengths=[16, 1])
    return model.quantize("w4-rtn")


@pytest.fixture(scope="module")
def saved(quantized, tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved") / "tiny-w4-rtn"
    quantized.save_pretrained(folder)
    return folder


def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text[4:].split("\n---\n", 1)[0])


def test_metadata_carries_the_base_license_and_names_the_recipe(saved):
    metadata = front_matter((saved / "README.md").read_text())
    assert metadata["library_name"] == "edge-llama"
    assert metadata["pipeline_tag"] == "text-generation"
    assert metadata["license"] == "mit"  # from the base folder's README.md
    assert {"edge-llama", "quantized", "w4-rtn"} <= set(metadata["tags"])
    assert card_metadata(saved)["license"] == "mit"  # and the next quantization of this folder reads it back


def test_preset_base_model_and_measured_perplexity(quantized, tmp_path):
    state = quantized.quantization
    saved_state = (state.base_model, state.license, state.perplexity)
    try:  # what quantizing the DEFAULT preset with --measure-ppl records, on the tiny model
        state.base_model, state.license = "HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0"
        state.perplexity = {"float": 20.0, "quantized": 25.0, "text": "boolq-passages", "tokens": 510, "context_length": 256}
        write_model_card(quantized, tmp_path)  # what save_pretrained writes, without the graphs
    finally:
        state.base_model, state.license, state.perplexity = saved_state
    text = (tmp_path / "README.md").read_text()
    metadata = front_matter(text)
    assert metadata["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert metadata["base_model_relation"] == "quantized"
    assert metadata["license"] == "apache-2.0"
    assert "(https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct)" in text
    assert "| perplexity (float → quantized) | 20.000 → 25.000 (+25.0 %) on 510 tokens of boolq-passages" in text


def test_the_cards_export_command_works(saved, tmp_path, capsys):
    text = (saved / "README.md").read_text()
    commands = [line.split("#")[0] for line in text.splitlines() if line.startswith("edge-llama export ")]
    assert commands and "--target onnx" in commands[0]
    argv = shlex.split(commands[0].replace("<this folder or repo id>", str(saved)))[1:]
    argv[argv.index("-o") + 1] = str(tmp_path / "exported")
    assert main([*argv, "-q"]) == 0, capsys.readouterr().err
    assert (tmp_path / "exported" / "model.data").is_file()


def test_push_to_hub_keeps_the_card(quantized, saved, tmp_path, monkeypatch):
    with LoopbackHub() as hub:
        point_hf_client_at(hub.endpoint, monkeypatch, tmp_path / "hf-cache")
        quantized.push_to_hub("edge-tests/tiny-w4-rtn-card", tags=["my-tag"])
        pulled = open(hf_hub_download("edge-tests/tiny-w4-rtn-card", "README.md", cache_dir=tmp_path / "dl")).read()
    metadata = front_matter(pulled)
    assert metadata["library_name"] == "edge-llama"  # not transformers' generic card
    assert {"w4-rtn", "my-tag"} <= set(metadata["tags"]) and metadata["license"] == "mit"
    assert pulled.split("\n---\n", 1)[1] == (saved / "README.md").read_text().split("\n---\n", 1)[1]
