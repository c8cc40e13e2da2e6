"""Graphs built from two traced layers and repeats (`layer_repeat`) are the graphs a full trace gives."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edge_llama.export import layer_repeat
from edge_llama.export.onnx_graphs import export_onnx_graphs
from edge_llama.export.value_names import module_boundaries

from ..conftest import edge_from, tiny_llama

CL, AR, LAYERS = 64, 16, 4


@pytest.fixture(scope="module")
def model():
    return edge_from(tiny_llama(num_hidden_layers=LAYERS), context_length=CL, ar_lengths=[AR, 1])


def activation_names(model) -> list[str]:
    """Every module output of the last two layers, as AIMET would name their encodings."""
    modules = [name for name, _ in model.named_modules() if name.startswith((f"model.layers.{LAYERS - 2}.", f"model.layers.{LAYERS - 1}."))]
    leaves = [name for name in modules if not any(other.startswith(name + ".") for other in modules)]
    return [f"{name}:output0" for name in leaves]


@pytest.fixture(scope="module")
def graphs(model, tmp_path_factory):
    """The same export twice: with the layers repeated (the default), and every layer traced."""
    names = activation_names(model)
    repeated = export_onnx_graphs(model, tmp_path_factory.mktemp("repeated"), activation_names=names)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(layer_repeat, "MIN_LAYERS", 10**6)
        traced = export_onnx_graphs(model, tmp_path_factory.mktemp("traced"), activation_names=names)
    return repeated, traced


def filled_inputs(model, ar_length):
    torch.manual_seed(ar_length)
    input_ids, mask, cos, sin, keys, values = model.graph(ar_length).example_inputs()
    input_ids = torch.randint(3, model.config.vocab_size, input_ids.shape)
    return [input_ids, mask, cos, sin, *(torch.randn_like(k) for k in keys), *(torch.randn_like(v) for v in values)]


@pytest.mark.parametrize("ar_length", [AR, 1])
def test_repeated_graph_computes_what_the_traced_one_does(model, graphs, ar_length):
    inputs = filled_inputs(model, ar_length)
    results = []
    for paths in graphs:
        session = ort.InferenceSession(str(paths[ar_length]), providers=["CPUExecutionProvider"])
        names = [value.name for value in session.get_inputs()]
        outputs = session.run(None, {name: tensor.numpy() for name, tensor in zip(names, inputs)})
        results.append((names, [value.name for value in session.get_outputs()], outputs))
    (names, output_names, repeated), (traced_names, traced_output_names, traced) = results
    assert names == traced_names and output_names == traced_output_names
    assert len(repeated) == 1 + 2 * LAYERS
    for name, a, b in zip(output_names, repeated, traced):
        assert np.array_equal(a, b), name
    with torch.no_grad():
        logits = model.graph_forward(*inputs[:4], inputs[4 : 4 + LAYERS], inputs[4 + LAYERS :])[0]
    np.testing.assert_allclose(repeated[0], logits.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("ar_length", [AR, 1])
def test_repeated_graph_has_the_traced_ops_weights_and_encoded_values(graphs, ar_length):
    repeated, traced = (onnx.load(str(paths[ar_length]), load_external_data=False).graph for paths in graphs)
    assert Counter(node.op_type for node in repeated.node) == Counter(node.op_type for node in traced.node)
    assert {init.name: list(init.dims) for init in repeated.initializer} == {init.name: list(init.dims) for init in traced.initializer}
    assert any(init.name.startswith(f"model.layers.{LAYERS - 1}.") for init in repeated.initializer)

    def producers(graph):  # every encoded value → the op that makes it
        return {output: node.op_type for node in graph.node for output in node.output if ":" in output}

    encoded = producers(repeated)
    assert encoded == producers(traced)
    assert f"model.layers.{LAYERS - 1}.mlp.down_proj:output0" in encoded


def test_repeated_layers_keep_their_module_scopes(model, tmp_path):
    """Clones carry their own layer's scope, so value naming (and so encodings) finds every module of every layer."""
    import onnx_ir as ir

    boundaries = []
    for repeat in (True, False):
        with pytest.MonkeyPatch.context() as patch:
            if not repeat:
                patch.setattr(layer_repeat, "MIN_LAYERS", 10**6)
            paths = export_onnx_graphs(model, tmp_path / str(repeat), keep_metadata=True)
        scopes = module_boundaries(ir.load(str(paths[1])).graph, scope_prefix="model.")
        boundaries.append({scope: (len(b.inputs), len(b.outputs)) for scope, b in scopes.items()})
    repeated, traced = boundaries
    assert repeated == traced
    assert f"model.layers.{LAYERS - 1}.self_attn" in repeated


def test_layers_of_different_structure_are_traced_whole(tmp_path):
    """A repeat of layer 1 would put back the norm layer 2 lacks, and the logits would differ."""
    model = edge_from(tiny_llama(num_hidden_layers=3), context_length=CL, ar_lengths=[AR, 1])
    model.model.layers[2].post_attention_layernorm = torch.nn.Identity()
    paths = export_onnx_graphs(model, tmp_path)
    inputs = filled_inputs(model, 1)
    session = ort.InferenceSession(str(paths[1]), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {value.name: t.numpy() for value, t in zip(session.get_inputs(), inputs)})[0]
    with torch.no_grad():
        expected = model.graph_forward(*inputs[:4], inputs[4:7], inputs[7:])[0]
    np.testing.assert_allclose(logits, expected.numpy(), rtol=1e-4, atol=1e-4)


def test_quantized_folder_gives_the_same_qdq_graph_either_way(default_tokenizer, tmp_path):
    """The QNN path (saved graph + encodings → QDQ) computes bit for bit the same from a repeated export."""
    from edge_llama.export.qdq import to_qdq
    from edge_llama.quantization.encodings import Encodings

    reference = tiny_llama(vocab_size=49152, hidden_size=128, intermediate_size=256, num_hidden_layers=LAYERS)
    model = edge_from(reference, context_length=CL, ar_lengths=[AR, 1])
    quantized = model.quantize("w4a16", tokenizer=default_tokenizer, num_samples=1, sequence_length=16, progress=False)
    folders = [tmp_path / "repeated", tmp_path / "traced"]
    quantized.save_pretrained(folders[0])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(layer_repeat, "MIN_LAYERS", 10**6)
        quantized.save_pretrained(folders[1])
    assert (folders[0] / "model.encodings").read_bytes() == (folders[1] / "model.encodings").read_bytes()
    inputs = filled_inputs(model, AR)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the graph as written (see test_qdq)
    logits = []
    for folder in folders:
        qdq = to_qdq(folder / f"model_ar{AR}_cl{CL}.onnx", Encodings.read(folder / "model.encodings"), folder / "qdq.onnx")
        session = ort.InferenceSession(str(qdq), options, providers=["CPUExecutionProvider"])
        feeds = {value.name: tensor.numpy() for value, tensor in zip(session.get_inputs(), inputs)}
        logits.append(session.run(["logits"], feeds)[0])
    assert np.array_equal(*logits)
