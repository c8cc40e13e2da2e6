"""Runs an `onnx-int4` export (`export(target="onnx-int4")`) in onnxruntime on the CPU."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..configuration_edge_llama import EdgeLlamaConfig


class OrtCache:
    """The KV cache of one window: per layer a key and a value buffer `(1, n_kv, CL, head_dim)`, of
    which the first `length` positions are filled. The graph reads and writes them in place."""

    def __init__(self, buffers: dict):
        self.buffers = buffers  # past input name -> OrtValue
        self.length = 0


class OrtInt4Backend:
    """A `ProgramBackend` over the decoder of an onnx-int4 folder.

    Each window carries its own cache (the graph takes it as input), so `holds()` is always true
    and windows interleave freely. The cache is bound as both `past_key_values.*` and `present.*`
    (ORT GenAI's past-present buffer sharing): `GroupQueryAttention` appends the new positions in
    place, so a decode step copies no cache. A prompt chunk of up to `max_seq_len` tokens is one
    call; decode is one token per call. `threads` sets onnxruntime's intra-op pool (default: the
    cores this process may use).
    """

    dtype = torch.float32
    device = torch.device("cpu")

    def __init__(self, folder: str | os.PathLike, threads: int | None = None):
        import onnxruntime as ort

        from ..export import onnx_int4_graph as graph

        self._ort = ort
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
        self._cache_names = [
            (past % i, present % i)
            for i in range(layers)
            for past, present in ((graph.PAST_KEY, graph.PRESENT_KEY), (graph.PAST_VALUE, graph.PRESENT_VALUE))
        ]
        self._cache_shape = (1, self.config.num_key_value_heads, self.config.context_length, self.config.head_dim)
        recipe = (export.get("recipe") or {}).get("recipe")
        kernel = "MatMulNBits" if export.get("matmul_nbits") else "float MatMul"
        self.description = f"{recipe or 'float32'} · ONNX Runtime int4 ({kernel}, {threads} threads)"

    def new_state(self) -> OrtCache:
        zeros = np.zeros(self._cache_shape, dtype=np.float32)
        return OrtCache({past: self._ort.OrtValue.ortvalue_from_numpy(zeros.copy()) for past, _ in self._cache_names})

    def holds(self, state: OrtCache) -> bool:
        return True

    def __call__(self, tokens: torch.LongTensor, start_pos: int, state: OrtCache) -> torch.Tensor:
        count = int(tokens.shape[0])
        if start_pos != state.length or start_pos + count > self._cache_shape[2]:
            raise ValueError(
                f"the cache holds {state.length} of {self._cache_shape[2]} positions; a chunk of {count} cannot start at {start_pos}"
            )
        binding = self.session.io_binding()
        binding.bind_cpu_input("input_ids", np.ascontiguousarray(tokens.view(1, -1).to(torch.long).numpy()))
        binding.bind_cpu_input("attention_mask", np.ones((1, start_pos + count), dtype=np.int64))
        binding.bind_cpu_input("position_ids", np.arange(start_pos, start_pos + count, dtype=np.int64).reshape(1, -1))
        binding.bind_output("logits", "cpu")
        for past, present in self._cache_names:
            binding.bind_ortvalue_input(past, state.buffers[past])
            binding.bind_ortvalue_output(present, state.buffers[past])
        self.session.run_with_iobinding(binding)
        state.length = start_pos + count
        return torch.from_numpy(binding.get_outputs()[0].numpy()[0])
