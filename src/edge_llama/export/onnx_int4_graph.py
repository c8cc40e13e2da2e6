"""The decoder as one ONNX graph in ONNX Runtime GenAI's form, its int4 weights as `MatMulNBits`.

```
input_ids (B, S) int64, attention_mask (B, P + S) int64, position_ids (B, S) int64,
past_key_values.{i}.key / .value (B, n_kv, P, head_dim)
  -> logits (B, S, vocab), present.{i}.key / .value (B, n_kv, P + S, head_dim)
```

Per layer: `SimplifiedLayerNormalization` (RMSNorm), q/k/v/o and the MLP as `com.microsoft.MatMulNBits`
(plain `MatMul` for float weights), `com.microsoft.RotaryEmbedding` driven by `position_ids` with the
host's own cos/sin table (so every rope scaling matches), `com.microsoft.GroupQueryAttention` over
`past ++ new` (it concatenates and returns the present cache), SiLU-gated MLP. ONNX Runtime fuses
the residual adds into the norms itself.

`MatMulNBits` codes come from the model's own grids, never from a re-quantization: a weight on
`(scale, offset)` in AIMET's convention (`w = scale * (q + offset)`) becomes codes `q` packed two per
byte, low nibble first, per-block scales and zero points `-offset`, so the kernel's
`(q - zero_point) * scale` is the host's dequantized weight, bit for bit. A group that is not a power
of two (SmolLM2's 576-wide layers fall back to groups of 96) is written as power-of-two blocks that
repeat its scale.

Weights are written straight into one external data file (`model.onnx.data`) as they are built, so
the protobuf stays small whatever the model size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper

OPSET = 21
IR_VERSION = 10
MATMUL_NBITS_BLOCKS = (128, 64, 32, 16)  # block sizes MLAS's int4 kernels take, largest first
BITS = 4
ALIGNMENT = 64  # bytes; offsets in the data file stay aligned for memory mapping

INPUT_IDS, ATTENTION_MASK, POSITION_IDS, LOGITS = "input_ids", "attention_mask", "position_ids", "logits"
PAST_KEY, PAST_VALUE = "past_key_values.%d.key", "past_key_values.%d.value"
PRESENT_KEY, PRESENT_VALUE = "present.%d.key", "present.%d.value"


def matmul_nbits_block(group: int) -> int | None:
    """The largest block size `MatMulNBits` takes that divides `group` (None if there is none)."""
    return next((block for block in MATMUL_NBITS_BLOCKS if group % block == 0), None)


def int4_codes(weight: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor) -> np.ndarray:
    """The integer codes `q` in [0, 15] of `weight` (N, K) on the grid `(scale, offset)` of shape (N, groups)."""
    from ..quantization.affine import quantize

    return quantize(weight.float(), scale, offset, BITS).to(torch.uint8).numpy()


def pack_matmul_nbits(codes: np.ndarray, scale: np.ndarray, offset: np.ndarray, block: int):
    """`MatMulNBits` inputs `(B, scales, zero_points or None)` for codes (N, K) on groups of
    `K / scale.shape[1]` input channels, in blocks of `block` (which must divide the group size).

    `B` is `(N, K / block, block / 2)` uint8 with element `2j` in the low nibble of byte `j`;
    `scales` is `(N * K / block,)`; zero points are `-offset`, packed the same way per row
    (`(N, ceil(blocks / 2))`), or None when all are 8 (the kernel's default for 4 bits).
    """
    rows, width = codes.shape
    repeat = width // scale.shape[1] // block
    scales = np.repeat(scale.astype(np.float32), repeat, axis=1)
    zero_points = np.repeat((-offset).astype(np.int64), repeat, axis=1)
    if zero_points.min() < 0 or zero_points.max() > 2**BITS - 1:
        raise ValueError(f"zero points {zero_points.min()}..{zero_points.max()} do not fit {BITS} bits")
    packed = _pack_nibbles(codes.reshape(rows, width // block, block))
    if (zero_points == 2 ** (BITS - 1)).all():
        return packed, scales.reshape(-1), None
    blocks = zero_points.shape[1]
    padded = np.zeros((rows, blocks + blocks % 2), dtype=np.uint8)
    padded[:, :blocks] = zero_points
    return packed, scales.reshape(-1), _pack_nibbles(padded)


def _pack_nibbles(values: np.ndarray) -> np.ndarray:
    values = values.astype(np.uint8)
    return (values[..., 0::2] | (values[..., 1::2] << 4)).astype(np.uint8)


class ExternalData:
    """Writes initializers into one data file next to the model as they are made."""

    def __init__(self, folder: Path, location: str):
        self.location = location
        self._handle = open(Path(folder) / location, "wb")
        self._offset = 0

    def tensor(self, name: str, array: np.ndarray) -> TensorProto:
        array = np.ascontiguousarray(array)
        if array.dtype.byteorder == ">":
            array = array.astype(array.dtype.newbyteorder("<"))
        tensor = TensorProto(name=name, data_type=helper.np_dtype_to_tensor_dtype(array.dtype), dims=array.shape)
        padding = -self._offset % ALIGNMENT
        self._handle.write(b"\0" * padding)
        self._offset += padding
        data = array.tobytes()
        self._handle.write(data)
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", self.location), ("offset", self._offset), ("length", len(data))):
            tensor.external_data.add(key=key, value=str(value))
        self._offset += len(data)
        return tensor

    @property
    def size(self) -> int:
        return self._offset

    def __enter__(self) -> ExternalData:
        return self

    def __exit__(self, *exc) -> None:
        self._handle.close()


class DecoderGraphBuilder:
    """Accumulates nodes and initializers; `linear()` picks MatMulNBits or MatMul per weight."""

    def __init__(self, data: ExternalData, accuracy_level: int = 0):
        self.data = data
        self.accuracy_level = accuracy_level
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self.counts = {"MatMulNBits": 0, "MatMul": 0}

    def constant(self, name: str, array: np.ndarray) -> str:
        array = np.asarray(array)
        if array.size <= 16:
            self.initializers.append(onnx.numpy_helper.from_array(array, name))
        else:
            self.initializers.append(self.data.tensor(name, array))
        return name

    def node(self, op: str, inputs: list[str], name: str, outputs: int | list[str] = 1, domain: str = "", **attributes):
        names = [f"{name}/out{i}" if outputs != 1 else f"{name}/out" for i in range(outputs)] if isinstance(outputs, int) else outputs
        self.nodes.append(helper.make_node(op, inputs, names, name=name, domain=domain, **attributes))
        return names[0] if len(names) == 1 else names

    def linear(self, x: str, name: str, weight: torch.Tensor, grid=None, bias: torch.Tensor | None = None) -> str:
        """`x @ weight.T (+ bias)` with weight `(N, K)`; `grid = (scale, offset, block)` makes it MatMulNBits."""
        rows, width = weight.shape
        if grid is None:
            self.counts["MatMul"] += 1
            transposed = weight.detach().float().T.contiguous().numpy()
            out = self.node("MatMul", [x, self.constant(f"{name}.weight_t", transposed)], name)
        else:
            scale, offset, block = grid
            codes = int4_codes(weight, scale, offset)
            packed, scales, zero_points = pack_matmul_nbits(codes, scale.numpy(), offset.numpy(), block)
            inputs = [x, self.constant(f"{name}.weight_q4", packed), self.constant(f"{name}.scales", scales)]
            if zero_points is not None:
                inputs.append(self.constant(f"{name}.zero_points", zero_points))
            self.counts["MatMulNBits"] += 1
            out = self.node(
                "MatMulNBits", inputs, name, domain="com.microsoft",
                K=width, N=rows, bits=BITS, block_size=block, accuracy_level=self.accuracy_level,
            )
        if bias is not None:
            out = self.node("Add", [out, self.constant(f"{name}.bias", bias.detach().float().numpy())], f"{name}/bias")
        return out


def build_decoder(model, folder: Path, grids: dict, accuracy_level: int = 0, model_file: str = "model.onnx") -> dict:
    """Writes `model_file` + `<model_file>.data` for the edge model `model` (float weights in HF names,
    `model.state_dict()`); `grids[hf_name] = (scale, offset, block)` marks the int4 projections.
    Returns {"MatMulNBits": n, "MatMul": m, "data_bytes": size}."""
    with ExternalData(folder, f"{model_file}.data") as data:
        graph = DecoderGraphBuilder(data, accuracy_level)
        logits = _decoder(graph, model, grids)
    graph.nodes.append(helper.make_node("Identity", [logits], [LOGITS], name="logits"))
    inputs, outputs = _graph_io(model.config)
    onnx_model = helper.make_model(
        helper.make_graph(graph.nodes, "edge_llama_decoder", inputs, outputs, graph.initializers),
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)],
        producer_name="edge-llama",
    )
    onnx_model.ir_version = IR_VERSION
    with open(Path(folder) / model_file, "wb") as handle:
        handle.write(onnx_model.SerializeToString())
    return {**graph.counts, "data_bytes": data.size}


def _decoder(graph: DecoderGraphBuilder, model, grids: dict) -> str:
    """Adds the decoder's nodes; returns the name of the logits."""
    from ..generation.rope import RopeTable

    config = model.config
    state = model.state_dict()
    n_heads, n_kv = config.num_attention_heads, config.num_key_value_heads
    scaling = float(model.model.layers[0].self_attn.scaling)

    def linear(x: str, name: str) -> str:
        return graph.linear(x, name, state[f"{name}.weight"], grids.get(name), state.get(f"{name}.bias"))

    def norm(x: str, name: str) -> str:
        weight = graph.constant(f"{name}.weight", state[f"{name}.weight"].detach().float().numpy())
        return graph.node("SimplifiedLayerNormalization", [x, weight], name, axis=-1, epsilon=float(config.rms_norm_eps), stash_type=1)

    def rotary(x: str, name: str, heads: int) -> str:
        return graph.node("RotaryEmbedding", [x, POSITION_IDS, cos_cache, sin_cache], name, domain="com.microsoft",
                          num_heads=heads, interleaved=0)

    cos, sin = RopeTable(config)(torch.arange(config.context_length))  # the host's table: every rope scaling
    cos_cache = graph.constant("rope.cos_cache", cos[0, 0].float().numpy())
    sin_cache = graph.constant("rope.sin_cache", sin[0, 0].float().numpy())
    # GroupQueryAttention reads lengths from the mask, as ORT GenAI's models do: past + new per row, and the longest.
    mask_sum = graph.node("ReduceSum", [ATTENTION_MASK, graph.constant("axes_1", np.array([1], np.int64))], "mask/sum", keepdims=0)
    last = graph.node("Sub", [mask_sum, graph.constant("one", np.array(1, np.int64))], "mask/last")
    seqlens_k = graph.node("Cast", [last], "mask/seqlens_k", to=TensorProto.INT32)
    mask_shape = graph.node("Shape", [ATTENTION_MASK], "mask/shape")
    total = graph.node("Gather", [mask_shape, graph.constant("index_1", np.array(1, np.int64))], "mask/total", axis=0)
    total_length = graph.node("Cast", [total], "mask/total_length", to=TensorProto.INT32)

    embed = graph.constant("model.embed_tokens.weight", state["model.embed_tokens.weight"].detach().float().numpy())
    x = graph.node("Gather", [embed, INPUT_IDS], "model.embed_tokens", axis=0)
    for index in range(config.num_hidden_layers):
        prefix = f"model.layers.{index}"
        attention, mlp = f"{prefix}.self_attn", f"{prefix}.mlp"
        h = norm(x, f"{prefix}.input_layernorm")
        q = rotary(linear(h, f"{attention}.q_proj"), f"{attention}.q_rotary", n_heads)
        k = rotary(linear(h, f"{attention}.k_proj"), f"{attention}.k_rotary", n_kv)
        v = linear(h, f"{attention}.v_proj")
        attended = graph.node(
            "GroupQueryAttention",
            [q, k, v, PAST_KEY % index, PAST_VALUE % index, seqlens_k, total_length],
            f"{attention}.attention",
            outputs=[f"{attention}.attention/out", PRESENT_KEY % index, PRESENT_VALUE % index],
            domain="com.microsoft", num_heads=n_heads, kv_num_heads=n_kv, scale=scaling,
        )[0]
        x = graph.node("Add", [x, linear(attended, f"{attention}.o_proj")], f"{prefix}.attention_residual")
        h = norm(x, f"{prefix}.post_attention_layernorm")
        gate = linear(h, f"{mlp}.gate_proj")
        silu = graph.node("Mul", [gate, graph.node("Sigmoid", [gate], f"{mlp}.sigmoid")], f"{mlp}.silu")
        gated = graph.node("Mul", [silu, linear(h, f"{mlp}.up_proj")], f"{mlp}.gated")
        x = graph.node("Add", [x, linear(gated, f"{mlp}.down_proj")], f"{prefix}.mlp_residual")
    h = norm(x, "model.norm")
    if "lm_head" in grids or model.lm_head.weight is not model.model.embed_tokens.weight:
        return linear(h, "lm_head")
    return _tied_head(graph, h, embed, config.hidden_size, config.vocab_size)


def _tied_head(graph: DecoderGraphBuilder, h: str, embed_name: str, hidden: int, vocab: int) -> str:
    """A float head tied to the embedding reads the table itself (Gemm with transB): no second copy."""
    flat = graph.node("Reshape", [h, graph.constant("shape_flat", np.array([-1, hidden], np.int64))], "lm_head/flatten")
    product = graph.node("Gemm", [flat, embed_name], "lm_head", transB=1)
    input_shape = graph.node("Shape", [INPUT_IDS], "lm_head/input_shape")
    batch_seq = graph.node("Slice", [input_shape, graph.constant("start_0", np.array([0], np.int64)),
                                     graph.constant("end_2", np.array([2], np.int64))], "lm_head/batch_seq")
    shape = graph.node("Concat", [batch_seq, graph.constant("vocab", np.array([vocab], np.int64))], "lm_head/shape", axis=0)
    return graph.node("Reshape", [product, shape], "lm_head/unflatten")


def _graph_io(config) -> tuple[list, list]:
    """GenAI's inputs and outputs; the cache's length axes are dynamic (a shared buffer is CL long)."""

    def cache(name: str, length: str):
        shape = ["batch_size", config.num_key_value_heads, length, config.head_dim]
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    inputs = [
        helper.make_tensor_value_info(INPUT_IDS, TensorProto.INT64, ["batch_size", "sequence_length"]),
        helper.make_tensor_value_info(ATTENTION_MASK, TensorProto.INT64, ["batch_size", "total_sequence_length"]),
        helper.make_tensor_value_info(POSITION_IDS, TensorProto.INT64, ["batch_size", "sequence_length"]),
    ]
    outputs = [helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, ["batch_size", "sequence_length", config.vocab_size])]
    for index in range(config.num_hidden_layers):
        inputs += [cache(PAST_KEY % index, "past_sequence_length"), cache(PAST_VALUE % index, "past_sequence_length")]
        outputs += [cache(PRESENT_KEY % index, "present_sequence_length"), cache(PRESENT_VALUE % index, "present_sequence_length")]
    return inputs, outputs
