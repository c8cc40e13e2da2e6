"""The quantized checkpoint folder: round trip, the loopback Hub, and every kind of broken folder."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaForCausalLM

from edge_llama import EdgeLlamaConfigError, EdgeLlamaError, EdgeLlamaForCausalLM
from edge_llama.export.onnx_graphs import GraphMismatchError
from edge_llama.quantization.encodings import EncodingsError
from edge_llama.serialization.model_data import ModelDataError

from ..conftest import edge_from, tiny_llama
from ..loopback_hub import LoopbackHub, point_hf_client_at


@pytest.fixture(scope="module")
def quantized():
    model = edge_from(tiny_llama(tie_word_embeddings=True), context_length=64, ar_lengths=[16, 1])
    return model.quantize("w4-rtn")


@pytest.fixture(scope="module")
def saved(quantized, tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved") / "w4-rtn"
    quantized.save_pretrained(folder)
    return folder


@pytest.fixture
def copy_of(saved, tmp_path):
    def make():
        target = tmp_path / "copy"
        shutil.copytree(saved, target)
        return target

    return make


def logits(model, seed=0):
    torch.manual_seed(seed)
    ids = torch.randint(3, 160, (1, 37))
    with torch.no_grad():
        return model(ids).logits


def test_folder_layout(saved):
    names = {p.name for p in saved.iterdir()}
    assert {"config.json", "generation_config.json", "model.encodings", "model.data", "README.md",
            "model_ar16_cl64.onnx", "model_ar1_cl64.onnx"} <= names
    config = json.loads((saved / "config.json").read_text())
    assert config["model_type"] == "edge_llama"
    assert config["quantization_config"]["quant_method"] == "edge_llama"
    assert config["quantization_config"]["recipe"] == "w4-rtn"
    card = (saved / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: edge-llama" in card and "w4-rtn" in card


def test_round_trip_is_bit_identical(quantized, saved):
    again = EdgeLlamaForCausalLM.from_pretrained(saved)
    assert again.quantization.recipe == quantized.quantization.recipe
    assert torch.equal(logits(again), logits(quantized))
    auto = AutoModelForCausalLM.from_pretrained(saved)
    assert type(auto) is EdgeLlamaForCausalLM and torch.equal(logits(auto), logits(quantized))


def test_plain_transformers_refuses_instead_of_loading_float(saved):
    with pytest.raises(EdgeLlamaError, match="quantized by edge-llama"):
        LlamaForCausalLM.from_pretrained(saved)


def test_demo_style_load_with_defaults_works(saved):
    assert EdgeLlamaForCausalLM.from_pretrained(saved, context_length=None).quantization is not None


def test_geometry_cannot_change_on_load(saved):
    with pytest.raises(EdgeLlamaConfigError, match="fixed graphs"):
        EdgeLlamaForCausalLM.from_pretrained(saved, context_length=128)


def test_push_to_hub_and_back_through_the_loopback_hub(quantized, saved, tmp_path, monkeypatch):
    with LoopbackHub() as hub:
        point_hf_client_at(hub.endpoint, monkeypatch, tmp_path / "hf-cache")
        quantized.push_to_hub("edge-tests/tiny-w4-rtn")
        pulled = EdgeLlamaForCausalLM.from_pretrained("edge-tests/tiny-w4-rtn", cache_dir=str(tmp_path / "download"))
    assert torch.equal(logits(pulled), logits(quantized))
    assert {p.name for p in saved.iterdir()} <= set(os.listdir(pulled.name_or_path))


def _edit_encodings(folder, edit):
    path = folder / "model.encodings"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_missing_encoding_is_named(copy_of):
    folder = copy_of()
    _edit_encodings(folder, lambda d: d["param_encodings"].pop(0))
    with pytest.raises(EncodingsError, match=r"no encoding for 1 quantized weight.*model.layers.0.self_attn.q_proj.0.weight"):
        EdgeLlamaForCausalLM.from_pretrained(folder)


def test_extra_encoding_is_named(copy_of):
    folder = copy_of()
    _edit_encodings(folder, lambda d: d["param_encodings"].append({**d["param_encodings"][0], "name": "model.ghost.weight"}))
    with pytest.raises(EncodingsError, match="model.ghost.weight"):
        EdgeLlamaForCausalLM.from_pretrained(folder)


def test_wrong_channel_count_is_named(copy_of):
    folder = copy_of()

    def drop_channel(data):
        entry = data["param_encodings"][0]
        entry["scale"], entry["offset"] = entry["scale"][:-1], entry["offset"][:-1]

    _edit_encodings(folder, drop_channel)
    with pytest.raises(EncodingsError, match="q_proj.0.weight has 64 output channels but its encoding has 63 scales"):
        EdgeLlamaForCausalLM.from_pretrained(folder)


def test_truncated_model_data_is_named(copy_of):
    folder = copy_of()
    data = folder / "model.data"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    with pytest.raises(ModelDataError, match=r"model.data: tensor '.*' needs bytes .* truncated"):
        EdgeLlamaForCausalLM.from_pretrained(folder)


def test_config_that_does_not_match_the_graphs(copy_of):
    folder = copy_of()
    config = json.loads((folder / "config.json").read_text())
    config["context_length"] = 128
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(GraphMismatchError, match="model_ar16_cl128.onnx should exist"):
        EdgeLlamaForCausalLM.from_pretrained(folder)
    config["context_length"] = 64
    config["num_hidden_layers"] = 3
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(GraphMismatchError, match="do not match the config's 3 layers"):
        EdgeLlamaForCausalLM.from_pretrained(folder)


def test_weights_outside_the_folder_are_refused(copy_of):
    import onnx

    folder = copy_of()
    path = folder / "model_ar1_cl64.onnx"
    graph = onnx.load(str(path), load_external_data=False)
    for initializer in graph.graph.initializer:
        for entry in initializer.external_data:
            if entry.key == "location":
                entry.value = "../elsewhere.data"
        break
    onnx.save(graph, str(path))
    with pytest.raises(ModelDataError, match="may only live in model.data"):
        EdgeLlamaForCausalLM.from_pretrained(folder)


def test_failed_save_leaves_the_previous_folder_intact(quantized, saved, tmp_path, monkeypatch):
    import edge_llama.serialization.quantized_folder as folder_module

    target = tmp_path / "target"
    shutil.copytree(saved, target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}

    def fail_midway(model, folder):
        raise OSError("disk full (injected)")

    monkeypatch.setattr(folder_module, "write_model_card", fail_midway, raising=False)
    monkeypatch.setattr("edge_llama.model_card.write_model_card", fail_midway)
    with pytest.raises(OSError, match="injected"):
        quantized.save_pretrained(target)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    fresh = tmp_path / "fresh"
    with pytest.raises(OSError, match="injected"):
        quantized.save_pretrained(fresh)
    assert not fresh.exists()
