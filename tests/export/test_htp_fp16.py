"""HTP runs an fp16 residual stream as the host does, massive activations included (the QNN recipes'
`residual_stream: float16`): float adds between dequantized inputs, then an RMSNorm on the float sum,
its output quantized to 16 bits."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_llama.export.qnn import qnn_session_options
from edge_llama.presets import find_device

ROWS, CHANNELS, MASSIVE = 8, 64, 25_000.0


def _uint16_grid(values: np.ndarray) -> tuple[np.float32, np.uint16]:
    low, high = min(float(values.min()), 0.0), max(float(values.max()), 0.0)
    scale = (high - low) / 65535
    return np.float32(scale), np.uint16(round(-low / scale))


def _quantize(values, scale, zero):
    return np.clip(np.round(values / scale) + zero, 0, 65535).astype(np.uint16)


def _residual_graph(residual, update, weight, normed) -> onnx.ModelProto:
    """`norm(residual + update + update)` with every input on a uint16 grid and the output too; the
    sums stay float (fp16 on HTP) and pass through a Cast pair as the QDQ writer emits them."""
    grids = {"r": _uint16_grid(residual), "u": _uint16_grid(update), "w": _uint16_grid(weight), "o": _uint16_grid(normed)}
    initializers = [numpy_helper.from_array(_quantize(weight, *grids["w"]), "w_q")]
    for key, (scale, zero) in grids.items():
        initializers += [numpy_helper.from_array(np.array(scale), f"{key}_scale"), numpy_helper.from_array(np.array(zero), f"{key}_zero")]
    node = helper.make_node
    nodes = [
        node("DequantizeLinear", ["r_q", "r_scale", "r_zero"], ["r"]),
        node("DequantizeLinear", ["u_q", "u_scale", "u_zero"], ["u"]),
        node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"]),
        node("Add", ["r", "u"], ["s1"]),
        node("Cast", ["s1"], ["s1_fp16"], to=TensorProto.FLOAT16),
        node("Cast", ["s1_fp16"], ["s1_rounded"], to=TensorProto.FLOAT),
        node("Add", ["s1_rounded", "u"], ["s2"]),
        node("Cast", ["s2"], ["s2_fp16"], to=TensorProto.FLOAT16),
        node("Cast", ["s2_fp16"], ["s2_rounded"], to=TensorProto.FLOAT),
        node("RMSNormalization", ["s2_rounded", "w"], ["normed"], axis=-1, epsilon=1e-5),
        node("QuantizeLinear", ["normed", "o_scale", "o_zero"], ["out"]),
    ]
    shape = [ROWS, CHANNELS]
    graph = helper.make_graph(
        nodes, "fp16_residual",
        [helper.make_tensor_value_info("r_q", TensorProto.UINT16, shape), helper.make_tensor_value_info("u_q", TensorProto.UINT16, shape)],
        [helper.make_tensor_value_info("out", TensorProto.UINT16, shape)], initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)]), grids


def _rms_norm(x, weight):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-5) * weight


@pytest.mark.parametrize("device", ["Snapdragon 8 Gen 3", "Snapdragon 8 Gen 2"])
def test_an_fp16_residual_stream_with_a_massive_activation_runs_on_htp_like_the_host(device, tmp_path):
    rng = np.random.default_rng(0)
    residual = rng.normal(0, 3, (ROWS, CHANNELS)).astype(np.float32)
    residual[0, 5] = MASSIVE  # the attention-sink token's channel
    update = rng.normal(0, 1, (ROWS, CHANNELS)).astype(np.float32)
    weight = rng.uniform(0.5, 1.5, CHANNELS).astype(np.float32)
    model, grids = _residual_graph(residual, update, weight, 1.05 * _rms_norm(residual + 2 * update, weight))  # no clipping
    path = tmp_path / "fp16_residual.onnx"
    onnx.save(model, path)
    feeds = {"r_q": _quantize(residual, *grids["r"]), "u_q": _quantize(update, *grids["u"])}

    on_cpu = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    on_htp = ort.InferenceSession(str(path), sess_options=qnn_session_options(find_device(device))).run(None, feeds)[0]

    def real(codes, key="o"):
        scale, zero = grids[key]
        return (codes.astype(np.float32) - zero) * scale

    # The host's computation: the same dequantized inputs, sums rounded to fp16, float32 norm.
    r, u = real(feeds["r_q"], "r"), real(feeds["u_q"], "u")
    stream = ((r + u).astype(np.float16).astype(np.float32) + u).astype(np.float16).astype(np.float32)
    expected = _rms_norm(stream, real(_quantize(weight, *grids["w"]), "w"))
    step = grids["o"][0]
    assert np.abs(real(on_cpu) - expected).max() <= 1.01 * step  # onnxruntime's CPU EP: within a rounding
    # HTP keeps the sink row exact (its x² would overflow fp16 if the norm squared in fp16) and the
    # ordinary rows within the fp16 arithmetic of the norm itself.
    assert np.abs(real(on_htp) - expected)[0].max() <= 4 * step
    ordinary = np.abs(real(on_htp) - expected)[1:]
    assert ordinary.max() <= 0.01 * np.abs(expected[1:]).max(), ordinary.max()
