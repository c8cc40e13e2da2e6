"""`export(target="onnx")`: per-part graphs that chain to the model, one model.data, per-part encodings."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edge_llama import EdgeLlamaConfig
from edge_llama.export import ExportError
from edge_llama.quantization.encodings import Encodings

from ..conftest import edge_from, tiny_llama

CL, AR = 64, 16


@pytest.fixture(scope="module")
def float_model():
    # Five layers: part 2 of 3 holds three, so its graphs are built by repeating a traced layer (layer_repeat).
    reference = tiny_llama(vocab_size=49152, hidden_size=128, intermediate_size=256, num_hidden_layers=5, tie_word_embeddings=True)
    return edge_from(reference, context_length=CL, ar_lengths=[AR, 1])


@pytest.fixture(scope="module")
def w4a16(float_model, default_tokenizer):
    return float_model.quantize("w4a16", tokenizer=default_tokenizer, num_samples=1, sequence_length=16, progress=False)


@pytest.fixture(scope="module")
def exported(w4a16, tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx") / "w4a16-onnx"
    w4a16.export("onnx", folder, parts=3)
    return folder


def filled_inputs(model, ar_length):
    input_ids, mask, cos, sin, keys, values = model.graph(ar_length).example_inputs()
    torch.manual_seed(0)
    input_ids = torch.randint(3, model.config.vocab_size, input_ids.shape)
    return input_ids, torch.zeros_like(mask), cos, sin, [torch.randn_like(k) for k in keys], [torch.randn_like(v) for v in values]


def test_folder_holds_every_part_and_ar_and_one_model_data(exported):
    names = {path.name for path in exported.iterdir()}
    for part in range(1, 4):
        assert f"part_{part}_of_3.encodings" in names
        for ar in (AR, 1):
            assert f"part_{part}_of_3_ar{ar}_cl{CL}.onnx" in names
    assert [name for name in names if name.endswith(".data")] == ["model.data"]
    assert EdgeLlamaConfig.from_pretrained(exported).num_parts == 3
    for graph_path in exported.glob("*.onnx"):
        graph = onnx.load(str(graph_path), load_external_data=False).graph
        locations = {entry.value for init in graph.initializer for entry in init.external_data if entry.key == "location"}
        assert locations <= {"model.data"}


@pytest.mark.parametrize("ar_length", [AR, 1])
def test_parts_chained_in_onnxruntime_equal_the_float_graph(float_model, exported, ar_length):
    inputs = filled_inputs(float_model, ar_length)
    with torch.no_grad():
        logits, keys, values = float_model.graph_forward(*inputs)
    layers = float_model.config.num_hidden_layers
    tensors = {"input_ids": inputs[0], "attention_mask": inputs[1], "position_cos": inputs[2], "position_sin": inputs[3]}
    for layer in range(layers):
        tensors[f"past_key_{layer}_in"], tensors[f"past_value_{layer}_in"] = inputs[4][layer], inputs[5][layer]
    tensors = {name: tensor.numpy() for name, tensor in tensors.items()}
    for part in range(1, 4):
        session = ort.InferenceSession(str(exported / f"part_{part}_of_3_ar{ar_length}_cl{CL}.onnx"), providers=["CPUExecutionProvider"])
        feeds = {i.name: tensors[i.name] for i in session.get_inputs()}
        tensors.update(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    np.testing.assert_allclose(tensors["logits"], logits.numpy(), rtol=1e-4, atol=1e-4)
    for layer in range(layers):
        np.testing.assert_allclose(tensors[f"past_key_{layer}_out"], keys[layer].numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(tensors[f"past_value_{layer}_out"], values[layer].numpy(), rtol=1e-4, atol=1e-4)


def test_each_part_carries_its_own_encodings(w4a16, exported):
    from edge_llama.quantization.engines import get_engine

    whole = get_engine("aimet").encodings(w4a16)
    union: set[str] = set()
    for part in range(1, 4):
        encodings = Encodings.read(exported / f"part_{part}_of_3.encodings")
        union |= set(encodings.params)
        for ar in (AR, 1):
            graph = onnx.load(str(exported / f"part_{part}_of_3_ar{ar}_cl{CL}.onnx"), load_external_data=False).graph
            values = {o for node in graph.node for o in node.output} | {v.name for v in graph.input}
            weights = {init.name for init in graph.initializer}
            assert set(encodings.activations) <= values, sorted(set(encodings.activations) - values)[:3]
            assert set(encodings.params) <= weights
    assert union == set(whole.params)
    first, second, third = (Encodings.read(exported / f"part_{p}_of_3.encodings") for p in (1, 2, 3))
    # The tensors crossing a cut carry one encoding on both sides.
    assert first.activations["hidden_states_0"].to_json() | {"name": ""} == second.activations["hidden_states_0"].to_json() | {"name": ""}
    assert second.activations["hidden_states_3"].scale == third.activations["hidden_states_3"].scale
    assert second.activations["hidden_states_3"].scale == whole.activations["model.layers.2.mlp_residual:output0"].scale
    assert "lm_head.weight" in third.params and third.params["lm_head.weight"].bw == 8
    assert "past_key_3_in" in third.activations and "past_key_3_in" not in second.activations
    assert "past_key_2_in" in second.activations and "model.layers.2.mlp.down_proj:output0" in second.activations


def test_float_model_exports_without_encodings(float_model, tmp_path):
    float_model.export("onnx", tmp_path / "float", parts=2)
    assert not list((tmp_path / "float").glob("*.encodings"))
    assert len(list((tmp_path / "float").glob("*.onnx"))) == 4


def test_unknown_target_is_named(float_model, tmp_path):
    with pytest.raises(ExportError, match="unknown export target 'tflite'; available: onnx"):
        float_model.export("tflite", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_config_json_records_the_split(exported):
    config = json.loads((exported / "config.json").read_text())
    assert config["num_parts"] == 3 and config["context_length"] == CL and "quantization_config" not in config
    assert config["edge_llama_export"]["recipe"]["recipe"] == "w4a16"
    assert len(config["edge_llama_export"]["graphs"]) == 6
