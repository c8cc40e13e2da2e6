"""A float graph plus its AIMET encodings → the same graph in QDQ form.

QNN's HTP backend (through onnxruntime-qnn) compiles quantized graphs written the ONNX way: each
quantized activation passes through `QuantizeLinear → DequantizeLinear`, each quantized weight is
stored as integers behind a `DequantizeLinear`. ONNX Runtime's CPU EP runs the same graph, which
makes it the host-side check of what the NPU will compute.

Conventions: AIMET writes `x = scale · (q + offset)` on an unsigned grid; ONNX reads
`x = (q - zero_point) · scale`. Symmetric encodings become signed types with zero point 0
(int4/int8/int16), asymmetric ones unsigned types with `zero_point = -offset`. Weights are
quantized per tensor or per output channel (axis 0); block and LPBQ weights use the blocked
`DequantizeLinear` of opset 21.

RMSNorms: the exporter writes them as `Pow → ReduceMean → Add → Sqrt → Reciprocal → Mul → Mul`
with only their input and output quantized. HTP runs such unquantized float ops in fp16, where the
squares of the massive activations real Llamas carry (|x| ≈ 750 on SmolLM2's attention-sink token,
x² ≈ 5.7e5 > 65504) saturate: the RMS comes out too small, the sink's normalized state is off by
~1.8× and attention turns to garbage. So each RMSNorm becomes one `RMSNormalization` (opset 23)
node between QDQ pairs, which HTP runs as its quantized RmsNorm (within 1 LSB of ORT's CPU).

4-bit weights on HTP (`int4_as_int8`): HTP computes a convolution with 16-bit activations in units
of 256 · s_x · s_w (s_x the input's step, s_w the weight's): each output is off by up to ± 128
units, each channel shifted low by 0-256 more, and a bias is cut to whole multiples of 256 units
(tests/export/test_htp_arithmetic.py measures this). With int4 weights s_w is coarse: on SmolLM2
that is 3-25 steps of the output's 16-bit grid, mostly downwards. Storing the same weights as int8
codes × 16 with scale / 16 (the same real values, exact) makes the unit 16× finer, at twice the
bytes per weight. Embedding tables (read by `Gather`, no accumulator) stay 4-bit.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from ..errors import EdgeLlamaError
from ..quantization.encodings import INT4_TO_INT8, Encodings, TensorEncoding

OPSET = 21
RMS_NORM_OPSET = 23  # RMSNormalization


class QdqError(EdgeLlamaError, ValueError):
    """An encoding cannot be expressed in the QDQ graph."""


def _integer_type(encoding: TensorEncoding):
    import onnx_ir as ir

    types = {
        (4, True): ir.DataType.INT4, (4, False): ir.DataType.UINT4,
        (8, True): ir.DataType.INT8, (8, False): ir.DataType.UINT8,
        (16, True): ir.DataType.INT16, (16, False): ir.DataType.UINT16,
    }
    bits = encoding.stored_bits
    key = (bits, encoding.is_sym)
    if key not in types:
        raise QdqError(f"{encoding.name}: {bits}-bit {'symmetric' if encoding.is_sym else 'asymmetric'} has no ONNX integer type")
    return types[key]


def _zero_points(encoding: TensorEncoding) -> np.ndarray:
    if encoding.is_sym:
        return np.zeros(len(encoding.scale), dtype=np.int64)
    return -np.asarray(encoding.offset, dtype=np.int64)


def _numpy_dtype(data_type):
    import onnx_ir as ir

    return {
        ir.DataType.INT4: np.int8, ir.DataType.UINT4: np.uint8, ir.DataType.INT8: np.int8,
        ir.DataType.UINT8: np.uint8, ir.DataType.INT16: np.int16, ir.DataType.UINT16: np.uint16,
    }[data_type]


def _block_scales(encoding: TensorEncoding, shape: tuple[int, ...]) -> np.ndarray:
    """Per-block scales `(out, in / block)` of a PER_BLOCK or LPBQ weight."""
    blocks = shape[1] // encoding.block_size
    if encoding.enc_type == "LPBQ":
        channel = np.asarray(encoding.scale, dtype=np.float64)[:, None]
        integer = np.asarray(encoding.per_block_int_scale, dtype=np.float64).reshape(shape[0], blocks)
        return (integer * channel).astype(np.float32)
    return np.asarray(encoding.scale, dtype=np.float32).reshape(shape[0], blocks)


def quantize_weight(weight: np.ndarray, encoding: TensorEncoding):
    """Integer codes, scale and zero point of `weight (out, in, …)` under `encoding`."""
    data_type = _integer_type(encoding)
    bits = encoding.stored_bits
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if encoding.is_sym else (0, 2**bits - 1)
    flat = weight.reshape(weight.shape[0], -1).astype(np.float64)
    if encoding.enc_type in ("PER_BLOCK", "LPBQ"):
        scales = _block_scales(encoding, flat.shape)
        zero = np.zeros_like(scales, dtype=np.int64) if encoding.is_sym else -np.asarray(encoding.offset).reshape(scales.shape)
        expanded = np.repeat(scales, encoding.block_size, axis=1).astype(np.float32)
        # aimet's block path divides in float32 and rounds half to even; so must we, or ties round apart.
        codes = np.clip(np.round(flat.astype(np.float32) / expanded) + np.repeat(zero, encoding.block_size, axis=1), low, high)
        return codes.reshape(weight.shape).astype(_numpy_dtype(data_type)), scales.reshape(
            (weight.shape[0], -1, *([1] * (weight.ndim - 2)))
        ), zero.reshape((weight.shape[0], -1, *([1] * (weight.ndim - 2)))), data_type
    scale = np.asarray(encoding.scale, dtype=np.float32)
    zero = _zero_points(encoding)
    if scale.size != 1 and scale.size != weight.shape[0]:
        raise QdqError(f"{encoding.name}: {scale.size} scales for a weight with {weight.shape[0]} output channels")
    codes = _fake_quantize_codes(flat.astype(np.float32), scale, zero, low, high)
    if scale.size == 1:
        return codes.reshape(weight.shape).astype(_numpy_dtype(data_type)), scale[0], zero[0], data_type
    return codes.reshape(weight.shape).astype(_numpy_dtype(data_type)), scale, zero, data_type


def _fake_quantize_codes(flat: np.ndarray, scale: np.ndarray, zero: np.ndarray, low: int, high: int) -> np.ndarray:
    """The codes aimet's simulation gives `flat (out, in)`: it runs per-tensor and per-channel weights
    through torch's fake_quantize, which multiplies by the float32 reciprocal of the scale. Where a
    weight sits exactly half a step between two codes (common on weights that already lie on a
    grid, such as GGUF-converted ones) a division rounds it the other way: one code off, and on an
    input channel that carries a massive activation that is hundreds of output steps."""
    import torch

    rows = flat.shape[0]
    scales = np.broadcast_to(scale, (rows,)).astype(np.float32)
    zeros = np.broadcast_to(zero, (rows,)).astype(np.int32)
    dequantized = torch.fake_quantize_per_channel_affine(
        torch.from_numpy(np.ascontiguousarray(flat)), torch.from_numpy(scales), torch.from_numpy(zeros), 0, low, high
    ).numpy()
    # Back to codes: (q - z) · s in float32, divided by s, is within a hair of the integer q - z.
    return np.rint(dequantized / scales[:, None]) + zeros[:, None]


def to_qdq(graph_path: str | os.PathLike, encodings: Encodings, output_path: str | os.PathLike, int4_as_int8: bool = False) -> Path:
    """Writes the QDQ form of the ONNX graph at `graph_path` (weights inline) to `output_path`.

    `int4_as_int8` stores every 4-bit weight of a Conv/MatMul/Gemm as int8 codes × 16 with scale / 16:
    the same real weights, which HTP computes 16× more precisely (see the module docstring).
    """
    import onnx_ir as ir

    model = ir.load(str(graph_path))
    graph = model.graph
    version = max(model.opset_imports.get("", OPSET), OPSET)
    encodings = _fuse_rms_norms(graph, encodings)
    if any(node.op_type == "RMSNormalization" for node in graph):
        version = max(version, RMS_NORM_OPSET)
    model.opset_imports[""] = version
    _quantize_weights(graph, encodings, int4_as_int8)
    _quantize_activations(graph, encodings)
    graph.sort()
    output_path = Path(output_path)
    ir.save(model, str(output_path))
    return output_path


# The ops whose HTP kernels accumulate weight × activation (where 4-bit weights lose precision), and
# the layout ops a weight may pass on its way there (the lm_head's Transpose).
ACCUMULATING_OPS = {"Conv", "MatMul", "Gemm"}
LAYOUT_OPS = {"Transpose", "Reshape", "Unsqueeze", "Squeeze"}
WIDENED = {"INT4": ("INT8", np.int8), "UINT4": ("UINT8", np.uint8)}


def accumulated_tensors(nodes) -> set[str]:
    """Names of the tensors that reach a Conv/MatMul/Gemm input, directly or through layout ops.

    `nodes`: (op_type, input names, output names) of every node of a graph."""
    nodes = list(nodes)
    found = {name for op, inputs, _ in nodes if op in ACCUMULATING_OPS for name in inputs}
    while True:
        more = {name for op, inputs, outputs in nodes if op in LAYOUT_OPS and set(outputs) & found for name in inputs} - found
        if not more:
            return found
        found |= more


def widen_int4(codes: np.ndarray, scale, zero, data_type):
    """The same weights as 8-bit codes: codes and zero points × 16, scales / 16 (exact in float32)."""
    import onnx_ir as ir

    name, numpy_type = WIDENED[data_type.name]
    return (
        (codes.astype(np.int16) * INT4_TO_INT8).astype(numpy_type),
        np.asarray(scale, dtype=np.float32) / INT4_TO_INT8,
        np.asarray(zero, dtype=np.int64) * INT4_TO_INT8,
        getattr(ir.DataType, name),
    )


def _quantize_weights(graph, encodings: Encodings, int4_as_int8: bool = False) -> None:
    import onnx_ir as ir

    accumulated = accumulated_tensors(
        (node.op_type, [v.name for v in node.inputs if v is not None], [v.name for v in node.outputs]) for node in graph
    ) if int4_as_int8 else set()
    for name, encoding in encodings.params.items():
        value = graph.initializers.get(name)
        if value is None or encoding.is_float:
            continue  # a weight of another part, or one kept in float
        weight = value.const_value.numpy()
        codes, scale, zero, data_type = quantize_weight(weight, encoding)
        if name in accumulated and data_type.name in WIDENED:
            codes, scale, zero, data_type = widen_int4(codes, scale, zero, data_type)
        integer = ir.Value(name=f"{name}_quantized", const_value=ir.tensor(codes, dtype=data_type, name=f"{name}_quantized"))
        scale_value = ir.Value(name=f"{name}_scale", const_value=ir.tensor(np.asarray(scale, dtype=np.float32), name=f"{name}_scale"))
        zero_value = ir.Value(
            name=f"{name}_zero_point",
            const_value=ir.tensor(np.asarray(zero).astype(_numpy_dtype(data_type)), dtype=data_type, name=f"{name}_zero_point"),
        )
        for extra in (integer, scale_value, zero_value):
            graph.register_initializer(extra)
        attributes = {}
        if np.ndim(scale) > 0:
            attributes["axis"] = 0
        if encoding.enc_type in ("PER_BLOCK", "LPBQ"):
            attributes["block_size"] = encoding.block_size
            attributes["axis"] = 1
        node = ir.node("DequantizeLinear", [integer, scale_value, zero_value], attributes, name=f"{name}_dq")
        node.outputs[0].name = f"{name}_dequantized"
        value.replace_all_uses_with(node.outputs[0])
        graph.append(node)  # the graph is sorted once everything is in place
        graph.initializers.pop(name)


def _quantize_activations(graph, encodings: Encodings) -> None:
    values = {value.name: value for node in graph for value in node.outputs}
    values.update({value.name: value for value in graph.inputs})
    outputs = {value.name for value in graph.outputs}
    for name, encoding in encodings.activations.items():
        value = values.get(name)
        if value is None or (encoding.is_float and encoding.bw == 32):
            continue  # a value of another graph (another part), or one left in float32
        quantize, dequantize = _float16_pair(value) if encoding.is_float else _qdq_pair(graph, value, encoding)
        users = list(value.uses())
        if name in outputs:  # the graph output keeps its name, now after the QDQ pair
            value.name = f"{name}_float"
            dequantize.outputs[0].name = name
            index = list(graph.outputs).index(value)
            graph.outputs[index] = dequantize.outputs[0]
        else:
            dequantize.outputs[0].name = f"{name}_dequantized"
        for user, position in users:
            if user is not quantize:
                user.replace_input_with(position, dequantize.outputs[0])
        graph.append(quantize)
        graph.append(dequantize)


def _qdq_pair(graph, value, encoding: TensorEncoding):
    import onnx_ir as ir

    name, data_type = value.name, _integer_type(encoding)
    scale = ir.Value(name=f"{name}_scale", const_value=ir.tensor(np.float32(encoding.scale[0]), name=f"{name}_scale"))
    zero = ir.Value(
        name=f"{name}_zero_point",
        const_value=ir.tensor(np.asarray(_zero_points(encoding)[0]).astype(_numpy_dtype(data_type)), dtype=data_type,
                              name=f"{name}_zero_point"),
    )
    graph.register_initializer(scale)
    graph.register_initializer(zero)
    quantize = ir.node("QuantizeLinear", [value, scale, zero], name=f"{name}_q")
    quantize.outputs[0].name = f"{name}_quantized"
    return quantize, ir.node("DequantizeLinear", [quantize.outputs[0], scale, zero], name=f"{name}_dq")


def _float16_pair(value):
    """`Cast(fp16) → Cast(fp32)`: the rounding a FLOAT 16 encoding means. ORT's CPU EP computes it
    exactly as the host simulation does; HTP runs the float ops around it in fp16 anyway."""
    import onnx_ir as ir

    to_half = ir.node("Cast", [value], {"to": ir.DataType.FLOAT16}, name=f"{value.name}_to_fp16")
    to_half.outputs[0].name = f"{value.name}_fp16"
    return to_half, ir.node("Cast", [to_half.outputs[0]], {"to": ir.DataType.FLOAT}, name=f"{value.name}_from_fp16")


def _constant(value):
    if value is None or value.const_value is None:
        return None
    return value.const_value.numpy()


def _only_user(value, op_type: str):
    users = [user for user, _ in value.uses()]
    return users[0] if len(users) == 1 and users[0].op_type == op_type else None


def _other_input(node, value):
    first, second = node.inputs
    return second if first is value else first if second is value else None


def _rms_norm_at(reduce_mean):
    """`(x, weight, eps, axis, output, nodes)` of the decomposed RMSNorm whose ReduceMean is `reduce_mean`, or None.

    Pattern (the exporter's form of `EdgeLlamaRMSNorm`): `out = Mul(w', Mul(x, Reciprocal(Sqrt(Add(
    ReduceMean(Pow(x, 2), [axis]), eps)))))`, `w'` the weight or a Reshape of it; either Mul input order.
    """
    power = reduce_mean.inputs[0].producer() if reduce_mean.inputs[0] is not None else None
    if power is None or power.op_type != "Pow" or _constant(power.inputs[1]) is None or float(_constant(power.inputs[1])) != 2.0:
        return None
    x = power.inputs[0]
    axes = _constant(reduce_mean.inputs[1]) if len(reduce_mean.inputs) > 1 else None
    keepdims = reduce_mean.attributes.get("keepdims")
    if axes is None or np.size(axes) != 1 or (keepdims is not None and keepdims.as_int() != 1) or x.shape is None:
        return None
    rank = len(x.shape)
    axis = int(np.reshape(axes, -1)[0]) % rank
    add = _only_user(reduce_mean.outputs[0], "Add")
    eps = _constant(_other_input(add, reduce_mean.outputs[0])) if add is not None else None
    sqrt = _only_user(add.outputs[0], "Sqrt") if add is not None else None
    reciprocal = _only_user(sqrt.outputs[0], "Reciprocal") if sqrt is not None else None
    normalize = _only_user(reciprocal.outputs[0], "Mul") if reciprocal is not None else None
    if eps is None or np.size(eps) != 1 or normalize is None or _other_input(normalize, reciprocal.outputs[0]) is not x:
        return None
    scale = _only_user(normalize.outputs[0], "Mul")
    weight = _other_input(scale, normalize.outputs[0]) if scale is not None else None
    nodes = [power, reduce_mean, add, sqrt, reciprocal, normalize, scale]
    if weight is not None and weight.producer() is not None and weight.producer().op_type == "Reshape":
        if len(list(weight.uses())) == 1:
            nodes.append(weight.producer())
        weight = weight.producer().inputs[0]
    if weight is None or not weight.is_initializer() or weight.shape is None or tuple(weight.shape) != (x.shape[axis],):
        return None
    if len(list(power.outputs[0].uses())) != 1:
        return None
    return x, weight, float(np.reshape(eps, -1)[0]), axis, scale.outputs[0], nodes


def _encoding_through_moves(value, activations: dict[str, TensorEncoding]) -> TensorEncoding | None:
    """The encoding of `value`, or of the tensor it is a transpose/reshape of: the first layer's norm reads
    the embedding (quantized at the Gather) through the NCHW layout's Transpose and Unsqueeze."""
    while value is not None and value.name not in activations:
        producer = value.producer()
        if producer is None or producer.op_type not in _MOVES_VALUES:
            return None
        value = producer.inputs[0]
    return None if value is None else activations[value.name]


_MOVES_VALUES = {"Transpose", "Unsqueeze", "Squeeze", "Reshape"}


def _fuse_rms_norms(graph, encodings: Encodings) -> Encodings:
    """Replaces every decomposed RMSNorm by `RMSNormalization` over its axis (moved last by Transposes).

    The output value keeps its name (and so its encoding); the transposed input and the normalized
    value before the Transpose back get the encodings of the input and the output, so every op of
    the RMSNorm is a quantized node unit. Returns the encodings extended by those two names per norm.
    """
    import onnx_ir as ir

    activations = dict(encodings.activations)
    for reduce_mean in [node for node in graph if node.op_type == "ReduceMean"]:
        match = _rms_norm_at(reduce_mean)
        if match is None:
            continue
        x, weight, eps, axis, output, decomposed = match
        source = _encoding_through_moves(x, activations)
        target = activations.get(output.name)
        if source is None or target is None:
            continue  # not quantized on both sides: leave it as it is
        rank = len(x.shape)
        perm = [d for d in range(rank) if d != axis] + [axis]
        inverse = [perm.index(d) for d in range(rank)]
        stem = output.name.removesuffix(":output0")
        nodes = []
        normalized_input = x
        if axis != rank - 1:
            to_last = ir.node("Transpose", [x], {"perm": perm}, name=f"{stem}_to_last")
            to_last.outputs[0].name = f"{stem}:channels_last_input"
            nodes.append(to_last)
            normalized_input = to_last.outputs[0]
            if not source.is_float:  # a transposed fp16 tensor needs no second rounding
                activations[normalized_input.name] = dataclasses.replace(source, name=normalized_input.name)
        norm = ir.node("RMSNormalization", [normalized_input, weight], {"axis": -1, "epsilon": eps}, name=f"{stem}_rms_norm")
        nodes.append(norm)
        if axis != rank - 1:
            norm.outputs[0].name = f"{stem}:channels_last_output"
            activations[norm.outputs[0].name] = dataclasses.replace(target, name=norm.outputs[0].name)
            back = ir.node("Transpose", [norm.outputs[0]], {"perm": inverse}, name=f"{stem}_from_last")
            nodes.append(back)
        result = nodes[-1].outputs[0]
        # The new last node takes over the output value (name, encoding, graph-output slot).
        old_name = output.name
        output.replace_all_uses_with(result)
        if output.is_graph_output():
            graph.outputs[list(graph.outputs).index(output)] = result
        output.name = f"{old_name}_decomposed"
        result.name = old_name
        graph.extend(nodes)  # the graph is sorted once everything is in place
        graph.remove(decomposed, safe=True)
    return dataclasses.replace(encodings, activations=activations)
