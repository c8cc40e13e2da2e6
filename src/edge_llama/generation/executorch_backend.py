"""Runs an exported `.pte` (`export(target="executorch")`) through `executorch.runtime`."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..configuration_edge_llama import EdgeLlamaConfig


class ExecuTorchBackend:
    """A `ProgramBackend` over the `forward(tokens, input_pos)` method of a `.pte`.

    The program has one cache, so it holds only the window it ran last (`ProgramRunner` rebuilds
    another window's cache when it comes back). `threads` sets XNNPACK's thread pool (default: the
    cores this process may use).
    """

    dtype = torch.float32
    device = torch.device("cpu")

    def __init__(self, folder: str | os.PathLike, threads: int | None = None):
        from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
        from executorch.runtime import Runtime

        from ..export.executorch_program import load_custom_ops

        self.folder = Path(folder)
        self.config = EdgeLlamaConfig.from_pretrained(self.folder)
        export = self.config.edge_llama_export
        self.max_seq_len = int(export["max_seq_len"])
        threads = threads or len(os.sched_getaffinity(0))
        load_custom_ops()  # the program calls llama:: and quantized_decomposed:: kernels
        _unsafe_reset_threadpool(threads)
        program = Runtime.get().load_program(self.folder / export["program"])
        self.method = program.load_method("forward")
        recipe = (export.get("recipe") or {}).get("recipe") or "float32"
        self.description = f"{recipe} · ExecuTorch XNNPACK program ({threads} threads)"
        self._current = None

    def new_state(self) -> object:
        return object()

    def holds(self, state: object) -> bool:
        return state is self._current

    def __call__(self, tokens: torch.LongTensor, start_pos: int, state: object) -> torch.Tensor:
        self._current = state
        (logits,) = self.method.execute([tokens.view(1, -1).to(torch.long), torch.tensor([start_pos], dtype=torch.long)])
        return logits[0]
