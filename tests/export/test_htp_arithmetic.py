"""How the HTP simulator computes a convolution with 16-bit activations, measured on one 1×1 Conv.

`export(target="qnn", int4_as_int8=True)` exists because of what these tests pin down: HTP computes a
16-bit-activation convolution in units of 256 · s_x · s_w (s_x the input's step, s_w the weight's):
each output is off by up to ± 128 such units, every channel is further shifted low by 0-256 units
(about 128 on average), and a bias is cut to whole multiples of 256 units. The same weights stored
16× finer (int8 codes × 16, scale / 16) make the unit 16× smaller. If a QNN release changes this
arithmetic, these tests fail, and `int4_as_int8` and docs/export.md need another look.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_llama.export.qnn import qnn_session_options
from edge_llama.presets import find_device

INPUT_STEP, INPUT_ZERO = 3.0e-5, 24580  # a uint16 RMSNorm output of SmolLM2's first layer
CHANNELS_IN, CHANNELS_OUT, POSITIONS = 576, 64, 128
UNIT = 256  # accumulator units HTP drops


def _conv_graph(weights: np.ndarray, weight_scales: np.ndarray, bias_units: float, output_step: float, output_zero: int) -> onnx.ModelProto:
    data = {
        "input_scale": np.float32(INPUT_STEP), "input_zero": np.uint16(INPUT_ZERO),
        "weight": weights, "weight_scale": weight_scales.astype(np.float32), "weight_zero": np.zeros(CHANNELS_OUT, weights.dtype),
        "bias": (bias_units * INPUT_STEP * weight_scales.astype(np.float64)).astype(np.float32),
        "output_scale": np.float32(output_step), "output_zero": np.uint16(output_zero),
    }
    nodes = [
        helper.make_node("DequantizeLinear", ["codes", "input_scale", "input_zero"], ["x"]),
        helper.make_node("DequantizeLinear", ["weight", "weight_scale", "weight_zero"], ["w"], axis=0),
        helper.make_node("Conv", ["x", "w", "bias"], ["y"], kernel_shape=[1, 1]),
        helper.make_node("QuantizeLinear", ["y", "output_scale", "output_zero"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes, "conv",
        [helper.make_tensor_value_info("codes", TensorProto.UINT16, [1, CHANNELS_IN, 1, POSITIONS])],
        [helper.make_tensor_value_info("out", TensorProto.UINT16, [1, CHANNELS_OUT, 1, POSITIONS])],
        [numpy_helper.from_array(np.asarray(value), name) for name, value in data.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    return model


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(0)
    codes = np.clip(rng.normal(INPUT_ZERO, 4000, (1, CHANNELS_IN, 1, POSITIONS)).round(), 0, 65535).astype(np.uint16)
    int4 = rng.integers(-8, 8, (CHANNELS_OUT, CHANNELS_IN, 1, 1)).astype(np.int8)  # int4 values, int8 container
    scales = 0.02 * rng.uniform(0.5, 1.5, CHANNELS_OUT)
    x = (codes.astype(np.float64) - INPUT_ZERO) * INPUT_STEP
    exact = np.einsum("ok,bkht->boht", int4[:, :, 0, 0] * scales[:, None], x)
    output_step = 1.2 * (exact.max() - exact.min()) / 65535
    output_zero = int(round(-1.1 * exact.min() / output_step))
    return codes, int4, scales, exact, output_step, output_zero


def _on(provider: str, model: onnx.ModelProto, codes: np.ndarray, tmp_path) -> np.ndarray:
    path = tmp_path / f"conv_{provider}.onnx"
    onnx.save(model, str(path))
    if provider == "htp":
        session = ort.InferenceSession(str(path), sess_options=qnn_session_options(find_device("Snapdragon 8 Gen 3")))
    else:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"codes": codes})[0].astype(np.float64)


def _error_in_units(out: np.ndarray, case, scale_factor: int = 1) -> np.ndarray:
    """The output's error against exact arithmetic, in accumulator units of the int4 grid (s_x · s_w)."""
    _, _, scales, exact, output_step, output_zero = case
    steps = out - (exact / output_step + output_zero)
    return steps * output_step / (INPUT_STEP * scales[None, :, None, None])


def test_htp_computes_the_conv_in_units_of_256_and_comes_out_low(case, tmp_path):
    codes, int4, scales, _, output_step, output_zero = case
    model = _conv_graph(int4, scales, 0.0, output_step, output_zero)
    half_step = 0.5 * output_step / (INPUT_STEP * scales.min())  # the output grid's own rounding, in units
    on_cpu, on_htp = (_error_in_units(_on(p, model, codes, tmp_path), case) for p in ("cpu", "htp"))
    assert np.abs(on_cpu).max() <= half_step + 1  # the CPU EP rounds once, at the output
    assert np.abs(on_htp).max() > 2 * half_step  # HTP does not: errors of hundreds of units
    assert -1.5 * UNIT - half_step - 1 <= on_htp.min() and on_htp.max() <= 0.5 * UNIT + half_step + 1
    assert -0.6 * UNIT < on_htp.mean() < -0.4 * UNIT, on_htp.mean()  # about half a unit of 256 low on average
    per_channel = on_htp.mean(axis=(0, 2, 3))
    assert per_channel.max() - per_channel.min() > 0.5 * UNIT  # each channel its own shift


@pytest.mark.parametrize(("bias_units", "applied"), [(255, 0), (256, 256), (700, 512), (-255, 0), (-256, -256)])
def test_htp_cuts_a_conv_bias_to_whole_units_of_256(case, bias_units, applied, tmp_path):
    codes, int4, scales, _, output_step, output_zero = case
    without = _on("htp", _conv_graph(int4, scales, 0.0, output_step, output_zero), codes, tmp_path)
    with_bias = _on("htp", _conv_graph(int4, scales, bias_units, output_step, output_zero), codes, tmp_path)
    shift = (with_bias - without) * output_step / (INPUT_STEP * scales[None, :, None, None])
    assert abs(shift.mean() - applied) < 16, shift.mean()


def test_weights_stored_sixteen_times_finer_lose_sixteen_times_less(case, tmp_path):
    codes, int4, scales, _, output_step, output_zero = case
    narrow = _error_in_units(_on("htp", _conv_graph(int4, scales, 0.0, output_step, output_zero), codes, tmp_path), case)
    wide = _error_in_units(_on("htp", _conv_graph(int4 * 16, scales / 16, 0.0, output_step, output_zero), codes, tmp_path), case)
    half_step = 0.5 * output_step / (INPUT_STEP * scales.min())
    assert -1.5 * UNIT / 16 - half_step - 1 <= wide.min() and wide.max() <= 0.5 * UNIT / 16 + half_step + 1
    assert np.abs(wide).mean() < np.abs(narrow).mean() / 4, (np.abs(wide).mean(), np.abs(narrow).mean())
