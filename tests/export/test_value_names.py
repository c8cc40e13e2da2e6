"""Activation encodings name real values of the saved ONNX graphs, and the right ones."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
import pytest
import torch

from edge_llama.export.onnx_graphs import graph_file_name, io_names
from edge_llama.quantization.encodings import Encodings

from ..conftest import edge_from, tiny_llama


@pytest.fixture(scope="module")
def float_model():
    reference = tiny_llama(vocab_size=49152, hidden_size=128, intermediate_size=256, tie_word_embeddings=True)
    return edge_from(reference, context_length=64, ar_lengths=[16, 1])


@pytest.fixture(scope="module")
def w4a16_folder(float_model, default_tokenizer, tmp_path_factory):
    model = float_model.quantize("w4a16", tokenizer=default_tokenizer, num_samples=1, sequence_length=16, progress=False)
    folder = tmp_path_factory.mktemp("w4a16")
    model.save_pretrained(folder)
    return folder


def module_activations(model, graph, inputs, names):
    """What the torch graph computes at each `<module>:inputN/outputN` of `names`."""
    modules = dict(model.named_modules())
    captured, hooks = {}, []
    for name in names:
        module_name, _, slot = name.rpartition(":")
        if not module_name:
            continue

        def hook(module, args, output, name=name, slot=slot):
            index = int(slot.lstrip("inputo"))
            captured[name] = (args[index] if slot.startswith("input") else output).detach().clone()

        hooks.append(modules[module_name].register_forward_hook(hook))
    try:
        with torch.no_grad():
            graph(*inputs)
    finally:
        for handle in hooks:
            handle.remove()
    return captured


@pytest.mark.parametrize("ar_length", [16, 1])
def test_every_activation_encoding_is_the_named_graph_value(float_model, w4a16_folder, ar_length, tmp_path):
    names = list(Encodings.read(w4a16_folder / "model.encodings").activations)
    assert any(name.endswith(":output0") for name in names) and "logits" in names and "past_key_0_in" in names
    onnx_model = ir.load(str(w4a16_folder / graph_file_name(ar_length, 64)))
    values = {value.name: value for node in onnx_model.graph for value in node.outputs}
    graph_io = {value.name for value in (*onnx_model.graph.inputs, *onnx_model.graph.outputs)}
    missing = [name for name in names if name not in values and name not in graph_io]
    assert not missing, f"encodings without a graph value: {missing[:5]}"

    # Expose the named values and compare them with the torch modules' activations on the same input.
    internal = [name for name in names if name in values and name not in graph_io]
    assert "model.layers.1.self_attn.softmax.3:output0" in internal
    onnx_model.graph.outputs.extend(values[name] for name in internal)
    probe = w4a16_folder / f"probe_ar{ar_length}.onnx"
    ir.save(onnx_model, str(probe))
    graph = float_model.graph(ar_length).eval()
    torch.manual_seed(0)
    input_ids, mask, cos, sin, keys, values_in = graph.example_inputs()
    input_ids = torch.randint(3, 49152, input_ids.shape)
    keys, values_in = [torch.randn_like(k) for k in keys], [torch.randn_like(v) for v in values_in]
    inputs = (input_ids, mask, cos, sin, keys, values_in)
    expected = module_activations(float_model, graph, inputs, internal)
    session = ort.InferenceSession(str(probe), providers=["CPUExecutionProvider"])
    input_names, _ = io_names(float_model.config.num_hidden_layers)
    feeds = dict(zip(input_names, [t.numpy() for t in (input_ids, mask, cos, sin, *keys, *values_in)]))
    results = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    assert len(expected) == len(internal)
    for name in internal:
        want = expected[name].numpy()
        np.testing.assert_allclose(results[name].reshape(want.shape), want, rtol=1e-4, atol=1e-4, err_msg=name)
