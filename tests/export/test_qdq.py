"""The QDQ form of a saved graph computes what the quantization simulation computes."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edge_llama.export.onnx_graphs import io_names
from edge_llama.export.qdq import QdqError, quantize_weight, to_qdq
from edge_llama.quantization.encodings import Encodings, TensorEncoding

from ..conftest import edge_from, tiny_llama


@pytest.fixture(scope="module")
def models(default_tokenizer, tmp_path_factory):
    reference = tiny_llama(vocab_size=49152, hidden_size=128, intermediate_size=256)
    float_model = edge_from(reference, context_length=64, ar_lengths=[16, 1])
    quantized = float_model.quantize("w4a16", tokenizer=default_tokenizer, num_samples=2, sequence_length=32, progress=False)
    folder = tmp_path_factory.mktemp("w4a16")
    quantized.save_pretrained(folder)
    return float_model, quantized, folder


def run_graph(path, model, ar_length, seed=0):
    graph = model.graph(ar_length)
    input_ids, mask, cos, sin, keys, values = graph.example_inputs()
    torch.manual_seed(seed)
    input_ids = torch.randint(3, model.config.vocab_size, input_ids.shape)
    mask = torch.zeros_like(mask)
    keys, values = [torch.randn_like(k) * 0.5 for k in keys], [torch.randn_like(v) * 0.5 for v in values]
    inputs = (input_ids, mask, cos, sin, keys, values)
    options = ort.SessionOptions()
    # onnxruntime's QDQ propagation mistypes the int8 zero points it copies; the graph is run as written.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names, _ = io_names(model.config.num_hidden_layers)
    feeds = dict(zip(names, [t.numpy() for t in (input_ids, mask, cos, sin, *keys, *values)]))
    logits = session.run(["logits"], feeds)[0]
    return logits, inputs


@pytest.mark.parametrize("ar_length", [16, 1])
def test_qdq_graph_matches_the_simulation(models, ar_length, tmp_path):
    float_model, quantized, folder = models
    encodings = Encodings.read(folder / "model.encodings")
    path = to_qdq(folder / f"model_ar{ar_length}_cl64.onnx", encodings, tmp_path / "qdq.onnx")
    logits, inputs = run_graph(path, quantized, ar_length)
    with torch.no_grad():
        simulated = quantized.graph_forward(*inputs)[0].numpy()
        floating = float_model.graph_forward(*inputs)[0].numpy()
    error = np.abs(logits - simulated).max() / np.abs(simulated).max()
    assert error < 0.01, error
    assert np.abs(floating - simulated).max() / np.abs(simulated).max() > 10 * error  # it is the quantized function
    assert (logits.argmax(-1) == simulated.argmax(-1)).mean() >= 0.9


def test_qdq_graph_stores_integer_weights(models, tmp_path):
    _, _, folder = models
    path = to_qdq(folder / "model_ar1_cl64.onnx", Encodings.read(folder / "model.encodings"), tmp_path / "qdq.onnx")
    graph = onnx.load(str(path)).graph
    types = {init.name: init.data_type for init in graph.initializer}
    assert types["model.layers.0.mlp.down_proj.weight_quantized"] == onnx.TensorProto.INT4
    assert types["lm_head.weight_quantized"] == onnx.TensorProto.INT8
    assert not any(init.data_type == onnx.TensorProto.FLOAT and init.name.endswith("proj.weight") for init in graph.initializer)
    ops = [node.op_type for node in graph.node]
    assert ops.count("QuantizeLinear") > 50 and "DequantizeLinear" in ops



def test_int4_as_int8_stores_the_same_weights_sixteen_times_finer(models, tmp_path):
    _, quantized, folder = models
    encodings = Encodings.read(folder / "model.encodings")
    narrow = to_qdq(folder / "model_ar16_cl64.onnx", encodings, tmp_path / "int4.onnx")
    wide = to_qdq(folder / "model_ar16_cl64.onnx", encodings, tmp_path / "int8.onnx", int4_as_int8=True)
    initializers = [{init.name: init for init in onnx.load(str(path)).graph.initializer} for path in (narrow, wide)]
    name = "model.layers.0.mlp.down_proj.weight"
    before, after = ({key: onnx.numpy_helper.to_array(init[f"{name}_{key}"]) for key in ("quantized", "scale")} for init in initializers)
    assert initializers[0][f"{name}_quantized"].data_type == onnx.TensorProto.INT4
    assert initializers[1][f"{name}_quantized"].data_type == onnx.TensorProto.INT8
    np.testing.assert_array_equal(after["quantized"].astype(np.int16), before["quantized"].astype(np.int16) * 16)
    np.testing.assert_array_equal(after["scale"] * 16, before["scale"])
    assert not any(init.data_type == onnx.TensorProto.INT4 for init in initializers[1].values())
    narrow_logits, _ = run_graph(narrow, quantized, 16)
    wide_logits, _ = run_graph(wide, quantized, 16)
    np.testing.assert_array_equal(wide_logits, narrow_logits)  # the same real weights: the same function

def test_rms_norms_become_one_quantized_node(models, tmp_path):
    """HTP runs a decomposed RMSNorm's float ops in fp16, where the squares of massive activations
    overflow; every norm must reach it as one RMSNormalization between Q/DQ pairs."""
    float_model, _, folder = models
    path = to_qdq(folder / "model_ar1_cl64.onnx", Encodings.read(folder / "model.encodings"), tmp_path / "qdq.onnx")
    graph = onnx.load(str(path)).graph
    ops = [node.op_type for node in graph.node]
    norms = 2 * float_model.config.num_hidden_layers + 1
    # The first one too: it reads the embedding (the residual stream's start, rounded to fp16) through
    # the NCHW layout's Transpose and Unsqueeze. Left decomposed, HTP computed it in fp16 of its own: on
    # SmolLM2 23 % of its 16-bit codes differed from the CPU's, by up to 41 steps (benchmarks/htp_op_probe.py).
    assert ops.count("RMSNormalization") == norms
    assert ops.count("Pow") == 0 and ops.count("Sqrt") == 0
    producers = {output: node for node in graph.node for output in node.output}
    consumers = {name: node for node in graph.node for name in node.input}
    for node in graph.node:
        if node.op_type == "RMSNormalization":
            # The input: the residual stream's fp16 rounding (w4a16 keeps it in fp16), the output quantized.
            source = producers[node.input[0]]
            while source.op_type in ("Transpose", "Unsqueeze"):  # to channels last; the embedding's NCHW layout
                source = producers[source.input[0]]
            assert source.op_type == "Cast" and source.input[0].endswith("_fp16"), source.op_type
            assert consumers[node.output[0]].op_type in ("QuantizeLinear", "Transpose")


def test_the_residual_stream_is_rounded_to_fp16(models, tmp_path):
    """w4a16's residual adds carry FLOAT 16 encodings: a Cast pair each in the QDQ graph, no 16-bit grid."""
    float_model, _, folder = models
    encodings = Encodings.read(folder / "model.encodings")
    residuals = [name for name in encodings.activations if "_residual:" in name]
    assert len(residuals) == 2 * float_model.config.num_hidden_layers
    residuals.append("model.embed_tokens:output0")  # where the stream starts
    assert all(encodings.activations[name].is_float and encodings.activations[name].bw == 16 for name in residuals)
    graph = onnx.load(str(to_qdq(folder / "model_ar1_cl64.onnx", encodings, tmp_path / "qdq.onnx"))).graph
    halves = [node for node in graph.node if node.op_type == "Cast" and node.attribute[0].i == onnx.TensorProto.FLOAT16]
    assert sorted(node.input[0] for node in halves) == sorted(residuals)
    assert not any(node.op_type == "QuantizeLinear" and "_residual" in node.input[0] for node in graph.node)


def test_weight_codes_follow_the_aimet_convention():
    weight = np.array([[0.5, -1.0, 0.26], [2.0, 0.0, -2.0]], dtype=np.float32)
    symmetric = TensorEncoding("w", "PER_CHANNEL", 4, True, [0.25, 0.5], [-8, -8])
    codes, scale, zero, _ = quantize_weight(weight, symmetric)
    assert codes.tolist() == [[2, -4, 1], [4, 0, -4]] and list(zero) == [0, 0]
    asymmetric = TensorEncoding("w", "PER_TENSOR", 8, False, [0.1], [-20])
    codes, _, zero, _ = quantize_weight(weight, asymmetric)
    assert zero == 20 and codes[1, 1] == 20 and codes[0, 0] == 25  # x = scale · (q + offset)


@pytest.mark.parametrize("granularity", ["PER_CHANNEL", "PER_TENSOR"])
def test_weights_half_a_step_between_codes_round_as_the_simulation_does(granularity):
    """A weight exactly between two codes (SmolLM2 layer 0 q_proj head 6: 0.41973877 / 0.11992536 =
    3.5) is where division and aimet's multiplication by the reciprocal part ways."""
    from aimet_torch.quantization.affine import QuantizeDequantize

    rng = np.random.default_rng(0)
    channels = 64
    count = 1 if granularity == "PER_TENSOR" else channels
    quantizer = QuantizeDequantize(shape=(count, 1), bitwidth=4, symmetric=True)
    wanted = torch.tensor(rng.uniform(0.01, 0.3, (count, 1)), dtype=torch.float32)
    wanted[0, 0] = 0.1199253648519516
    with torch.no_grad():
        quantizer.set_range(-8 * wanted, 7 * wanted)
        scales = quantizer.get_scale().flatten().numpy() * np.ones(channels, dtype=np.float32)
    halves = rng.integers(-8, 7, (channels, 96)) + 0.5
    weight = (halves * scales[:, None]).astype(np.float32)  # on the half-steps, up to float32 rounding
    weight[0, 0] = 0.41973876953125
    encoding = TensorEncoding("w", granularity, 4, True, scales[:count].tolist(), [-8] * count)
    with torch.no_grad():
        simulated = quantizer(torch.from_numpy(weight)).numpy()
    codes, scale, zero, _ = quantize_weight(weight, encoding)
    exported = (codes.astype(np.float32) - np.reshape(zero, (-1, 1))) * np.reshape(scale, (-1, 1))
    assert np.abs(exported - simulated).max() <= 1e-6  # every code equal (one step is ≥ 0.01)
    division = np.round(weight / np.reshape(scale, (-1, 1)))
    assert (np.clip(division, -8, 7) != codes).any()  # the ties are really there


def test_wrong_channel_count_is_named():
    encoding = TensorEncoding("model.layers.0.mlp.up_proj.weight", "PER_CHANNEL", 4, True, [0.1] * 3, [-8] * 3)
    with pytest.raises(QdqError, match="up_proj.weight: 3 scales for a weight with 2 output channels"):
        quantize_weight(np.zeros((2, 4), dtype=np.float32), encoding)
