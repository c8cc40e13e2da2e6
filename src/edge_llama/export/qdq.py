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
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import EdgeLlamaError
from ..quantization.encodings import Encodings, TensorEncoding

OPSET = 21


class QdqError(EdgeLlamaError, ValueError):
    """An encoding cannot be expressed in the QDQ graph."""


def _integer_type(encoding: TensorEncoding):
    import onnx_ir as ir

    types = {
        (4, True): ir.DataType.INT4, (4, False): ir.DataType.UINT4,
        (8, True): ir.DataType.INT8, (8, False): ir.DataType.UINT8,
        (16, True): ir.DataType.INT16, (16, False): ir.DataType.UINT16,
    }
    bits = encoding.compressed_bw if encoding.enc_type == "LPBQ" else encoding.bw
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
    bits = encoding.compressed_bw if encoding.enc_type == "LPBQ" else encoding.bw
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if encoding.is_sym else (0, 2**bits - 1)
    flat = weight.reshape(weight.shape[0], -1).astype(np.float64)
    if encoding.enc_type in ("PER_BLOCK", "LPBQ"):
        scales = _block_scales(encoding, flat.shape)
        zero = np.zeros_like(scales, dtype=np.int64) if encoding.is_sym else -np.asarray(encoding.offset).reshape(scales.shape)
        expanded = np.repeat(scales, encoding.block_size, axis=1).astype(np.float64)
        codes = np.clip(np.round(flat / expanded) + np.repeat(zero, encoding.block_size, axis=1), low, high)
        return codes.reshape(weight.shape).astype(_numpy_dtype(data_type)), scales.reshape(
            (weight.shape[0], -1, *([1] * (weight.ndim - 2)))
        ), zero.reshape((weight.shape[0], -1, *([1] * (weight.ndim - 2)))), data_type
    scale = np.asarray(encoding.scale, dtype=np.float32)
    zero = _zero_points(encoding)
    flat = flat.astype(np.float32)  # aimet divides in float32; ties must round the same way
    if scale.size == 1:
        codes = np.clip(np.round(flat / scale[0]) + zero[0], low, high)
        return codes.reshape(weight.shape).astype(_numpy_dtype(data_type)), scale[0], zero[0], data_type
    if scale.size != weight.shape[0]:
        raise QdqError(f"{encoding.name}: {scale.size} scales for a weight with {weight.shape[0]} output channels")
    codes = np.clip(np.round(flat / scale[:, None]) + zero[:, None], low, high)
    return codes.reshape(weight.shape).astype(_numpy_dtype(data_type)), scale, zero, data_type


def to_qdq(graph_path: str | os.PathLike, encodings: Encodings, output_path: str | os.PathLike) -> Path:
    """Writes the QDQ form of the ONNX graph at `graph_path` (weights inline) to `output_path`."""
    import onnx_ir as ir

    model = ir.load(str(graph_path))
    graph = model.graph
    version = max(model.opset_imports.get("", OPSET), OPSET)
    model.opset_imports[""] = version
    _quantize_weights(graph, encodings)
    _quantize_activations(graph, encodings)
    graph.sort()
    output_path = Path(output_path)
    ir.save(model, str(output_path))
    return output_path


def _quantize_weights(graph, encodings: Encodings) -> None:
    import onnx_ir as ir

    for name, encoding in encodings.params.items():
        value = graph.initializers.get(name)
        if value is None:
            continue  # a weight of another part
        weight = value.const_value.numpy()
        codes, scale, zero, data_type = quantize_weight(weight, encoding)
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
    import onnx_ir as ir

    values = {value.name: value for node in graph for value in node.outputs}
    values.update({value.name: value for value in graph.inputs})
    outputs = {value.name for value in graph.outputs}
    for name, encoding in encodings.activations.items():
        value = values.get(name)
        if value is None:
            continue  # a value of another graph (another part)
        data_type = _integer_type(encoding)
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
        dequantize = ir.node("DequantizeLinear", [quantize.outputs[0], scale, zero], name=f"{name}_dq")
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
