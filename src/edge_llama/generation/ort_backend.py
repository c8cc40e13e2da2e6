"""Runs an `onnx-int4` export (`export(target="onnx-int4")`) in onnxruntime on the CPU."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..configuration_edge_llama import EdgeLlamaConfig


@dataclass
class OrtCache:
    """The KV cache of one window: the `present.*` arrays of the last call, `(1, n_kv, length, head_dim)`."""

    keys: list[np.ndarray] = field(default_factory=list)
    values: list[np.ndarray] = field(default_factory=list)
    length: int = 0


class OrtInt4Backend:
    """A `ProgramBackend` over the decoder of an onnx-int4 folder.

    Each window carries its own cache (the graph takes it as input), so `holds()` is always true
    and windows interleave freely. A prompt chunk of up to `max_seq_len` tokens is one call; decode
    is one token per call. `threads` sets onnxruntime's intra-op pool (default: the cores this
    process may use).
    """

    dtype = torch.float32
    device = torch.device("cpu")

    def __init__(self, folder: str | os.PathLike, threads: int | None = None):
        import onnxruntime as ort

        from ..export import onnx_int4_graph as graph

        self.folder = Path(folder)
        self.config = EdgeLlamaConfig.from_pretrained(self.folder)
        export = self.config.edge_llama_export
        self.max_seq_len = int(export["max_seq_len"])
        threads = threads or len(os.sched_getaffinity(0))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(self.folder / export["model"]), options, providers=["CPUExecutionProvider"])
        layers = self.config.num_hidden_layers
        self._past = [name % i for i in range(layers) for name in (graph.PAST_KEY, graph.PAST_VALUE)]
        self._outputs = [graph.LOGITS] + [name % i for i in range(layers) for name in (graph.PRESENT_KEY, graph.PRESENT_VALUE)]
        self._empty = np.zeros((1, self.config.num_key_value_heads, 0, self.config.head_dim), dtype=np.float32)
        recipe = (export.get("recipe") or {}).get("recipe")
        kernel = f"MatMulNBits, {threads} threads" if export.get("matmul_nbits") else f"float MatMul, {threads} threads"
        self.description = f"{recipe or 'float32'} · ONNX Runtime int4 ({kernel})"

    def new_state(self) -> OrtCache:
        layers = self.config.num_hidden_layers
        return OrtCache([self._empty] * layers, [self._empty] * layers)

    def holds(self, state: OrtCache) -> bool:
        return True

    def __call__(self, tokens: torch.LongTensor, start_pos: int, state: OrtCache) -> torch.Tensor:
        if start_pos != state.length:
            raise ValueError(f"the cache holds {state.length} positions but the chunk starts at {start_pos}")
        count = int(tokens.shape[0])
        feed = {
            "input_ids": tokens.view(1, -1).to(torch.long).numpy(),
            "attention_mask": np.ones((1, start_pos + count), dtype=np.int64),
            "position_ids": np.arange(start_pos, start_pos + count, dtype=np.int64).reshape(1, -1),
        }
        for layer in range(self.config.num_hidden_layers):
            feed[self._past[2 * layer]] = state.keys[layer]
            feed[self._past[2 * layer + 1]] = state.values[layer]
        logits, *presents = self.session.run(self._outputs, feed)
        state.keys, state.values, state.length = presents[0::2], presents[1::2], start_pos + count
        return torch.from_numpy(logits[0])
